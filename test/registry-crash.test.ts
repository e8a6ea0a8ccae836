// kill -9 at moments of an upload, then a restart on the same data folder: no version that is not complete
// becomes visible, what was committed survives, and the leftovers are collected at start.
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createReadStream } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Task } from '../gen/maas/common/v1/model.js';
import type { ModelRegistryServiceClient } from '../gen/maas/registry/v1/registry.js';
import { serverStream, unary } from '../services/runtime/client.js';
import { pushVersion } from '../services/registry/client/push.js';
import { createHash } from 'node:crypto';
import { leftovers } from './registry-harness.js';
import { launchRegistry, type RegistryProcess } from './registry-process.js';
import { tinyOnnx, writeGeneratedFile } from './support/registry-fixtures.js';
import { writeFile } from 'node:fs/promises';
import { waitFor } from '../services/runtime/testing/wait.js';

let dir: string;
let running: RegistryProcess | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'maas-registry-crash-'));
});
afterAll(async () => {
  await running?.stop();
  await rm(dir, { recursive: true, force: true });
});

const env = () => ({ MAAS_REGISTRY_DATA_DIR: join(dir, 'data') });

/** Starts an upload of `path` as `name` that never ends by itself; returns when `ready` says so. */
function hangingUpload(client: ModelRegistryServiceClient, name: string, path: string, size: number, sha256: string) {
  const call = client.uploadVersion((() => undefined) as never);
  call.on('error', () => undefined);
  const result = new Promise<void>((resolve) => {
    call.on('status', () => resolve());
    call.on('error', () => resolve());
  });
  call.write({ header: { model: 'm', files: [{ name, size, sha256 }], sourceUri: '', parentVersion: 0, description: '', tags: {}, aliases: ['default'] } });
  const sending = (async () => {
    for await (const data of createReadStream(path, { highWaterMark: 1024 * 1024 })) {
      if (!call.write({ chunk: { file: name, data } })) await new Promise((r) => call.once('drain', r));
    }
  })().catch(() => undefined);
  return { call, sending, result };
}

async function tmpBytes(): Promise<number> {
  const { stat } = await import('node:fs/promises');
  let total = 0;
  for (const f of await readdir(join(dir, 'data', 'tmp')).catch(() => [])) total += (await stat(join(dir, 'data', 'tmp', f)).catch(() => ({ size: 0 }))).size;
  return total;
}

/** Every visible version's files download whole and match their digests; blobs on disk are exactly the referenced ones. */
async function checkConsistent(r: RegistryProcess) {
  const { versions } = await unary(r.client.listVersions.bind(r.client), { model: 'm', pageSize: 100, pageToken: '' });
  const referenced = new Set<string>();
  for (const v of versions) {
    for (const f of v.files) {
      const h = createHash('sha256');
      let bytes = 0;
      for await (const c of serverStream(r.client.downloadVersion.bind(r.client), { model: 'm', version: v.version, file: f.name, offset: 0 })) {
        h.update(c.data);
        bytes += c.data.length;
      }
      expect(bytes).toBe(f.size);
      expect(h.digest('hex')).toBe(f.sha256);
      referenced.add(f.sha256);
    }
  }
  const left = await leftovers(join(dir, 'data'));
  expect(left.tmp).toEqual([]);
  expect(left.blobs.sort()).toEqual([...referenced].sort());
  return versions;
}

describe('registry crash safety', () => {
  it('shows no half-uploaded version after kill -9 and a restart, keeps committed versions, and collects leftovers', async () => {
    running = await launchRegistry(env());
    const onnxPath = join(dir, 'model.onnx');
    await writeFile(onnxPath, tinyOnnx());
    const committed = await pushVersion(running.address, { model: 'm', task: Task.TASK_EMBEDDING, files: [{ name: 'model.onnx', path: onnxPath }], aliases: ['default'] });
    expect(committed.version).toBe(1);

    const bigPath = join(dir, 'big.bin');
    const bigSize = 48 * 1024 * 1024;
    const bigSha = await writeGeneratedFile(bigPath, bigSize);

    // 1. In the middle of the chunks.
    {
      const up = hangingUpload(running.client, 'big.bin', bigPath, bigSize, bigSha);
      await waitFor(async () => (await tmpBytes()) > 8 * 1024 * 1024, 60_000);
      await running.kill();
      await up.result;
      expect(await tmpBytes()).toBeGreaterThan(0);
    }
    running = await launchRegistry(env());
    let versions = await checkConsistent(running);
    expect(versions.map((v) => v.version)).toEqual([1]);

    // 2. Right after the last chunk, while the registry checks and commits: either nothing or all of it.
    {
      const up = hangingUpload(running.client, 'big.bin', bigPath, bigSize, bigSha);
      await up.sending;
      up.call.end();
      await new Promise((r) => setTimeout(r, 5));
      await running.kill();
      await up.result;
    }
    running = await launchRegistry(env());
    versions = await checkConsistent(running);
    expect(versions.map((v) => v.version).at(-1)).toBe(1);
    expect(versions.length).toBeLessThanOrEqual(2);

    // 3. A committed version survives a kill -9 right after its commit.
    const third = await pushVersion(running.address, { model: 'm', task: Task.TASK_EMBEDDING, files: [{ name: 'big.bin', path: bigPath, sha256: bigSha }] });
    await running.kill();
    running = await launchRegistry(env());
    versions = await checkConsistent(running);
    expect(versions.map((v) => v.version)).toContain(third.version);
    const resolved = await unary(running.client.resolveModel.bind(running.client), { ref: { name: 'm' } });
    expect(resolved.version!.version).toBeGreaterThanOrEqual(1);
    await running.stop();
    running = undefined;
  });
});

