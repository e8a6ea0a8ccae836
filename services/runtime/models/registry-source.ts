// The registry as a model source: ResolveModel, version files downloaded into a local cache (resumed from
// where a previous download stopped, sha256 checked, renamed into place), and WatchModels followed with
// reconnects. Resolutions already made keep serving while the registry is down.
import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, normalize, sep } from 'node:path';
import { status } from '@grpc/grpc-js';
import {
  ModelRegistryServiceClient,
  WatchEventType,
  type ModelVersion,
  type WatchModelsResponse,
} from '../../../gen/maas/registry/v1/registry.js';
import { createClient, serverStream, TRANSFER_CHANNEL_OPTIONS, unary } from '../client.js';
import { DataLossError } from '../errors.js';
import { isServiceError } from '../grpc-status.js';
import type { Logger } from '../logger.js';
import { sha256File } from './file-digest.js';
import type { LocalVersion, ModelSelector, ModelSource, ModelTask, SourceEvent } from './types.js';

export interface RegistrySourceOptions {
  address: string;
  /** Where downloaded versions are kept: <cacheDir>/<model>/<version>/. */
  cacheDir: string;
  log: Logger;
  /** Only follow these models' events (empty: all). */
  models?: string[];
  /** Per-call deadline for ResolveModel and GetVersion. */
  callTimeoutMs?: number;
}

const MANIFEST = '.maas-version.json';

export class RegistrySource implements ModelSource {
  private readonly client: ModelRegistryServiceClient;
  private readonly listeners = new Set<(e: SourceEvent) => void>();
  private watching: AbortController | undefined;
  private readonly downloads = new Map<string, Promise<LocalVersion>>();

  constructor(private readonly options: RegistrySourceOptions) {
    this.client = createClient(ModelRegistryServiceClient, options.address, { channelOptions: TRANSFER_CHANNEL_OPTIONS });
  }

  async resolve(selector: ModelSelector, signal: AbortSignal) {
    const res = await unary(
      this.client.resolveModel.bind(this.client),
      { ref: { name: selector.name, version: selector.version, alias: selector.version ? undefined : selector.alias || 'default' } },
      { signal, deadline: Date.now() + (this.options.callTimeoutMs ?? 10_000) },
    );
    const v = res.version!;
    return { name: v.model, version: v.version, task: v.task as number as ModelTask, alias: selector.version ? '' : selector.alias || 'default' };
  }

  materialize(name: string, version: number, signal: AbortSignal): Promise<LocalVersion> {
    const key = `${name}:${version}`;
    let p = this.downloads.get(key);
    if (!p) {
      p = this.download(name, version, signal).finally(() => this.downloads.delete(key));
      this.downloads.set(key, p);
    }
    return p;
  }

  watch(listener: (e: SourceEvent) => void): () => void {
    this.listeners.add(listener);
    if (!this.watching) {
      this.watching = new AbortController();
      void this.follow(this.watching.signal);
    }
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) {
        this.watching?.abort();
        this.watching = undefined;
      }
    };
  }

  async close(): Promise<void> {
    this.watching?.abort();
    this.watching = undefined;
    this.client.close();
  }

  private async download(name: string, version: number, signal: AbortSignal): Promise<LocalVersion> {
    const dir = join(this.options.cacheDir, name, String(version));
    const manifestPath = join(dir, MANIFEST);
    if (existsSync(manifestPath)) {
      const cached = JSON.parse(await readFile(manifestPath, 'utf8')) as LocalVersion;
      return { ...cached, dir };
    }
    const res = await unary(this.client.getVersion.bind(this.client), { model: name, version }, { signal, deadline: Date.now() + (this.options.callTimeoutMs ?? 10_000) });
    const v = res.version!;
    await mkdir(dir, { recursive: true });
    for (const file of v.files) await this.downloadFile(v, file, dir, signal);
    const local = toLocal(v, dir);
    await writeFile(manifestPath, JSON.stringify(local));
    this.options.log.info({ model: name, version, files: v.files.length }, 'model version downloaded');
    return local;
  }

  private async downloadFile(v: ModelVersion, file: { name: string; size: number; sha256: string }, dir: string, signal: AbortSignal): Promise<void> {
    const target = safeJoin(dir, file.name);
    if (existsSync(target) && (await sha256File(target)) === file.sha256) return;
    const partial = `${target}.partial`;
    await mkdir(dirname(target), { recursive: true });
    // Resume from whatever a previous, interrupted download left behind.
    let offset = existsSync(partial) ? (await stat(partial)).size : 0;
    if (offset > file.size) {
      await rm(partial);
      offset = 0;
    }
    if (offset < file.size) {
      const out = createWriteStream(partial, { flags: offset > 0 ? 'a' : 'w' });
      try {
        for await (const chunk of serverStream(this.client.downloadVersion.bind(this.client), { model: v.model, version: v.version, file: file.name, offset }, { signal })) {
          if (!out.write(chunk.data)) await new Promise<void>((r) => out.once('drain', () => r()));
        }
      } finally {
        await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
      }
    }
    const digest = await sha256File(partial);
    if (digest !== file.sha256) {
      await rm(partial, { force: true });
      throw new DataLossError(`downloaded ${v.model}:${v.version}/${file.name} does not match its sha256 (${digest} != ${file.sha256})`);
    }
    await rename(partial, target);
  }

  /** Follows WatchModels forever (until aborted), reconnecting with backoff and resuming from the last revision. */
  private async follow(signal: AbortSignal): Promise<void> {
    let revision = 0;
    let backoff = 200;
    while (!signal.aborted) {
      const resuming = revision > 0;
      let inSnapshot = !resuming;
      try {
        for await (const e of serverStream(this.client.watchModels.bind(this.client), { afterRevision: revision, models: this.options.models ?? [] }, { signal })) {
          backoff = 200;
          if (e.type === WatchEventType.WATCH_EVENT_TYPE_SNAPSHOT_END) {
            if (inSnapshot && revision > 0) this.emit({ type: 'resync', model: '' });
            inSnapshot = false;
            revision = Math.max(revision, e.revision);
            continue;
          }
          revision = Math.max(revision, e.revision);
          if (!inSnapshot) this.emitEvent(e);
        }
      } catch (err) {
        if (signal.aborted) return;
        if (isServiceError(err) && err.code === status.OUT_OF_RANGE) {
          // The registry no longer keeps the changes after our revision: start over and re-resolve.
          revision = 0;
          this.emit({ type: 'resync', model: '' });
          continue;
        }
        this.options.log.warn({ err: isServiceError(err) ? err.details : String(err), retryInMs: backoff }, 'registry watch interrupted; reconnecting');
      }
      await new Promise((r) => setTimeout(r, backoff + Math.random() * backoff));
      backoff = Math.min(backoff * 2, 5000);
    }
  }

  private emitEvent(e: WatchModelsResponse): void {
    switch (e.type) {
      case WatchEventType.WATCH_EVENT_TYPE_ALIAS_SET:
        return this.emit({ type: 'alias_set', model: e.model, alias: e.alias, version: e.version });
      case WatchEventType.WATCH_EVENT_TYPE_ALIAS_DELETED:
        return this.emit({ type: 'alias_deleted', model: e.model, alias: e.alias });
      case WatchEventType.WATCH_EVENT_TYPE_VERSION_DELETED:
        return this.emit({ type: 'version_deleted', model: e.model, version: e.version });
      case WatchEventType.WATCH_EVENT_TYPE_MODEL_DELETED:
        return this.emit({ type: 'model_deleted', model: e.model });
      default:
        return;
    }
  }

  private emit(e: SourceEvent): void {
    for (const l of this.listeners) l(e);
  }
}

function toLocal(v: ModelVersion, dir: string): LocalVersion {
  const signatures: LocalVersion['signatures'] = {};
  for (const s of v.signatures) signatures[s.file] = { inputs: s.inputs.map(tensor), outputs: s.outputs.map(tensor) };
  return {
    name: v.model,
    version: v.version,
    task: v.task as number as ModelTask,
    dir,
    files: v.files.map((f) => ({ name: f.name, size: f.size, sha256: f.sha256 })),
    signatures,
    tags: v.tags,
  };
}

function tensor(t: { name: string; type: string; shape: number[]; dimNames: string[] }) {
  return { name: t.name, type: t.type, shape: t.shape, dimNames: t.dimNames };
}

/** Joins a registry file name under dir, refusing anything that would escape it. */
function safeJoin(dir: string, name: string): string {
  const p = normalize(join(dir, name));
  if (!p.startsWith(dir + sep)) throw new DataLossError(`the registry sent an unsafe file name "${name}"`);
  return p;
}
