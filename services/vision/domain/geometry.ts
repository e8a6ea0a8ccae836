// Plane geometry for text boxes: convex hulls, minimum-area rotated rectangles (rotating calipers), corner
// ordering, point-in-quad tests and the perspective transform that maps a rectangle onto a quadrilateral.
// These replace the OpenCV calls PaddleOCR makes (minAreaRect, boxPoints, getPerspectiveTransform).

export interface Point {
  x: number;
  y: number;
}

/** Four corners: top-left, top-right, bottom-right, bottom-left (of the text as it reads). */
export type Quad = [Point, Point, Point, Point];

/** A rotated rectangle: centre, unit direction of its first side, and the two side lengths. */
export interface RotatedRect {
  cx: number;
  cy: number;
  /** Unit vector along the `width` side. */
  ux: number;
  uy: number;
  width: number;
  height: number;
}

const cross = (o: Point, a: Point, b: Point) => (a.x - o.x) * (b.y - o.y) - (a.y - o.y) * (b.x - o.x);

/** Convex hull (Andrew's monotone chain), counter-clockwise in a y-down frame's mathematical sense. */
export function convexHull(points: Point[]): Point[] {
  if (points.length <= 2) return points.slice();
  const p = points.slice().sort((a, b) => a.x - b.x || a.y - b.y);
  const lower: Point[] = [];
  for (const q of p) {
    while (lower.length >= 2 && cross(lower[lower.length - 2]!, lower[lower.length - 1]!, q) <= 0) lower.pop();
    lower.push(q);
  }
  const upper: Point[] = [];
  for (let i = p.length - 1; i >= 0; i--) {
    const q = p[i]!;
    while (upper.length >= 2 && cross(upper[upper.length - 2]!, upper[upper.length - 1]!, q) <= 0) upper.pop();
    upper.push(q);
  }
  lower.pop();
  upper.pop();
  return lower.concat(upper);
}

/**
 * The rectangle of least area around the points (rotating calipers over the hull's edges). For one point or
 * collinear points the rectangle has a zero side.
 */
export function minAreaRect(points: Point[]): RotatedRect {
  const hull = convexHull(points);
  if (hull.length === 0) return { cx: 0, cy: 0, ux: 1, uy: 0, width: 0, height: 0 };
  if (hull.length === 1) return { cx: hull[0]!.x, cy: hull[0]!.y, ux: 1, uy: 0, width: 0, height: 0 };
  let best: RotatedRect | undefined;
  let bestArea = Infinity;
  for (let i = 0; i < hull.length; i++) {
    const a = hull[i]!;
    const b = hull[(i + 1) % hull.length]!;
    const len = Math.hypot(b.x - a.x, b.y - a.y);
    if (len === 0) continue;
    const ux = (b.x - a.x) / len;
    const uy = (b.y - a.y) / len;
    let minU = Infinity;
    let maxU = -Infinity;
    let minV = Infinity;
    let maxV = -Infinity;
    for (const p of hull) {
      const u = p.x * ux + p.y * uy;
      const v = -p.x * uy + p.y * ux;
      if (u < minU) minU = u;
      if (u > maxU) maxU = u;
      if (v < minV) minV = v;
      if (v > maxV) maxV = v;
    }
    const area = (maxU - minU) * (maxV - minV);
    if (area < bestArea - 1e-9) {
      bestArea = area;
      const cu = (minU + maxU) / 2;
      const cv = (minV + maxV) / 2;
      best = { cx: cu * ux - cv * uy, cy: cu * uy + cv * ux, ux, uy, width: maxU - minU, height: maxV - minV };
    }
  }
  return best ?? { cx: hull[0]!.x, cy: hull[0]!.y, ux: 1, uy: 0, width: 0, height: 0 };
}

/** The same rectangle grown by `d` on every side. */
export function growRect(r: RotatedRect, d: number): RotatedRect {
  return { ...r, width: r.width + 2 * d, height: r.height + 2 * d };
}

/** The rectangle's corners, in no particular order. */
export function rectCorners(r: RotatedRect): Point[] {
  const hx = (r.ux * r.width) / 2;
  const hy = (r.uy * r.width) / 2;
  const vx = (-r.uy * r.height) / 2;
  const vy = (r.ux * r.height) / 2;
  return [
    { x: r.cx - hx - vx, y: r.cy - hy - vy },
    { x: r.cx + hx - vx, y: r.cy + hy - vy },
    { x: r.cx + hx + vx, y: r.cy + hy + vy },
    { x: r.cx - hx + vx, y: r.cy - hy + vy },
  ];
}

/**
 * Orders four corners clockwise (on screen, y down) starting from the top-left: the corner with the smallest
 * x + y starts, and the direction is chosen so the box's longer dimension comes first when ambiguous.
 */
export function orderClockwise(points: Point[]): Quad {
  const cx = points.reduce((s, p) => s + p.x, 0) / points.length;
  const cy = points.reduce((s, p) => s + p.y, 0) / points.length;
  // Screen-clockwise is increasing atan2 angle when y grows downwards.
  const sorted = points.slice().sort((a, b) => Math.atan2(a.y - cy, a.x - cx) - Math.atan2(b.y - cy, b.x - cx));
  let start = 0;
  let best = Infinity;
  sorted.forEach((p, i) => {
    const s = p.x + p.y;
    if (s < best - 1e-6) {
      best = s;
      start = i;
    }
  });
  return [0, 1, 2, 3].map((k) => sorted[(start + k) % 4]!) as Quad;
}

export const distance = (a: Point, b: Point) => Math.hypot(a.x - b.x, a.y - b.y);

/** Whether p is inside the convex quad (or on its edge); the quad may wind either way. */
export function insideConvex(q: Point[], x: number, y: number): boolean {
  let sign = 0;
  for (let i = 0; i < q.length; i++) {
    const a = q[i]!;
    const b = q[(i + 1) % q.length]!;
    const c = (b.x - a.x) * (y - a.y) - (b.y - a.y) * (x - a.x);
    if (c === 0) continue;
    const s = c > 0 ? 1 : -1;
    if (sign === 0) sign = s;
    else if (s !== sign) return false;
  }
  return true;
}

/**
 * The 3x3 homography (row-major, h[8] = 1) taking the rectangle (0,0)-(w,0)-(w,h)-(0,h) onto the quad's
 * corners in order: what cv2.getPerspectiveTransform(dst -> src) computes, used to sample the source.
 */
export function rectToQuad(width: number, height: number, q: Quad): number[] {
  const src: Point[] = [
    { x: 0, y: 0 },
    { x: width, y: 0 },
    { x: width, y: height },
    { x: 0, y: height },
  ];
  // Solve the 8 unknowns of x' = (a x + b y + c) / (g x + h y + 1), y' = (d x + e y + f) / (g x + h y + 1).
  const A: number[][] = [];
  const B: number[] = [];
  for (let i = 0; i < 4; i++) {
    const { x, y } = src[i]!;
    const { x: X, y: Y } = q[i]!;
    A.push([x, y, 1, 0, 0, 0, -x * X, -y * X]);
    B.push(X);
    A.push([0, 0, 0, x, y, 1, -x * Y, -y * Y]);
    B.push(Y);
  }
  const h = solve(A, B);
  return [...h, 1];
}

/** Gaussian elimination with partial pivoting; singular systems give zeros (a degenerate quad). */
function solve(A: number[][], B: number[]): number[] {
  const n = B.length;
  const m = A.map((row, i) => [...row, B[i]!]);
  for (let col = 0; col < n; col++) {
    let pivot = col;
    for (let r = col + 1; r < n; r++) if (Math.abs(m[r]![col]!) > Math.abs(m[pivot]![col]!)) pivot = r;
    if (Math.abs(m[pivot]![col]!) < 1e-12) return new Array<number>(n).fill(0);
    [m[col], m[pivot]] = [m[pivot]!, m[col]!];
    for (let r = 0; r < n; r++) {
      if (r === col) continue;
      const f = m[r]![col]! / m[col]![col]!;
      if (f === 0) continue;
      for (let c = col; c <= n; c++) m[r]![c]! -= f * m[col]![c]!;
    }
  }
  return m.map((row, i) => row[n]! / row[i]!);
}
