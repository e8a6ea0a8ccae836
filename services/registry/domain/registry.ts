// The registry's rules: models, numbered immutable versions, aliases, lineage, and the event log that the
// watch stream follows. Every write runs in one store transaction holding the registry-wide write lock, so
// two replicas on one PostgreSQL behave as one registry.
import {
  AlreadyExistsError,
  DataLossError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  OutOfRangeError,
  throwIfAborted,
  UnavailableError,
} from '../../runtime/errors.js';
import type { Logger } from '../../runtime/logger.js';
import { ModelTask } from '../../runtime/models/types.js';
import { EventFeed } from './event-feed.js';
import { checkAlias, checkName, checkTags, checkText, checkVersionNumber } from './names.js';
import type { ArtifactStore, MetadataStore, WriteTx } from './store.js';
import { EventType, type FileRecord, type Limits, type ModelRecord, type OnnxValidator, type RegistryEvent, type Tags, type VersionRecord, type VersionSelector } from './types.js';
import { checkHeader, receiveFiles, type UploadPart } from './upload.js';

/** Most model names one WatchModels call may filter on. */
const MAX_WATCH_MODELS = 1000;

export interface RegistryOptions {
  store: MetadataStore;
  artifacts: ArtifactStore;
  validateOnnx: OnnxValidator;
  limits: Limits;
  /** Download message size. */
  chunkBytes: number;
  /** Events kept for watchers that resume (older ones are pruned). */
  watchHistory: number;
  /** How often the event log is polled for other replicas' changes (a fallback when NOTIFY is missed). */
  pollIntervalMs: number;
  /** How often garbage is collected (0: only at start and after deletes). */
  gcIntervalMs: number;
  /** Temporary upload files untouched this long are leftovers of a crashed upload. */
  tempGraceMs: number;
  log: Logger;
  now?: () => Date;
}

export interface Page<T> {
  items: T[];
  nextPageToken: string;
}

export interface DownloadStream {
  file: FileRecord;
  chunks: AsyncIterable<{ offset: number; data: Buffer }>;
}

const DEFAULT_PAGE = 100;
const MAX_PAGE = 1000;
const TASKS = new Set<number>(Object.values(ModelTask).filter((v): v is number => typeof v === 'number'));

export class Registry {
  readonly feed: EventFeed;
  private readonly store: MetadataStore;
  private readonly artifacts: ArtifactStore;
  private readonly log: Logger;
  private readonly now: () => Date;
  private gcTimer: NodeJS.Timeout | undefined;
  private gcSoon: NodeJS.Timeout | undefined;
  private gcRunning: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly options: RegistryOptions) {
    this.store = options.store;
    this.artifacts = options.artifacts;
    this.log = options.log;
    this.now = options.now ?? (() => new Date());
    this.feed = new EventFeed(this.store, { pollIntervalMs: options.pollIntervalMs, bufferSize: 2048, log: options.log });
  }

  /** Follows the event log and collects what a crash left behind. */
  async start(): Promise<void> {
    await this.feed.start();
    // A SQLite registry is the only process using its data folder, so every temporary file at start is a
    // leftover; with PostgreSQL another replica may be uploading into a shared volume, so only old ones are.
    await this.collectGarbage(this.store.kind === 'sqlite' ? 0 : this.options.tempGraceMs);
    if (this.options.gcIntervalMs > 0) {
      this.gcTimer = setInterval(() => void this.collectGarbage().catch(() => undefined), this.options.gcIntervalMs);
      this.gcTimer.unref();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.gcTimer) clearInterval(this.gcTimer);
    if (this.gcSoon) clearTimeout(this.gcSoon);
    await this.gcRunning?.catch(() => undefined);
    await this.feed.close();
  }

  // ---- models ----

  async createModel(input: { name: string; task: number; description: string; tags: Tags }): Promise<ModelRecord> {
    const name = checkName('name', input.name);
    if (!TASKS.has(input.task)) throw InvalidArgumentError.field('task', 'must be one of the tasks (TASK_EMBEDDING, TASK_GENERATION, TASK_OCR, TASK_IMAGE_CLASSIFICATION)');
    const description = checkText('description', input.description);
    const tags = checkTags('tags', input.tags);
    return this.store.write(async (tx) => {
      if (await tx.getModel(name)) throw new AlreadyExistsError('model', name);
      await tx.insertModel({ name, task: input.task, description, tags, time: this.now() });
      return (await tx.getModel(name))!;
    });
  }

  async getModel(name: string): Promise<ModelRecord> {
    checkName('name', name);
    const model = await this.store.read((tx) => tx.getModel(name));
    if (!model) throw new NotFoundError('model', name);
    return model;
  }

  async listModels(input: { pageSize: number; pageToken: string; task: number; tags: Tags }): Promise<Page<ModelRecord>> {
    const size = pageSize(input.pageSize);
    let after = decodeToken(input.pageToken, 'page_token');
    const wanted = Object.entries(input.tags);
    const items: ModelRecord[] = [];
    // Filters are applied here (tags are a JSON column), scanning in name order until the page is full.
    for (;;) {
      const batch = await this.store.read((tx) => tx.listModels(after, Math.max(size + 1, 100)));
      for (const m of batch) {
        if (input.task !== 0 && m.task !== input.task) continue;
        if (wanted.some(([k, v]) => m.tags[k] !== v)) continue;
        items.push(m);
        if (items.length > size) break;
      }
      if (items.length > size || batch.length < Math.max(size + 1, 100)) break;
      after = batch[batch.length - 1]!.name;
    }
    const page = items.slice(0, size);
    return { items: page, nextPageToken: items.length > size ? encodeToken(page[page.length - 1]!.name) : '' };
  }

  async updateModel(name: string, changes: { description: string; tags: Tags }, mask: string[]): Promise<ModelRecord> {
    checkName('name', name);
    const set = updateMask(mask);
    const description = set.has('description') ? checkText('description', changes.description) : undefined;
    const tags = set.has('tags') ? checkTags('tags', changes.tags) : undefined;
    return this.store.write(async (tx) => {
      if (!(await tx.getModel(name))) throw new NotFoundError('model', name);
      await tx.updateModel(name, { description, tags, time: this.now() });
      return (await tx.getModel(name))!;
    });
  }

  async deleteModel(name: string, force: boolean): Promise<void> {
    checkName('name', name);
    await this.store.write(async (tx) => {
      const model = await tx.getModel(name);
      if (!model) throw new NotFoundError('model', name);
      if (!force && (await tx.listVersions(name, 0, 1)).length > 0) {
        throw new FailedPreconditionError(`model "${name}" still has versions; delete them first or set force`, [
          { type: 'VERSIONS_EXIST', subject: `models/${name}`, description: 'the model has versions' },
        ]);
      }
      await tx.deleteModel(name);
      await tx.appendEvent({ type: EventType.MODEL_DELETED, model: name, version: 0, alias: '', task: model.task });
    });
    this.changed(true);
  }

  // ---- versions ----

  /** Receives a version (header, then chunks) and commits it; see upload.ts. */
  async upload(parts: AsyncIterable<UploadPart>, signal: AbortSignal): Promise<VersionRecord> {
    const it = parts[Symbol.asyncIterator]();
    const first = await it.next();
    if (first.done || !first.value.header) throw InvalidArgumentError.field('header', 'the first message of an upload must be the header');
    const header = checkHeader(first.value.header, this.options.limits);
    // Fail fast on names that are unknown now; the commit checks again under the lock.
    const model = await this.store.read((tx) => tx.getModel(header.model));
    if (!model) throw new NotFoundError('model', header.model);
    if (header.parentVersion > 0 && !(await this.store.read((tx) => tx.getVersion(header.model, header.parentVersion)))) {
      throw new NotFoundError('version', `${header.model}:${header.parentVersion}`, `parent version ${header.parentVersion} of model "${header.model}" was not found`);
    }
    const received = await receiveFiles(header, it, { stage: () => this.artifacts.stage(), validateOnnx: this.options.validateOnnx, signal });
    try {
      throwIfAborted(signal);
      const version = await this.store.write(async (tx) => {
        const current = await tx.getModel(header.model);
        if (!current) throw new NotFoundError('model', header.model);
        if (header.parentVersion > 0 && !(await tx.getVersion(header.model, header.parentVersion))) {
          throw new NotFoundError('version', `${header.model}:${header.parentVersion}`);
        }
        for (const f of received.files) await this.artifacts.publish(received.staged.get(f.name)!, f.sha256);
        const number = current.latestVersion + 1;
        const time = this.now();
        await tx.insertVersion({
          model: header.model,
          version: number,
          files: received.files,
          signatures: received.signatures,
          description: header.description,
          tags: header.tags,
          sourceUri: header.sourceUri,
          parentVersion: header.parentVersion,
          time,
        });
        await tx.updateModel(header.model, { latestVersion: number, time });
        await tx.appendEvent({ type: EventType.VERSION_CREATED, model: header.model, version: number, alias: '', task: current.task });
        for (const alias of header.aliases) await this.moveAlias(tx, current, alias, number);
        return (await tx.getVersion(header.model, number))!;
      });
      this.log.info({ model: version.model, version: version.version, files: version.files.length, bytes: version.files.reduce((n, f) => n + f.size, 0) }, 'version committed');
      return version;
    } finally {
      await Promise.all([...received.staged.values()].map((s) => s.discard()));
      this.changed(false);
    }
  }

  async getVersion(model: string, version: number): Promise<VersionRecord> {
    checkName('model', model);
    checkVersionNumber('version', version);
    const v = await this.store.read((tx) => tx.getVersion(model, version));
    if (!v) throw await this.versionNotFound(model, version);
    return v;
  }

  async listVersions(model: string, input: { pageSize: number; pageToken: string }): Promise<Page<VersionRecord>> {
    checkName('model', model);
    const size = pageSize(input.pageSize);
    const token = decodeToken(input.pageToken, 'page_token');
    const below = token === '' ? 0 : Number(token);
    if (!Number.isSafeInteger(below) || below < 0) throw InvalidArgumentError.field('page_token', 'is not a token this registry issued');
    return this.store.read(async (tx) => {
      if (!(await tx.getModel(model))) throw new NotFoundError('model', model);
      const rows = await tx.listVersions(model, below, size + 1);
      const items = rows.slice(0, size);
      return { items, nextPageToken: rows.length > size ? encodeToken(String(items[items.length - 1]!.version)) : '' };
    });
  }

  async updateVersion(model: string, version: number, changes: { description: string; tags: Tags }, mask: string[]): Promise<VersionRecord> {
    checkName('model', model);
    checkVersionNumber('version', version);
    const set = updateMask(mask);
    const description = set.has('description') ? checkText('description', changes.description) : undefined;
    const tags = set.has('tags') ? checkTags('tags', changes.tags) : undefined;
    return this.store.write(async (tx) => {
      if (!(await tx.getVersion(model, version))) throw await this.versionNotFound(model, version, tx);
      await tx.updateVersion(model, version, { description, tags });
      return (await tx.getVersion(model, version))!;
    });
  }

  async deleteVersion(model: string, version: number): Promise<void> {
    checkName('model', model);
    checkVersionNumber('version', version);
    await this.store.write(async (tx) => {
      const v = await tx.getVersion(model, version);
      if (!v) throw await this.versionNotFound(model, version, tx);
      if (v.aliases.length > 0) {
        throw new FailedPreconditionError(
          `version ${version} of model "${model}" is the target of alias${v.aliases.length > 1 ? 'es' : ''} ${v.aliases.join(', ')}; move or delete ${v.aliases.length > 1 ? 'them' : 'it'} first`,
          v.aliases.map((a) => ({ type: 'ALIAS_POINTS_HERE', subject: `models/${model}/aliases/${a}`, description: `alias "${a}" points at version ${version}` })),
        );
      }
      await tx.deleteVersion(model, version);
      await tx.appendEvent({ type: EventType.VERSION_DELETED, model, version, alias: '', task: v.task });
    });
    this.changed(true);
  }

  // ---- aliases ----

  async setAlias(model: string, alias: string, version: number): Promise<ModelRecord> {
    checkName('model', model);
    checkAlias('alias', alias);
    checkVersionNumber('version', version);
    const result = await this.store.write(async (tx) => {
      const m = await tx.getModel(model);
      if (!m) throw new NotFoundError('model', model);
      if (!(await tx.getVersion(model, version))) throw await this.versionNotFound(model, version, tx);
      await this.moveAlias(tx, m, alias, version);
      return (await tx.getModel(model))!;
    });
    this.changed(false);
    return result;
  }

  async deleteAlias(model: string, alias: string): Promise<void> {
    checkName('model', model);
    checkAlias('alias', alias);
    await this.store.write(async (tx) => {
      const m = await tx.getModel(model);
      if (!m) throw new NotFoundError('model', model);
      const target = m.aliases[alias];
      if (target === undefined) throw new NotFoundError('alias', `${model}@${alias}`, `model "${model}" has no alias "${alias}"`);
      await tx.deleteAlias(model, alias);
      await tx.updateModel(model, { time: this.now() });
      await tx.appendEvent({ type: EventType.ALIAS_DELETED, model, version: target, alias, task: m.task });
    });
    this.changed(false);
  }

  /** Points an alias at a version, emitting ALIAS_SET only when it actually moves. */
  private async moveAlias(tx: WriteTx, model: ModelRecord, alias: string, version: number): Promise<void> {
    const current = (await tx.getModel(model.name))!.aliases[alias];
    if (current === version) return;
    await tx.setAlias(model.name, alias, version);
    await tx.updateModel(model.name, { time: this.now() });
    await tx.appendEvent({ type: EventType.ALIAS_SET, model: model.name, version, alias, task: model.task });
  }

  /** A reference (version, alias, or `default`) → the version it names now, with the revision it was read at. */
  async resolve(name: string, selector: VersionSelector): Promise<{ version: VersionRecord; revision: number }> {
    checkName('ref.name', name);
    if (selector.version !== undefined) checkVersionNumber('ref.version', selector.version);
    const alias = selector.version === undefined ? selector.alias || 'default' : undefined;
    if (alias !== undefined) checkAlias('ref.alias', alias);
    return this.store.read(async (tx) => {
      // The revision is read first: the answer is at least as new as it, never older.
      const revision = await tx.revision();
      const model = await tx.getModel(name);
      if (!model) throw new NotFoundError('model', name);
      let number = selector.version;
      if (alias !== undefined) {
        number = model.aliases[alias];
        if (number === undefined) throw new NotFoundError('alias', `${name}@${alias}`, `model "${name}" has no alias "${alias}"`);
      }
      const version = await tx.getVersion(name, number!);
      if (!version) throw new NotFoundError('version', `${name}:${number}`, `model "${name}" has no version ${number}`);
      return { version, revision };
    });
  }

  // ---- artifacts ----

  /** One file of a version from an offset, in chunks (the blob is read from disk as it is sent). */
  async download(model: string, version: number, file: string, offset: number, signal: AbortSignal): Promise<DownloadStream> {
    const v = await this.getVersion(model, version);
    const f = v.files.find((x) => x.name === file);
    if (!f) throw new NotFoundError('file', `${model}:${version}/${file}`, `version ${version} of model "${model}" has no file "${file.slice(0, 200)}"`);
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > f.size) {
      throw new OutOfRangeError(`offset ${offset} is past the end of "${file}" (${f.size} bytes)`, { metadata: { size: String(f.size) } });
    }
    const stored = await this.artifacts.stat(f.sha256);
    if (!stored || stored.size !== f.size) {
      this.log.error({ model, version, file, sha256: f.sha256 }, 'a committed blob is missing or has the wrong size');
      throw new DataLossError(`the stored content of "${file}" is missing or damaged`, { metadata: { sha256: f.sha256 } });
    }
    const chunkBytes = this.options.chunkBytes;
    const artifacts = this.artifacts;
    async function* chunks() {
      let at = offset;
      for await (const data of artifacts.read(f!.sha256, offset, chunkBytes, signal)) {
        yield { offset: at, data };
        at += data.length;
      }
      if (at !== f!.size) throw new DataLossError(`the stored content of "${file}" ended early`);
    }
    return { file: f, chunks: chunks() };
  }

  // ---- watch ----

  /**
   * The current state (unless resuming) then every change, as events with strictly increasing revisions.
   * Ends when the signal aborts; OUT_OF_RANGE when `afterRevision` is no longer (or not yet) in the log.
   */
  async *watch(afterRevision: number, models: string[], signal: AbortSignal): AsyncIterable<RegistryEvent> {
    // The filter becomes one SQL parameter per name; SQLite refuses beyond 32766, so bound it here.
    if (models.length > MAX_WATCH_MODELS) throw InvalidArgumentError.field('models', `at most ${MAX_WATCH_MODELS} names (got ${models.length})`);
    models.forEach((m, i) => checkName(`models[${i}]`, m));
    if (!Number.isSafeInteger(afterRevision) || afterRevision < 0) throw InvalidArgumentError.field('after_revision', 'must be 0 or a revision');
    const only = models.length > 0 ? new Set(models) : undefined;
    let cursor: number;
    if (afterRevision === 0) {
      const snap = await this.store.read(async (tx) => ({ revision: await tx.revision(), ...(await tx.snapshot(models)) }));
      for (const v of snap.versions) yield { type: EventType.VERSION_CREATED, revision: snap.revision, model: v.model, version: v.version, alias: '', task: v.task };
      for (const a of snap.aliases) yield { type: EventType.ALIAS_SET, revision: snap.revision, model: a.model, version: a.version, alias: a.alias!, task: a.task };
      cursor = snap.revision;
    } else {
      const { current, oldest } = await this.store.read(async (tx) => ({ current: await tx.revision(), oldest: await tx.oldestRevision() }));
      const floor = oldest === undefined ? current : oldest - 1;
      if (afterRevision < floor || afterRevision > current) {
        throw new OutOfRangeError(
          afterRevision > current
            ? `revision ${afterRevision} is newer than this registry's ${current}; start over without after_revision`
            : `changes after revision ${afterRevision} are no longer kept (oldest kept: ${floor + 1}); start over without after_revision`,
          { reason: 'REVISION_NOT_KEPT', metadata: { revision: String(current) } },
        );
      }
      cursor = afterRevision;
    }
    yield { type: EventType.SNAPSHOT_END, revision: cursor, model: '', version: 0, alias: '', task: 0 };
    while (!signal.aborted && !this.closed) {
      const events = await this.feed.read(cursor, 500);
      if (events.length === 0) {
        await this.feed.waitBeyond(cursor, signal);
        continue;
      }
      for (const e of events) {
        if (e.revision !== cursor + 1) {
          throw new OutOfRangeError(`changes after revision ${cursor} are no longer kept; start over without after_revision`, { reason: 'REVISION_NOT_KEPT' });
        }
        cursor = e.revision;
        if (!only || only.has(e.model)) yield e;
      }
    }
    throwIfAborted(signal);
    // Closing without the server having ended the stream first: tell the watcher to reconnect elsewhere.
    throw new UnavailableError('the registry is shutting down; reconnect and resume from your last revision', 0);
  }

  // ---- maintenance ----

  /**
   * Removes temporary files of uploads that died, blobs no version references, and events beyond the kept
   * history. Blobs are removed under the write lock, so no commit can start referencing one meanwhile.
   */
  collectGarbage(tempOlderThanMs = this.options.tempGraceMs): Promise<void> {
    if (this.gcRunning) return this.gcRunning;
    this.gcRunning = (async () => {
      const temps = await this.artifacts.sweepTemporary(tempOlderThanMs);
      const blobs = await this.artifacts.list();
      const referenced = await this.store.read((tx) => tx.referencedDigests());
      const candidates = blobs.filter((d) => !referenced.has(d));
      let removed = 0;
      if (candidates.length > 0) {
        await this.store.write(async (tx) => {
          const now = await tx.referencedDigests();
          const gone = candidates.filter((d) => !now.has(d));
          await this.artifacts.remove(gone);
          removed = gone.length;
        });
      }
      const pruned = await this.store.pruneEvents(this.options.watchHistory);
      if (temps + removed + pruned > 0) this.log.info({ temporaryFiles: temps, blobs: removed, events: pruned }, 'garbage collected');
    })().finally(() => {
      this.gcRunning = undefined;
    });
    return this.gcRunning;
  }

  private changed(deleted: boolean): void {
    this.feed.poke();
    if (deleted && !this.closed && !this.gcSoon) {
      this.gcSoon = setTimeout(() => {
        this.gcSoon = undefined;
        void this.collectGarbage().catch((err: unknown) => this.log.warn({ err }, 'garbage collection failed'));
      }, 1000);
      this.gcSoon.unref();
    }
  }

  private async versionNotFound(model: string, version: number, tx?: WriteTx): Promise<NotFoundError> {
    const m = tx ? await tx.getModel(model) : await this.store.read((r) => r.getModel(model));
    if (!m) return new NotFoundError('model', model);
    return new NotFoundError('version', `${model}:${version}`, `model "${model}" has no version ${version}`);
  }
}

function pageSize(n: number): number {
  if (!Number.isSafeInteger(n) || n < 0) throw InvalidArgumentError.field('page_size', 'must be 0 to 1000');
  return n === 0 ? DEFAULT_PAGE : Math.min(n, MAX_PAGE);
}

function encodeToken(s: string): string {
  return Buffer.from(`v1:${s}`).toString('base64url');
}

function decodeToken(token: string, field: string): string {
  if (token === '') return '';
  const s = Buffer.from(token, 'base64url').toString();
  if (!s.startsWith('v1:')) throw InvalidArgumentError.field(field, 'is not a token this registry issued');
  return s.slice(3);
}

function updateMask(mask: string[]): Set<string> {
  if (mask.length === 0) return new Set(['description', 'tags']);
  for (const [i, m] of mask.entries()) {
    if (m !== 'description' && m !== 'tags') throw InvalidArgumentError.field(`update_mask[${i}]`, `"${m}" cannot be changed; use description or tags`);
  }
  return new Set(mask);
}
