// Greedy CTC decoding of a recognizer's per-timestep character probabilities (PaddleOCR's CTCLabelDecode):
// take the most likely class at each step, merge repeats, drop the blank (class 0); class i > 0 is the
// dictionary's entry i - 1. The confidence is the mean probability of the characters kept.
import { argmax } from './tensors.js';

export interface Decoded {
  text: string;
  confidence: number;
}

/** Loads a keys file (one character per line) as PaddleOCR does with use_space_char: the space comes last. */
export function dictionaryFromKeys(keys: string): string[] {
  const lines = keys.split(/\r?\n/);
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return [...lines, ' '];
}

/**
 * Decodes item `item` of probabilities shaped [N, T, C]. Leading and trailing spaces are trimmed from the
 * text (they carry no information), not from the confidence.
 */
export function ctcDecode(probs: Float32Array, dims: readonly number[], item: number, dictionary: string[]): Decoded {
  const T = dims[1];
  const C = dims[2];
  const base = item * T * C;
  let text = '';
  let sum = 0;
  let count = 0;
  let previous = -1;
  for (let t = 0; t < T; t++) {
    const { index, value } = argmax(probs, base + t * C, C);
    if (index !== 0 && index !== previous) {
      text += dictionary[index - 1] ?? '';
      sum += value;
      count++;
    }
    previous = index;
  }
  return { text: text.trim(), confidence: count > 0 ? sum / count : 0 };
}
