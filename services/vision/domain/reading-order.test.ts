import { describe, expect, it } from 'vitest';
import type { Quad } from './geometry.js';
import { readingOrder } from './reading-order.js';

const box = (x: number, y: number, w: number, h: number): Quad => [
  { x, y },
  { x: x + w, y },
  { x: x + w, y: y + h },
  { x, y: y + h },
];

describe('reading order', () => {
  it('reads rows top to bottom and boxes in a row left to right, despite small vertical offsets', () => {
    const quads = [box(300, 52, 100, 20), box(10, 10, 100, 20), box(10, 50, 100, 20), box(200, 13, 80, 20)];
    expect(readingOrder(quads)).toEqual([1, 3, 2, 0]);
  });

  it('reads an upside-down page from the bottom right', () => {
    const quads = [box(10, 10, 100, 20), box(10, 50, 100, 20), box(200, 50, 100, 20)];
    expect(readingOrder(quads, true)).toEqual([2, 1, 0]);
  });
});
