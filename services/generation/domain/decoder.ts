// What the engine needs from a decoder runtime, free of onnxruntime types: run a prompt once (prefill) and
// then one token per step for a whole batch, each sequence carrying its own key/value cache.
// backends/onnx-decoder.ts implements it for Hugging Face-style ONNX exports.

export interface DecoderShape {
  /** Logits per position. */
  vocabSize: number;
  /** Longest sequence the model can hold (prompt plus generated tokens). */
  maxPositions: number;
  layers: number;
  /** Key/value heads per layer and the size of each (per token and layer, 2 * heads * headDim values). */
  kvHeads: number;
  headDim: number;
}

/** A sequence's key/value cache, owned by the decoder. */
export interface SequenceCache {
  /** Tokens held in the cache. */
  readonly length: number;
}

export interface BatchEntry {
  cache: SequenceCache;
  /** The token to append (the last one sampled). */
  token: number;
}

export interface Decoder {
  readonly shape: DecoderShape;
  /**
   * Runs a prompt alone and returns its cache plus the logits of its last position, as a view that stays
   * valid until the next call on this decoder.
   */
  prefill(tokens: readonly number[]): Promise<{ cache: SequenceCache; logits: Float32Array; offset: number }>;
  /**
   * One step for a batch: appends each entry's token to its cache and returns the next-token logits,
   * row i at offset i * vocabSize, valid until the next call. Caches may be of different lengths.
   */
  decode(batch: readonly BatchEntry[]): Promise<Float32Array>;
  /** Frees a cache (a finished or cancelled sequence). */
  release(cache: SequenceCache): void;
  close(): Promise<void>;
}
