import { describe, expect, it } from 'vitest';
import { textRanges } from './embedder.js';
import { Texts } from './texts.js';

// Each text's estimate is its length, so the tests read as numbers.
const SHAPE = { side: 'right' as const, dimensions: 0, normalize: true };
const ranges = (lengths: number[], maxInputs = 64, maxCost = 1000) =>
  textRanges(Texts.of(lengths.map((n) => 'x'.repeat(n))), SHAPE, { estimate: (size) => size }, maxInputs, maxCost).map((e) => [e.item.start, e.item.end, e.cost]);

describe('textRanges', () => {
  it('keeps inputs of like length in one run costing its longest', () => {
    expect(ranges([10, 14, 12, 20, 9])).toEqual([[0, 5, 20]]);
    // An entry as the batcher takes it: the run's rows, its key, the request's texts and shape.
    const texts = Texts.of(['a b', 'c d e']);
    const [entry] = textRanges(texts, SHAPE, { estimate: (size) => size }, 64, 1000);
    expect(entry).toEqual({ item: { texts, start: 0, end: 2, shape: SHAPE }, cost: 5, rows: 2, key: 5 });
    expect(ranges([7])).toEqual([[0, 1, 7]]);
    expect(ranges([])).toEqual([]);
  });

  it('starts a new run where the longest would pass twice the shortest plus 8', () => {
    // 3 and 14: 14 ≤ 2 × 3 + 8; 3 and 15 not.
    expect(ranges([3, 14])).toEqual([[0, 2, 14]]);
    expect(ranges([3, 15])).toEqual([[0, 1, 3], [1, 2, 15]]);
    // A long input between short ones runs on its own.
    expect(ranges([10, 12, 400, 11, 10])).toEqual([[0, 2, 12], [2, 3, 400], [3, 5, 11]]);
  });

  it('keeps each run within the most inputs and the padded cost given', () => {
    expect(ranges(Array(150).fill(10))).toEqual([[0, 64, 10], [64, 128, 10], [128, 150, 10]]);
    expect(ranges(Array(5).fill(10), 2)).toEqual([[0, 2, 10], [2, 4, 10], [4, 5, 10]]);
    // 100 × 3 = 300 fits a cost of 300; a fourth does not.
    expect(ranges(Array(5).fill(100), 64, 300)).toEqual([[0, 3, 100], [3, 5, 100]]);
    // An input costlier than the cap is a run of its own (the batcher runs it alone).
    expect(ranges([500, 10], 64, 300)).toEqual([[0, 1, 500], [1, 2, 10]]);
  });
});
