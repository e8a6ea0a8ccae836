import { describe, expect, it } from 'vitest';
import { boxesFromProbabilityMap, DEFAULT_DB_OPTIONS } from './db-postprocess.js';

/** A probability map with text kernels (value 0.9) in the given rectangles [x0, y0, x1, y1). */
function map(width: number, height: number, rects: [number, number, number, number][], value = 0.9): Float32Array {
  const prob = new Float32Array(width * height);
  for (const [x0, y0, x1, y1] of rects) for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) prob[y * width + x] = value;
  return prob;
}

describe('DB post-processing', () => {
  it('finds one box per text region, grown by the unclip distance, in image coordinates', () => {
    const prob = map(128, 64, [
      [10, 10, 110, 18],
      [10, 40, 60, 48],
    ]);
    // The map was computed for the image scaled by 1/2.
    const boxes = boxesFromProbabilityMap(prob, { width: 128, height: 64 }, { width: 256, height: 128 });
    expect(boxes).toHaveLength(2);
    const sorted = boxes.sort((a, b) => a.quad[0].y - b.quad[0].y);
    const [first] = sorted;
    // Kernel 100 x 8 (99 x 7 between pixel centres) grows by 2.0 x area / perimeter on each side, then x2.
    const d = (2.0 * 99 * 7) / (2 * (99 + 7));
    expect(first.quad[0].x).toBeCloseTo((10.5 - d) * 2, 0);
    expect(first.quad[0].y).toBeCloseTo((10.5 - d) * 2, 0);
    expect(first.quad[2].x).toBeCloseTo((109.5 + d) * 2, 0);
    expect(first.quad[2].y).toBeCloseTo((17.5 + d) * 2, 0);
    expect(first.score).toBeCloseTo(0.9, 5);
  });

  it('drops regions below the box threshold and specks below the minimum size', () => {
    const prob = map(100, 40, [
      [5, 5, 60, 12],
      [70, 30, 72, 32],
    ], 0.5);
    expect(boxesFromProbabilityMap(prob, { width: 100, height: 40 }, { width: 100, height: 40 })).toHaveLength(0);
    const strong = map(100, 40, [
      [5, 5, 60, 12],
      [70, 30, 72, 32],
    ]);
    expect(boxesFromProbabilityMap(strong, { width: 100, height: 40 }, { width: 100, height: 40 })).toHaveLength(1);
  });

  it('ignores the padded part of a batched map', () => {
    const prob = map(128, 64, [
      [10, 10, 50, 18],
      [100, 10, 120, 18],
    ]);
    const boxes = boxesFromProbabilityMap(prob, { width: 128, height: 64, validWidth: 64, validHeight: 32 }, { width: 64, height: 32 }, DEFAULT_DB_OPTIONS);
    expect(boxes).toHaveLength(1);
  });
});
