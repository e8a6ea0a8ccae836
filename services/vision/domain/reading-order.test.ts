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
    // Corners in the text's order: an upside-down line starts at the box's bottom-right.
    const turn = (q: Quad): Quad => [q[2], q[3], q[0], q[1]];
    const quads = [box(10, 10, 100, 20), box(10, 50, 100, 20), box(200, 50, 100, 20)].map(turn);
    expect(readingOrder(quads)).toEqual([2, 1, 0]);
  });

  it('reads a page turned by 90 degrees clockwise from its right-hand column', () => {
    // Text runs downwards; its top-left corner is the box's top-right in the image.
    const down = (x: number, y: number, w: number, h: number): Quad => {
      const q = box(x, y, w, h);
      return [q[1], q[2], q[3], q[0]];
    };
    const quads = [down(10, 10, 20, 100), down(50, 10, 20, 100), down(50, 130, 20, 60)];
    expect(readingOrder(quads)).toEqual([1, 2, 0]);
  });
});
