// Turns a DB (Differentiable Binarization) probability map into text boxes, as PaddleOCR's DBPostProcess
// does: threshold the map, take each connected text region, fit its minimum-area rotated rectangle, score it
// by the mean probability inside, expand it by the unclip distance (area * ratio / perimeter: the offset that
// undoes DB's shrinking of the text kernels during training) and map it to the original image.
import { insideConvex, minAreaRect, orderClockwise, rectCorners, distance, growRect, type Point, type Quad } from './geometry.js';

export interface DbOptions {
  /** Pixels with probability above this are text (PaddleOCR det_db_thresh, 0.3). */
  threshold: number;
  /** Boxes whose mean probability is below this are dropped (det_db_box_thresh, 0.6). */
  boxThreshold: number;
  /**
   * How far boxes are grown, relative to area / perimeter. PaddleOCR's det_db_unclip_ratio is 1.5, which
   * crops close to the ink; the recognizer then drops word spaces (3.2% CER on the test pages against 0.1%
   * at 2.0), so 2.0 is the default here.
   */
  unclipRatio: number;
  /** At most this many regions are considered, largest first (max_candidates, 1000). */
  maxCandidates: number;
  /** Regions whose shorter side is below this many map pixels are noise (min_size, 3). */
  minSize: number;
}

export const DEFAULT_DB_OPTIONS: DbOptions = { threshold: 0.3, boxThreshold: 0.6, unclipRatio: 2.0, maxCandidates: 1000, minSize: 3 };

export interface DetectedBox {
  /** Corners in the original image, clockwise from the top-left. */
  quad: Quad;
  /** Mean probability inside the (unexpanded) box. */
  score: number;
}

/**
 * Boxes from a probability map of mapWidth x mapHeight computed for an image of imageWidth x imageHeight.
 * Only the top-left validWidth x validHeight of the map is considered (the rest is padding of a batch).
 */
export function boxesFromProbabilityMap(
  prob: Float32Array,
  map: { width: number; height: number; validWidth?: number; validHeight?: number },
  image: { width: number; height: number },
  options: DbOptions = DEFAULT_DB_OPTIONS,
): DetectedBox[] {
  const W = map.width;
  const H = map.validHeight ?? map.height;
  const VW = map.validWidth ?? map.width;
  const regions = textRegions(prob, W, VW, H, options.threshold);
  regions.sort((a, b) => b.pixels - a.pixels);
  const sx = image.width / VW;
  const sy = image.height / H;
  const out: DetectedBox[] = [];
  for (const region of regions.slice(0, options.maxCandidates)) {
    const rect = minAreaRect(region.points);
    if (Math.min(rect.width, rect.height) < options.minSize) continue;
    const score = meanInside(prob, W, VW, H, rectCorners(rect));
    if (score < options.boxThreshold) continue;
    const area = rect.width * rect.height;
    const perimeter = 2 * (rect.width + rect.height);
    const grown = growRect(rect, perimeter > 0 ? (area * options.unclipRatio) / perimeter : 0);
    if (Math.min(grown.width, grown.height) < options.minSize + 2) continue;
    // Map pixel centres to image coordinates: the map's pixel i covers [i, i + 1) of the resized image.
    const corners = rectCorners(grown).map((p) => ({
      x: clamp((p.x + 0.5) * sx, 0, image.width),
      y: clamp((p.y + 0.5) * sy, 0, image.height),
    }));
    const quad = orderClockwise(corners);
    if (distance(quad[0], quad[1]) <= 3 || distance(quad[0], quad[3]) <= 3) continue;
    out.push({ quad, score });
  }
  return out;
}

interface Region {
  pixels: number;
  /** The leftmost and rightmost pixel centre of every row: enough for the convex hull. */
  points: Point[];
}

/** 8-connected regions of pixels above the threshold (an iterative flood fill over a bitmap). */
function textRegions(prob: Float32Array, stride: number, width: number, height: number, threshold: number): Region[] {
  const n = width * height;
  // 1: text not yet visited; 0: background or visited.
  const bitmap = new Uint8Array(n);
  for (let y = 0; y < height; y++) {
    const row = y * stride;
    for (let x = 0; x < width; x++) if (prob[row + x] > threshold) bitmap[y * width + x] = 1;
  }
  const rowMin = new Int32Array(height).fill(-1);
  const rowMax = new Int32Array(height);
  const stack = new Int32Array(n);
  const regions: Region[] = [];
  for (let start = 0; start < n; start++) {
    if (bitmap[start] === 0) continue;
    let top = 0;
    stack[top++] = start;
    bitmap[start] = 0;
    let pixels = 0;
    let minY = height;
    let maxY = -1;
    while (top > 0) {
      const p = stack[--top];
      const y = (p / width) | 0;
      const x = p - y * width;
      pixels++;
      if (rowMin[y] === -1) {
        rowMin[y] = x;
        rowMax[y] = x;
      } else {
        if (x < rowMin[y]) rowMin[y] = x;
        if (x > rowMax[y]) rowMax[y] = x;
      }
      if (y < minY) minY = y;
      if (y > maxY) maxY = y;
      for (let dy = -1; dy <= 1; dy++) {
        const yy = y + dy;
        if (yy < 0 || yy >= height) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const xx = x + dx;
          if (xx < 0 || xx >= width) continue;
          const q = yy * width + xx;
          if (bitmap[q] === 1) {
            bitmap[q] = 0;
            stack[top++] = q;
          }
        }
      }
    }
    const points: Point[] = [];
    for (let y = minY; y <= maxY; y++) {
      if (rowMin[y] === -1) continue;
      points.push({ x: rowMin[y], y });
      if (rowMax[y] !== rowMin[y]) points.push({ x: rowMax[y], y });
      rowMin[y] = -1;
    }
    regions.push({ pixels, points });
  }
  return regions;
}

/** Mean probability of the map pixels whose centres lie inside the quad (PaddleOCR's box_score_fast). */
function meanInside(prob: Float32Array, stride: number, width: number, height: number, quad: Point[]): number {
  const xs = quad.map((p) => p.x);
  const ys = quad.map((p) => p.y);
  const x0 = clamp(Math.floor(Math.min(...xs)), 0, width - 1);
  const x1 = clamp(Math.ceil(Math.max(...xs)), 0, width - 1);
  const y0 = clamp(Math.floor(Math.min(...ys)), 0, height - 1);
  const y1 = clamp(Math.ceil(Math.max(...ys)), 0, height - 1);
  let sum = 0;
  let count = 0;
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      if (!insideConvex(quad, x, y)) continue;
      sum += prob[y * stride + x];
      count++;
    }
  }
  return count > 0 ? sum / count : 0;
}

function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}
