// The registry's plain types: what the domain works with, free of gRPC and of the database's row shapes.
// Enum values match maas.registry.v1 / maas.common.v1 so the handlers translate by value.
export type Tags = Record<string, string>;

export interface ModelRecord {
  name: string;
  /** maas.common.v1.Task value (1 embedding, 2 generation, 3 OCR, 4 image classification). */
  task: number;
  description: string;
  tags: Tags;
  /** Alias name → version number. */
  aliases: Record<string, number>;
  /** The highest version number ever assigned (0 when none); numbers are never reused. */
  latestVersion: number;
  createTime: Date;
  updateTime: Date;
}

export interface FileRecord {
  /** Relative path inside the version (`model.onnx`, `det/model.onnx`). */
  name: string;
  size: number;
  /** Lowercase hex sha256. */
  sha256: string;
}

export interface TensorSpec {
  name: string;
  type: string;
  /** -1 for symbolic dimensions. */
  shape: number[];
  /** The symbolic dimensions' names, '' for fixed ones. */
  dimNames: string[];
}

/** Inputs and outputs of one ONNX file, as onnxruntime reports them. */
export interface GraphSignature {
  file: string;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}

export interface VersionRecord {
  model: string;
  version: number;
  task: number;
  files: FileRecord[];
  signatures: GraphSignature[];
  description: string;
  tags: Tags;
  sourceUri: string;
  /** 0 when none. */
  parentVersion: number;
  /** Aliases pointing here now, sorted. */
  aliases: string[];
  createTime: Date;
}

/** Values match maas.registry.v1.WatchEventType. */
export enum EventType {
  VERSION_CREATED = 1,
  VERSION_DELETED = 2,
  ALIAS_SET = 3,
  ALIAS_DELETED = 4,
  MODEL_DELETED = 5,
  SNAPSHOT_END = 6,
}

export interface RegistryEvent {
  type: EventType;
  /** Strictly increasing across the whole registry (all replicas). */
  revision: number;
  model: string;
  /** The version concerned (the alias's target for alias events), 0 when none. */
  version: number;
  /** Alias events only, '' otherwise. */
  alias: string;
  task: number;
}

/** What a version reference names: an exact version, an alias, or (neither) the alias `default`. */
export interface VersionSelector {
  version?: number;
  alias?: string;
}

/** Loads an ONNX file and returns its signature; throws when the file is not a loadable model. */
export type OnnxValidator = (path: string, file: string, signal: AbortSignal) => Promise<GraphSignature>;

export interface Limits {
  /** Largest single file, in bytes. */
  maxFileBytes: number;
  /** Largest version (all files together), in bytes. */
  maxVersionBytes: number;
  /** Most files in one version. */
  maxFiles: number;
}
