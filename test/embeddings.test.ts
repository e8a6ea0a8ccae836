// The embeddings service as its own process: serving a local model folder (health, reflection, Embed, drain),
// and serving from a real registry: the default model prepared the way `maas up` does it, and an alias moved
// in the registry under steady load, swapped in without one failed request.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
