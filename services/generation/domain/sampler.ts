// Picks the next token from one row of logits: repetition, presence and frequency penalties, temperature,
// top-k, top-p, then a draw from the request's own seeded generator (or argmax when greedy). Runs on typed
// arrays with scratch buffers allocated once per model, so the per-token path allocates nothing.
//
// Order and semantics follow Hugging Face's logits processors and vLLM: the repetition penalty (divide
// positive logits, multiply negative ones) covers prompt and output tokens; presence and frequency
// penalties (OpenAI's) cover output tokens; top-k then top-p keep the most likely tokens in descending
// order (ties: lower id first) until k tokens / a probability mass of p is reached.
// Top-k/top-p avoid a full sort: probabilities are bucketed by the top 16 bits of their float32 encoding
// (monotonic for non-negative floats, so buckets are ordered, each kept as a linked list of its ids), and only
// the bucket that straddles the cut is sorted.
import { expNonPositive } from './fast-exp.js';
import type { Prng } from './prng.js';
import type { SamplingParameters } from './params.js';

/**
 * Probabilities are exp(logit - max) in (0, 1], so their float32 encodings' top 16 bits run from 0 to
 * 0x3f80 (the encoding of 1.0): one bucket each.
 */
const BUCKETS = 0x3f81;

/** Per-sequence token statistics for the penalties (allocated only when a penalty is active). */
export class PenaltyState {
  /** 1 for every token id seen in the prompt or output (repetition penalty). */
  readonly seen: Uint8Array;
  readonly seenIds: Int32Array;
  seenLength = 0;
  /** Output occurrences per token id (presence and frequency penalties). */
  readonly counts: Uint32Array;
  readonly outputIds: Int32Array;
  outputLength = 0;

  constructor(vocabSize: number, capacity: number) {
    this.seen = new Uint8Array(vocabSize);
    this.seenIds = new Int32Array(capacity);
    this.counts = new Uint32Array(vocabSize);
    this.outputIds = new Int32Array(capacity);
  }

  addPrompt(tokens: ArrayLike<number>): void {
    for (let i = 0; i < tokens.length; i++) this.markSeen(tokens[i]!);
  }

  addOutput(token: number): void {
    this.markSeen(token);
    if (this.counts[token]! === 0 && this.outputLength < this.outputIds.length) this.outputIds[this.outputLength++] = token;
    this.counts[token]!++;
  }

  private markSeen(token: number): void {
    if (token < 0 || token >= this.seen.length) return;
    if (this.seen[token] === 0 && this.seenLength < this.seenIds.length) {
      this.seen[token] = 1;
      this.seenIds[this.seenLength++] = token;
    }
  }
}

export function needsPenalties(p: SamplingParameters): boolean {
  return p.repetitionPenalty !== 1 || p.presencePenalty !== 0 || p.frequencyPenalty !== 0;
}

export class Sampler {
  /** Unnormalized probabilities of the current row. */
  private readonly probs: Float32Array;
  private readonly probBits: Uint32Array;
  private readonly bucketCount = new Int32Array(BUCKETS);
  private readonly bucketMass = new Float64Array(BUCKETS);
  private readonly members: Int32Array;
  private readonly keys: Float64Array;
  /** Members of each bucket of the current row as linked lists: first id, then the next id of each (-1 ends). */
  private readonly bucketHead = new Int32Array(BUCKETS);
  private readonly nextInBucket: Int32Array;
  /** The raw row, kept when log probabilities are asked for and penalties change the row. */
  private readonly raw: Float32Array;

  /** After next(): the log probability of the chosen token under the model's raw distribution (when asked). */
  chosenLogprob = 0;
  /** After next(): the top alternatives (ids and log probabilities, most likely first), `topCount` of them. */
  readonly topIds: Int32Array;
  readonly topLogprobs: Float32Array;
  topCount = 0;

  constructor(
    readonly vocabSize: number,
    maxLogprobs: number,
  ) {
    if (vocabSize >= 1 << 20) throw new Error(`vocabulary of ${vocabSize} tokens is larger than the sampler supports (2^20)`);
    this.probs = new Float32Array(vocabSize);
    this.probBits = new Uint32Array(this.probs.buffer);
    this.members = new Int32Array(vocabSize);
    this.keys = new Float64Array(vocabSize);
    this.nextInBucket = new Int32Array(vocabSize);
    this.raw = new Float32Array(vocabSize);
    this.topIds = new Int32Array(Math.max(1, maxLogprobs));
    this.topLogprobs = new Float32Array(Math.max(1, maxLogprobs));
  }

  /**
   * Chooses the next token from logits[offset, offset + vocabSize). The row is modified in place (penalties,
   * temperature). Log probabilities, when `logprobs` is set, are of the raw row before any change.
   */
  next(logits: Float32Array, offset: number, params: SamplingParameters, rng: Prng, penalties: PenaltyState | undefined): number {
    const V = this.vocabSize;
    const logZ = params.logprobs !== undefined ? this.logNormalizer(logits, offset) : 0;
    if (params.logprobs !== undefined && params.logprobs > 0) this.collectTop(logits, offset, params.logprobs, logZ);
    else this.topCount = 0;
    if (penalties && params.logprobs !== undefined) for (let i = 0; i < V; i++) this.raw[i] = logits[offset + i]!;
    if (penalties) applyPenalties(logits, offset, params, penalties);

    let token: number;
    if (params.temperature === 0 || params.topK === 1) token = argmax(logits, offset, V);
    else token = this.draw(logits, offset, params, rng);
    if (params.logprobs !== undefined) this.chosenLogprob = (penalties ? this.raw[token]! : logits[offset + token]!) - logZ;
    return token;
  }

  /** log(sum(exp(row))) of the raw row. */
  private logNormalizer(logits: Float32Array, offset: number): number {
    const V = this.vocabSize;
    let max = -Infinity;
    for (let i = 0; i < V; i++) if (logits[offset + i]! > max) max = logits[offset + i]!;
    let sum = 0;
    for (let i = 0; i < V; i++) sum += expNonPositive(logits[offset + i]! - max);
    return max + Math.log(sum);
  }

  /** The n largest raw logits (ties: lower id first) by insertion into a small sorted list. */
  private collectTop(logits: Float32Array, offset: number, n: number, logZ: number): void {
    const ids = this.topIds;
    const vals = this.topLogprobs;
    let count = 0;
    for (let i = 0; i < this.vocabSize; i++) {
      const v = logits[offset + i]!;
      if (count === n && v <= vals[n - 1]!) continue;
      let j = count < n ? count++ : n - 1;
      while (j > 0 && vals[j - 1]! < v) {
        vals[j] = vals[j - 1]!;
        ids[j] = ids[j - 1]!;
        j--;
      }
      vals[j] = v;
      ids[j] = i;
    }
    for (let j = 0; j < count; j++) vals[j] = vals[j]! - logZ;
    this.topCount = count;
  }

  /**
   * Temperature, then top-k and top-p, then a draw. One pass computes the probabilities and their bucket
   * histogram with per-bucket lists of ids; the cuts walk the buckets and sort only the bucket they fall in;
   * the draw walks bucket masses, then one bucket's list. The visiting order is fixed (buckets descending, ids
   * within a bucket in list order), so draws are reproducible and follow the kept distribution exactly.
   */
  private draw(logits: Float32Array, offset: number, params: SamplingParameters, rng: Prng): number {
    const V = this.vocabSize;
    const probs = this.probs;
    const bits = this.probBits;
    const head = this.bucketHead;
    const nextInBucket = this.nextInBucket;
    const count = this.bucketCount;
    const mass = this.bucketMass;
    const members = this.members;
    this.lastSortedBucket = -1;

    let max = -Infinity;
    for (let i = 0; i < V; i++) if (logits[offset + i]! > max) max = logits[offset + i]!;
    const inv = 1 / params.temperature;
    if ((params.topK === 0 || params.topK >= V) && params.topP >= 1) {
      // No cut: a draw over every token in id order, no buckets needed.
      let sum = 0;
      for (let i = 0; i < V; i++) {
        probs[i] = expNonPositive((logits[offset + i]! - max) * inv);
        sum += probs[i]!;
      }
      const target = rng.next() * sum;
      let run = 0;
      for (let i = 0; i < V; i++) {
        run += probs[i]!;
        if (run > target) return i;
      }
      return V - 1;
    }
    count.fill(0);
    mass.fill(0);
    head.fill(-1);
    let total = 0;
    let lowest = BUCKETS - 1;
    for (let i = 0; i < V; i++) {
      probs[i] = expNonPositive((logits[offset + i]! - max) * inv);
      const e = probs[i]!;
      const b = bits[i]! >>> 16;
      nextInBucket[i] = head[b]!;
      head[b] = i;
      count[b]!++;
      mass[b]! += e;
      total += e;
      if (b < lowest) lowest = b;
    }

    // Top-k: the bucket holding the k-th largest probability, and how many of its members make the cut.
    const k = params.topK > 0 && params.topK < V ? params.topK : V;
    let threshold = -1;
    let take = 0;
    let keptMass = total;
    if (k < V) {
      let seen = 0;
      let above = 0;
      for (let b = BUCKETS - 1; b >= 0; b--) {
        if (seen + count[b]! >= k) {
          threshold = b;
          take = k - seen;
          break;
        }
        seen += count[b]!;
        above += mass[b]!;
      }
      const n = this.sortBucket(threshold);
      let partial = 0;
      for (let j = 0; j < take; j++) partial += probs[members[n - 1 - j]!]!;
      keptMass = above + partial;
      lowest = threshold;
    }

    // Top-p within what top-k kept: descending until the kept mass reaches p of it.
    if (params.topP < 1) {
      const target = params.topP * keptMass;
      let acc = 0;
      for (let b = BUCKETS - 1; b >= lowest; b--) {
        const inBucket = b === threshold ? take : count[b]!;
        if (inBucket === 0) continue;
        const bucketMass = b === threshold ? keptMass - acc : mass[b]!;
        if (acc + bucketMass < target && b !== lowest) {
          acc += bucketMass;
          continue;
        }
        const n = this.sortBucket(b);
        let t = 0;
        while (t < inBucket) {
          acc += probs[members[n - 1 - t]!]!;
          t++;
          if (acc >= target) break;
        }
        threshold = b;
        take = t;
        keptMass = acc;
        break;
      }
    }

    // The draw: whole buckets above the threshold, then the kept members of the threshold bucket.
    const u = rng.next() * keptMass;
    let acc = 0;
    for (let b = BUCKETS - 1; b > threshold; b--) {
      if (count[b] === 0) continue;
      if (acc + mass[b]! <= u && b > lowest) {
        acc += mass[b]!;
        continue;
      }
      let last = -1;
      for (let i = head[b]!; i >= 0; i = nextInBucket[i]!) {
        acc += probs[i]!;
        last = i;
        if (acc > u) return i;
      }
      if (threshold < 0 || b === lowest) return last;
    }
    const n = this.sortBucket(threshold);
    let last = members[n - 1]!;
    for (let j = 0; j < take; j++) {
      last = members[n - 1 - j]!;
      acc += probs[last]!;
      if (acc > u) return last;
    }
    return last;
  }

  /** Length of the last sorted bucket's member list (members[0, lastSorted), ascending). */
  private lastSorted = 0;
  private lastSortedBucket = -1;

  /**
   * Collects the members of bucket b into `members`, ascending by probability (ties: higher id first, so
   * that reading from the end gives descending probability with lower ids first). Returns their count.
   */
  private sortBucket(b: number): number {
    if (b === this.lastSortedBucket) return this.lastSorted;
    const bits = this.probBits;
    const keys = this.keys;
    let n = 0;
    for (let i = this.bucketHead[b]!; i >= 0; i = this.nextInBucket[i]!) keys[n++] = (bits[i]! & 0xffff) * 1048576 + (1048575 - i);
    const view = keys.subarray(0, n);
    view.sort();
    for (let j = 0; j < n; j++) this.members[j] = 1048575 - (view[j]! % 1048576);
    this.lastSorted = n;
    this.lastSortedBucket = b;
    return n;
  }
}

export function argmax(logits: Float32Array, offset: number, n: number): number {
  let best = 0;
  let bestValue = logits[offset]!;
  for (let i = 1; i < n; i++) {
    const v = logits[offset + i]!;
    if (v > bestValue) {
      bestValue = v;
      best = i;
    }
  }
  return best;
}

function applyPenalties(logits: Float32Array, offset: number, params: SamplingParameters, state: PenaltyState): void {
  if (params.repetitionPenalty !== 1) {
    const rp = params.repetitionPenalty;
    for (let j = 0; j < state.seenLength; j++) {
      const i = offset + state.seenIds[j]!;
      const v = logits[i]!;
      logits[i] = v > 0 ? v / rp : v * rp;
    }
  }
  if (params.presencePenalty !== 0 || params.frequencyPenalty !== 0) {
    for (let j = 0; j < state.outputLength; j++) {
      const id = state.outputIds[j]!;
      logits[offset + id] = logits[offset + id]! - params.presencePenalty - params.frequencyPenalty * state.counts[id]!;
    }
  }
}
