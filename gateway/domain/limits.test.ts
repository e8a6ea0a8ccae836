import { describe, expect, it } from 'vitest';
import { ConcurrencyLimit, RateLimiter } from './limits.js';

describe('RateLimiter', () => {
  it('allows a burst, then one call per token, and says how long to wait', () => {
    const r = new RateLimiter();
    const rate = { rps: 2, burst: 3 };
    const t = 1_000_000;
    expect([r.take('k', rate, t), r.take('k', rate, t), r.take('k', rate, t)]).toEqual([0, 0, 0]);
    expect(r.take('k', rate, t)).toBe(500);
    expect(r.take('k', rate, t + 500)).toBe(0);
    expect(r.take('other', rate, t)).toBe(0);
  });
});

describe('ConcurrencyLimit', () => {
  it('refuses beyond the limit until a slot is released; 0 means no limit', () => {
    const c = new ConcurrencyLimit(2);
    expect([c.tryAcquire(), c.tryAcquire(), c.tryAcquire()]).toEqual([true, true, false]);
    c.release();
    expect(c.tryAcquire()).toBe(true);
    const none = new ConcurrencyLimit(0);
    for (let i = 0; i < 100; i++) expect(none.tryAcquire()).toBe(true);
  });
});
