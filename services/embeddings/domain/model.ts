// What the engine needs of a loaded model version, and of whatever holds the loaded versions (the model host).
import type { DynamicBatcher } from '../../runtime/batching/dynamic-batcher.js';
import type { ModelLease, ModelSelector } from '../../runtime/models/types.js';
import type { Texts } from './texts.js';
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

/**
 * A run of one request's inputs as it queues, as one batcher entry: texts[start] up to texts[end], and how the
 * request wants them cut and their vectors shaped. A request of many inputs queues as a few of these, not as
 * an object per input.
 */
export interface TextRange {
  texts: Texts;
  start: number;
  end: number;
  shape: RowShape;
}

/** A batch's answer, row after row (rows in the order of its ranges' inputs). */
export interface BatchVectors {
  /**
   * The model's dimensions values per row: the row's vector is the first of them (as many as its shape keeps),
   * shaped.
   */
  values: Float32Array;
  /** Per row r: at r the tokens it ran with (after truncation, special tokens included), at rows + r before. */
  counts: Int32Array;
}

/** What the batcher answers for a range: its batch's vectors, and the row its first input is in. */
export interface EncodedRange {
  batch: BatchVectors;
  row: number;
}

/** A loaded version: its tokenizer, and the batcher in front of its onnxruntime session. */
export interface EmbeddingModel {
  name: string;
  version: number;
  executionProvider: string;
  info: EmbeddingModelInfo;
  tokenizer: TextTokenizer;
  /**
   * Takes runs of texts, queued with estimated token costs (TextTokenizer.estimate: each range costs its
   * longest input's, per input); tokenizes, runs and shapes them where the session runs.
   */
  batcher: DynamicBatcher<TextRange, EncodedRange>;
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
