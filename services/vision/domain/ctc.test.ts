import { describe, expect, it } from 'vitest';
import { ctcDecode, dictionaryFromKeys } from './ctc.js';

/** Probabilities [1, T, C] with the given class winning at each step with probability p. */
function steps(classes: number[], C: number, p = 0.9): Float32Array {
  const out = new Float32Array(classes.length * C).fill((1 - p) / (C - 1));
  classes.forEach((c, t) => (out[t * C + c] = p));
  return out;
}

describe('CTC decoding', () => {
  const dictionary = dictionaryFromKeys('a\nb\nc\n');

  it('appends the space after the keys, as PaddleOCR does', () => {
    expect(dictionary).toEqual(['a', 'b', 'c', ' ']);
  });

  it('merges repeats, drops blanks, and keeps letters repeated across a blank', () => {
    // classes: 0 blank, 1 a, 2 b, 3 c, 4 space
    const probs = steps([0, 1, 1, 0, 1, 2, 2, 4, 3, 0], 5);
    const d = ctcDecode(probs, [1, 10, 5], 0, dictionary);
    expect(d.text).toBe('aab c');
    expect(d.confidence).toBeCloseTo(0.9, 5);
  });

  it('decodes each item of a batch and trims outer spaces', () => {
    const probs = new Float32Array([...steps([4, 1, 4], 5, 0.8), ...steps([2, 0, 0], 5, 0.6)]);
    expect(ctcDecode(probs, [2, 3, 5], 0, dictionary).text).toBe('a');
    expect(ctcDecode(probs, [2, 3, 5], 1, dictionary)).toMatchObject({ text: 'b' });
    expect(ctcDecode(probs, [2, 3, 5], 1, dictionary).confidence).toBeCloseTo(0.6, 5);
  });

  it('gives an empty text with zero confidence for all blanks', () => {
    expect(ctcDecode(steps([0, 0], 5), [1, 2, 5], 0, dictionary)).toEqual({ text: '', confidence: 0 });
  });
});
