// What the engine needs of a loaded model version, and of whatever holds the loaded versions (the model host).
import type { DynamicBatcher } from '../../runtime/batching/dynamic-batcher.js';
import type { ModelLease, ModelSelector } from '../../runtime/models/types.js';
import type { TextTokenizer, TruncationSide } from './tokenizer.js';
import type { Pooling } from './vectors.js';

export interface EmbeddingModelInfo {
  /** Length of the model's embeddings. */
  dimensions: number;
  /** Most tokens per input, special tokens included. */
  maxLength: number;
  pooling: Pooling;
  /** The graph pools itself (`sentence_embedding` output). */
  pooledByModel: boolean;
  vocabSize: number;
}

/** What a request asks of each of its inputs' vectors (one object per request, shared by its rows). */
export interface RowShape {
  /** The end to cut an input from when it is too long. */
  side: TruncationSide;
  /** Keep the first this many values (0: all of them). */
  dimensions: number;
  /** Scale the kept values to unit length. */
  normalize: boolean;
}

/** One input as it queues: its text, and how its request wants it cut and its vector shaped. */
export interface TextRow {
  text: string;
  shape: RowShape;
}

/** What the batcher answers for an input: its vector, shaped as its row asked, and its token counts. */
export interface EncodedRow {
  values: Float32Array;
  /** Tokens it ran with, special tokens included (at most the model's maximum length). */
  tokens: number;
  /** Tokens before truncation. */
  fullLength: number;
}

/** A loaded version: its tokenizer, and the batcher in front of its onnxruntime session. */
export interface EmbeddingModel {
  name: string;
  version: number;
  executionProvider: string;
  info: EmbeddingModelInfo;
  tokenizer: TextTokenizer;
  /**
   * Takes texts, queued with estimated token costs (TextTokenizer.estimate); tokenizes, runs and shapes them
   * where the session runs.
   */
  batcher: DynamicBatcher<TextRow, EncodedRow>;
}

/** A loaded version as listed: the model plus the host's bookkeeping. */
export interface LoadedEmbeddingModel {
  model: EmbeddingModel;
  aliases: string[];
  bytes: number;
  inUse: number;
}

/** The model host, as the engine sees it. */
export interface ModelProvider {
  readonly defaultModel: string;
  /** NotFoundError for unknown models, FailedPreconditionError for other tasks. */
  acquire(selector: ModelSelector, signal: AbortSignal): Promise<ModelLease<EmbeddingModel>>;
  /** Versions loaded now. */
  loaded(): LoadedEmbeddingModel[];
}
