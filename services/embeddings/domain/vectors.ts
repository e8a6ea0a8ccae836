// Turning an encoder's per-token output into one vector per input, the per-request shaping of vectors, and a
// request's vectors as they are answered (Vectors).

export type Pooling = 'mean' | 'cls' | 'last_token';

/**
 * Pools row `row` of a last_hidden_state tensor [batch, sequence, hidden] whose first `length` positions are
 * real tokens (right padding): the mean over them, the first one, or the last one. Writes into `out` (zeros,
 * `width` long; a new array by default) and returns it.
 */
export function poolRow(
  hidden: Float32Array,
  row: number,
  sequence: number,
  width: number,
  length: number,
  pooling: Pooling,
  out: Float32Array = new Float32Array(width),
): Float32Array {
  const base = row * sequence * width;
  if (length === 0) return out;
  if (pooling === 'cls') {
    out.set(hidden.subarray(base, base + width));
  } else if (pooling === 'last_token') {
    const at = base + (length - 1) * width;
    out.set(hidden.subarray(at, at + width));
  } else {
    for (let t = 0; t < length; t++) {
      const at = base + t * width;
      for (let d = 0; d < width; d++) out[d]! += hidden[at + d]!;
    }
    for (let d = 0; d < width; d++) out[d]! /= length;
  }
  return out;
}

/**
 * Scales v to unit L2 length in place (a zero vector stays zero). A vector already of unit length to within a
 * millionth, as models that normalize in their graph answer, is left as it is: scaling it would only move its
 * last bits, at the cost of a second pass.
 */
export function normalizeInPlace(v: Float32Array): Float32Array {
  normalizeRange(v, 0, v.length);
  return v;
}

/** normalizeInPlace for the values from start up to end of a larger buffer (rows of a batch, without a view each). */
export function normalizeRange(v: Float32Array, start: number, end: number): void {
  let sum = 0;
  for (let i = start; i < end; i++) sum += v[i]! * v[i]!;
  if (sum > 0 && Math.abs(sum - 1) > 1e-6) {
    const scale = 1 / Math.sqrt(sum);
    for (let i = start; i < end; i++) v[i]! *= scale;
  }
}

export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return na === 0 || nb === 0 ? 0 : dot / Math.sqrt(na * nb);
}

/**
 * A request's vectors as they lie in the batches that ran them, with each input's token facts: no object and no
 * view per input (with dozens of inputs per request those were a fifth of what the event loop allocated). The
 * inputs are the blocks' rows in order; a block's row r starts `stride` × r floats into its values, and its
 * first `dimensions` floats are the vector.
 */
export interface Vectors {
  dimensions: number;
  stride: number;
  blocks: VectorBlock[];
  /** Tokens each input used (after truncation): one per input. */
  tokens: Int32Array;
  /** 1 where an input was cut to the model's maximum length. */
  truncated: Uint8Array;
}

/** Consecutive inputs' vectors: rows first to first + count - 1 of values. */
export interface VectorBlock {
  values: Float32Array;
  first: number;
  count: number;
}

/** Input i's vector, as a view of its block's values. */
export function vectorAt(v: Vectors, i: number): Float32Array {
  let k = i;
  for (const b of v.blocks) {
    if (k < b.count) {
      const at = (b.first + k) * v.stride;
      return b.values.subarray(at, at + v.dimensions);
    }
    k -= b.count;
  }
  throw new RangeError(`no vector ${i} of ${v.tokens.length}`);
}
