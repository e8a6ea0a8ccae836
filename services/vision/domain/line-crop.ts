// Straightens a text line out of the page: the quad is mapped onto an upright rectangle by a perspective
// transform (PaddleOCR's get_rotate_crop_image), sampled straight at the recognizer's line height so the crop
// and the resize are one pass. Downscaling averages several samples per output pixel so thin strokes of
// large text are not lost. Tall crops (height >= 1.5 x width) are turned by 90 degrees, as PaddleOCR does for
// vertical text.
import { distance, rectToQuad, type Quad } from './geometry.js';
import type { RgbImage } from './image.js';

/** A line image: RGB, interleaved, `height` rows of `width` pixels. */
export interface LineImage {
  width: number;
  height: number;
  data: Uint8Array;
}

export interface CroppedLine {
  image: LineImage;
  /** The crop was turned by 90 degrees (vertical text): it reads the quad as [q1, q2, q3, q0]. */
  turned: boolean;
}

/**
 * Crops the quad into a line image `lineHeight` pixels high and at most maxWidth wide. `margin` widens the
 * crop on every side by that fraction of the line's height: context the recognizer needs to see word gaps.
 */
export function cropLine(image: RgbImage, quad: Quad, lineHeight: number, maxWidth: number, margin = 0): CroppedLine {
  let q = margin > 0 ? widen(quad, margin) : quad;
  let cw = Math.max(distance(q[0], q[1]), distance(q[2], q[3]));
  let ch = Math.max(distance(q[0], q[3]), distance(q[1], q[2]));
  const turned = ch >= 1.5 * cw;
  if (turned) {
    // np.rot90 of the crop: its top-right corner becomes the top-left.
    q = [q[1], q[2], q[3], q[0]];
    [cw, ch] = [ch, cw];
  }
  cw = Math.max(cw, 1);
  ch = Math.max(ch, 1);
  const width = Math.max(1, Math.min(maxWidth, Math.ceil((lineHeight * cw) / ch)));
  const height = lineHeight;
  const h = rectToQuad(cw, ch, q);
  const out = new Uint8Array(width * height * 3);
  // Samples per output pixel along each axis: enough to cover the source pixels it spans.
  const kx = Math.min(4, Math.max(1, Math.round(cw / width)));
  const ky = Math.min(4, Math.max(1, Math.round(ch / height)));
  const inv = 1 / (kx * ky);
  const src = image.data;
  const W = image.width;
  const H = image.height;
  const sxs = cw / width;
  const sys = ch / height;
  const acc = [0, 0, 0];
  for (let v = 0; v < height; v++) {
    for (let u = 0; u < width; u++) {
      acc[0] = acc[1] = acc[2] = 0;
      for (let j = 0; j < ky; j++) {
        const ry = (v + (j + 0.5) / ky) * sys;
        for (let i = 0; i < kx; i++) {
          const rx = (u + (i + 0.5) / kx) * sxs;
          const d = h[6] * rx + h[7] * ry + 1;
          // Continuous source coordinates, shifted so pixel centres are at integers.
          const x = (h[0] * rx + h[1] * ry + h[2]) / d - 0.5;
          const y = (h[3] * rx + h[4] * ry + h[5]) / d - 0.5;
          sampleBilinear(src, W, H, x, y, acc);
        }
      }
      const o = (v * width + u) * 3;
      out[o] = acc[0] * inv + 0.5;
      out[o + 1] = acc[1] * inv + 0.5;
      out[o + 2] = acc[2] * inv + 0.5;
    }
  }
  return { image: { width, height, data: out }, turned };
}

/** The quad grown outwards along its own sides by margin x its shorter side. */
function widen(q: Quad, margin: number): Quad {
  const w = (distance(q[0], q[1]) + distance(q[3], q[2])) / 2;
  const h = (distance(q[0], q[3]) + distance(q[1], q[2])) / 2;
  if (w === 0 || h === 0) return q;
  const m = margin * Math.min(w, h);
  const ux = ((q[1].x - q[0].x + q[2].x - q[3].x) / 2 / w) * m;
  const uy = ((q[1].y - q[0].y + q[2].y - q[3].y) / 2 / w) * m;
  const vx = ((q[3].x - q[0].x + q[2].x - q[1].x) / 2 / h) * m;
  const vy = ((q[3].y - q[0].y + q[2].y - q[1].y) / 2 / h) * m;
  return [
    { x: q[0].x - ux - vx, y: q[0].y - uy - vy },
    { x: q[1].x + ux - vx, y: q[1].y + uy - vy },
    { x: q[2].x + ux + vx, y: q[2].y + uy + vy },
    { x: q[3].x - ux + vx, y: q[3].y - uy + vy },
  ];
}

/** Adds the bilinear sample at (x, y) to acc, replicating the border (cv2.BORDER_REPLICATE). */
function sampleBilinear(src: Uint8Array, W: number, H: number, x: number, y: number, acc: number[]): void {
  if (x < 0) x = 0;
  else if (x > W - 1) x = W - 1;
  if (y < 0) y = 0;
  else if (y > H - 1) y = H - 1;
  const x0 = Math.floor(x);
  const y0 = Math.floor(y);
  const x1 = x0 + 1 < W ? x0 + 1 : x0;
  const y1 = y0 + 1 < H ? y0 + 1 : y0;
  const fx = x - x0;
  const fy = y - y0;
  const w00 = (1 - fx) * (1 - fy);
  const w10 = fx * (1 - fy);
  const w01 = (1 - fx) * fy;
  const w11 = fx * fy;
  const i00 = (y0 * W + x0) * 3;
  const i10 = (y0 * W + x1) * 3;
  const i01 = (y1 * W + x0) * 3;
  const i11 = (y1 * W + x1) * 3;
  for (let c = 0; c < 3; c++) acc[c] += src[i00 + c] * w00 + src[i10 + c] * w10 + src[i01 + c] * w01 + src[i11 + c] * w11;
}

/** The line turned by 180 degrees. */
export function rotateLine180(line: LineImage): LineImage {
  const n = line.width * line.height;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const s = i * 3;
    const d = (n - 1 - i) * 3;
    out[d] = line.data[s];
    out[d + 1] = line.data[s + 1];
    out[d + 2] = line.data[s + 2];
  }
  return { width: line.width, height: line.height, data: out };
}

/** The line scaled horizontally to `width` (area averaging when shrinking, linear when stretching). */
export function resampleWidth(line: LineImage, width: number): LineImage {
  if (width === line.width) return line;
  const out = new Uint8Array(width * line.height * 3);
  const scale = line.width / width;
  for (let u = 0; u < width; u++) {
    const a = u * scale;
    const b = a + scale;
    for (let v = 0; v < line.height; v++) {
      const row = v * line.width;
      let r = 0;
      let g = 0;
      let bl = 0;
      let wsum = 0;
      if (scale >= 1) {
        for (let x = Math.floor(a); x < Math.ceil(b) && x < line.width; x++) {
          const w = Math.min(b, x + 1) - Math.max(a, x);
          if (w <= 0) continue;
          const i = (row + x) * 3;
          r += line.data[i] * w;
          g += line.data[i + 1] * w;
          bl += line.data[i + 2] * w;
          wsum += w;
        }
      } else {
        const c = Math.min(line.width - 1, Math.max(0, (u + 0.5) * scale - 0.5));
        const x0 = Math.floor(c);
        const x1 = Math.min(line.width - 1, x0 + 1);
        const f = c - x0;
        const i0 = (row + x0) * 3;
        const i1 = (row + x1) * 3;
        r = line.data[i0] * (1 - f) + line.data[i1] * f;
        g = line.data[i0 + 1] * (1 - f) + line.data[i1 + 1] * f;
        bl = line.data[i0 + 2] * (1 - f) + line.data[i1 + 2] * f;
        wsum = 1;
      }
      const o = (v * width + u) * 3;
      out[o] = r / wsum + 0.5;
      out[o + 1] = g / wsum + 0.5;
      out[o + 2] = bl / wsum + 0.5;
    }
  }
  return { width, height: line.height, data: out };
}
