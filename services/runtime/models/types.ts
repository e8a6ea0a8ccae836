// The model host's plain types: what a model service's engine receives when a registry version is loaded,
// and what it hands back. No gRPC types here; the registry-backed source lives in registry-source.ts.

/** Tasks as the registry records them (values match maas.common.v1.Task). */
export enum ModelTask {
  EMBEDDING = 1,
  GENERATION = 2,
  OCR = 3,
  IMAGE_CLASSIFICATION = 4,
}

/** Which model a request asks for: name plus version or alias (alias `default` when neither). */
export interface ModelSelector {
  /** Empty: the service's default model. */
  name: string;
  version?: number;
  alias?: string;
}

export interface TensorSignature {
  name: string;
  /** float32, int64, ... */
  type: string;
  /** -1 for symbolic dimensions. */
  shape: number[];
  dimNames: string[];
}

/** A registry version whose files are on local disk. */
export interface LocalVersion {
  name: string;
  version: number;
  task: ModelTask;
  /** Folder holding the version's files under their registry names (`model.onnx`, `tokenizer.json`, ...). */
  dir: string;
  files: { name: string; size: number; sha256: string }[];
  /** One per ONNX file, by file name. */
  signatures: Record<string, { inputs: TensorSignature[]; outputs: TensorSignature[] }>;
  tags: Record<string, string>;
}

/** What an engine's loader returns for one version. */
export interface Loaded<M> {
  model: M;
  /** Estimated resident bytes (for the memory budget); the size of the ONNX files is a fair estimate. */
  bytes: number;
  /** The onnxruntime execution provider in use. */
  executionProvider: string;
  /** Frees the sessions. Called once no request holds the version any more. */
  close(): Promise<void>;
}

/** Builds an engine's model from a local version. Throws FailedPreconditionError if it cannot drive it. */
export type ModelLoader<M> = (version: LocalVersion, signal: AbortSignal) => Promise<Loaded<M>>;

/** A loaded model held by one request; release() when the request is done with it. */
export interface ModelLease<M> {
  model: M;
  version: LocalVersion;
  executionProvider: string;
  /** The alias the request named (empty when it named a version). */
  alias: string;
  release(): void;
}

/** A change of the source that can change what a selector resolves to. */
export interface SourceEvent {
  type: 'alias_set' | 'alias_deleted' | 'version_deleted' | 'model_deleted' | 'resync';
  model: string;
  alias?: string;
  version?: number;
}

/**
 * Where a model host gets versions from: the registry (registry-source.ts) or a local model repository
 * folder (directory-source.ts, Triton-style: <root>/<model>/<version>/<files> plus <root>/<model>/model.json).
 */
export interface ModelSource {
  /** Resolves a selector to a version number and task. NotFoundError when anything named is unknown. */
  resolve(selector: ModelSelector, signal: AbortSignal): Promise<{ name: string; version: number; task: ModelTask; alias: string }>;
  /** Makes a version's files available on local disk (downloading and checking digests if needed). */
  materialize(name: string, version: number, signal: AbortSignal): Promise<LocalVersion>;
  /** Calls listener on every change; returns a function that stops watching. */
  watch(listener: (event: SourceEvent) => void): () => void;
  close(): Promise<void>;
}
