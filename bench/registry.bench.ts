// Registry transfer throughput for a 200 MB file: upload (UploadVersion: hash, temp file, fsync, rename,
// commit) and download (DownloadVersion into a file with sha256 check), each as a ratio to a plain streamed
// copy of the same file on the same disk (read, write, fsync) measured in the same run; and the registry
// process's peak memory while it moves the bytes.
import { createHash, randomFillSync } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { launch } from '../cli/launch.js';
import { Task } from '../gen/maas/common/v1/model.js';
import { downloadFile } from '../services/registry/client/download.js';
import { pushVersion } from '../services/registry/client/push.js';
import type { BenchResult } from './types.js';

const MB = 1024 * 1024;
const SIZE = 200 * MB;
const ROUNDS = 2;

export default async function bench(): Promise<BenchResult[]> {
  const dir = await mkdtemp(join(tmpdir(), 'maas-bench-registry-'));
  const proc = launch('registry', 'services/registry/main.ts', {
    env: { MAAS_PORT: '0', MAAS_METRICS_PORT: '0', MAAS_LOG_LEVEL: 'info', MAAS_REGISTRY_DATA_DIR: join(dir, 'data') },
  });
  try {
    const src = join(dir, 'src.bin');
    const sha256 = await generate(src, SIZE);
    const address = `127.0.0.1:${await proc.port}`;
    const pid = proc.child.pid!;

    // Warm-up: code paths loaded, first version committed; the memory baseline is taken after it.
    await pushVersion(address, { model: 'bench', task: Task.TASK_EMBEDDING, files: [{ name: 'w.bin', path: src, sha256 }] });
    const baseline = await peakOf(pid);

    let copy = Infinity;
    let up = Infinity;
    let down = Infinity;
    for (let round = 0; round < ROUNDS; round++) {
      copy = Math.min(copy, await timed(() => plainCopy(src, join(dir, `copy-${round}.bin`))));
      let version = 0;
      up = Math.min(
        up,
        await timed(async () => {
          version = (await pushVersion(address, { model: 'bench', task: Task.TASK_EMBEDDING, files: [{ name: `w${round}.bin`, path: src, sha256 }] })).version;
        }),
      );
      down = Math.min(down, await timed(() => downloadFile(address, { model: 'bench', version, file: `w${round}.bin`, dest: join(dir, `down-${round}.bin`) })));
      await rm(join(dir, `copy-${round}.bin`), { force: true });
      await rm(join(dir, `down-${round}.bin`), { force: true });
    }
    const peak = await peakOf(pid);
    const mbps = (ms: number) => SIZE / MB / (ms / 1000);
    const g = 'registry';
    return [
      { group: g, name: 'plain file copy, 200 MB (read, write, fsync)', value: mbps(copy), unit: 'MB/s', note: `best of ${ROUNDS}` },
      { group: g, name: 'upload 200 MB (UploadVersion, 1 MiB chunks)', value: mbps(up), unit: 'MB/s', note: `best of ${ROUNDS}; digest known to the client` },
      { group: g, name: 'download 200 MB (DownloadVersion to a file, sha256 checked)', value: mbps(down), unit: 'MB/s', note: `best of ${ROUNDS}` },
      { group: g, name: 'upload vs plain copy', value: copy / up, unit: 'x', note: '1.0 = as fast as a copy' },
      { group: g, name: 'download vs plain copy', value: copy / down, unit: 'x', note: '1.0 = as fast as a copy' },
      { group: g, name: 'registry peak RSS during transfers', value: peak / MB, unit: 'MB', note: `VmHWM; ${((peak - baseline) / MB).toFixed(0)} MB above the peak after warm-up` },
    ];
  } finally {
    await proc.stop('SIGTERM');
    await rm(dir, { recursive: true, force: true });
  }
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

async function plainCopy(from: string, to: string): Promise<void> {
  await pipeline(createReadStream(from, { highWaterMark: MB }), createWriteStream(to));
  const fh = await open(to, 'r+');
  await fh.sync();
  await fh.close();
}

async function generate(path: string, bytes: number): Promise<string> {
  const h = createHash('sha256');
  const fh = await open(path, 'w');
  const piece = Buffer.alloc(MB);
  for (let i = 0; i < bytes; i += MB) {
    randomFillSync(piece);
    h.update(piece);
    await fh.write(piece);
  }
  await fh.close();
  return h.digest('hex');
}

async function peakOf(pid: number): Promise<number> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmHWM:\s+(\d+) kB/m.exec(text)?.[1] ?? 0) * 1024;
}
