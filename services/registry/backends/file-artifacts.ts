// Content-addressed blobs on a filesystem (a volume in Kubernetes): <root>/blobs/sha256/<ab>/<digest>.
// An upload is written to <root>/tmp, hashed as it goes, fsynced, and renamed into place (then the folder is
// fsynced), so a blob either is complete or is not there. Identical content is stored once.
import { createHash, randomUUID, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, mkdir, open, readdir, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { ArtifactStore, StagedFile } from '../domain/store.js';

const DIGEST = /^[0-9a-f]{64}$/;

export class FileArtifactStore implements ArtifactStore {
  readonly blobsDir: string;
  readonly tmpDir: string;
  /** Temporary files of uploads running in this process (never swept). */
  private readonly active = new Set<string>();

  constructor(root: string) {
    this.blobsDir = join(root, 'blobs', 'sha256');
    this.tmpDir = join(root, 'tmp');
  }

  async init(): Promise<void> {
    await mkdir(this.blobsDir, { recursive: true });
    await mkdir(this.tmpDir, { recursive: true });
  }

  blobPath(sha256: string): string {
    return join(this.blobsDir, sha256.slice(0, 2), sha256);
  }

  async stage(): Promise<StagedFile> {
    const path = join(this.tmpDir, `${Date.now()}-${randomUUID()}.part`);
    const fh = await open(path, 'wx', 0o600);
    this.active.add(path);
    return new Staged(path, fh, () => this.active.delete(path));
  }

  async publish(staged: StagedFile, sha256: string): Promise<void> {
    const s = staged as Staged;
    const { path, size } = await s.finish();
    const dest = this.blobPath(sha256);
    const existing = await stat(dest).catch(() => undefined);
    if (existing && existing.size === size) {
      await s.discard();
      return;
    }
    // Missing, or damaged (wrong size): the verified new copy takes its place atomically.
    await mkdir(dirname(dest), { recursive: true });
    await rename(path, dest);
    s.published();
    await chmod(dest, 0o444).catch(() => undefined);
    await syncDir(dirname(dest));
  }

  async stat(sha256: string): Promise<{ size: number } | undefined> {
    const st = await stat(this.blobPath(sha256)).catch(() => undefined);
    return st ? { size: st.size } : undefined;
  }

  async *read(sha256: string, offset: number, chunkBytes: number, signal: AbortSignal): AsyncIterable<Buffer> {
    const stream = createReadStream(this.blobPath(sha256), { start: offset, highWaterMark: chunkBytes, signal });
    try {
      for await (const chunk of stream) yield chunk as Buffer;
    } finally {
      stream.destroy();
    }
  }

  async list(): Promise<string[]> {
    const out: string[] = [];
    for (const prefix of await readdir(this.blobsDir).catch(() => [] as string[])) {
      for (const name of await readdir(join(this.blobsDir, prefix)).catch(() => [] as string[])) {
        if (DIGEST.test(name) && name.startsWith(prefix)) out.push(name);
      }
    }
    return out;
  }

  async remove(digests: string[]): Promise<void> {
    for (const d of digests) await unlink(this.blobPath(d)).catch(ignoreMissing);
  }

  async sweepTemporary(olderThanMs: number): Promise<number> {
    let removed = 0;
    const now = Date.now();
    for (const name of await readdir(this.tmpDir).catch(() => [] as string[])) {
      const path = join(this.tmpDir, name);
      if (this.active.has(path)) continue;
      const st = await stat(path).catch(() => undefined);
      if (!st || (olderThanMs > 0 && now - st.mtimeMs < olderThanMs)) continue;
      await unlink(path).catch(ignoreMissing);
      removed++;
    }
    return removed;
  }
}

class Staged implements StagedFile {
  private readonly hash: Hash = createHash('sha256');
  private bytes = 0;
  private result: { sha256: string; size: number; path: string } | undefined;
  private gone = false;
  private handle: FileHandle | undefined;

  constructor(
    private readonly path: string,
    fh: FileHandle,
    private readonly release: () => void,
  ) {
    this.handle = fh;
  }

  get size(): number {
    return this.bytes;
  }

  async write(data: Uint8Array): Promise<void> {
    if (!this.handle || this.result) throw new Error('staged file is closed');
    let at = 0;
    while (at < data.length) {
      const { bytesWritten } = await this.handle.write(data, at, data.length - at);
      at += bytesWritten;
    }
    this.hash.update(data);
    this.bytes += data.length;
  }

  async finish(): Promise<{ sha256: string; size: number; path: string }> {
    if (this.result) return this.result;
    const fh = this.handle!;
    await fh.sync();
    await fh.close();
    this.handle = undefined;
    this.result = { sha256: this.hash.digest('hex'), size: this.bytes, path: this.path };
    return this.result;
  }

  /** The file was renamed into the blob store: nothing to remove any more. */
  published(): void {
    this.gone = true;
    this.release();
  }

  async discard(): Promise<void> {
    if (this.gone) return;
    this.gone = true;
    await this.handle?.close().catch(() => undefined);
    this.handle = undefined;
    await unlink(this.path).catch(ignoreMissing);
    this.release();
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function ignoreMissing(err: NodeJS.ErrnoException): void {
  if (err.code !== 'ENOENT') throw err;
}
