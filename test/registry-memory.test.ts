// Uploading and downloading a 200 MB file keeps the registry process's memory flat: the bytes stream through
// (temporary file, blob, read stream), they are never gathered in memory. Measured as the growth of the
// process's peak resident memory (VmHWM) over its peak after a small warm-up transfer.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Task } from '../gen/maas/common/v1/model.js';
import { downloadFile } from '../services/registry/client/download.js';
import { pushVersion } from '../services/registry/client/push.js';
import { launchRegistry, memoryOf, type RegistryProcess } from './registry-process.js';
import { writeGeneratedFile } from './support/registry-fixtures.js';

const MB = 1024 * 1024;
let dir: string;
let registry: RegistryProcess | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'maas-registry-memory-'));
});
afterAll(async () => {
  await registry?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('registry memory', () => {
  it('keeps its peak memory flat while a 200 MB file is uploaded and downloaded', async () => {
    registry = await launchRegistry({ MAAS_REGISTRY_DATA_DIR: join(dir, 'data') });
    const pid = registry.proc.child.pid!;
    const small = join(dir, 'small.bin');
    const big = join(dir, 'big.bin');
    await writeGeneratedFile(small, 8 * MB, 7);
    const bigSha = await writeGeneratedFile(big, 200 * MB, 9);

    await pushVersion(registry.address, { model: 'm', task: Task.TASK_EMBEDDING, files: [{ name: 'w.bin', path: small }] });
    await downloadFile(registry.address, { model: 'm', version: 1, file: 'w.bin', dest: join(dir, 'small.out') });
    const baseline = await memoryOf(pid);

    const pushed = await pushVersion(registry.address, { model: 'm', task: Task.TASK_EMBEDDING, files: [{ name: 'w.bin', path: big, sha256: bigSha }] });
    expect(pushed.files[0]).toMatchObject({ size: 200 * MB, sha256: bigSha });
    const afterUpload = await memoryOf(pid);
    const got = await downloadFile(registry.address, { model: 'm', version: pushed.version, file: 'w.bin', dest: join(dir, 'big.out') });
    expect(got.sha256).toBe(bigSha);
    const afterDownload = await memoryOf(pid);

    const growth = (afterDownload.peak - baseline.peak) / MB;
    console.log(
      `registry peak RSS: ${(baseline.peak / MB).toFixed(0)} MB after warm-up, ${(afterUpload.peak / MB).toFixed(0)} MB after the 200 MB upload, ${(afterDownload.peak / MB).toFixed(0)} MB after the download (growth ${growth.toFixed(0)} MB)`,
    );
    expect(growth).toBeLessThan(150);
  });
});
