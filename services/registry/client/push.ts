// Pushing a version: the model is created when missing, each file is hashed, then streamed in 1 MiB chunks
// after a header that declares every size and sha256 (so the registry checks the bytes end to end).
// `ensureDefaultModel` is what model services' `prepareDefaults` call: it pushes only when the model has
// no `default` alias yet.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { status, type ServiceError } from '@grpc/grpc-js';
import type { ModelRegistryServiceClient, UploadVersionRequest, UploadVersionResponse } from '../../../gen/maas/registry/v1/registry.js';
import { unary } from '../../runtime/client.js';
import { authMetadata, connect, tokenOrEnv, type RegistryTarget } from './connect.js';

export const CHUNK_BYTES = 1024 * 1024;

export interface PushFile {
  /** Name inside the version (`model.onnx`, `tokenizer.json`). */
  name: string;
  /** Local path of the content. */
  path: string;
  /** Known digest, to skip hashing the file before sending. */
  sha256?: string;
}

export interface PushProgress {
  /** `hash`: reading the files to declare their digests; `upload`: sending them. */
  phase: 'hash' | 'upload';
  file: string;
  /** Bytes of this file sent so far, and its size. */
  fileBytes: number;
  fileSize: number;
  /** Bytes of all files hashed (phase `hash`) or sent (phase `upload`) so far, and their total. */
  sentBytes: number;
  totalBytes: number;
}

export interface PushOptions {
  model: string;
  /** maas.common.v1.Task value (ModelTask from services/runtime/models/types.ts). */
  task: number;
  files: PushFile[];
  aliases?: string[];
  description?: string;
  sourceUri?: string;
  parentVersion?: number;
  tags?: Record<string, string>;
  /** The model's description when it has to be created. */
  modelDescription?: string;
  onProgress?: (p: PushProgress) => void;
  /** Admin token (default: MAAS_REGISTRY_ADMIN_TOKEN). */
  token?: string;
  signal?: AbortSignal;
}

export interface PushedVersion {
  model: string;
  version: number;
  files: { name: string; size: number; sha256: string }[];
  aliases: string[];
}

/** Creates the model if needed and uploads one version. Rejects with the registry's gRPC error. */
export async function pushVersion(target: RegistryTarget, options: PushOptions): Promise<PushedVersion> {
  const { client, owned } = connect(target);
  const token = tokenOrEnv(options.token);
  try {
    await ensureModel(client, options, token);
    const sized = await Promise.all(options.files.map(async (f) => ({ ...f, size: (await stat(f.path)).size })));
    const totalBytes = sized.reduce((n, f) => n + f.size, 0);
    const files: { name: string; path: string; size: number; sha256: string }[] = [];
    let hashed = 0;
    for (const f of sized) {
      files.push({ ...f, sha256: f.sha256 ?? (await hashFile(f.path, (n) => options.onProgress?.({ phase: 'hash', file: f.name, fileBytes: n, fileSize: f.size, sentBytes: hashed + n, totalBytes }))) });
      hashed += f.size;
    }
    const response = await upload(client, options, files, token);
    const v = response.version!;
    return { model: v.model, version: v.version, files: v.files, aliases: v.aliases };
  } finally {
    if (owned) client.close();
  }
}

async function ensureModel(client: ModelRegistryServiceClient, options: PushOptions, token: string | undefined): Promise<void> {
  try {
    const { model } = await unary(client.getModel.bind(client), { name: options.model }, { signal: options.signal });
    if (model && model.task !== options.task) {
      throw Object.assign(new Error(`model "${options.model}" exists with task ${model.task}, not ${options.task}`), {
        code: status.FAILED_PRECONDITION,
        details: `model "${options.model}" exists with another task (${model.task}, not ${options.task})`,
      });
    }
    return;
  } catch (err) {
    if ((err as ServiceError).code !== status.NOT_FOUND) throw err;
  }
  try {
    await unary(
      client.createModel.bind(client),
      { name: options.model, task: options.task, description: options.modelDescription ?? '', tags: {} },
      { signal: options.signal, metadata: authMetadata(token) },
    );
  } catch (err) {
    // Someone else created it meanwhile: fine.
    if ((err as ServiceError).code !== status.ALREADY_EXISTS) throw err;
  }
}

function upload(
  client: ModelRegistryServiceClient,
  options: PushOptions,
  files: { name: string; path: string; size: number; sha256: string }[],
  token: string | undefined,
): Promise<UploadVersionResponse> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const call = client.uploadVersion(authMetadata(token), {}, (err, res) => {
      settled = true;
      options.signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve(res);
    });
    const onAbort = () => call.cancel();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const send = async (message: UploadVersionRequest) => {
      if (!call.write(message)) await new Promise<void>((r) => call.once('drain', () => r()));
    };
    (async () => {
      await send({
        header: {
          model: options.model,
          files: files.map((f) => ({ name: f.name, size: f.size, sha256: f.sha256 })),
          sourceUri: options.sourceUri ?? '',
          parentVersion: options.parentVersion ?? 0,
          description: options.description ?? '',
          tags: options.tags ?? {},
          aliases: options.aliases ?? [],
        },
      });
      const totalBytes = files.reduce((n, f) => n + f.size, 0);
      let sentBytes = 0;
      for (const f of files) {
        let fileBytes = 0;
        options.onProgress?.({ phase: 'upload', file: f.name, fileBytes, fileSize: f.size, sentBytes, totalBytes });
        for await (const data of createReadStream(f.path, { highWaterMark: CHUNK_BYTES })) {
          if (settled) return;
          await send({ chunk: { file: f.name, data: data as Buffer } });
          fileBytes += (data as Buffer).length;
          sentBytes += (data as Buffer).length;
          options.onProgress?.({ phase: 'upload', file: f.name, fileBytes, fileSize: f.size, sentBytes, totalBytes });
        }
      }
      call.end();
    })().catch((err: unknown) => {
      // A local read error: stop the upload (the registry keeps nothing) and report the cause.
      call.cancel();
      if (!settled) {
        settled = true;
        reject(err);
      }
    });
  });
}

async function hashFile(path: string, progress: (bytes: number) => void): Promise<string> {
  const h = createHash('sha256');
  let n = 0;
  for await (const data of createReadStream(path, { highWaterMark: CHUNK_BYTES })) {
    h.update(data as Buffer);
    n += (data as Buffer).length;
    progress(n);
  }
  return h.digest('hex');
}

export interface EnsureDefaultOptions {
  model: string;
  task: number;
  /** The alias whose presence means "already there" (default `default`). */
  alias?: string;
  /** Builds (or finds in a cache) the files; called only when a push is needed. */
  files: () => Promise<{ name: string; path: string }[]>;
  description?: string;
  sourceUri?: string;
  tags?: Record<string, string>;
  token?: string;
  signal?: AbortSignal;
}

/**
 * Pushes a model's files and points `alias` at them, unless the model already has that alias.
 * Returns the version the alias names, and whether this call pushed it.
 */
export async function ensureDefaultModel(target: RegistryTarget, options: EnsureDefaultOptions): Promise<{ version: number; pushed: boolean }> {
  const alias = options.alias ?? 'default';
  const { client, owned } = connect(target);
  try {
    try {
      const { model } = await unary(client.getModel.bind(client), { name: options.model }, { signal: options.signal });
      const existing = model?.aliases[alias];
      if (existing !== undefined) return { version: existing, pushed: false };
    } catch (err) {
      if ((err as ServiceError).code !== status.NOT_FOUND) throw err;
    }
    const files = await options.files();
    const pushed = await pushVersion(client, {
      model: options.model,
      task: options.task,
      files,
      aliases: [alias],
      description: options.description,
      sourceUri: options.sourceUri,
      tags: options.tags,
      modelDescription: options.description,
      token: options.token,
      signal: options.signal,
    });
    return { version: pushed.version, pushed: true };
  } finally {
    if (owned) client.close();
  }
}
