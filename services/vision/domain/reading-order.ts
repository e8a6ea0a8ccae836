// Reading order of text boxes, in the page's own direction: the dominant text direction (the length-weighted
// sum of each box's first edge, which runs along the text) is turned to point right, then rows go top to
// bottom and boxes within a row left to right. A box joins the current row when its centre lies within half a
// line height of the row's centre, which keeps uneven lines together (PaddleOCR's sorted_boxes uses a fixed
// 10-pixel tolerance in image axes). A page turned by 90 or 180 degrees, or tilted, reads in its own order.
import type { Quad } from './geometry.js';

/** Indices of the quads in reading order; each quad's corners come in the text's order (its top-left first). */
export function readingOrder(quads: Quad[]): number[] {
  let sx = 0;
  let sy = 0;
  for (const q of quads) {
    sx += q[1].x - q[0].x + (q[2].x - q[3].x);
    sy += q[1].y - q[0].y + (q[2].y - q[3].y);
  }
  const theta = sx === 0 && sy === 0 ? 0 : Math.atan2(sy, sx);
  const cos = Math.cos(theta);
  const sin = Math.sin(theta);
  const boxes = quads.map((q, i) => {
    // Coordinates in the frame where the text runs to the right.
    const xs = q.map((p) => p.x * cos + p.y * sin);
    const ys = q.map((p) => -p.x * sin + p.y * cos);
    const top = Math.min(...ys);
    const bottom = Math.max(...ys);
    return { i, cy: (top + bottom) / 2, h: bottom - top, left: Math.min(...xs) };
  });
  boxes.sort((a, b) => a.cy - b.cy || a.left - b.left);
  const rows: { cy: number; h: number; members: typeof boxes }[] = [];
  for (const b of boxes) {
    const row = rows[rows.length - 1];
    if (row && Math.abs(b.cy - row.cy) <= Math.min(row.h, b.h) / 2) {
      row.members.push(b);
      row.cy = row.members.reduce((s, m) => s + m.cy, 0) / row.members.length;
      row.h = Math.max(row.h, b.h);
    } else {
      rows.push({ cy: b.cy, h: b.h, members: [b] });
    }
  }
  return rows.flatMap((r) => r.members.sort((a, b) => a.left - b.left).map((m) => m.i));
}
