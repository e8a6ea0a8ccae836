// The model host fed by a real registry process: resolution, download into the cache with digest checks,
// hot swap when an alias moves, and serving on from what it resolved while the registry is down.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unary } from '../services/runtime/client.js';
import { silentLogger } from '../services/runtime/logger.js';
import { ModelHost } from '../services/runtime/models/model-host.js';
import { RegistrySource } from '../services/runtime/models/registry-source.js';
import { ModelTask, type LocalVersion } from '../services/runtime/models/types.js';
import { pushVersion } from '../services/registry/client/push.js';
import { launchRegistry, type RegistryProcess } from './registry-process.js';
import { freePort } from './support/free-port.js';
import { sha256, tinyOnnx } from './support/registry-fixtures.js';
import { waitFor } from '../services/runtime/testing/wait.js';

const work = mkdtempSync(join(tmpdir(), 'maas-host-reg-'));
const dataDir = join(work, 'registry');
const cacheDir = join(work, 'cache');
let port: number;
let registry: RegistryProcess | undefined;
let host: ModelHost<number>;
let source: RegistrySource;
const loads: string[] = [];

async function startRegistry() {
  registry = await launchRegistry({ MAAS_PORT: String(port), MAAS_REGISTRY_DATA_DIR: dataDir });
}

const signal = () => new AbortController().signal;

async function servedVersion(): Promise<number> {
  const lease = await host.acquire({ name: 'tiny' }, signal());
  lease.release();
  return lease.model;
}

beforeAll(async () => {
  port = await freePort();
  await startRegistry();
  for (const bias of [1, 2]) {
    const file = join(work, `model-${bias}.onnx`);
    writeFileSync(file, tinyOnnx({ bias }));
    await pushVersion(registry!.address, { model: 'tiny', task: ModelTask.EMBEDDING, files: [{ name: 'model.onnx', path: file }], aliases: bias === 1 ? ['default'] : [] });
  }
  source = new RegistrySource({ address: registry!.address, cacheDir, log: silentLogger });
  host = new ModelHost<number>({
    source,
    tasks: [ModelTask.EMBEDDING],
    defaultModel: 'tiny',
    memoryBudgetBytes: 1e9,
    log: silentLogger,
    loader: async (v: LocalVersion) => {
      loads.push(`load ${v.version}`);
      return { model: v.version, bytes: 1, executionProvider: 'cpu', close: async () => void loads.push(`unload ${v.version}`) };
    },
  });
});

afterAll(async () => {
  await host?.close(100);
  await source?.close();
  await registry?.stop();
  rmSync(work, { recursive: true, force: true });
});

describe('the model host on a registry', () => {
  it('downloads the resolved version into its cache with the registry digests', async () => {
    expect(await servedVersion()).toBe(1);
    const local = host.list()[0]!.local;
    const file = readFileSync(join(local.dir, 'model.onnx'));
    expect(sha256(file)).toBe(local.files[0]!.sha256);
    expect(Object.keys(local.signatures)).toEqual(['model.onnx']);
  });

  it('swaps to the new version when the alias moves, and unloads the old one', async () => {
    await unary(registry!.client.setAlias.bind(registry!.client), { model: 'tiny', alias: 'default', version: 2 });
    await waitFor(async () => (await servedVersion()) === 2, 20_000);
    await waitFor(() => loads.includes('unload 1'), 20_000);
    expect(host.list().map((i) => i.version)).toEqual([2]);
  });

  it('keeps serving while the registry is down, and follows alias moves again after it restarts', async () => {
    await registry!.kill();
    registry = undefined;
    for (let i = 0; i < 20; i++) expect(await servedVersion()).toBe(2);
    await startRegistry();
    await unary(registry!.client.setAlias.bind(registry!.client), { model: 'tiny', alias: 'default', version: 1 });
    await waitFor(async () => (await servedVersion()) === 1, 20_000);
  });
});
