// The embeddings service as its own process: serving a local model folder (health, reflection, Embed, drain),
// and serving from a real registry: the default model prepared the way `maas up` does it, and an alias moved
// in the registry under steady load, swapped in without one failed request.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HealthClient, HealthCheckResponse_ServingStatus as Serving } from '../gen/grpc/health/v1/health.js';
import { EmbeddingServiceClient, EmbedRequest, type EmbedResponse } from '../gen/maas/embeddings/v1/embeddings.js';
import { launch, type Launched } from '../cli/launch.js';
import { createClient, unary } from '../services/runtime/client.js';
import { silentLogger } from '../services/runtime/logger.js';
import { ModelTask } from '../services/runtime/models/types.js';
import { pushVersion } from '../services/registry/client/push.js';
import { prepareDefaults } from '../services/embeddings/component.js';
import { buildBertStyle } from '../services/embeddings/defaults/build-bert-style.js';
import { cosine } from '../services/embeddings/domain/vectors.js';
import { createModelFolder, sharedCacheDir, type ModelFolder } from '../services/embeddings/testing/model-folder.js';
import { launchRegistry, type RegistryProcess } from './registry-process.js';
import { OtlpReceiver } from './support/otlp-receiver.js';
import { listServices } from './support/reflection.js';

const SERVICE = 'maas.embeddings.v1.EmbeddingService';

function startEmbeddings(env: Record<string, string>): Launched {
  return launch('embeddings', 'services/embeddings/main.ts', { env: { MAAS_PORT: '0', MAAS_METRICS_PORT: '0', MAAS_LOG_LEVEL: 'info', ...env } });
}

const embed = (client: EmbeddingServiceClient, req: Partial<EmbedRequest>): Promise<EmbedResponse> => unary(client.embed.bind(client), EmbedRequest.fromPartial(req));

describe('the embeddings process on a local model folder', () => {
  let folder: ModelFolder;
  let proc: Launched;
  let address: string;
  beforeAll(async () => {
    folder = await createModelFolder({ bert: false });
    proc = startEmbeddings({ MAAS_EMBEDDINGS_MODEL_DIR: folder.root });
    address = `127.0.0.1:${await proc.port}`;
  });
  afterAll(async () => {
    await proc?.stop('SIGKILL');
    folder?.remove();
  });

  it('serves health, reflection and Embed, then drains and exits 0 on SIGTERM', async () => {
    const health = createClient(HealthClient, address);
    const client = createClient(EmbeddingServiceClient, address);
    try {
      expect((await unary(health.check.bind(health), { service: SERVICE })).status).toBe(Serving.SERVING);
      expect(await listServices(address)).toContain(SERVICE);
      const res = await embed(client, { inputs: ['The cat sat on the mat.', 'A kitten rests on a rug.', 'Oil prices fell.'] });
      expect(res.model).toMatchObject({ name: 'glove-100d', version: 1, alias: 'default', executionProvider: 'cpu' });
      const [a, b, c] = res.embeddings.map((e) => e.values);
      expect(cosine(a!, b!)).toBeGreaterThan(cosine(a!, c!));
    } finally {
      health.close();
      client.close();
    }
    expect(await proc.stop('SIGTERM')).toEqual({ code: 0, signal: null });
  });
});

describe('the embeddings process, traced and measured', () => {
  let folder: ModelFolder;
  let receiver: OtlpReceiver;
  let proc: Launched;
  let client: EmbeddingServiceClient;
  let metricsPort = 0;
  beforeAll(async () => {
    folder = await createModelFolder({ bert: false });
    receiver = new OtlpReceiver();
    await receiver.start();
    // Batches of two that wait for their second input: two single-input requests always share one batch.
    proc = launch('embeddings', 'services/embeddings/main.ts', {
      env: {
        MAAS_PORT: '0',
        MAAS_METRICS_PORT: '0',
        MAAS_LOG_LEVEL: 'info',
        MAAS_EMBEDDINGS_MODEL_DIR: folder.root,
        MAAS_EMBEDDINGS_MAX_BATCH_SIZE: '2',
        MAAS_EMBEDDINGS_MAX_QUEUE_DELAY_MS: '60000',
        OTEL_SERVICE_NAME: 'maas-embeddings',
        ...receiver.env(),
      },
      onLine: (line) => {
        if (line.includes('metrics on /metrics')) metricsPort = (JSON.parse(line) as { port: number }).port;
      },
    });
    client = createClient(EmbeddingServiceClient, `127.0.0.1:${await proc.port}`);
  });
  afterAll(async () => {
    client?.close();
    await proc?.stop('SIGTERM');
    receiver?.close();
    folder?.remove();
  });

  it('traces queue, batch, tokenize and onnxruntime run, the batch linking every request it served', async () => {
    const traces = ['4bf92f3577b34da6a3ce929d0e0e4736', '0af7651916cd43dd8448eb211c80319c'];
    await Promise.all(
      traces.map((traceId, i) => {
        const metadata = new grpc.Metadata();
        metadata.set('traceparent', `00-${traceId}-00f067aa0ba902b${i}-01`);
        return unary(client.embed.bind(client), EmbedRequest.fromPartial({ inputs: [`traced request ${i}`] }), { metadata });
      }),
    );
    await receiver.waitFor((spans) => spans.some((s) => s.name === 'embeddings batch') && traces.every((t) => spans.some((s) => s.traceId === t && s.kind === 2)));
    const servers = traces.map((t) => receiver.trace(t).find((s) => s.name === 'maas.embeddings.v1.EmbeddingService/Embed')!);
    for (const [i, server] of servers.entries()) {
      expect(server.parentSpanId).toBe(`00f067aa0ba902b${i}`);
      expect(server.attributes).toMatchObject({ 'maas.model': 'glove-100d', 'maas.model_version': 1, 'maas.execution_provider': 'cpu', 'maas.input_tokens': 3 });
      const spans = receiver.trace(traces[i]!);
      const queue = spans.find((s) => s.name === 'embeddings queue')!;
      expect(queue.parentSpanId).toBe(server.spanId);
      expect(queue.attributes).toMatchObject({ 'maas.batch_size': 2, 'maas.model': 'glove-100d' });
    }
    const batch = receiver.spans.find((s) => s.name === 'embeddings batch')!;
    expect(batch.attributes).toMatchObject({ 'maas.batch_size': 2, 'maas.model': 'glove-100d', 'maas.model_version': 1, 'maas.execution_provider': 'cpu' });
    expect(batch.links.map((l) => l.spanId).sort()).toEqual(servers.map((s) => s.spanId).sort());
    expect(traces).toContain(batch.traceId);
    await receiver.waitFor((spans) => spans.some((s) => s.name === 'onnxruntime run' && s.parentSpanId === batch.spanId));
    const run = receiver.spans.find((s) => s.name === 'onnxruntime run' && s.parentSpanId === batch.spanId)!;
    expect(run.attributes).toMatchObject({ 'maas.model': 'glove-100d', 'maas.model_version': 1, 'maas.execution_provider': 'cpu', 'maas.batch_size': 2, 'maas.runs': 1 });
    // Texts are tokenized where the batch runs (the encoder thread), just before it: the times come from there.
    const tokenize = receiver.spans.find((s) => s.name === 'embeddings tokenize' && s.parentSpanId === batch.spanId)!;
    expect(tokenize.attributes).toMatchObject({ 'maas.model': 'glove-100d', 'maas.inputs': 2, 'maas.input_tokens': 6 });
    // (Within a millisecond: the two threads' clocks are read apart.)
    const ms = 1_000_000n;
    expect(tokenize.startNs + ms).toBeGreaterThanOrEqual(batch.startNs);
    expect(tokenize.endNs).toBeLessThanOrEqual(run.startNs);
    expect(run.endNs).toBeLessThanOrEqual(batch.endNs + ms);
    for (const server of servers) {
      const queue = receiver.trace(server.traceId).find((s) => s.name === 'embeddings queue')!;
      expect(queue.links.map((l) => l.spanId)).toEqual([batch.spanId]);
    }
  });

  it('exports queue depth, batch sizes and inference time on /metrics', async () => {
    await unary(client.embed.bind(client), EmbedRequest.fromPartial({ inputs: ['one', 'two'] }));
    expect(metricsPort).toBeGreaterThan(0);
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(text).toMatch(/^maas_batch_queue_depth\{[^}]*maas_model="glove-100d"[^}]*\} 0/m);
    expect(text).toMatch(/^maas_batch_size_bucket\{/m);
    expect(text).toMatch(/^maas_batch_duration_ms\w*_bucket\{/m);
    expect(text).toMatch(/^maas_embeddings_inputs\w*\{[^}]*model="glove-100d"/m);
  });
});

describe('the embeddings process with the registry', () => {
  let work: string;
  let registry: RegistryProcess;
  let proc: Launched;
  let client: EmbeddingServiceClient;
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'maas-embeddings-registry-'));
    registry = await launchRegistry({ MAAS_REGISTRY_DATA_DIR: join(work, 'registry') });
    await prepareDefaults({ registryAddress: registry.address, dataDir: work, cacheDir: sharedCacheDir(), log: silentLogger });
    // A small model with two versions; `default` names version 1.
    for (const version of [1, 2]) {
      const dir = join(work, `swap-${version}`);
      const files = await buildBertStyle(dir, { pooling: 'mean', seed: version });
      await pushVersion(registry.address, {
        model: 'swap',
        task: ModelTask.EMBEDDING,
        files: files.map((name) => ({ name, path: join(dir, name) })),
        aliases: version === 1 ? ['default'] : [],
      });
    }
    proc = startEmbeddings({ MAAS_REGISTRY_ADDRESS: registry.address, MAAS_EMBEDDINGS_CACHE_DIR: join(work, 'embeddings-cache') });
    client = createClient(EmbeddingServiceClient, `127.0.0.1:${await proc.port}`);
  });
  afterAll(async () => {
    client?.close();
    await proc?.stop('SIGTERM');
    await registry?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('serves the default model that prepareDefaults pushed, and preparing again pushes nothing', async () => {
    const res = await embed(client, { inputs: ['hello world'] });
    expect(res.model).toMatchObject({ name: 'glove-100d', version: 1, alias: 'default' });
    expect(res.dimensions).toBe(100);
    await prepareDefaults({ registryAddress: registry.address, dataDir: work, cacheDir: sharedCacheDir(), log: silentLogger });
    const { model } = await unary(registry.client.getModel.bind(registry.client), { name: 'glove-100d' });
    expect(model?.latestVersion).toBe(1);
  });

  it('swaps to the version an alias moves to in the registry under steady load, without a failed request', async () => {
    const seen = new Map<number, number>();
    const errors: string[] = [];
    let stop = false;
    const worker = async () => {
      while (!stop) {
        try {
          const res = await embed(client, { model: { name: 'swap' }, inputs: ['the cat sat on the mat', 'a dog in the park'] });
          seen.set(res.model!.version, (seen.get(res.model!.version) ?? 0) + 1);
        } catch (err) {
          errors.push(String(err));
        }
      }
    };
    const workers = Array.from({ length: 8 }, worker);
    const until = async (check: () => boolean) => {
      for (let i = 0; i < 3000 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
      return check();
    };
    let flowing: boolean;
    let swapped = false;
    try {
      flowing = await until(() => (seen.get(1) ?? 0) > 50);
      if (flowing) {
        await unary(registry.client.setAlias.bind(registry.client), { model: 'swap', alias: 'default', version: 2 });
        swapped = await until(() => (seen.get(2) ?? 0) > 50);
      }
    } finally {
      stop = true;
      await Promise.all(workers);
    }
    expect(flowing, `requests were served by version 1 (errors: ${errors.slice(0, 2).join('; ')})`).toBe(true);
    expect(swapped, 'requests were served by version 2 after the alias moved').toBe(true);
    expect(errors).toEqual([]);
    expect([...seen.keys()].sort()).toEqual([1, 2]);
  });
});
