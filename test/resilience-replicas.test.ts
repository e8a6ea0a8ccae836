// Two embeddings replicas behind the gateway, the registry behind them, each its own process on 127.0.0.1,
// under steady load through the gateway while one part after the other is taken away: a replica drained with
// SIGTERM, a replica killed with SIGKILL (unary calls retried, open streams ended with UNAVAILABLE), an alias
// moved to a new version, and the registry killed and restarted. No client request may fail except the streams
// that were open on the killed replica; nothing committed to the registry may be lost.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Task } from '../gen/maas/common/v1/model.js';
import { EmbeddingServiceClient, EmbedRequest, type EmbedStreamRequest, type EmbedStreamResponse } from '../gen/maas/embeddings/v1/embeddings.js';
import { launch, type Launched } from '../cli/launch.js';
import { createClient, unary } from '../services/runtime/client.js';
import { silentLogger } from '../services/runtime/logger.js';
import { ModelTask } from '../services/runtime/models/types.js';
import { pushVersion } from '../services/registry/client/push.js';
import { prepareDefaults } from '../services/embeddings/component.js';
import { buildBertStyle } from '../services/embeddings/defaults/build-bert-style.js';
import { sharedCacheDir } from '../services/embeddings/testing/model-folder.js';
import { launchRegistry, type RegistryProcess } from './registry-process.js';
import { waitFor } from './gateway-support.js';
import { Figures } from './support/resilience/figures.js';
import { statusName } from './support/resilience/load.js';
import { MiB, sampleMemory } from './support/resilience/memory.js';
import { scrape } from './support/resilience/metrics.js';

const DRAIN_GRACE_MS = 5000;

interface Replica {
  proc: Launched;
  port: number;
  address: string;
  metricsPort: number;
}

let work: string;
let registry: RegistryProcess;
let registryPort: number;
const replicas: Replica[] = [];
let gateway: Launched;
let gatewayAddress: string;
let client: EmbeddingServiceClient;
const started: Launched[] = [];
const figures = new Figures('replicas');
const gatewayLog: string[] = [];

async function startReplica(port = 0): Promise<Replica> {
  let resolveMetrics!: (p: number) => void;
  const metrics = new Promise<number>((r) => (resolveMetrics = r));
  const proc = launch('embeddings', 'services/embeddings/main.ts', {
    env: {
      MAAS_PORT: String(port),
      MAAS_METRICS_PORT: '0',
      MAAS_LOG_LEVEL: 'info',
      OTEL_SDK_DISABLED: 'true',
      MAAS_DRAIN_GRACE_MS: String(DRAIN_GRACE_MS),
      MAAS_REGISTRY_ADDRESS: registry.address,
      MAAS_EMBEDDINGS_CACHE_DIR: join(work, `cache-${started.length}`),
    },
    onLine: (line) => {
      if (line.includes('"metrics on /metrics"')) resolveMetrics((JSON.parse(line) as { port: number }).port);
    },
  });
  started.push(proc);
  const bound = await proc.port;
  return { proc, port: bound, address: `127.0.0.1:${bound}`, metricsPort: await metrics };
}

/** Embed calls a replica answered (from its own metrics). */
const answered = (r: Replica) =>
  scrape(r.metricsPort, 'maas_rpc_server_requests_total', { method: 'maas.embeddings.v1.EmbeddingService/Embed' }).then(
    (n) => (Number.isNaN(n) ? 0 : n),
    () => NaN,
  );

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'maas-resilience-replicas-'));
  registry = await launchRegistry({ MAAS_REGISTRY_DATA_DIR: join(work, 'registry'), OTEL_SDK_DISABLED: 'true' });
  registryPort = Number(registry.address.split(':')[1]);
  await prepareDefaults({ registryAddress: registry.address, dataDir: work, cacheDir: sharedCacheDir(), log: silentLogger });
  for (const version of [1, 2]) {
    const dir = join(work, `swap-${version}`);
    const files = await buildBertStyle(dir, { pooling: 'mean', seed: version });
    await pushVersion(registry.address, { model: 'swap', task: ModelTask.EMBEDDING, files: files.map((name) => ({ name, path: join(dir, name) })), aliases: version === 1 ? ['default'] : [] });
  }
  replicas.push(...(await Promise.all([startReplica(), startReplica()])));
  gateway = launch('gateway', 'gateway/main.ts', {
    env: {
      MAAS_PORT: '0',
      MAAS_METRICS_PORT: '0',
      MAAS_GATEWAY_HTTP_ENABLED: 'false',
      OTEL_SDK_DISABLED: 'true',
      MAAS_REGISTRY_ADDRESS: registry.address,
      MAAS_GATEWAY_EMBEDDINGS_TARGETS: replicas.map((r) => r.address).join(','),
      // No flat allowance: the retries here must come from the budget's share of the calls made, so a gateway
      // that does not count its calls towards the budget fails the SIGKILL test (as it did before 3254d83).
      MAAS_GATEWAY_RETRY_BUDGET_MIN_PER_SECOND: '0',
    },
    // What the gateway saw of its replicas (health changes, failed connections), shown when a test fails.
    onLine: (line) => {
      if (line.includes('"replica')) gatewayLog.push(line.slice(0, 400));
      if (gatewayLog.length > 60) gatewayLog.shift();
    },
  });
  started.push(gateway);
  gatewayAddress = `127.0.0.1:${await gateway.port}`;
  client = createClient(EmbeddingServiceClient, gatewayAddress);
}, 400_000);

afterAll(async () => {
  client?.close();
  for (const p of started.reverse()) await p.stop('SIGKILL');
  await registry?.kill();
  figures.write();
  if (work) rmSync(work, { recursive: true, force: true });
});

interface Load {
  ok: number;
  failures: string[];
  versions: Map<number, number>;
  stop(): Promise<void>;
}

/** Closed-loop Embed calls through the gateway from `workers` callers, bounded by `maxMs` and `maxRequests`. */
function steadyLoad(model: string, workers = 6, maxMs = 90_000, maxRequests = 60_000): Load {
  const load: Load = { ok: 0, failures: [], versions: new Map(), stop: async () => undefined };
  let running = true;
  const end = Date.now() + maxMs;
  let sent = 0;
  const loop = async (w: number) => {
    for (let i = 0; running && Date.now() < end && sent < maxRequests; i++) {
      sent++;
      const text = `caller ${w} request ${i} asks about the river and the market`;
      try {
        const res = await unary(client.embed.bind(client), EmbedRequest.fromPartial({ model: { name: model }, inputs: [text], truncate: true }), { deadline: Date.now() + 20_000 });
        if (res.embeddings.length !== 1 || res.embeddings[0]!.values.length === 0) load.failures.push('wrong answer');
        else load.ok++;
        load.versions.set(res.model!.version, (load.versions.get(res.model!.version) ?? 0) + 1);
      } catch (err) {
        const e = err as grpc.ServiceError;
        if (load.failures.length < 20) load.failures.push(`${statusName(e.code)}: ${e.details}`);
        else load.failures.push('…');
      }
    }
  };
  const all = Promise.all(Array.from({ length: workers }, (_, w) => loop(w)));
  load.stop = async () => {
    running = false;
    await all;
  };
  return load;
}

/** waitFor, with the load's first failures in the message when it times out. */
async function until(check: () => boolean | Promise<boolean>, ms: number, what: string, ...loads: Load[]): Promise<void> {
  try {
    await waitFor(check, ms, what);
  } catch (err) {
    const state = loads.map((l) => ({ ok: l.ok, versions: Object.fromEntries(l.versions), failures: l.failures.slice(0, 3) }));
    const counts = await Promise.all(replicas.map(answered));
    throw new Error(`${(err as Error).message}; load ${JSON.stringify(state)}; replica Embed counts ${counts.join(',')}`);
  }
}

async function restartReplica(index: number): Promise<void> {
  const old = replicas[index]!;
  const again = await startReplica(old.port);
  replicas[index] = again;
  const before = await answered(again);
  await waitFor(async () => (await answered(again)) > before + 20, 30_000, 'the restarted replica to serve calls from the gateway');
}

describe('replicas under load behind the gateway', () => {
  it('drains a replica on SIGTERM with no failed request; it exits 0 within its grace period', async () => {
    const load = steadyLoad('glove-100d');
    const [a] = replicas;
    try {
      await until(async () => (await answered(a!)) > 50 && load.ok > 200, 30_000, 'steady load on both replicas', load);
      const t0 = Date.now();
      a!.proc.child.kill('SIGTERM');
      const exit = await a!.proc.exited;
      const exitMs = Date.now() - t0;
      const okAtExit = load.ok;
      await until(() => load.ok > okAtExit + 200, 30_000, 'load to go on with one replica', load);
      // Started again on its port, it is used again.
      await restartReplica(0);
      await load.stop();
      figures.set('drain', { requestsOk: load.ok, failed: load.failures.length, exitCode: exit.code, exitMs, graceMs: DRAIN_GRACE_MS });
      expect(load.failures, gatewayLog.join('\n')).toEqual([]);
      expect(exit).toEqual({ code: 0, signal: null });
      // The grace period plus process start-up slack on a shared machine.
      expect(exitMs).toBeLessThan(DRAIN_GRACE_MS + 5000);
    } finally {
      await load.stop();
    }
  });

  it('retries unary calls when a replica is SIGKILLed, ends its open streams with UNAVAILABLE, and uses it again after restart', async () => {
    const load = steadyLoad('glove-100d');
    const [a, b] = replicas;
    // Streams through the gateway, each pinned to one replica, sending a request every 50 ms.
    const streamOutcomes: string[] = [];
    const streamMessages: number[] = [];
    let streamsRunning = true;
    const openStream = (s: number) =>
      new Promise<void>((resolve) => {
        const call = client.embedStream(new grpc.Metadata(), { deadline: Date.now() + 60_000 }) as grpc.ClientDuplexStream<EmbedStreamRequest, EmbedStreamResponse>;
        streamMessages[s] = 0;
        let n = 0;
        const timer = setInterval(() => {
          if (!streamsRunning) {
            clearInterval(timer);
            call.end();
            return;
          }
          call.write({ request: EmbedRequest.fromPartial({ inputs: [`stream ${s} message ${n}`] }), tag: String(n++) });
        }, 50);
        call.on('data', () => streamMessages[s]!++);
        call.on('error', (err: grpc.ServiceError) => {
          clearInterval(timer);
          streamOutcomes[s] = statusName(err.code);
          resolve();
        });
        call.on('end', () => {
          clearInterval(timer);
          streamOutcomes[s] ??= 'OK';
          resolve();
        });
      });
    try {
      await until(async () => (await answered(a!)) > 50 && load.ok > 200, 30_000, 'steady load on both replicas', load);
      const streams = Promise.all(Array.from({ length: 6 }, (_, s) => openStream(s)));
      await waitFor(() => streamMessages.length === 6 && streamMessages.every((m) => m > 3), 30_000, 'every stream to be answered');
      const t0 = Date.now();
      a!.proc.child.kill('SIGKILL');
      await a!.proc.exited;
      // The streams that were on the killed replica end with UNAVAILABLE, soon, not at their deadline.
      await waitFor(() => streamOutcomes.filter(Boolean).length > 0, 30_000, 'a stream on the killed replica to end');
      const streamEndMs = Date.now() - t0;
      const okAtKill = load.ok;
      await waitFor(() => load.ok > okAtKill + 200, 30_000, 'load to go on with one replica');
      streamsRunning = false;
      await streams;
      const okBeforeRestart = load.ok;
      await restartReplica(0);
      await load.stop();
      figures.set('failover', {
        requestsOk: load.ok,
        failed: load.failures.length,
        okWhileOneReplica: okBeforeRestart - okAtKill,
        streams: streamOutcomes,
        streamMessages,
        firstStreamEndMsAfterKill: streamEndMs,
      });
      expect(load.failures, gatewayLog.join('\n')).toEqual([]);
      expect(streamOutcomes.filter((o) => o !== 'OK').every((o) => o === 'UNAVAILABLE'), streamOutcomes.join(',')).toBe(true);
      expect(streamOutcomes.some((o) => o === 'UNAVAILABLE')).toBe(true);
      expect(streamOutcomes.some((o) => o === 'OK'), 'streams on the surviving replica go on').toBe(true);
      expect(await answered(b!)).toBeGreaterThan(0);
    } finally {
      streamsRunning = false;
      await load.stop();
    }
  });

  it('hot-swaps a moved alias with no failed request and unloads the old version on every replica', async () => {
    const load = steadyLoad('swap');
    const listSwap = async (r: Replica) => {
      const c = createClient(EmbeddingServiceClient, r.address);
      try {
        const { models } = await unary(c.listModels.bind(c), {}, { deadline: Date.now() + 10_000 });
        return models.filter((m) => m.model!.name === 'swap').map((m) => m.model!.version);
      } finally {
        c.close();
      }
    };
    try {
      await until(() => (load.versions.get(1) ?? 0) > 100, 30_000, 'version 1 to serve', load);
      await unary(registry.client.setAlias.bind(registry.client), { model: 'swap', alias: 'default', version: 2 });
      await waitFor(() => (load.versions.get(2) ?? 0) > 200, 30_000, 'version 2 to serve');
      const atSwitch = new Map(load.versions);
      await waitFor(() => (load.versions.get(2) ?? 0) > (atSwitch.get(2) ?? 0) + 200, 30_000, 'more load on version 2');
      await load.stop();
      // Once the switch is done, version 1 answers nothing more.
      expect(load.versions.get(1)).toBe(atSwitch.get(1));
      for (const r of replicas) await waitFor(async () => JSON.stringify(await listSwap(r)) === '[2]', 20_000, `only version 2 loaded on ${r.address}`);
      figures.set('hot swap', { requestsOk: load.ok, failed: load.failures.length, byVersion: Object.fromEntries(load.versions) });
      expect(load.failures, gatewayLog.join('\n')).toEqual([]);
    } finally {
      await load.stop();
    }
  });

  it('keeps serving resolved models while the registry is killed and restarted, and loses nothing committed', async () => {
    // Something committed just before the crash.
    await unary(registry.client.createModel.bind(registry.client), { name: 'committed-before-crash', task: Task.TASK_EMBEDDING, description: 'must survive', tags: { k: 'v' } });
    await unary(registry.client.setAlias.bind(registry.client), { model: 'swap', alias: 'canary', version: 1 });
    const swapLoad = steadyLoad('swap', 3);
    const gloveLoad = steadyLoad('glove-100d', 3);
    const sampler = sampleMemory(replicas.map((r) => r.proc.child.pid!));
    try {
      await until(() => swapLoad.ok > 100 && gloveLoad.ok > 100, 30_000, 'steady load', swapLoad, gloveLoad);
      await registry.kill();
      const okAtKill = swapLoad.ok + gloveLoad.ok;
      await waitFor(() => swapLoad.ok + gloveLoad.ok > okAtKill + 500, 30_000, 'inference to go on without the registry');
      const okWithoutRegistry = swapLoad.ok + gloveLoad.ok - okAtKill;
      registry = await launchRegistry({ MAAS_REGISTRY_DATA_DIR: join(work, 'registry'), MAAS_PORT: String(registryPort), OTEL_SDK_DISABLED: 'true' });
      const okAtRestart = swapLoad.ok + gloveLoad.ok;
      await waitFor(() => swapLoad.ok + gloveLoad.ok > okAtRestart + 200, 30_000, 'inference after the restart');

      // Nothing committed is lost.
      const r = registry.client;
      const model = await unary(r.getModel.bind(r), { name: 'committed-before-crash' });
      expect(model.model).toMatchObject({ description: 'must survive', tags: { k: 'v' } });
      const swap = await unary(r.getModel.bind(r), { name: 'swap' });
      expect(swap.model?.aliases).toMatchObject({ default: 2, canary: 1 });
      const versions = await unary(r.listVersions.bind(r), { model: 'swap', pageSize: 0, pageToken: '' });
      expect(versions.versions.map((v) => v.version).sort()).toEqual([1, 2]);
      expect((await unary(r.resolveModel.bind(r), { ref: { name: 'glove-100d' } })).version?.version).toBe(1);

      // The services follow the restarted registry's watch again: moving the alias back is picked up.
      await unary(r.setAlias.bind(r), { model: 'swap', alias: 'default', version: 1 });
      const v1Before = swapLoad.versions.get(1) ?? 0;
      await waitFor(() => (swapLoad.versions.get(1) ?? 0) > v1Before + 100, 60_000, 'the alias move after the restart to be served');
      await swapLoad.stop();
      await gloveLoad.stop();
      sampler.stop();
      figures.set('registry restart', {
        requestsOk: swapLoad.ok + gloveLoad.ok,
        okWhileRegistryDown: okWithoutRegistry,
        failed: swapLoad.failures.length + gloveLoad.failures.length,
        replicaRssPeakMiB: replicas.map((x) => Math.round(sampler.peak(x.proc.child.pid!) / MiB)),
      });
      expect([...swapLoad.failures, ...gloveLoad.failures]).toEqual([]);
    } finally {
      sampler.stop();
      await swapLoad.stop();
      await gloveLoad.stop();
    }
  });
});
