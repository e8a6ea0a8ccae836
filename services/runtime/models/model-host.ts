// Holds the loaded versions of a model service's models: resolves selectors through a source (the registry
// or a local folder), loads versions with the engine's loader, lends them to requests, follows alias moves
// (the new version is loaded beside the old, traffic switches atomically, the old one unloads when its last
// request releases it) and unloads the least recently used versions over the memory budget.
import type { Logger } from '../logger.js';
import { latencyHistogram, observableGauge } from '../telemetry/metrics.js';
import { abortReason, FailedPreconditionError, throwIfAborted } from '../errors.js';
import type { Loaded, LocalVersion, ModelLease, ModelLoader, ModelSelector, ModelSource, ModelTask, SourceEvent } from './types.js';

export interface ModelHostOptions<M> {
  source: ModelSource;
  loader: ModelLoader<M>;
  /** Tasks this service serves; a model of another task is FAILED_PRECONDITION. */
  tasks: ModelTask[];
  /** Used when a selector's name is empty. */
  defaultModel: string;
  /** Loaded versions beyond this many bytes are unloaded, least recently used first (those not in use). */
  memoryBudgetBytes: number;
  log: Logger;
  /** Called after every load and unload (for metrics and logs). */
  onChange?: (event: { type: 'loaded' | 'unloaded' | 'swapped'; name: string; version: number; ms?: number; alias?: string; from?: number }) => void;
}

export interface LoadedInfo {
  name: string;
  version: number;
  task: ModelTask;
  /** Aliases currently resolved to this version in this process. */
  aliases: string[];
  bytes: number;
  executionProvider: string;
  inUse: number;
  lastUsedAt: number;
  local: LocalVersion;
}

interface Entry<M> {
  key: string;
  name: string;
  version: number;
  ready: Promise<Loaded<M> & { local: LocalVersion }>;
  loaded?: Loaded<M> & { local: LocalVersion };
  leases: number;
  lastUsed: number;
  /** Set when nothing should reach it any more: unloaded as soon as leases drop to zero. */
  retired: boolean;
  closed: boolean;
}

interface Resolution {
  name: string;
  version: number;
  task: ModelTask;
  alias: string;
}

let loadTime: ReturnType<typeof latencyHistogram> | undefined;

export class ModelHost<M> {
  private readonly entries = new Map<string, Entry<M>>();
  /** "name@alias" → the version it resolves to in this process. */
  private readonly aliases = new Map<string, Resolution>();
  private readonly tasks: Set<ModelTask>;
  private readonly unwatch: () => void;
  private events: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(private readonly options: ModelHostOptions<M>) {
    this.tasks = new Set(options.tasks);
    loadTime ??= latencyHistogram('maas_model_load_ms', 'time to fetch and load a model version, by model');
    observableGauge('maas_model_loaded_bytes', 'estimated memory of each loaded model version, by model and version', () =>
      this.list().map((i) => ({ value: i.bytes, attributes: { model: i.name, version: String(i.version), execution_provider: i.executionProvider } })),
    );
    this.unwatch = options.source.watch((event) => {
      this.events = this.events.then(() => this.apply(event)).catch((err) => this.options.log.error({ err, event }, 'could not apply a model change'));
    });
  }

  get defaultModel(): string {
    return this.options.defaultModel;
  }

  /** Resolves the selector and lends the loaded version; release() the lease when the request is done. */
  async acquire(selector: ModelSelector, signal: AbortSignal): Promise<ModelLease<M>> {
    for (;;) {
      throwIfAborted(signal);
      const resolution = await this.resolve(selector, signal);
      const entry = this.entry(resolution.name, resolution.version);
      const loaded = await abortable(entry.ready, signal);
      // A swap may have retired the entry while we waited: resolve again, the alias names another version now.
      if (entry.closed) continue;
      entry.leases++;
      entry.lastUsed = Date.now();
      let released = false;
      return {
        model: loaded.model,
        version: loaded.local,
        executionProvider: loaded.executionProvider,
        alias: resolution.alias,
        release: () => {
          if (released) return;
          released = true;
          entry.leases--;
          if (entry.retired && entry.leases === 0) void this.unload(entry);
        },
      };
    }
  }

  /** Loads a selector's version ahead of the first request (the default model at start). */
  async preload(selector: ModelSelector, signal: AbortSignal = new AbortController().signal): Promise<LoadedInfo> {
    const lease = await this.acquire(selector, signal);
    lease.release();
    return this.list().find((i) => i.name === lease.version.name && i.version === lease.version.version)!;
  }

  /** Resolves without loading (GetModelInfo for a model that is not loaded yet, task checks). */
  async resolve(selector: ModelSelector, signal: AbortSignal): Promise<Resolution> {
    const name = selector.name || this.options.defaultModel;
    let resolution: Resolution;
    if (selector.version !== undefined && selector.version > 0) {
      const key = `${name}:${selector.version}`;
      const known = this.entries.get(key)?.loaded?.local;
      resolution = known
        ? { name, version: known.version, task: known.task, alias: '' }
        : await this.options.source.resolve({ name, version: selector.version }, signal);
    } else {
      const alias = selector.alias || 'default';
      const key = `${name}@${alias}`;
      const cached = this.aliases.get(key);
      if (cached) resolution = cached;
      else {
        resolution = { ...(await this.options.source.resolve({ name, alias }, signal)), alias };
        this.aliases.set(key, resolution);
      }
    }
    if (!this.tasks.has(resolution.task)) {
      throw new FailedPreconditionError(
        `model "${name}" is a ${taskName(resolution.task)} model; this service serves ${[...this.tasks].map(taskName).join(' and ')} models`,
        [{ type: 'TASK', subject: name, description: `task is ${taskName(resolution.task)}` }],
        { reason: 'WRONG_TASK', metadata: { model: name, task: taskName(resolution.task) } },
      );
    }
    return resolution;
  }

  list(): LoadedInfo[] {
    const out: LoadedInfo[] = [];
    for (const e of this.entries.values()) {
      if (!e.loaded || e.closed) continue;
      const aliases = [...this.aliases.values()].filter((r) => r.name === e.name && r.version === e.version).map((r) => r.alias);
      out.push({
        name: e.name,
        version: e.version,
        task: e.loaded.local.task,
        aliases,
        bytes: e.loaded.bytes,
        executionProvider: e.loaded.executionProvider,
        inUse: e.leases,
        lastUsedAt: e.lastUsed,
        local: e.loaded.local,
      });
    }
    return out.sort((a, b) => a.name.localeCompare(b.name) || a.version - b.version);
  }

  /** Stops following the source and unloads everything (waiting for leases up to timeoutMs). */
  async close(timeoutMs = 10_000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unwatch();
    const end = Date.now() + timeoutMs;
    while ([...this.entries.values()].some((e) => e.leases > 0) && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    await Promise.all([...this.entries.values()].map((e) => this.unload(e)));
  }

  private entry(name: string, version: number): Entry<M> {
    const key = `${name}:${version}`;
    const existing = this.entries.get(key);
    if (existing && !existing.closed) return existing;
    const entry: Entry<M> = { key, name, version, leases: 0, lastUsed: Date.now(), retired: false, closed: false, ready: undefined as never };
    entry.ready = this.load(entry);
    entry.ready.catch(() => {
      if (this.entries.get(key) === entry) this.entries.delete(key);
    });
    this.entries.set(key, entry);
    return entry;
  }

  private async load(entry: Entry<M>): Promise<Loaded<M> & { local: LocalVersion }> {
    const started = performance.now();
    // Loads are not tied to the first caller's signal: others may be waiting on the same load.
    const signal = new AbortController().signal;
    const local = await this.options.source.materialize(entry.name, entry.version, signal);
    if (!this.tasks.has(local.task)) {
      throw new FailedPreconditionError(`model "${entry.name}" version ${entry.version} is a ${taskName(local.task)} model`, [], { reason: 'WRONG_TASK' });
    }
    const loaded = { ...(await this.options.loader(local, signal)), local };
    entry.loaded = loaded;
    const ms = performance.now() - started;
    loadTime?.record(ms, { model: entry.name });
    this.options.log.info({ model: entry.name, version: entry.version, ms: Math.round(ms), bytes: loaded.bytes, executionProvider: loaded.executionProvider }, 'model loaded');
    this.options.onChange?.({ type: 'loaded', name: entry.name, version: entry.version, ms });
    queueMicrotask(() => this.enforceBudget(entry));
    return loaded;
  }

  private async unload(entry: Entry<M>): Promise<void> {
    if (entry.closed) return;
    entry.closed = true;
    if (this.entries.get(entry.key) === entry) this.entries.delete(entry.key);
    const loaded = await entry.ready.catch(() => undefined);
    if (!loaded) return;
    try {
      await loaded.close();
    } catch (err) {
      this.options.log.warn({ err, model: entry.name, version: entry.version }, 'error while unloading a model');
    }
    this.options.log.info({ model: entry.name, version: entry.version }, 'model unloaded');
    this.options.onChange?.({ type: 'unloaded', name: entry.name, version: entry.version });
  }

  private enforceBudget(keep: Entry<M>): void {
    let total = [...this.entries.values()].reduce((s, e) => s + (e.loaded?.bytes ?? 0), 0);
    if (total <= this.options.memoryBudgetBytes) return;
    const idle = [...this.entries.values()].filter((e) => e !== keep && e.loaded && e.leases === 0).sort((a, b) => a.lastUsed - b.lastUsed);
    for (const e of idle) {
      if (total <= this.options.memoryBudgetBytes) break;
      total -= e.loaded!.bytes;
      this.options.log.info({ model: e.name, version: e.version }, 'unloading the least recently used model (memory budget)');
      void this.unload(e);
    }
  }

  private isReferenced(name: string, version: number): boolean {
    return [...this.aliases.values()].some((r) => r.name === name && r.version === version);
  }

  /** Retires a version nothing resolves to any more: unloaded now if idle, else when its last lease ends. */
  private retireIfUnreferenced(name: string, version: number): void {
    const entry = this.entries.get(`${name}:${version}`);
    if (!entry || this.isReferenced(name, version)) return;
    entry.retired = true;
    if (entry.leases === 0) void this.unload(entry);
  }

  private async apply(event: SourceEvent): Promise<void> {
    if (this.closed) return;
    if (event.type === 'alias_set' && event.alias && event.version !== undefined) {
      await this.moveAlias(event.model, event.alias, event.version);
    } else if (event.type === 'alias_deleted' && event.alias) {
      const old = this.aliases.get(`${event.model}@${event.alias}`);
      this.aliases.delete(`${event.model}@${event.alias}`);
      if (old) this.retireIfUnreferenced(old.name, old.version);
    } else if (event.type === 'version_deleted' || event.type === 'model_deleted') {
      for (const [key, r] of this.aliases) {
        if (r.name === event.model && (event.type === 'model_deleted' || r.version === event.version)) this.aliases.delete(key);
      }
      for (const e of [...this.entries.values()]) {
        if (e.name === event.model && (event.type === 'model_deleted' || e.version === event.version)) this.retireIfUnreferenced(e.name, e.version);
      }
    } else if (event.type === 'resync') {
      // The source lost track of changes: re-resolve every alias this process uses.
      for (const r of [...this.aliases.values()]) {
        try {
          const now = await this.options.source.resolve({ name: r.name, alias: r.alias }, new AbortController().signal);
          await this.moveAlias(r.name, r.alias, now.version);
        } catch (err) {
          this.options.log.warn({ err: String(err), model: r.name, alias: r.alias }, 'alias no longer resolves; forgetting it');
          this.aliases.delete(`${r.name}@${r.alias}`);
          this.retireIfUnreferenced(r.name, r.version);
        }
      }
    }
  }

  private async moveAlias(name: string, alias: string, version: number): Promise<void> {
    const key = `${name}@${alias}`;
    const old = this.aliases.get(key);
    if (!old || old.version === version) return;
    const oldEntry = this.entries.get(`${name}:${old.version}`);
    if (oldEntry?.loaded && !oldEntry.closed) {
      // In use: load the new version beside the old one before switching, so no request waits or fails.
      try {
        const entry = this.entry(name, version);
        await entry.ready;
      } catch (err) {
        this.options.log.error({ err, model: name, alias, version }, 'could not load the version an alias moved to; still serving the old one');
        return;
      }
    }
    const task = this.entries.get(`${name}:${version}`)?.loaded?.local.task ?? old.task;
    this.aliases.set(key, { name, version, task, alias });
    this.options.log.info({ model: name, alias, from: old.version, to: version }, 'alias moved');
    this.options.onChange?.({ type: 'swapped', name, version, alias, from: old.version });
    this.retireIfUnreferenced(name, old.version);
  }
}

function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(abortReason(signal));
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(abortReason(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

const TASK_NAMES: Record<number, string> = { 1: 'embedding', 2: 'generation', 3: 'ocr', 4: 'image classification' };
export function taskName(task: ModelTask): string {
  return TASK_NAMES[task] ?? `unknown (${task})`;
}
