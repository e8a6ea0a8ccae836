// The gateway as its own process in front of the real mesh (registry, embeddings, generation and vision
// processes with their default models): the official `openai` client against its HTTP API; every RPC of every
// service giving through the gateway what it gives directly; routing by model kept current by the registry's
// watch; a cancelled GenerateStream leaving the generation batch; and the auth matrix over gRPC and HTTP.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { SignJWT } from 'jose';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Task } from '../gen/maas/common/v1/model.js';
import { EmbeddingServiceClient } from '../gen/maas/embeddings/v1/embeddings.js';
import { GenerationServiceClient } from '../gen/maas/generation/v1/generation.js';
import { ModelRegistryServiceClient, WatchEventType, type WatchModelsResponse } from '../gen/maas/registry/v1/registry.js';
import { VisionServiceClient } from '../gen/maas/vision/v1/vision.js';
import { launch, type Launched } from '../cli/launch.js';
import { hashApiKey } from '../gateway/domain/auth.js';
import { createClient, serverStream, unary, waitForReady } from '../services/runtime/client.js';
import { decodeStatus } from '../services/runtime/grpc-status.js';
import { silentLogger } from '../services/runtime/logger.js';
import { ModelTask } from '../services/runtime/models/types.js';
import { prepareDefaults as prepareEmbeddings } from '../services/embeddings/component.js';
import { sharedCacheDir } from '../services/embeddings/testing/model-folder.js';
import { prepareDefaults as prepareGeneration } from '../services/generation/component.js';
import { buildBigram } from '../services/generation/testing/model-folder.js';
import { pushVersion } from '../services/registry/client/push.js';
import { visionComponent } from '../services/vision/component.js';
import { renderPages } from './fixtures/vision/pages.js';
import { launchRegistry, type RegistryProcess } from './registry-process.js';
import { listServices } from './support/reflection.js';
import { startGateway, waitFor } from './gateway-support.js';

interface Service {
  proc: Launched;
  address: string;
  metricsPort: Promise<number>;
}

let dir: string;
let registry: RegistryProcess;
const services: Record<string, Service> = {};
let gateway: Launched;
let gatewayAddress: string;
let httpPort: number;
const processes: Launched[] = [];

function start(name: string, entry: string, env: Record<string, string>, onServing?: (rec: Record<string, unknown>) => void): Service {
  let resolveMetrics: (p: number) => void;
  const metricsPort = new Promise<number>((r) => (resolveMetrics = r));
  const proc = launch(name, entry, {
    env: { MAAS_PORT: '0', MAAS_METRICS_PORT: '0', MAAS_LOG_LEVEL: 'info', ...env },
    onLine: (line) => {
      if (!line.startsWith('{')) return;
      try {
        const rec = JSON.parse(line) as Record<string, unknown>;
        if (rec.msg === 'metrics on /metrics') resolveMetrics(rec.port as number);
        if (typeof rec.msg === 'string' && rec.msg.endsWith(' serving')) onServing?.(rec);
      } catch {
        /* not JSON */
      }
    },
  });
  processes.push(proc);
  return { proc, address: '', metricsPort };
}

async function startGatewayProcess(env: Record<string, string>): Promise<{ proc: Launched; address: string; httpPort: number }> {
  let resolveHttp: (p: number) => void;
  const http = new Promise<number>((r) => (resolveHttp = r));
  const s = start(
    'gateway',
    'gateway/main.ts',
    {
      MAAS_REGISTRY_ADDRESS: registry.address,
      MAAS_GATEWAY_EMBEDDINGS_TARGETS: services.embeddings!.address,
      MAAS_GATEWAY_GENERATION_TARGETS: services.generation!.address,
      MAAS_GATEWAY_VISION_TARGETS: services.vision!.address,
      MAAS_GATEWAY_HTTP_PORT: '0',
      ...env,
    },
    (rec) => resolveHttp(rec.httpPort as number),
  );
  const port = await s.proc.port;
  return { proc: s.proc, address: `127.0.0.1:${port}`, httpPort: await http };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'maas-gateway-'));
  registry = await launchRegistry({ MAAS_REGISTRY_DATA_DIR: join(dir, 'registry') });
  const ctx = { registryAddress: registry.address, dataDir: dir, cacheDir: sharedCacheDir(), log: silentLogger };
  await prepareEmbeddings(ctx);
  await prepareGeneration(ctx);
  await visionComponent.prepareDefaults!(ctx);
  const entries: [string, string, Record<string, string>][] = [
    ['embeddings', 'services/embeddings/main.ts', { MAAS_EMBEDDINGS_CACHE_DIR: join(dir, 'embeddings') }],
    ['generation', 'services/generation/main.ts', { MAAS_GENERATION_CACHE_DIR: join(dir, 'generation') }],
    ['vision', 'services/vision/main.ts', { MAAS_VISION_CACHE_DIR: join(dir, 'vision') }],
  ];
  for (const [name, entry, env] of entries) services[name] = start(name, entry, { MAAS_REGISTRY_ADDRESS: registry.address, ...env });
  for (const s of Object.values(services)) s.address = `127.0.0.1:${await s.proc.port}`;
  const gw = await startGatewayProcess({});
  gateway = gw.proc;
  gatewayAddress = gw.address;
  httpPort = gw.httpPort;
}, 600_000);

afterAll(async () => {
  for (const p of processes.reverse()) await p.stop('SIGTERM', 10_000);
  await registry?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Drops what legitimately differs between two calls: timings (vision's per-stage ones too) and live load counters. */
function stable(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(stable);
  if (v instanceof Date || Buffer.isBuffer(v) || v === null || typeof v !== 'object') return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) if (!['timings', 'stages', 'inUse', 'running', 'waiting'].includes(k)) out[k] = stable(x);
  return out;
}

type Ctor<C> = new (address: string, credentials: grpc.ChannelCredentials, options?: Partial<grpc.ClientOptions>) => C;

function pair<C extends grpc.Client>(Client: Ctor<C>, direct: string): { direct: C; via: C; close(): void } {
  const d = createClient(Client, direct);
  const v = createClient(Client, gatewayAddress);
  return { direct: d, via: v, close: () => (d.close(), v.close()) };
}

async function sameUnary<C extends grpc.Client>(p: { direct: C; via: C }, method: keyof C & string, request: unknown): Promise<unknown> {
  const call = (c: C) => unary((c[method] as (...a: never[]) => grpc.ClientUnaryCall).bind(c) as never, request as never, { deadline: Date.now() + 60_000 });
  const [a, b] = [await call(p.direct), await call(p.via)];
  expect(stable(b), method).toEqual(stable(a));
  return b;
}

async function collect<T>(stream: AsyncIterable<T>, until?: (m: T) => boolean): Promise<T[]> {
  const out: T[] = [];
  for await (const m of stream) {
    out.push(m);
    if (until?.(m)) break;
  }
  return out;
}

describe('the gateway in front of the mesh', () => {
  it('serves health and reflection for every public service', async () => {
    expect(await listServices(gatewayAddress)).toEqual(
      expect.arrayContaining([
        'grpc.health.v1.Health',
        'maas.registry.v1.ModelRegistryService',
        'maas.embeddings.v1.EmbeddingService',
        'maas.generation.v1.GenerationService',
        'maas.vision.v1.VisionService',
      ]),
    );
  });

  it('gives the registry answers it gives directly, for every RPC', async () => {
    const p = pair(ModelRegistryServiceClient, registry.address);
    try {
      await sameUnary(p, 'getModel', { name: 'glove-100d' });
      await sameUnary(p, 'listModels', { pageSize: 0, pageToken: '', task: 0, tags: {} });
      await sameUnary(p, 'resolveModel', { ref: { name: 'gpt2-mini' } });
      await sameUnary(p, 'listVersions', { model: 'ppocr-v4', pageSize: 0, pageToken: '' });
      const v = (await sameUnary(p, 'getVersion', { model: 'glove-100d', version: 1 })) as { version: { files: { name: string; size: number }[] } };

      // Streams: a whole file, and the watch's snapshot.
      const file = v.version.files.find((f) => f.name.endsWith('.json')) ?? v.version.files[0]!;
      const download = (c: ModelRegistryServiceClient) =>
        collect(serverStream(c.downloadVersion.bind(c), { model: 'glove-100d', version: 1, file: file.name, offset: 0 })).then((ms) => Buffer.concat(ms.map((m) => m.data)));
      const [directBytes, viaBytes] = [await download(p.direct), await download(p.via)];
      expect(viaBytes.length).toBe(file.size);
      expect(viaBytes.equals(directBytes)).toBe(true);
      const snapshot = (c: ModelRegistryServiceClient) =>
        collect(serverStream(c.watchModels.bind(c), { afterRevision: 0, models: [] }), (m: WatchModelsResponse) => m.type === WatchEventType.WATCH_EVENT_TYPE_SNAPSHOT_END);
      expect(await snapshot(p.via)).toEqual(await snapshot(p.direct));

      // Writes: the same change made directly on one model and through the gateway on its twin.
      const twin = (x: unknown, from: string, to: string) => JSON.parse(JSON.stringify(stable(x)).replaceAll(from, to).replace(/"(create|update)Time":"[^"]*"/g, '"$1Time":"t"'));
      for (const [client, name] of [
        [p.direct, 'direct-twin'],
        [p.via, 'gateway-twin'],
      ] as const) {
        const created = await unary(client.createModel.bind(client), { name, task: Task.TASK_GENERATION, description: 'twin', tags: { a: '1' } });
        const updated = await unary(client.updateModel.bind(client), { name, description: 'changed', tags: {}, updateMask: ['description'] });
        const bigram = await buildBigram();
        const pushed = await pushVersion(client === p.via ? gatewayAddress : registry.address, { model: name, task: ModelTask.GENERATION, files: bigram.files.map((f) => ({ name: f, path: join(bigram.dir, f) })) });
        const aliased = await unary(client.setAlias.bind(client), { model: name, alias: 'prod', version: pushed.version });
        const versionUpdated = await unary(client.updateVersion.bind(client), { model: name, version: pushed.version, description: 'v', tags: {}, updateMask: ['description'] });
        const aliasDeleted = await unary(client.deleteAlias.bind(client), { model: name, alias: 'prod' });
        const versionDeleted = await unary(client.deleteVersion.bind(client), { model: name, version: pushed.version });
        const modelDeleted = await unary(client.deleteModel.bind(client), { name, force: false });
        (globalThis as Record<string, unknown>)[name] = [created, updated, pushed, aliased, versionUpdated, aliasDeleted, versionDeleted, modelDeleted];
      }
      const g = globalThis as Record<string, unknown>;
      expect(twin(g['gateway-twin'], 'gateway-twin', 'X')).toEqual(twin(g['direct-twin'], 'direct-twin', 'X'));

      // Errors pass with their details.
      const err = (c: ModelRegistryServiceClient) => unary(c.getModel.bind(c), { name: 'no-such-model' }).catch((e: grpc.ServiceError) => decodeStatus(e));
      expect(await err(p.via)).toEqual(await err(p.direct));
    } finally {
      p.close();
    }
  });

  it('gives the embedding service answers it gives directly, for every RPC', async () => {
    const p = pair(EmbeddingServiceClient, services.embeddings!.address);
    try {
      const model = { name: 'glove-100d' };
      await sameUnary(p, 'embed', { model, inputs: ['the cat sat on the mat', 'a kitten'], truncate: false, truncationDirection: 0, dimensions: 32 });
      await sameUnary(p, 'tokenize', { model, inputs: ['hello world'], truncate: false, truncationDirection: 0 });
      await sameUnary(p, 'countTokens', { model, inputs: ['hello world', 'more words here'] });
      await sameUnary(p, 'getModelInfo', { model });
      await sameUnary(p, 'listModels', {});
      const bidi = async (c: EmbeddingServiceClient) => {
        const call = c.embedStream();
        const got: unknown[] = [];
        const done = new Promise<void>((resolve, reject) => {
          call.on('data', (m) => got.push(stable(m)));
          call.on('end', resolve);
          call.on('error', reject);
        });
        for (const tag of ['a', 'b', 'c']) call.write({ tag, request: { model, inputs: [`text ${tag}`], truncate: false, truncationDirection: 0 } });
        call.end();
        await done;
        return got;
      };
      expect(await bidi(p.via)).toEqual(await bidi(p.direct));
      const err = (c: EmbeddingServiceClient) => unary(c.embed.bind(c), { model, inputs: [], truncate: false, truncationDirection: 0 }).catch((e: grpc.ServiceError) => decodeStatus(e));
      expect(await err(p.via)).toEqual(await err(p.direct));
    } finally {
      p.close();
    }
  });

  it('gives the generation service answers it gives directly, for every RPC', async () => {
    const p = pair(GenerationServiceClient, services.generation!.address);
    try {
      const model = { name: 'gpt2-mini' };
      const parameters = { maxNewTokens: 12, seed: 42, temperature: 0.8, stop: [], ignoreEos: true };
      await sameUnary(p, 'generate', { model, prompt: 'Once upon a time', messages: [], parameters });
      await sameUnary(p, 'tokenize', { model, text: 'Hello World', messages: [] });
      await sameUnary(p, 'countTokens', { model, prompt: 'Hello World', messages: [] });
      await sameUnary(p, 'getModelInfo', { model });
      await sameUnary(p, 'listModels', {});
      const streamed = async (c: GenerationServiceClient) => {
        const ms = await collect(serverStream(c.generateStream.bind(c), { model, prompt: 'Once upon a time', messages: [], parameters }));
        const last = ms.at(-1)!;
        return { text: ms.map((m) => m.text).join(''), tokens: ms.flatMap((m) => m.tokenIds), finish: last.finishReason, usage: last.usage, seed: last.seed };
      };
      expect(await streamed(p.via)).toEqual(await streamed(p.direct));
    } finally {
      p.close();
    }
  });

  it('gives the vision service answers it gives directly, for every RPC', async () => {
    const p = pair(VisionServiceClient, services.vision!.address);
    try {
      const [page] = await renderPages(['sans-plain']);
      const image = page!.bytes;
      const ocr = { name: 'ppocr-v4' };
      const rec = (await sameUnary(p, 'recognizeText', { model: ocr, image })) as { lines: { text: string }[] };
      expect(rec.lines.length).toBeGreaterThan(0);
      await sameUnary(p, 'detectText', { model: ocr, image });
      await sameUnary(p, 'classifyImage', { model: { name: 'color-classifier' }, image, topK: 2 });
      await sameUnary(p, 'getModelInfo', { model: ocr });
      await sameUnary(p, 'listModels', {});
      const bidi = async (c: VisionServiceClient) => {
        const call = c.recognizeTextStream();
        const got: unknown[] = [];
        const done = new Promise<void>((resolve, reject) => {
          call.on('data', (m) => got.push(stable(m)));
          call.on('end', resolve);
          call.on('error', reject);
        });
        call.write({ pageId: 'p1', model: ocr, image, options: undefined });
        call.end();
        await done;
        return got;
      };
      expect(await bidi(p.via)).toEqual(await bidi(p.direct));
    } finally {
      p.close();
    }
  });

  it('routes by model: NOT_FOUND and FAILED_PRECONDITION at the gateway, and a model pushed now is served at once', async () => {
    const c = createClient(GenerationServiceClient, gatewayAddress);
    try {
      const gen = (name: string) => unary(c.generate.bind(c), { model: { name }, prompt: 'ab', messages: [], parameters: { maxNewTokens: 2, stop: [], ignoreEos: true } });
      const notFound = decodeStatus(await gen('never-pushed').catch((e) => e));
      expect(notFound.code).toBe(grpc.status.NOT_FOUND);
      const wrongTask = decodeStatus(await gen('glove-100d').catch((e) => e));
      expect(wrongTask.code).toBe(grpc.status.FAILED_PRECONDITION);
      expect(wrongTask.message).toMatch(/embedding model/);
      const bigram = await buildBigram();
      await pushVersion(gatewayAddress, { model: 'bigram-now', task: ModelTask.GENERATION, files: bigram.files.map((f) => ({ name: f, path: join(bigram.dir, f) })), aliases: ['default'] });
      const res = await gen('bigram-now');
      expect(res.model?.name).toBe('bigram-now');
    } finally {
      c.close();
    }
  });

  it('stops generation on the replica when the caller cancels a GenerateStream through the gateway', async () => {
    const metricsPort = await services.generation!.metricsPort;
    const running = async () => {
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith('maas_generation_sequences_running{') && l.includes('model="gpt2-mini"'));
      return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
    };
    const c = createClient(GenerationServiceClient, gatewayAddress);
    try {
      const cancel = new AbortController();
      let seen = 0;
      const req = { model: { name: 'gpt2-mini' }, prompt: 'Once', messages: [], parameters: { maxNewTokens: 200, stop: [], ignoreEos: true } };
      const reading = (async () => {
        try {
          for await (const _ of serverStream(c.generateStream.bind(c), req, { signal: cancel.signal })) {
            if (++seen === 3) await waitFor(async () => (await running()) === 1, 10_000, 'the sequence to be running');
            if (seen === 3) cancel.abort();
          }
        } catch {
          /* cancelled */
        }
      })();
      await reading;
      await waitFor(async () => (await running()) === 0, 10_000, 'the sequence to leave the batch');
      expect(seen).toBeLessThan(200);
    } finally {
      c.close();
    }
  });

  describe('the official openai client on the HTTP API', () => {
    const openai = () => new OpenAI({ baseURL: `http://127.0.0.1:${httpPort}/v1`, apiKey: 'unused-when-auth-is-off', maxRetries: 0 });

    it('creates embeddings (base64 by default, floats when asked, fewer dimensions) equal to the service', async () => {
      const texts = ['the cat sat on the mat', 'a kitten'];
      const direct = createClient(EmbeddingServiceClient, services.embeddings!.address);
      try {
        const expected = await unary(direct.embed.bind(direct), { model: { name: 'glove-100d' }, inputs: texts, truncate: false, truncationDirection: 0 });
        const viaDefault = await openai().embeddings.create({ model: 'glove-100d', input: texts });
        const viaFloat = await openai().embeddings.create({ model: 'glove-100d', input: texts, encoding_format: 'float' });
        for (const r of [viaDefault, viaFloat]) {
          expect(r.data).toHaveLength(2);
          r.data.forEach((d, i) => expect(d.embedding).toEqual(expected.embeddings[i]!.values));
          expect(r.usage.prompt_tokens).toBe(expected.usage!.inputTokens);
          expect(r.model).toBe('glove-100d');
        }
        const short = await openai().embeddings.create({ model: 'glove-100d', input: 'cat', dimensions: 16, encoding_format: 'float' });
        expect(short.data[0]!.embedding).toHaveLength(16);
      } finally {
        direct.close();
      }
    });

    it('creates a completion and a chat completion equal to Generate with the same seed', async () => {
      const direct = createClient(GenerationServiceClient, services.generation!.address);
      try {
        const expected = await unary(direct.generate.bind(direct), { model: { name: 'gpt2-mini' }, prompt: 'Hello', messages: [], parameters: { maxNewTokens: 8, seed: 7, temperature: 0.7, stop: [], ignoreEos: true } });
        const completion = await openai().completions.create({ model: 'gpt2-mini', prompt: 'Hello', max_tokens: 8, seed: 7, temperature: 0.7 });
        expect(completion.choices[0]!.text).toBe(expected.text);
        expect(completion.usage).toEqual({ prompt_tokens: expected.usage!.inputTokens, completion_tokens: expected.usage!.outputTokens, total_tokens: expected.usage!.totalTokens });
        const chat = await openai().chat.completions.create({ model: 'gpt2-mini', messages: [{ role: 'user', content: 'Say hi' }], max_tokens: 5, seed: 3 });
        expect(chat.choices[0]!.message.role).toBe('assistant');
        expect(['stop', 'length']).toContain(chat.choices[0]!.finish_reason);
        expect(chat.usage!.completion_tokens).toBeGreaterThan(0);
      } finally {
        direct.close();
      }
    });

    it('streams a chat completion as server-sent events, with usage in the final chunk when asked', async () => {
      const direct = createClient(GenerationServiceClient, services.generation!.address);
      try {
        const messages = [{ role: 'user' as const, content: 'Tell a story' }];
        const expected = await unary(direct.generate.bind(direct), { model: { name: 'gpt2-mini' }, prompt: '', messages, parameters: { maxNewTokens: 16, seed: 11, stop: [], ignoreEos: true } });
        const stream = await openai().chat.completions.create({ model: 'gpt2-mini', messages, max_tokens: 16, seed: 11, stream: true, stream_options: { include_usage: true } });
        let text = '';
        let chunks = 0;
        let usage: OpenAI.CompletionUsage | undefined | null;
        let finish: string | null = null;
        for await (const chunk of stream) {
          chunks++;
          text += chunk.choices[0]?.delta.content ?? '';
          if (chunk.choices[0]?.finish_reason) finish = chunk.choices[0].finish_reason;
          if (chunk.usage) usage = chunk.usage;
        }
        expect(chunks).toBeGreaterThan(2);
        expect(text).toBe(expected.text);
        expect(finish).toBe('length');
        expect(usage).toEqual({ prompt_tokens: expected.usage!.inputTokens, completion_tokens: 16, total_tokens: expected.usage!.inputTokens + 16 });
      } finally {
        direct.close();
      }
    });

    it("passes vLLM's extensions top_k, repetition_penalty and ignore_eos through to the parameters", async () => {
      const direct = createClient(GenerationServiceClient, services.generation!.address);
      try {
        const parameters = { maxNewTokens: 8, seed: 5, temperature: 1, topK: 1, repetitionPenalty: 1.3, stop: [], ignoreEos: true };
        const expected = await unary(direct.generate.bind(direct), { model: { name: 'gpt2-mini' }, prompt: 'In the beginning', messages: [], parameters });
        const greedy = await unary(direct.generate.bind(direct), { model: { name: 'gpt2-mini' }, prompt: 'In the beginning', messages: [], parameters: { ...parameters, temperature: 0, topK: undefined } });
        // top_k 1 leaves one candidate, so it is the greedy answer whatever the seed.
        expect(expected.text).toBe(greedy.text);
        const body = { model: 'gpt2-mini', prompt: 'In the beginning', max_tokens: 8, seed: 5, temperature: 1, top_k: 1, repetition_penalty: 1.3, ignore_eos: true };
        const completion = await openai().completions.create(body as OpenAI.CompletionCreateParamsNonStreaming);
        expect(completion.choices[0]!.text).toBe(expected.text);
        // top_k -1 is vLLM's "no cut": the same draw as no top_k at all.
        const uncut = await unary(direct.generate.bind(direct), { model: { name: 'gpt2-mini' }, prompt: 'In the beginning', messages: [], parameters: { ...parameters, topK: undefined } });
        expect(uncut.text).not.toBe(greedy.text);
        const off = await openai().completions.create({ ...body, top_k: -1 } as OpenAI.CompletionCreateParamsNonStreaming);
        expect(off.choices[0]!.text).toBe(uncut.text);
      } finally {
        direct.close();
      }
    });

    it("tokenizes with vLLM's /tokenize, for a generation model (prompt or chat) and for an embedding model", async () => {
      const direct = createClient(GenerationServiceClient, services.generation!.address);
      const embed = createClient(EmbeddingServiceClient, services.embeddings!.address);
      const tokenize = async (body: object) => {
        const res = await fetch(`http://127.0.0.1:${httpPort}/tokenize`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
        return { status: res.status, json: (await res.json()) as { count: number; max_model_len: number; tokens: number[]; token_strs?: string[]; error?: { param: string } } };
      };
      try {
        const expected = await unary(direct.tokenize.bind(direct), { model: { name: 'gpt2-mini' }, text: 'And God said', messages: [] });
        const info = await unary(direct.countTokens.bind(direct), { model: { name: 'gpt2-mini' }, prompt: 'And God said', messages: [] });
        const byPrompt = await tokenize({ model: 'gpt2-mini', prompt: 'And God said', return_token_strs: true });
        expect(byPrompt.json).toEqual({ count: expected.tokens.length, max_model_len: info.contextLength, tokens: expected.tokens.map((t) => t.id), token_strs: expected.tokens.map((t) => t.text) });
        // The default model is the generation service's; a chat renders with its template, as a chat completion does.
        const messages = [{ role: 'user', content: 'Hello' }];
        const chat = await unary(direct.tokenize.bind(direct), { model: { name: '' }, text: '', messages });
        expect((await tokenize({ messages })).json.tokens).toEqual(chat.tokens.map((t) => t.id));
        const embedded = await unary(embed.tokenize.bind(embed), { model: { name: 'glove-100d' }, inputs: ['a cat sat'], truncate: false, truncationDirection: 0 });
        const byEmbedding = await tokenize({ model: 'glove-100d', prompt: 'a cat sat' });
        expect(byEmbedding.json.tokens).toEqual(embedded.inputs[0]!.tokens.map((t) => t.id));
        expect(byEmbedding.json.max_model_len).toBeGreaterThan(0);
        expect((await tokenize({ model: 'gpt2-mini', prompt: 'x', messages })).status).toBe(400);
        expect((await tokenize({ model: 'ppocr-v4', prompt: 'x' })).status).toBe(400);
      } finally {
        direct.close();
        embed.close();
      }
    });

    it('lists the models of the services it fronts', async () => {
      const ids = [];
      for await (const m of openai().models.list()) ids.push(m.id);
      expect(ids).toEqual(expect.arrayContaining(['glove-100d', 'gpt2-mini', 'ppocr-v4', 'color-classifier']));
    });

    it('answers errors in OpenAI shape with the matching status', async () => {
      const fails = (p: Promise<unknown>) => p.then(() => expect.fail('expected an error'), (e: InstanceType<typeof OpenAI.APIError>) => e);
      const e404 = await fails(openai().embeddings.create({ model: 'no-such-model', input: 'x' }));
      expect(e404.status).toBe(404);
      expect((e404.error as { code: string }).code).toBe('model_not_found');
      const e400 = await fails(openai().embeddings.create({ model: 'gpt2-mini', input: 'x' }));
      expect(e400.status).toBe(400);
      const bad = await fails(openai().embeddings.create({ model: 'glove-100d', input: [''] }));
      expect(bad.status).toBe(400);
      expect(bad.param).toBe('input[0]');
      const res = await fetch(`http://127.0.0.1:${httpPort}/v1/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{not json' });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { type: string } }).error.type).toBe('invalid_request_error');
      // Numbers the protobuf field cannot carry, and roles OpenAI does not know, are the caller's mistake.
      const post = async (path: string, body: object) => {
        const r = await fetch(`http://127.0.0.1:${httpPort}/v1/${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
        return { status: r.status, error: ((await r.json()) as { error: { param: string | null; code: string | null; message: string } }).error };
      };
      for (const [path, body, param] of [
        ['completions', { model: 'gpt2-mini', prompt: 'Hi', max_tokens: 1e12 }, 'max_tokens'],
        ['completions', { model: 'gpt2-mini', prompt: 'Hi', seed: 1e30 }, 'seed'],
        ['chat/completions', { model: 'gpt2-mini', messages: [{ role: 'user', content: 'Hi' }], logprobs: true, top_logprobs: 2 ** 40 }, 'top_logprobs'],
        ['chat/completions', { model: 'gpt2-mini', messages: [{ role: 'wizard', content: 'Hi' }] }, 'messages[0].role'],
        ['embeddings', { model: 'glove-100d', input: 'x', dimensions: 1e12 }, 'dimensions'],
      ] as const) {
        const r = await post(path, body);
        expect([r.status, r.error.param]).toEqual([400, param]);
      }
      // The service's own checks name the field the caller sent, not the gRPC request's.
      const long = await post('completions', { model: 'gpt2-mini', prompt: 'Hi', max_tokens: 100_000 });
      expect([long.status, long.error.param]).toEqual([400, 'max_tokens']);
      expect(long.error.message).toMatch(/^max_tokens: /);
      const top = await post('chat/completions', { model: 'gpt2-mini', messages: [{ role: 'user', content: 'Hi' }], logprobs: true, top_logprobs: 10_000 });
      expect([top.status, top.error.param]).toEqual([400, 'top_logprobs']);
      expect((await post('completions', { model: 'gpt2-mini', prompt: 'Hi', stream: 'yes' })).error.param).toBe('stream');
      // Over the service's gRPC message limit (16 MiB): 413, not a 429 that invites the same request again.
      const huge = await post('embeddings', { model: 'glove-100d', input: Array.from({ length: 180_000 }, () => 'x'.repeat(100)) });
      expect([huge.status, huge.error.code]).toEqual([413, 'request_too_large']);
      expect(huge.error.message).toMatch(/MAAS_MAX_RECEIVE_MESSAGE_BYTES/);
      expect((await fetch(`http://127.0.0.1:${httpPort}/healthz`)).status).toBe(200);
      expect((await fetch(`http://127.0.0.1:${httpPort}/readyz`)).status).toBe(200);
    });
  });

  it('loses no Embed call when one of two embeddings replicas is SIGKILLed under load, and uses it again once it is back', async () => {
    const env = { MAAS_REGISTRY_ADDRESS: registry.address, MAAS_EMBEDDINGS_CACHE_DIR: join(dir, 'embeddings-b') };
    let second = start('embeddings', 'services/embeddings/main.ts', env);
    const port = await second.proc.port;
    const secondAddress = `127.0.0.1:${port}`;
    const gw = await startGateway({ MAAS_REGISTRY_ADDRESS: registry.address, MAAS_GATEWAY_EMBEDDINGS_TARGETS: `${services.embeddings!.address},${secondAddress}` });
    const c = createClient(EmbeddingServiceClient, gw.address);
    try {
      const pool = gw.gateway.pools.get('embeddings')!;
      const replica = () => pool.set.replicas.find((r) => r.address === secondAddress)!;
      await waitFor(() => pool.usable === 2, 30_000, 'both replicas healthy');
      let ok = 0;
      const failures: string[] = [];
      let running = true;
      const load = Promise.all(
        Array.from({ length: 6 }, async (_, w) => {
          for (let i = 0; running; i++) {
            try {
              const res = await unary(c.embed.bind(c), { model: { name: 'glove-100d' }, inputs: [`worker ${w} call ${i}`], truncate: false, truncationDirection: 0 }, { deadline: Date.now() + 20_000 });
              if (res.embeddings.length !== 1) failures.push('wrong answer');
              else ok++;
            } catch (err) {
              failures.push((err as Error).message);
            }
          }
        }),
      );
      await waitFor(() => replica().answered > 30, 30_000, 'load on the second replica');
      second.proc.child.kill('SIGKILL');
      await second.proc.exited;
      const atKill = ok;
      await waitFor(() => ok > atKill + 100, 30_000, 'load to go on with one replica');
      second = start('embeddings', 'services/embeddings/main.ts', { ...env, MAAS_PORT: String(port) });
      await second.proc.port;
      await waitFor(() => replica().health === 'serving', 30_000, 'the restarted replica to be healthy');
      const atReturn = replica().answered;
      await waitFor(() => replica().answered > atReturn + 30, 30_000, 'the restarted replica to serve again');
      running = false;
      await load;
      expect(failures).toEqual([]);
    } finally {
      c.close();
      await gw.close();
    }
  });

  describe('with auth on', () => {
    const keys = { infer: 'sk-infer-0123456789', reader: 'sk-reader-0123456789', writer: 'sk-writer-0123456789', limited: 'sk-limited-0123456789' };
    const secret = 'a-jwt-secret-for-the-gateway-tests-0123456789';
    let authed: { proc: Launched; address: string; httpPort: number };

    beforeAll(async () => {
      const file = join(dir, 'keys.yaml');
      await writeFile(
        file,
        [
          'keys:',
          `  - { name: infer, sha256: ${hashApiKey(keys.infer)}, scopes: [infer] }`,
          `  - { name: reader, sha256: ${hashApiKey(keys.reader)}, scopes: ["registry:read"] }`,
          `  - { name: writer, sha256: ${hashApiKey(keys.writer)}, scopes: ["registry:read", "registry:write"] }`,
          `  - { name: limited, sha256: ${hashApiKey(keys.limited)}, scopes: [infer], rate_limit_rps: 0.2, rate_limit_burst: 1 }`,
        ].join('\n'),
      );
      expect(await readFile(file, 'utf8')).toContain('limited');
      authed = await startGatewayProcess({ MAAS_GATEWAY_AUTH: 'true', MAAS_GATEWAY_API_KEYS_FILE: file, MAAS_GATEWAY_JWT_SECRET: secret });
    });
    afterAll(async () => {
      await authed?.proc.stop();
    });

    const jwt = (scope: string, key = secret) => new SignJWT({ scope }).setProtectedHeader({ alg: 'HS256' }).setSubject('svc').setExpirationTime('5m').sign(new TextEncoder().encode(key));

    async function grpcEmbed(token: string | undefined) {
      const c = createClient(EmbeddingServiceClient, authed.address);
      const md = new grpc.Metadata();
      if (token) md.set('authorization', `Bearer ${token}`);
      try {
        await waitForReady(c, 5000);
        await unary(c.embed.bind(c), { model: { name: 'glove-100d' }, inputs: ['x'], truncate: false, truncationDirection: 0 }, { metadata: md });
        return { code: 0, retryAfterMs: undefined as number | undefined };
      } catch (e) {
        const d = decodeStatus(e as grpc.ServiceError);
        return { code: d.code, retryAfterMs: d.retryAfterMs };
      } finally {
        c.close();
      }
    }

    async function httpEmbed(token: string | undefined) {
      const res = await fetch(`http://127.0.0.1:${authed.httpPort}/v1/embeddings`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: JSON.stringify({ model: 'glove-100d', input: 'x' }),
      });
      return { status: res.status, retryAfter: res.headers.get('retry-after'), body: (await res.json()) as { error?: { type: string } } };
    }

    it('refuses over gRPC: no token and a bad token UNAUTHENTICATED, a wrong scope PERMISSION_DENIED; lets the right scope through', async () => {
      expect((await grpcEmbed(undefined)).code).toBe(grpc.status.UNAUTHENTICATED);
      expect((await grpcEmbed('sk-not-a-key')).code).toBe(grpc.status.UNAUTHENTICATED);
      expect((await grpcEmbed(await jwt('infer', 'some-other-secret-of-enough-length!!'))).code).toBe(grpc.status.UNAUTHENTICATED);
      expect((await grpcEmbed(keys.reader)).code).toBe(grpc.status.PERMISSION_DENIED);
      expect((await grpcEmbed(await jwt('registry:read'))).code).toBe(grpc.status.PERMISSION_DENIED);
      expect((await grpcEmbed(keys.infer)).code).toBe(grpc.status.OK);
      expect((await grpcEmbed(await jwt('infer registry:read'))).code).toBe(grpc.status.OK);
    });

    it('limits a key over gRPC to its rate with RESOURCE_EXHAUSTED and a retry delay', async () => {
      const first = await grpcEmbed(keys.limited);
      const second = await grpcEmbed(keys.limited);
      expect(first.code).toBe(grpc.status.OK);
      expect(second.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(second.retryAfterMs).toBeGreaterThan(0);
    });

    it('checks registry scopes: reads need registry:read, writes registry:write; health needs nothing', async () => {
      const call = async (token: string, write: boolean) => {
        const c = createClient(ModelRegistryServiceClient, authed.address);
        const md = new grpc.Metadata();
        md.set('authorization', `Bearer ${token}`);
        try {
          if (write) await unary(c.createModel.bind(c), { name: `scoped-${Date.now()}`, task: Task.TASK_EMBEDDING, description: '', tags: {} }, { metadata: md });
          else await unary(c.getModel.bind(c), { name: 'glove-100d' }, { metadata: md });
          return 0;
        } catch (e) {
          return (e as grpc.ServiceError).code;
        } finally {
          c.close();
        }
      };
      expect(await call(keys.reader, false)).toBe(grpc.status.OK);
      expect(await call(keys.infer, false)).toBe(grpc.status.PERMISSION_DENIED);
      expect(await call(keys.reader, true)).toBe(grpc.status.PERMISSION_DENIED);
      expect(await call(keys.writer, true)).toBe(grpc.status.OK);
      expect(await listServices(authed.address)).toContain('maas.embeddings.v1.EmbeddingService');
    });

    it('refuses over HTTP with 401 and 403, lets the right scope through, and answers 429 with Retry-After over the rate', async () => {
      expect((await httpEmbed(undefined)).status).toBe(401);
      const bad = await httpEmbed('sk-not-a-key');
      expect(bad.status).toBe(401);
      expect(bad.body.error?.type).toBe('authentication_error');
      expect((await httpEmbed(keys.reader)).status).toBe(403);
      expect((await httpEmbed(keys.infer)).status).toBe(200);
      expect((await httpEmbed(await jwt('infer'))).status).toBe(200);
      // The limited key's one token went to the gRPC test; wait for the next one to be sure of the sequence.
      await new Promise((r) => setTimeout(r, 5100));
      expect((await httpEmbed(keys.limited)).status).toBe(200);
      const over = await httpEmbed(keys.limited);
      expect(over.status).toBe(429);
      expect(Number(over.retryAfter)).toBeGreaterThan(0);
      const client = new OpenAI({ baseURL: `http://127.0.0.1:${authed.httpPort}/v1`, apiKey: keys.infer, maxRetries: 0 });
      expect((await client.embeddings.create({ model: 'glove-100d', input: 'x' })).data).toHaveLength(1);
      const denied = await new OpenAI({ baseURL: `http://127.0.0.1:${authed.httpPort}/v1`, apiKey: 'nope', maxRetries: 0 }).embeddings.create({ model: 'glove-100d', input: 'x' }).catch((e) => e);
      expect(denied).toBeInstanceOf(OpenAI.AuthenticationError);
      // /tokenize takes the same admission as /v1.
      const tokenize = (key: string | undefined) =>
        fetch(`http://127.0.0.1:${authed.httpPort}/tokenize`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) },
          body: JSON.stringify({ model: 'glove-100d', prompt: 'x' }),
        });
      expect((await tokenize(undefined)).status).toBe(401);
      expect((await tokenize(keys.reader)).status).toBe(403);
      expect((await tokenize(keys.infer)).status).toBe(200);
    });
  });
});
