// Picks the next token from one row of logits: repetition, presence and frequency penalties, temperature,
// top-k, top-p, then a draw from the request's own seeded generator (or argmax when greedy). Runs on typed
// arrays with scratch buffers allocated once per model, so the per-token path allocates nothing.
//
// Order and semantics follow Hugging Face's logits processors and vLLM: the repetition penalty (divide
// positive logits, multiply negative ones) covers prompt and output tokens; presence and frequency
// penalties (OpenAI's) cover output tokens; top-k then top-p keep the most likely tokens in descending
// order (ties: lower id first) until k tokens / a probability mass of p is reached.
// Top-k/top-p avoid a full sort. The float32 encoding of a probability in [0, 1] orders like the value, so its
// top bits are ordered buckets: the pass that computes the probabilities also counts and sums them per octave
// (the 8 exponent bits: 128 buckets, small enough to stay in L1 cache), a second pass splits the one octave
// the cut falls in by the next 8 bits, and only the sub-bucket the cut falls in is sorted.
import { expNonPositive } from './fast-exp.js';
import type { Prng } from './prng.js';
import type { SamplingParameters } from './params.js';

/** Octaves of a probability in [0, 1]: the exponent field of its float32 encoding, 0 (zero) to 127 (1.0). */
const OCTAVES = 128;
/** Sub-buckets of one octave: the next 8 bits of the encoding. */
const SUBS = 256;
/** A token's bucket key, octave and sub-bucket together: the top 16 bits below the sign (`bits >>> 15`). */
const KEY_SHIFT = 15;

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
  private readonly octaveCount = new Int32Array(OCTAVES);
  private readonly octaveMass = new Float64Array(OCTAVES);
  private readonly subCount = new Int32Array(SUBS);
  private readonly subMass = new Float64Array(SUBS);
  /** Ids of the octave being split; then, from `cutStart`, the cut bucket's ids (descending probability). */
  private readonly members: Int32Array;
  private readonly keys: Float64Array;
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
    this.members = new Int32Array(2 * vocabSize);
    this.keys = new Float64Array(vocabSize);
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
   * Temperature, then top-k and top-p, then a draw. The kept tokens are those whose bucket key is above the
   * cut bucket's, and the first `take` of the cut bucket's tokens in descending order (lower id first on
   * ties). The draw visits them in a fixed order (ids ascending above the cut, then the cut bucket's in
   * order), so draws are reproducible and follow the kept distribution exactly.
   */
  private draw(logits: Float32Array, offset: number, params: SamplingParameters, rng: Prng): number {
    const V = this.vocabSize;
    const probs = this.probs;
    const bits = this.probBits;

    let max = -Infinity;
    for (let i = 0; i < V; i++) if (logits[offset + i]! > max) max = logits[offset + i]!;
    const inv = 1 / params.temperature;
    const k = params.topK > 0 && params.topK < V ? params.topK : V;
    if (k === V && params.topP >= 1) {
      // No cut: a draw over every token in id order, no buckets needed.
      let sum = 0;
      for (let i = 0; i < V; i++) {
        const e = Math.fround(expNonPositive((logits[offset + i]! - max) * inv));
        probs[i] = e;
        sum += e;
      }
      const target = rng.next() * sum;
      let run = 0;
      for (let i = 0; i < V; i++) {
        run += probs[i]!;
        if (run > target) return i;
      }
      return V - 1;
    }
    const octaveCount = this.octaveCount.fill(0);
    const octaveMass = this.octaveMass.fill(0);
    let total = 0;
    for (let i = 0; i < V; i++) {
      // As stored (float32), so that every later sum of probs[] agrees with these.
      const e = Math.fround(expNonPositive((logits[offset + i]! - max) * inv));
      probs[i] = e;
      const o = bits[i]! >>> 23;
      octaveCount[o]!++;
      octaveMass[o]! += e;
      total += e;
    }

    // Top-k: the cut where the count of kept tokens reaches k.
    let keptMass = total;
    let cut = -1;
    if (k < V) {
      cut = this.locate(k, false);
      keptMass = this.aboveMass + this.takenMass;
    }
    // Top-p within what top-k kept: the cut where the kept mass, in descending order, reaches p of it.
    if (params.topP < 1) {
      const target = params.topP * keptMass;
      if (cut >= 0 && target > this.aboveMass) {
        // Inside top-k's cut bucket: fewer of its tokens.
        let acc = this.aboveMass;
        let t = 0;
        while (t < this.take) {
          acc += probs[this.members[this.cutStart + t]!]!;
          t++;
          if (acc >= target) break;
        }
        this.take = t;
        keptMass = acc;
      } else {
        cut = this.locate(target, true);
        keptMass = this.aboveMass + this.takenMass;
      }
    }

    // The draw: the tokens above the cut bucket in id order, then the cut bucket's kept ones in order.
    const u = rng.next() * keptMass;
    let acc = 0;
    let last = -1;
    for (let i = 0; i < V; i++) {
      if (bits[i]! >>> KEY_SHIFT <= cut) continue;
      acc += probs[i]!;
      last = i;
      if (acc > u) return i;
    }
    for (let t = 0; t < this.take; t++) {
      last = this.members[this.cutStart + t]!;
      acc += probs[last]!;
      if (acc > u) return last;
    }
    return last;
  }

  /** After locate(): mass of the tokens above the cut bucket, and of the cut bucket's `take` kept ones. */
  private aboveMass = 0;
  private takenMass = 0;
  private take = 0;
  /** Where the cut bucket's ids start in `members`. */
  private cutStart = 0;

  /**
   * Finds where, going down from the most likely token, the count of tokens (byMass false) or their mass
   * (byMass true) first reaches `limit`: returns the key of the bucket that token is in, and sets `take` (how
   * many of that bucket's tokens are kept), the bucket's ids in descending order at `cutStart`, `aboveMass`
   * and `takenMass`. Needs the octave histogram of the current row.
   */
  private locate(limit: number, byMass: boolean): number {
    const V = this.vocabSize;
    const bits = this.probBits;
    const probs = this.probs;
    // The octave the limit falls in (the lowest non-empty one if rounding leaves it short).
    let reached = 0;
    let above = 0;
    let octave = -1;
    for (let o = OCTAVES - 1; o >= 0; o--) {
      const n = this.octaveCount[o]!;
      if (n === 0) continue;
      const add = byMass ? this.octaveMass[o]! : n;
      octave = o;
      if (reached + add >= limit) break;
      reached += add;
      above += this.octaveMass[o]!;
    }
    // Its tokens, split into sub-buckets.
    const members = this.members;
    const subCount = this.subCount.fill(0);
    const subMass = this.subMass.fill(0);
    let m = 0;
    for (let i = 0; i < V; i++) {
      const b = bits[i]!;
      if (b >>> 23 !== octave) continue;
      members[m++] = i;
      const s = (b >>> KEY_SHIFT) & (SUBS - 1);
      subCount[s]!++;
      subMass[s]! += probs[i]!;
    }
    let sub = -1;
    for (let s = SUBS - 1; s >= 0; s--) {
      const n = subCount[s]!;
      if (n === 0) continue;
      const add = byMass ? subMass[s]! : n;
      sub = s;
      if (reached + add >= limit) break;
      reached += add;
      above += subMass[s]!;
    }
    // The cut bucket's tokens, sorted: descending probability, lower id first on ties.
    const key = (octave << 8) | sub;
    const keys = this.keys;
    let n = 0;
    for (let j = 0; j < m; j++) {
      const i = members[j]!;
      if (bits[i]! >>> KEY_SHIFT === key) keys[n++] = (bits[i]! & 0x7fff) * 1048576 + (1048575 - i);
    }
    const sorted = keys.subarray(0, n).sort();
    this.cutStart = m;
    for (let j = 0; j < n; j++) members[m + j] = 1048575 - (sorted[n - 1 - j]! % 1048576);
    let take = 0;
    let taken = 0;
    while (take < n) {
      const p = probs[members[m + take]!]!;
      take++;
      taken += p;
      if (reached + (byMass ? p : 1) >= limit) break;
      reached += byMass ? p : 1;
    }
    this.take = take;
    this.aboveMass = above;
    this.takenMass = taken;
    return key;
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
