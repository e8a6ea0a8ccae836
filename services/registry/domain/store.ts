// The storage interfaces the registry's logic is written against. The metadata store offers plain row
// operations inside transactions; the rules (what may be deleted, how versions are numbered, which events a
// change emits) live in registry.ts so they are the same for every backend.
import type { EventType, FileRecord, GraphSignature, ModelRecord, RegistryEvent, Tags, VersionRecord } from './types.js';

export interface NewModel {
  name: string;
  task: number;
  description: string;
  tags: Tags;
  time: Date;
}

export interface NewVersion {
  model: string;
  version: number;
  files: FileRecord[];
  signatures: GraphSignature[];
  description: string;
  tags: Tags;
  sourceUri: string;
  parentVersion: number;
  time: Date;
}

/** A model's version or alias as the watch snapshot lists them. */
export interface SnapshotEntry {
  model: string;
  task: number;
  version: number;
  /** Alias entries only. */
  alias?: string;
}

export interface ReadTx {
  /** The revision of the last committed event. */
  revision(): Promise<number>;
  getModel(name: string): Promise<ModelRecord | undefined>;
  /** Models with names after `after`, by name. */
  listModels(after: string, limit: number): Promise<ModelRecord[]>;
  getVersion(model: string, version: number): Promise<VersionRecord | undefined>;
  /** Versions below `below` (0: no bound), newest first. */
  listVersions(model: string, below: number, limit: number): Promise<VersionRecord[]>;
  /** Every version and alias (optionally of some models only), for the watch snapshot. */
  snapshot(models: string[]): Promise<{ versions: SnapshotEntry[]; aliases: SnapshotEntry[] }>;
  /** Events after a revision, oldest first. */
  eventsAfter(revision: number, limit: number): Promise<RegistryEvent[]>;
  /** The oldest revision still kept (undefined when no event is kept). */
  oldestRevision(): Promise<number | undefined>;
  /** sha256 of every file some version references. */
  referencedDigests(): Promise<Set<string>>;
}

export interface WriteTx extends ReadTx {
  insertModel(model: NewModel): Promise<void>;
  updateModel(name: string, changes: { description?: string; tags?: Tags; latestVersion?: number; time: Date }): Promise<void>;
  /** Deletes the model's row with its versions, files and aliases. */
  deleteModel(name: string): Promise<void>;
  insertVersion(version: NewVersion): Promise<void>;
  updateVersion(model: string, version: number, changes: { description?: string; tags?: Tags }): Promise<void>;
  /** Deletes the version's row and its files. */
  deleteVersion(model: string, version: number): Promise<void>;
  setAlias(model: string, alias: string, version: number): Promise<void>;
  deleteAlias(model: string, alias: string): Promise<void>;
  /** Appends an event; it gets the next revision, which is returned. */
  appendEvent(event: { type: EventType; model: string; version: number; alias: string; task: number }): Promise<number>;
}

export interface MetadataStore {
  readonly kind: 'sqlite' | 'postgres';
  /**
   * Runs fn in a transaction that holds the registry-wide write lock: writers (on every replica) run one at a
   * time, so version numbers and revisions are assigned without lost updates and commit in revision order.
   */
  write<T>(fn: (tx: WriteTx) => Promise<T>): Promise<T>;
  /** Runs fn on one consistent snapshot. */
  read<T>(fn: (tx: ReadTx) => Promise<T>): Promise<T>;
  /** Drops events beyond the newest `keep`; returns how many went. */
  pruneEvents(keep: number): Promise<number>;
  /**
   * Calls listener when another replica may have committed events (PostgreSQL LISTEN/NOTIFY); returns a
   * function that stops listening. Stores without such a channel return a no-op.
   */
  onRemoteChange(listener: () => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

/** Where a file being uploaded is written until the version commits. */
export interface StagedFile {
  /** Appends bytes (resolves when they are written, so the caller's reading is paced by the disk). */
  write(data: Uint8Array): Promise<void>;
  /** Bytes written so far. */
  readonly size: number;
  /** Flushes to disk and returns the digest. */
  finish(): Promise<{ sha256: string; size: number; path: string }>;
  /** Removes the temporary file (safe to call more than once, or after publish). */
  discard(): Promise<void>;
}

/** Content-addressed file storage. */
export interface ArtifactStore {
  /** Starts a temporary file. */
  stage(): Promise<StagedFile>;
  /**
   * Makes a finished staged file durable under its digest (renaming it into place, or dropping it when an
   * identical blob is already stored). Called inside the metadata write lock.
   */
  publish(staged: StagedFile, sha256: string): Promise<void>;
  /** Whether a blob is stored, with its size. */
  stat(sha256: string): Promise<{ size: number } | undefined>;
  /** Reads a blob from an offset in pieces of at most chunkBytes. */
  read(sha256: string, offset: number, chunkBytes: number, signal: AbortSignal): AsyncIterable<Buffer>;
  /** Digests of every stored blob. */
  list(): Promise<string[]>;
  /** Removes blobs (those no version references). */
  remove(digests: string[]): Promise<void>;
  /** Removes temporary files untouched for olderThanMs (0: all). Returns how many went. */
  sweepTemporary(olderThanMs: number): Promise<number>;
}
