// Hostile input against the whole mesh (each component its own process, started by the same code as
// `maas up`): a corpus of malformed and hostile requests for every RPC of every public service, and seeded
// random protobuf bytes sent raw to every method, through the gateway and straight to the service behind it.
// Every call must end with a specific status (never INTERNAL or UNKNOWN, never a hang: all have deadlines),
// no process may die, and a normal request afterwards must succeed. Corrupt ONNX files pushed to the registry
// and requested by name must be refused with a specific status too.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmbeddingServiceClient, EmbeddingServiceService, EmbedRequest } from '../gen/maas/embeddings/v1/embeddings.js';
import { GenerationServiceClient, GenerationServiceService } from '../gen/maas/generation/v1/generation.js';
import { ModelRegistryServiceClient, ModelRegistryServiceService } from '../gen/maas/registry/v1/registry.js';
import { VisionServiceClient, VisionServiceService } from '../gen/maas/vision/v1/vision.js';
import { createClient, serverStream, unary } from '../services/runtime/client.js';
import { ModelTask } from '../services/runtime/models/types.js';
import { pushVersion } from '../services/registry/client/push.js';
import { Figures } from './support/resilience/figures.js';
import { randomMessage } from './support/resilience/fuzz.js';
import { genericCases, serviceCases, type HostileCase } from './support/resilience/hostile.js';
import { statusName } from './support/resilience/load.js';
import { MiB, sampleMemory } from './support/resilience/memory.js';
import { startTestMesh, type TestMesh } from './support/resilience/mesh.js';
import { prng } from './support/resilience/prng.js';
import { callRaw, methodsOf, type MethodInfo } from './support/resilience/raw-call.js';

const SEED = 20261122;
const FUZZ_PER_METHOD = 12;
/** What a hostile request may never get: a bug (INTERNAL, UNKNOWN), a hang (DEADLINE_EXCEEDED), a dead or cut-off server. */
const FORBIDDEN = new Set(['INTERNAL', 'UNKNOWN', 'DEADLINE_EXCEEDED', 'UNAVAILABLE', 'CANCELLED']);

const SERVICES = {
  registry: ModelRegistryServiceService,
  embeddings: EmbeddingServiceService,
  generation: GenerationServiceService,
  vision: VisionServiceService,
} as const;

let mesh: TestMesh;
let work: string;
const figures = new Figures('hostile');
const allMethods: (MethodInfo & { owner: keyof typeof SERVICES })[] = Object.entries(SERVICES).flatMap(([owner, def]) =>
  methodsOf(def as never).map((m) => ({ ...m, owner: owner as keyof typeof SERVICES })),
);

beforeAll(async () => {
  mesh = await startTestMesh();
  work = await mkdtemp(join(tmpdir(), 'maas-hostile-'));
}, 400_000);

afterAll(async () => {
  await mesh?.stop();
  if (work) await rm(work, { recursive: true, force: true });
  figures.write();
});

/** WatchModels is a watch: a valid one stays open until the caller's deadline, which is its normal end. */
const mayRunToDeadline = (m: MethodInfo) => m.path.endsWith('/WatchModels');

interface Tally {
  calls: number;
  byCode: Record<string, number>;
  bad: string[];
}

async function runAll(jobs: { label: string; method: MethodInfo; address: string; messages: Buffer[]; metadata?: () => grpc.Metadata }[], tally: Tally, parallel = 4): Promise<void> {
  const clients = new Map<string, grpc.Client>();
  const clientFor = (address: string) => {
    let c = clients.get(address);
    if (!c) clients.set(address, (c = new grpc.Client(address, grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': -1, 'grpc.max_receive_message_length': -1 })));
    return c;
  };
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const job = jobs[next++]!;
      const deadlineMs = mayRunToDeadline(job.method) ? 3000 : 30_000;
      const r = await callRaw(clientFor(job.address), job.method, job.messages, { deadlineMs, metadata: job.metadata?.() });
      const code = statusName(r.code);
      tally.calls++;
      tally.byCode[code] = (tally.byCode[code] ?? 0) + 1;
      if (FORBIDDEN.has(code) && !(code === 'DEADLINE_EXCEEDED' && mayRunToDeadline(job.method))) tally.bad.push(`${job.label} → ${code}: ${r.details.slice(0, 200)}`);
    }
  };
  try {
    await Promise.all(Array.from({ length: parallel }, worker));
  } finally {
    for (const c of clients.values()) c.close();
  }
}

function expectAlive(): void {
  for (const [name, p] of Object.entries(mesh.proc)) expect(p.child.exitCode, `${name} exited`).toBeNull();
}

async function normalRequestsSucceed(): Promise<void> {
  const gw = mesh.grpc.gateway!;
  const e = createClient(EmbeddingServiceClient, gw);
  const g = createClient(GenerationServiceClient, gw);
  const v = createClient(VisionServiceClient, gw);
  const r = createClient(ModelRegistryServiceClient, gw);
  try {
    const deadline = Date.now() + 60_000;
    expect((await unary(e.embed.bind(e), EmbedRequest.fromPartial({ inputs: ['still here'] }), { deadline })).embeddings).toHaveLength(1);
    expect((await unary(g.generate.bind(g), { prompt: 'In the beginning', messages: [], parameters: { maxNewTokens: 4, stop: [], ignoreEos: true } } as never, { deadline })).text).toBeTruthy();
    const red = await sharp({ create: { width: 32, height: 32, channels: 3, background: { r: 255, g: 0, b: 0 } } }).png().toBuffer();
    expect((await unary(v.classifyImage.bind(v), { image: red } as never, { deadline })).labels[0]?.label).toBe('red');
    expect((await unary(r.getModel.bind(r), { name: 'glove-100d' }, { deadline })).model?.name).toBe('glove-100d');
  } finally {
    for (const c of [e, g, v, r]) c.close();
  }
}

describe('hostile input', () => {
  it('answers every hostile request of the corpus, for every RPC, with a specific status through the gateway and directly', async () => {
    const sampler = sampleMemory(Object.values(mesh.pid));
    const cases: HostileCase[] = [...genericCases(), ...(await serviceCases())];
    const jobs = [];
    for (const c of cases) {
      const targets = c.method === '*' ? allMethods : allMethods.filter((m) => m.path === c.method);
      expect(targets.length, c.name).toBeGreaterThan(0);
      for (const m of targets)
        for (const address of [mesh.grpc.gateway!, mesh.grpc[m.owner]!])
          jobs.push({ label: `${m.path} [${c.name}] via ${address === mesh.grpc.gateway ? 'gateway' : m.owner}`, method: m, address, messages: c.messages, metadata: c.metadata });
    }
    const tally: Tally = { calls: 0, byCode: {}, bad: [] };
    await runAll(jobs, tally);
    sampler.stop();
    figures.set('corpus', {
      cases: cases.length,
      calls: tally.calls,
      byCode: tally.byCode,
      forbidden: tally.bad.length,
      rssPeakMiB: Object.fromEntries(Object.entries(mesh.pid).map(([n, pid]) => [n, Math.round(sampler.peak(pid) / MiB)])),
    });
    expectAlive();
    expect(tally.bad).toEqual([]);
    await normalRequestsSucceed();
  });

  it('answers seeded random protobuf bytes sent raw to every method with a specific status', async () => {
    const r = prng(SEED);
    const jobs = [];
    for (const m of allMethods)
      for (let i = 0; i < FUZZ_PER_METHOD; i++) {
        const messages = m.kind === 'client' || m.kind === 'bidi' ? Array.from({ length: 1 + r.int(3) }, () => randomMessage(r)) : [randomMessage(r)];
        const address = i % 2 ? mesh.grpc[m.owner]! : mesh.grpc.gateway!;
        jobs.push({ label: `${m.path} fuzz #${i} (${messages.map((b) => b.toString('hex').slice(0, 80)).join(' ')}) via ${i % 2 ? m.owner : 'gateway'}`, method: m, address, messages });
      }
    const tally: Tally = { calls: 0, byCode: {}, bad: [] };
    await runAll(jobs, tally);
    figures.set('fuzz', { seed: SEED, methods: allMethods.length, calls: tally.calls, byCode: tally.byCode, forbidden: tally.bad.length });
    expectAlive();
    expect(tally.bad).toEqual([]);
    await normalRequestsSucceed();
  });

  it('refuses corrupt ONNX uploads at the registry, and models whose ONNX graph is of the wrong kind at the service, with specific statuses', async () => {
    const registry = createClient(ModelRegistryServiceClient, mesh.grpc.registry!);
    const r = prng(SEED + 1);
    /** The files of `from` version 1, with every .onnx file replaced by `onnx` (or random bytes). */
    const filesOf = async (from: string, dir: string, onnx?: Buffer) => {
      const { version } = await unary(registry.getVersion.bind(registry), { model: from, version: 1 });
      await mkdir(dir, { recursive: true });
      const files = [];
      for (const f of version!.files) {
        let data: Buffer;
        if (f.name.endsWith('.onnx')) data = onnx ?? r.bytes(Math.min(f.size, 64 * 1024));
        else {
          const parts: Buffer[] = [];
          for await (const m of serverStream(registry.downloadVersion.bind(registry), { model: from, version: 1, file: f.name, offset: 0 })) parts.push(m.data);
          data = Buffer.concat(parts);
        }
        const path = join(dir, f.name.replaceAll('/', '__'));
        await writeFile(path, data);
        files.push({ name: f.name, path });
      }
      return files;
    };
    const download = async (model: string, file: string) => {
      const parts: Buffer[] = [];
      for await (const m of serverStream(registry.downloadVersion.bind(registry), { model, version: 1, file, offset: 0 })) parts.push(m.data);
      return Buffer.concat(parts);
    };
    const outcomes: Record<string, string> = {};
    const code = (p: Promise<unknown>) => p.then(() => 'OK', (e: grpc.ServiceError) => `${statusName(e.code)}: ${e.details}`);
    try {
      // Random bytes as model.onnx: the registry checks that ONNX files load, and refuses.
      for (const [from, task] of [['glove-100d', ModelTask.EMBEDDING], ['gpt2-mini', ModelTask.GENERATION], ['color-classifier', ModelTask.IMAGE_CLASSIFICATION]] as const)
        outcomes[`push corrupt ${from}`] = await code(pushVersion(mesh.grpc.registry!, { model: `corrupt-${from}`, task, files: await filesOf(from, join(work, `corrupt-${from}`)), aliases: ['default'] }));
      // A valid ONNX graph of another kind (the classifier's) in place of each model's own: accepted by the
      // registry, and the service must refuse to load it with a specific status.
      const classifierVersion = await unary(registry.getVersion.bind(registry), { model: 'color-classifier', version: 1 });
      const classifierOnnx = await download('color-classifier', classifierVersion.version!.files.find((f) => f.name.endsWith('.onnx'))!.name);
      const { version: gloveVersion } = await unary(registry.getVersion.bind(registry), { model: 'glove-100d', version: 1 });
      const gloveOnnx = await download('glove-100d', gloveVersion!.files.find((f) => f.name.endsWith('.onnx'))!.name);
      for (const [from, task, onnx] of [['glove-100d', ModelTask.EMBEDDING, classifierOnnx], ['gpt2-mini', ModelTask.GENERATION, classifierOnnx], ['color-classifier', ModelTask.IMAGE_CLASSIFICATION, gloveOnnx]] as const)
        outcomes[`push mismatched ${from}`] = await code(pushVersion(mesh.grpc.registry!, { model: `mismatched-${from}`, task, files: await filesOf(from, join(work, `mismatched-${from}`), onnx), aliases: ['default'] }));
      const gw = mesh.grpc.gateway!;
      const e = createClient(EmbeddingServiceClient, gw);
      const g = createClient(GenerationServiceClient, gw);
      const v = createClient(VisionServiceClient, gw);
      const deadline = () => Date.now() + 60_000;
      const red = await sharp({ create: { width: 32, height: 32, channels: 3, background: { r: 255, g: 0, b: 0 } } }).png().toBuffer();
      try {
        for (let round = 0; round < 2; round++) {
          outcomes[`embed mismatched ${round}`] = await code(unary(e.embed.bind(e), EmbedRequest.fromPartial({ model: { name: 'mismatched-glove-100d' }, inputs: ['x'] }), { deadline: deadline() }));
          outcomes[`generate mismatched ${round}`] = await code(
            unary(g.generate.bind(g), { model: { name: 'mismatched-gpt2-mini' }, prompt: 'x', messages: [], parameters: { maxNewTokens: 2, stop: [], ignoreEos: false } } as never, { deadline: deadline() }),
          );
          outcomes[`classify mismatched ${round}`] = await code(unary(v.classifyImage.bind(v), { model: { name: 'mismatched-color-classifier' }, image: red } as never, { deadline: deadline() }));
        }
      } finally {
        for (const c of [e, g, v]) c.close();
      }
    } finally {
      registry.close();
    }
    figures.set('corrupt onnx', outcomes);
    for (const [what, outcome] of Object.entries(outcomes)) {
      if (what.startsWith('push corrupt')) expect(outcome, what).toMatch(/^INVALID_ARGUMENT/);
      else if (what.startsWith('push mismatched')) expect(FORBIDDEN.has(outcome.split(':')[0]!), `${what}: ${outcome}`).toBe(false);
      else {
        expect(outcome.startsWith('OK'), `${what}: ${outcome}`).toBe(false);
        expect(FORBIDDEN.has(outcome.split(':')[0]!), `${what}: ${outcome}`).toBe(false);
      }
    }
    expectAlive();
    await normalRequestsSucceed();
  });
});
