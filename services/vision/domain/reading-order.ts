// Reading order of text boxes: rows from top to bottom, boxes within a row from left to right. A box joins
// the current row when its vertical centre lies within half a line height of the row's centre, which keeps
// slightly tilted or uneven lines together (PaddleOCR's sorted_boxes uses a fixed 10-pixel tolerance).
import type { Quad } from './geometry.js';

/**
 * Indices of the quads in reading order. With `upsideDown`, the page is read as turned by 180 degrees
 * (the bottom-right box first), for pages whose lines were found upside down.
 */
export function readingOrder(quads: Quad[], upsideDown = false): number[] {
  const boxes = quads.map((q, i) => {
    const ys = q.map((p) => (upsideDown ? -p.y : p.y));
    const xs = q.map((p) => (upsideDown ? -p.x : p.x));
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
