// Downloading a version's files: each file goes to `<dest>.partial`, resumes from that file's size after an
// interruption (also across runs), is checked against its sha256 and only then renamed into place.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, normalize, sep } from 'node:path';
import { status, type ServiceError } from '@grpc/grpc-js';
import type { ModelVersion } from '../../../gen/maas/registry/v1/registry.js';
import { serverStream, unary } from '../../runtime/client.js';
import { connect, type RegistryTarget } from './connect.js';

export interface DownloadProgress {
  file: string;
  /** Bytes of this file on disk so far (resumed bytes included), and its size. */
  fileBytes: number;
  fileSize: number;
}

export interface DownloadFileOptions {
  model: string;
  version: number;
  file: string;
  /** Where the file ends up. */
  dest: string;
  /** Expected digest (default: the one the registry sends with the first chunk). */
  sha256?: string;
  onProgress?: (p: DownloadProgress) => void;
  /** Attempts after an interrupted stream (each resumes where the last stopped). Default 5. */
  retries?: number;
  signal?: AbortSignal;
}

/** Errors after which trying again (from where the stream stopped) can succeed. */
const RETRYABLE = new Set([status.UNAVAILABLE, status.INTERNAL, status.UNKNOWN, status.RESOURCE_EXHAUSTED, status.ABORTED]);

/** Downloads one file of a version, resuming and verifying; returns its size and sha256. */
export async function downloadFile(target: RegistryTarget, options: DownloadFileOptions): Promise<{ size: number; sha256: string }> {
  const { client, owned } = connect(target);
  const partial = `${options.dest}.partial`;
  try {
    await mkdir(dirname(options.dest), { recursive: true });
    const hash = createHash('sha256');
    let offset = 0;
    // What an earlier run left: hashed again (it is on local disk) and continued.
    const existing = await stat(partial).catch(() => undefined);
    if (existing) {
      for await (const c of createReadStream(partial)) hash.update(c as Buffer);
      offset = existing.size;
    }
    let size = -1;
    let expected = options.sha256;
    for (let attempt = 0; ; attempt++) {
      const out = createWriteStream(partial, { flags: 'a' });
      try {
        const stream = serverStream(client.downloadVersion.bind(client), { model: options.model, version: options.version, file: options.file, offset }, { signal: options.signal });
        for await (const chunk of stream) {
          if (chunk.file) {
            size = chunk.file.size;
            expected ??= chunk.file.sha256;
          }
          if (chunk.offset !== offset) throw new Error(`the registry sent bytes from offset ${chunk.offset}, expected ${offset}`);
          if (chunk.data.length > 0) {
            hash.update(chunk.data);
            if (!out.write(chunk.data)) await new Promise<void>((r) => out.once('drain', () => r()));
            offset += chunk.data.length;
          }
          options.onProgress?.({ file: options.file, fileBytes: offset, fileSize: size });
        }
        await closeStream(out);
        break;
      } catch (err) {
        await closeStream(out).catch(() => undefined);
        const code = (err as ServiceError).code;
        if (code === status.OUT_OF_RANGE && offset > 0) {
          // The partial file is longer than the registry's: it is not this file's beginning. Start over.
          await rm(partial, { force: true });
          return downloadFile(client, options);
        }
        if (options.signal?.aborted || !RETRYABLE.has(code) || attempt >= (options.retries ?? 5)) throw err;
        await new Promise((r) => setTimeout(r, Math.min(200 * 2 ** attempt, 3000)));
      }
    }
    const digest = hash.digest('hex');
    if (size >= 0 && offset !== size) throw new Error(`"${options.file}" ended after ${offset} of ${size} bytes`);
    if (expected && digest !== expected) {
      await rm(partial, { force: true });
      throw Object.assign(new Error(`"${options.file}" arrived with sha256 ${digest}, expected ${expected}; the partial download was removed`), {
        code: status.DATA_LOSS,
        details: `"${options.file}" did not match its sha256`,
      });
    }
    await rename(partial, options.dest);
    return { size: offset, sha256: digest };
  } finally {
    if (owned) client.close();
  }
}

export interface PullOptions {
  /** Exact version, or an alias (default `default` when neither). */
  version?: number;
  alias?: string;
  onProgress?: (p: DownloadProgress & { version: ModelVersion }) => void;
  signal?: AbortSignal;
}

/** Resolves a model reference and downloads all its files under `dir`; returns the version. */
export async function pullVersion(target: RegistryTarget, model: string, dir: string, options: PullOptions = {}): Promise<ModelVersion> {
  const { client, owned } = connect(target);
  try {
    const ref = options.version !== undefined ? { name: model, version: options.version } : { name: model, alias: options.alias || 'default' };
    const { version } = await unary(client.resolveModel.bind(client), { ref }, { signal: options.signal });
    const v = version!;
    for (const f of v.files) {
      const dest = normalize(join(dir, f.name));
      if (!dest.startsWith(normalize(dir) + sep)) throw new Error(`the registry sent an unsafe file name "${f.name}"`);
      await downloadFile(client, {
        model: v.model,
        version: v.version,
        file: f.name,
        dest,
        sha256: f.sha256,
        signal: options.signal,
        onProgress: options.onProgress && ((p) => options.onProgress!({ ...p, version: v })),
      });
    }
    return v;
  } finally {
    if (owned) client.close();
  }
}

function closeStream(out: NodeJS.WritableStream & { closed?: boolean }): Promise<void> {
  return new Promise((resolve, reject) => {
    if ((out as { closed?: boolean }).closed) return resolve();
    out.once('error', reject);
    out.end(() => resolve());
  });
}
