// Plain types of the generation domain: what a request produces, chunk by chunk.

export enum FinishReason {
  /** max_new_tokens reached, or the model's context is full. */
  LENGTH = 'length',
  /** A stop sequence matched (it is not part of the text). */
  STOP = 'stop',
  /** The model produced an end-of-sequence token. */
  EOS = 'eos',
  /** The caller cancelled or its deadline passed. */
  CANCELLED = 'cancelled',
}

export interface TopLogprob {
  tokenId: number;
  text: string;
  logprob: number;
}

export interface TokenLogprob extends TopLogprob {
  /** The most likely alternatives at this position, most likely first (empty unless asked for). */
  top: TopLogprob[];
}

export interface Usage {
  inputTokens: number;
  outputTokens: number;
}

export interface Timings {
  queueMs: number;
  /** Model time of the prefill and of every decode step the sequence was part of. */
  inferenceMs: number;
  timeToFirstTokenMs: number;
  totalMs: number;
}

export interface Finish {
  reason: FinishReason;
  usage: Usage;
  timings: Timings;
  /** The stop sequence that ended generation (reason STOP). */
  stopSequence?: string;
  /** The seed the sampling used. */
  seed: bigint;
  /** Decode steps run while the sequence was in the batch (prefill excluded). */
  steps: number;
}

/** Newly generated output: text that became final, the tokens since the last chunk, and at the end why it stopped. */
export interface GenerationChunk {
  text: string;
  tokenIds: number[];
  /** One per token id when log probabilities were asked for. */
  logprobs: TokenLogprob[];
  finish?: Finish;
}

/** Where a running engine stands (for metrics, tests and ListModels). */
export interface EngineStats {
  running: number;
  waiting: number;
  steps: number;
  /** The most sequences decoded together in one step so far. */
  largestBatch: number;
  kvTokensReserved: number;
  /** Sequences removed after a cancellation, and the most decode steps any of them ran after it was cancelled. */
  cancelled: number;
  maxStepsAfterCancel: number;
  /** Lanes of the model, and the most of them that held sequences (each stepping its own) at once so far. */
  lanes: number;
  mostLanesInStep: number;
}
