import { describe, expect, it } from 'vitest';
import type { Quad } from './geometry.js';
import type { RgbImage } from './image.js';
import { cropLine, resampleWidth, rotateLine180 } from './line-crop.js';

/** A white image with a dark band along the rotated rectangle's left half and a grey right half. */
function page(): { image: RgbImage; quad: Quad } {
  const width = 200;
  const height = 120;
  const data = new Uint8Array(width * height * 3).fill(255);
  const angle = (20 * Math.PI) / 180;
  const c = { x: 100, y: 60 };
  const u = { x: Math.cos(angle), y: Math.sin(angle) };
  const v = { x: -Math.sin(angle), y: Math.cos(angle) };
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const a = (x + 0.5 - c.x) * u.x + (y + 0.5 - c.y) * u.y;
      const b = (x + 0.5 - c.x) * v.x + (y + 0.5 - c.y) * v.y;
      if (Math.abs(a) <= 60 && Math.abs(b) <= 12) data.fill(a < 0 ? 0 : 128, (y * width + x) * 3, (y * width + x) * 3 + 3);
    }
  }
  const at = (a: number, b: number) => ({ x: c.x + a * u.x + b * v.x, y: c.y + a * u.y + b * v.y });
  return { image: { width, height, data }, quad: [at(-60, -12), at(60, -12), at(60, 12), at(-60, 12)] };
}

const pixel = (img: { width: number; data: Uint8Array }, x: number, y: number) => img.data[(y * img.width + x) * 3];

describe('line crops', () => {
  it('straightens a rotated box into an upright line of the requested height', () => {
    const { image, quad } = page();
    const { image: line, turned } = cropLine(image, quad, 48, 1000);
    expect(turned).toBe(false);
    expect(line.height).toBe(48);
    expect(line.width).toBe(240);
    // Dark on the left half, grey on the right, all the way up and down.
    for (const y of [5, 24, 42]) {
      expect(pixel(line, 30, y)).toBeLessThan(40);
      expect(Math.abs(pixel(line, 200, y) - 128)).toBeLessThan(30);
    }
  });

  it('widens the crop by the margin, showing the page around the box', () => {
    const { image, quad } = page();
    const { image: line } = cropLine(image, quad, 48, 1000, 0.25);
    expect(pixel(line, Math.floor(line.width / 3), 2)).toBeGreaterThan(200);
    expect(pixel(line, Math.floor(line.width / 3), 24)).toBeLessThan(40);
  });

  it('turns tall crops by 90 degrees', () => {
    const { image } = page();
    const tall: Quad = [
      { x: 10, y: 10 },
      { x: 30, y: 10 },
      { x: 30, y: 110 },
      { x: 10, y: 110 },
    ];
    const { image: line, turned } = cropLine(image, tall, 48, 1000);
    expect(turned).toBe(true);
    expect(line.width).toBe(240);
  });

  it('turns a line by 180 degrees and squeezes it to a width', () => {
    const { image, quad } = page();
    const { image: line } = cropLine(image, quad, 48, 1000);
    const turned = rotateLine180(line);
    expect(pixel(turned, line.width - 31, 47 - 24)).toBe(pixel(line, 30, 24));
    const narrow = resampleWidth(line, 120);
    expect(narrow.width).toBe(120);
    expect(pixel(narrow, 15, 24)).toBeLessThan(40);
  });
});
