import { describe, expect, it } from 'vitest';
import { cosine, normalizeInPlace, normalizeRange, poolRow } from './vectors.js';

// A [batch 2, sequence 3, hidden 2] tensor: row 0 has 3 real tokens, row 1 has 2 and one padding position.
const hidden = new Float32Array([1, 2, 3, 4, 5, 6, /* row 1 */ 10, 20, 30, 40, 99, 99]);

describe('poolRow', () => {
  it('means over the real tokens only', () => {
    expect([...poolRow(hidden, 0, 3, 2, 3, 'mean')]).toEqual([3, 4]);
    expect([...poolRow(hidden, 1, 3, 2, 2, 'mean')]).toEqual([20, 30]);
  });

  it('takes the first token for cls and the last real token for last_token', () => {
    expect([...poolRow(hidden, 1, 3, 2, 2, 'cls')]).toEqual([10, 20]);
    expect([...poolRow(hidden, 1, 3, 2, 2, 'last_token')]).toEqual([30, 40]);
    expect([...poolRow(hidden, 0, 3, 2, 3, 'last_token')]).toEqual([5, 6]);
  });

  it('returns a zero vector for an empty row', () => {
    expect([...poolRow(hidden, 0, 3, 2, 0, 'mean')]).toEqual([0, 0]);
  });
});

describe('normalizeRange / normalizeInPlace', () => {
  it('scales only the values in the range, as the first dimensions of a row are renormalized', () => {
    const rows = new Float32Array([9, 9, 3, 4, 12, 9]);
    normalizeRange(rows, 2, 4);
    expect([...rows].map((x) => +x.toFixed(6))).toEqual([9, 9, 0.6, 0.8, 12, 9]);
  });

  it('leaves a zero vector zero', () => {
    expect([...normalizeInPlace(new Float32Array([0, 0]))]).toEqual([0, 0]);
  });

  it('scales a vector to unit length, and leaves one already of unit length untouched', () => {
    const unit = new Float32Array([0.6, 0.8, 0]);
    const before = [...unit];
    expect([...normalizeInPlace(unit)]).toEqual(before);
    const almost = new Float32Array([0.6, 0.8001, 0]);
    const n = Math.hypot(...almost);
    expect([...normalizeInPlace(almost)]).toEqual([...Float32Array.from([Math.fround(0.6) / n, Math.fround(0.8001) / n, 0])]);
  });
});

describe('cosine', () => {
  it('is 1 for parallel vectors and 0 for orthogonal ones', () => {
    expect(cosine([1, 2], [2, 4])).toBeCloseTo(1, 10);
    expect(cosine([1, 0], [0, 3])).toBe(0);
  });
});
