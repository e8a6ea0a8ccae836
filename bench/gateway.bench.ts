// What the gateway hop costs, measured side by side in one run, every part its own process (the service, the
// gateway, and the load-generating client):
//   - latency added by the hop at one call in flight: p50 and p99 through the gateway minus direct;
//   - throughput through the gateway as a ratio of direct at 64 calls in flight (one client channel).
// Subject 1 is the echo service (the runtime's MeshServer with a handler that does nothing): the hop alone.
// Subject 2 is the registry's GetModel through `gateway/main.ts` exactly as `maas up` runs it: a real RPC.
// Direct and gateway take turns cell by cell (best of three rounds each), so a busy moment of the shared machine
// hits both alike. Goals (issue 7): p50 added ≤ 1 ms; throughput ≥ 0.6× direct.
// Subject 3, for reference (no goal): the OpenAI-compatible HTTP API against gRPC through the same
// `gateway/main.ts`, one sentence per request to an embeddings server with a canned engine
// (services/embeddings/testing/canned-main.ts): requests per second at 16 in flight and the gateway's CPU per
// request (from /proc), POST /v1/embeddings and Embed taking turns.
//
// This file is also the entry of two helper processes, chosen by GATEWAY_BENCH_ROLE: `gateway` (a gateway
// fronting the echo service) and `load` (the client).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Task } from '../gen/maas/common/v1/model.js';
import { EmbedRequest } from '../gen/maas/embeddings/v1/embeddings.js';
import { GetModelRequest, ModelRegistryServiceClient } from '../gen/maas/registry/v1/registry.js';
import { launch, nodeArgs, ROOT, type Launched } from '../cli/launch.js';
import { pushVersion } from '../services/registry/client/push.js';
import { createClient, unary, waitForReady } from '../services/runtime/client.js';
import { ModelTask } from '../services/runtime/models/types.js';
import { tinyOnnx } from '../test/support/registry-fixtures.js';
import type { BenchResult } from './types.js';

const ROUNDS = 3;
const LATENCY_MS = 2000;
const THROUGHPUT_MS = 3000;
const WARMUP_MS = 300;
const CLIENTS = 64;
const ECHO_PATH = '/maas.testing.v1.EchoService/Echo';
const GET_MODEL_PATH = '/maas.registry.v1.ModelRegistryService/GetModel';
const EMBED_PATH = '/maas.embeddings.v1.EmbeddingService/Embed';
const API_CLIENTS = 16;

interface LoadResult {
  calls: number;
  errors: number;
  rps: number;
  p50: number;
  p99: number;
}

export default async function bench(): Promise<BenchResult[]> {
  const processes: Launched[] = [];
  const load = new LoadClient();
  const dataDir = mkdtempSync(join(tmpdir(), 'maas-gateway-bench-'));
  const quiet = { MAAS_METRICS_PORT: '0', MAAS_PORT: '0', MAAS_LOG_LEVEL: 'info', OTEL_SDK_DISABLED: 'true' };
  try {
    // Subject 1: echo.
    const echo = launch('echo', 'test/fixtures/echo-main.ts', { env: quiet });
    processes.push(echo);
    const echoAddress = `127.0.0.1:${await echo.port}`;
    const gw = launch('gateway', 'bench/gateway.bench.ts', { env: { ...quiet, GATEWAY_BENCH_ROLE: 'gateway', GATEWAY_BENCH_TARGET: echoAddress } });
    processes.push(gw);
    const gwAddress = `127.0.0.1:${await gw.port}`;
    const echoRequest = Buffer.from([0x0a, 100, ...Buffer.alloc(100, 0x61)]).toString('hex');
    const echoRows = await compare(load, 'echo (the hop alone)', echoAddress, gwAddress, ECHO_PATH, echoRequest);

    // Subject 2: the registry through the gateway process as deployed.
    const registry = launch('registry', 'services/registry/main.ts', { env: { ...quiet, MAAS_REGISTRY_DATA_DIR: join(dataDir, 'registry') } });
    processes.push(registry);
    const registryAddress = `127.0.0.1:${await registry.port}`;
    const client = createClient(ModelRegistryServiceClient, registryAddress);
    await waitForReady(client, 10_000);
    await unary(client.createModel.bind(client), { name: 'bench-model', task: Task.TASK_EMBEDDING, description: 'gateway bench', tags: { team: 'bench' } });
    client.close();
    const real = launch('gateway', 'gateway/main.ts', { env: { ...quiet, MAAS_REGISTRY_ADDRESS: registryAddress, MAAS_GATEWAY_HTTP_ENABLED: 'false' } });
    processes.push(real);
    const realAddress = `127.0.0.1:${await real.port}`;
    const getModel = Buffer.from(GetModelRequest.encode({ name: 'bench-model' }).finish()).toString('hex');
    const registryRows = await compare(load, 'registry GetModel (gateway/main.ts)', registryAddress, realAddress, GET_MODEL_PATH, getModel);

    // Subject 3: the HTTP API against gRPC, through one gateway process, to a canned embeddings server.
    const canned = launch('embeddings-canned', 'services/embeddings/testing/canned-main.ts', { env: quiet });
    processes.push(canned);
    const onnx = join(dataDir, 'model.onnx');
    writeFileSync(onnx, tinyOnnx());
    await pushVersion(registryAddress, { model: 'bench-embedder', task: ModelTask.EMBEDDING, files: [{ name: 'model.onnx', path: onnx }], aliases: ['default'] });
    let onHttpPort!: (port: number) => void;
    const httpPort = new Promise<number>((resolve) => (onHttpPort = resolve));
    const api = launch('gateway', 'gateway/main.ts', {
      env: { ...quiet, MAAS_REGISTRY_ADDRESS: registryAddress, MAAS_GATEWAY_EMBEDDINGS_TARGETS: `127.0.0.1:${await canned.port}`, MAAS_GATEWAY_HTTP_PORT: '0' },
      onLine: (line) => {
        const m = /"httpPort":(\d+)/.exec(line);
        if (m) onHttpPort(Number(m[1]));
      },
    });
    processes.push(api);
    const apiRows = await compareApi(load, api, `127.0.0.1:${await api.port}`, `127.0.0.1:${await httpPort}`);
    return [...echoRows, ...registryRows, ...apiRows];
  } finally {
    load.close();
    for (const p of processes.reverse()) await p.stop('SIGTERM', 5000);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function compare(load: LoadClient, subject: string, direct: string, via: string, path: string, requestHex: string): Promise<BenchResult[]> {
  const runLoad = (target: string, concurrency: number, ms: number) => load.run({ target, path, requestHex, concurrency, ms });
  // Warm both channels (and wait until the gateway knows its replicas are healthy).
  await runLoad(direct, 1, 300);
  await runLoad(via, 1, 300);
  const best = { directLat: undefined as LoadResult | undefined, viaLat: undefined as LoadResult | undefined, directTput: undefined as LoadResult | undefined, viaTput: undefined as LoadResult | undefined };
  const better = (a: LoadResult | undefined, b: LoadResult, by: 'p50' | 'rps') => (!a ? b : by === 'rps' ? (b.rps > a.rps ? b : a) : b.p50 < a.p50 ? b : a);
  for (let round = 0; round < ROUNDS; round++) {
    best.directLat = better(best.directLat, await runLoad(direct, 1, LATENCY_MS), 'p50');
    best.viaLat = better(best.viaLat, await runLoad(via, 1, LATENCY_MS), 'p50');
    best.directTput = better(best.directTput, await runLoad(direct, CLIENTS, THROUGHPUT_MS), 'rps');
    best.viaTput = better(best.viaTput, await runLoad(via, CLIENTS, THROUGHPUT_MS), 'rps');
  }
  const { directLat, viaLat, directTput, viaTput } = best as { [K in keyof typeof best]: LoadResult };
  const errors = directLat.errors + viaLat.errors + directTput.errors + viaTput.errors;
  const g = 'gateway';
  return [
    { group: g, name: `${subject}: p50 direct, 1 in flight`, value: directLat.p50, unit: 'ms' },
    { group: g, name: `${subject}: p50 through the gateway, 1 in flight`, value: viaLat.p50, unit: 'ms' },
    { group: g, name: `${subject}: p50 added by the hop`, value: viaLat.p50 - directLat.p50, unit: 'ms', note: 'goal ≤ 1 ms' },
    { group: g, name: `${subject}: p99 added by the hop`, value: viaLat.p99 - directLat.p99, unit: 'ms', note: `p99 direct ${directLat.p99.toFixed(2)} ms, through ${viaLat.p99.toFixed(2)} ms` },
    { group: g, name: `${subject}: direct, ${CLIENTS} in flight`, value: directTput.rps, unit: 'calls/s', note: `p50 ${directTput.p50.toFixed(1)} ms` },
    { group: g, name: `${subject}: through the gateway, ${CLIENTS} in flight`, value: viaTput.rps, unit: 'calls/s', note: `p50 ${viaTput.p50.toFixed(1)} ms${errors ? `; ${errors} failed calls` : ''}` },
    { group: g, name: `${subject}: throughput through / direct, ${CLIENTS} in flight`, value: viaTput.rps / directTput.rps, unit: 'x', note: 'goal ≥ 0.6x' },
  ];
}

/** CPU time (user + system) the process has used, in ms. */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

async function compareApi(load: LoadClient, gateway: Launched, grpcAddress: string, httpAddress: string): Promise<BenchResult[]> {
  const sentence = 'the quick brown fox jumps over the lazy dog';
  const jobs = {
    http: { target: httpAddress, path: 'http:/v1/embeddings', requestHex: Buffer.from(JSON.stringify({ model: 'bench-embedder', input: [sentence] })).toString('hex') },
    grpc: { target: grpcAddress, path: EMBED_PATH, requestHex: Buffer.from(EmbedRequest.encode(EmbedRequest.fromPartial({ model: { name: 'bench-embedder' }, inputs: [sentence] })).finish()).toString('hex') },
  };
  const pid = gateway.child.pid!;
  type Cell = { rps: number; cpuUs: number; p50: number; errors: number };
  const best: Partial<Record<keyof typeof jobs, Cell>> = {};
  for (const job of Object.values(jobs)) await load.run({ ...job, concurrency: API_CLIENTS, ms: 500 });
  for (let round = 0; round < ROUNDS; round++) {
    for (const name of ['http', 'grpc'] as const) {
      const job = jobs[name];
      const before = cpuMs(pid);
      const r = await load.run({ ...job, concurrency: API_CLIENTS, ms: THROUGHPUT_MS, warmupMs: 0 });
      const cpuUs = ((cpuMs(pid) - before) * 1000) / Math.max(1, r.calls + r.errors);
      if (r.rps > (best[name]?.rps ?? -1)) best[name] = { rps: r.rps, cpuUs, p50: r.p50, errors: r.errors };
    }
  }
  const { http: h, grpc: g } = best as Record<keyof typeof jobs, Cell>;
  const s = 'HTTP API vs gRPC, one sentence to a canned embedder (gateway/main.ts)';
  const failed = (n: number) => (n ? `; ${n} failed` : '');
  return [
    { group: 'gateway', name: `${s}: POST /v1/embeddings, ${API_CLIENTS} in flight`, value: h.rps, unit: 'requests/s', note: `p50 ${h.p50.toFixed(2)} ms${failed(h.errors)}` },
    { group: 'gateway', name: `${s}: Embed over gRPC, ${API_CLIENTS} in flight`, value: g.rps, unit: 'calls/s', note: `p50 ${g.p50.toFixed(2)} ms${failed(g.errors)}` },
    { group: 'gateway', name: `${s}: gateway CPU per HTTP request`, value: h.cpuUs, unit: 'µs', note: 'reference' },
    { group: 'gateway', name: `${s}: gateway CPU per gRPC call`, value: g.cpuUs, unit: 'µs', note: 'reference' },
    { group: 'gateway', name: `${s}: HTTP / gRPC, gateway CPU per request`, value: h.cpuUs / g.cpuUs, unit: 'x', note: 'reference' },
  ];
}

/** The load client: its own process, kept for the whole bench, one job at a time over stdin/stdout. */
class LoadClient {
  private readonly child = spawn(process.execPath, nodeArgs('bench/gateway.bench.ts'), {
    cwd: ROOT,
    env: { ...process.env, OTEL_SDK_DISABLED: 'true', GATEWAY_BENCH_ROLE: 'load' },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  private buffered = '';
  private waiting: ((line: string) => void)[] = [];

  constructor() {
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (d: string) => {
      this.buffered += d;
      let i: number;
      while ((i = this.buffered.indexOf('\n')) >= 0) {
        const line = this.buffered.slice(0, i);
        this.buffered = this.buffered.slice(i + 1);
        this.waiting.shift()?.(line);
      }
    });
  }

  run(job: { target: string; path: string; requestHex: string; concurrency: number; ms: number; warmupMs?: number }): Promise<LoadResult> {
    return new Promise((resolve, reject) => {
      const onExit = () => reject(new Error('the load client exited'));
      this.child.once('exit', onExit);
      this.waiting.push((line) => {
        this.child.off('exit', onExit);
        const r = JSON.parse(line) as LoadResult & { error?: string };
        if (r.error) reject(new Error(r.error));
        else resolve(r);
      });
      this.child.stdin.write(`${JSON.stringify({ warmupMs: WARMUP_MS, ...job })}\n`);
    });
  }

  close(): void {
    this.child.stdin.end();
  }
}

/** The client process: for each job, `concurrency` callers in a loop on one channel per target, raw bytes. */
async function loadRole(): Promise<void> {
  const id = (b: Buffer) => b;
  const clients = new Map<string, grpc.Client>();
  const { createInterface } = await import('node:readline');
  const agents = new Map<string, http.Agent>();
  for await (const line of createInterface({ input: process.stdin })) {
    const job = JSON.parse(line) as { target: string; path: string; requestHex: string; concurrency: number; ms: number; warmupMs: number };
    try {
      const request = Buffer.from(job.requestHex, 'hex');
      let call: () => Promise<boolean>;
      if (job.path.startsWith('http:')) {
        // `http:<path>`: a JSON POST over keep-alive HTTP/1.1 connections, one per caller.
        let agent = agents.get(job.target);
        if (!agent) agents.set(job.target, (agent = new http.Agent({ keepAlive: true, maxSockets: 256 })));
        const [host, port] = job.target.split(':');
        const options = { agent, host, port: Number(port), path: job.path.slice('http:'.length), method: 'POST', headers: { 'content-type': 'application/json', 'content-length': request.length } };
        call = () =>
          new Promise<boolean>((resolve) => {
            const req = http.request(options, (res) => {
              res.resume();
              res.on('end', () => resolve(res.statusCode === 200));
            });
            req.on('error', () => resolve(false));
            req.end(request);
          });
      } else {
        let client = clients.get(job.target);
        if (!client) {
          client = new grpc.Client(job.target, grpc.credentials.createInsecure());
          clients.set(job.target, client);
        }
        const c = client;
        await new Promise<void>((resolve, reject) => c.waitForReady(Date.now() + 10_000, (err) => (err ? reject(err) : resolve())));
        call = () => new Promise<boolean>((resolve) => c.makeUnaryRequest(job.path, id, id, request, new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err) => resolve(!err)));
      }
      // Warm up (and wait for the first successful call: a gateway may still be learning its replicas' health).
      const warmEnd = Date.now() + job.warmupMs;
      for (let ok = false, tries = 0; !ok || Date.now() < warmEnd; tries++) {
        ok = await call();
        if (!ok && tries > 200) throw new Error(`no successful call to ${job.target}${job.path}`);
        if (!ok) await new Promise((r) => setTimeout(r, 50));
      }
      const latencies: number[] = [];
      let errors = 0;
      const started = performance.now();
      const end = started + job.ms;
      await Promise.all(
        Array.from({ length: job.concurrency }, async () => {
          while (performance.now() < end) {
            const t = performance.now();
            if (await call()) latencies.push(performance.now() - t);
            else errors++;
          }
        }),
      );
      const elapsed = (performance.now() - started) / 1000;
      latencies.sort((a, b) => a - b);
      const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN;
      const result: LoadResult = { calls: latencies.length, errors, rps: latencies.length / Math.max(elapsed, 1e-9), p50: q(0.5), p99: q(0.99) };
      process.stdout.write(`${JSON.stringify(result)}\n`);
    } catch (err) {
      process.stdout.write(`${JSON.stringify({ error: (err as Error).message })}\n`);
    }
  }
  for (const c of clients.values()) c.close();
  for (const a of agents.values()) a.destroy();
  process.exit(0);
}

/** A gateway process fronting the echo service at GATEWAY_BENCH_TARGET (besides the mesh's defaults). */
async function gatewayRole(): Promise<void> {
  const [{ runComponent }, { spec }, { createGateway }, { echoProto }] = await Promise.all([
    import('../services/runtime/process.js'),
    import('../gateway/config.js'),
    import('../gateway/gateway.js'),
    import('../test/fixtures/echo-service.js'),
  ]);
  await runComponent({
    component: 'gateway',
    spec,
    start: async (config, log) => {
      const gateway = createGateway({
        config: { ...config, httpEnabled: false, registryTargets: { kind: 'none' } },
        log,
        extraDescriptors: echoProto,
        extraServices: [{ service: { service: 'maas.testing.v1.EchoService', pool: 'echo', scope: () => 'infer' }, targets: { kind: 'static', addresses: [process.env.GATEWAY_BENCH_TARGET!] } }],
      });
      return { server: gateway.server, close: () => gateway.close() };
    },
  });
}

if (process.env.GATEWAY_BENCH_ROLE === 'load') await loadRole();
else if (process.env.GATEWAY_BENCH_ROLE === 'gateway') await gatewayRole();
