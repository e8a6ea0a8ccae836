import { describe, expect, it } from 'vitest';
import { convexHull, insideConvex, minAreaRect, orderClockwise, rectCorners, rectToQuad, type Point, type Quad } from './geometry.js';

const rotate = (p: Point, deg: number, c: Point = { x: 0, y: 0 }): Point => {
  const a = (deg * Math.PI) / 180;
  const dx = p.x - c.x;
  const dy = p.y - c.y;
  return { x: c.x + dx * Math.cos(a) - dy * Math.sin(a), y: c.y + dx * Math.sin(a) + dy * Math.cos(a) };
};

describe('geometry', () => {
  it('finds the convex hull of points with interior points left out', () => {
    const hull = convexHull([
      { x: 0, y: 0 },
      { x: 4, y: 0 },
      { x: 2, y: 1 },
      { x: 4, y: 3 },
      { x: 0, y: 3 },
      { x: 1, y: 2 },
    ]);
    expect(hull).toHaveLength(4);
  });

  it('fits the minimum-area rectangle of a rotated rectangle of points', () => {
    const points: Point[] = [];
    for (let x = 0; x <= 40; x += 2) for (let y = 0; y <= 10; y += 2) points.push(rotate({ x, y }, 17, { x: 20, y: 5 }));
    const r = minAreaRect(points);
    expect([Math.max(r.width, r.height), Math.min(r.width, r.height)].map((v) => Math.round(v))).toEqual([40, 10]);
    expect(r.cx).toBeCloseTo(20, 6);
    expect(r.cy).toBeCloseTo(5, 6);
  });

  it('orders corners clockwise from the top-left', () => {
    const q = orderClockwise([
      { x: 10, y: 20 },
      { x: 0, y: 0 },
      { x: 0, y: 20 },
      { x: 10, y: 0 },
    ]);
    expect(q).toEqual([
      { x: 0, y: 0 },
      { x: 10, y: 0 },
      { x: 10, y: 20 },
      { x: 0, y: 20 },
    ]);
    const corners = rectCorners(minAreaRect([rotate({ x: 0, y: 0 }, 10), rotate({ x: 30, y: 0 }, 10), rotate({ x: 30, y: 8 }, 10), rotate({ x: 0, y: 8 }, 10)]));
    const [tl, tr, br, bl] = orderClockwise(corners);
    expect(tl.x).toBeLessThan(tr.x);
    expect(bl.x).toBeLessThan(br.x);
    expect(tl.y).toBeLessThan(bl.y);
  });

  it('maps the rectangle corners onto the quad with the perspective transform', () => {
    const quad: Quad = [
      { x: 10, y: 12 },
      { x: 90, y: 20 },
      { x: 85, y: 60 },
      { x: 5, y: 50 },
    ];
    const h = rectToQuad(40, 20, quad);
    const map = (x: number, y: number) => {
      const d = h[6] * x + h[7] * y + h[8];
      return { x: (h[0] * x + h[1] * y + h[2]) / d, y: (h[3] * x + h[4] * y + h[5]) / d };
    };
    const got = [map(0, 0), map(40, 0), map(40, 20), map(0, 20)];
    got.forEach((p, i) => {
      expect(p.x).toBeCloseTo(quad[i].x, 6);
      expect(p.y).toBeCloseTo(quad[i].y, 6);
    });
  });

  it('tells points inside a convex quad from points outside', () => {
    const q = [
      { x: 0, y: 0 },
      { x: 10, y: 0 },
      { x: 10, y: 10 },
      { x: 0, y: 10 },
    ];
    expect(insideConvex(q, 5, 5)).toBe(true);
    expect(insideConvex(q, 10, 5)).toBe(true);
    expect(insideConvex(q, 11, 5)).toBe(false);
  });
});
