import { describe, expect, it } from 'vitest';
import { backoffMs, mayRetry, RetryBudget, type RetryContext } from './retry.js';

const base: RetryContext = { failure: 'unavailable', idempotent: true, answered: false, replayable: true, attempts: 1, maxAttempts: 3 };

describe('mayRetry', () => {
  it('retries idempotent unary calls on UNAVAILABLE and on a replica lost before answering', () => {
    expect(mayRetry(base)).toBe(true);
    expect(mayRetry({ ...base, failure: 'lost' })).toBe(true);
  });

  it('retries a call that never reached a replica even when it has side effects', () => {
    expect(mayRetry({ ...base, idempotent: false, failure: 'not_sent' })).toBe(true);
    expect(mayRetry({ ...base, idempotent: false, failure: 'lost' })).toBe(false);
    expect(mayRetry({ ...base, idempotent: false })).toBe(false);
  });

  it('never retries once part of the answer went to the caller, nor a stream it cannot replay, nor past the attempts', () => {
    expect(mayRetry({ ...base, answered: true, failure: 'not_sent' })).toBe(false);
    expect(mayRetry({ ...base, replayable: false, failure: 'not_sent' })).toBe(false);
    expect(mayRetry({ ...base, attempts: 3 })).toBe(false);
  });
});

describe('backoffMs', () => {
  it('grows exponentially with full jitter up to the ceiling', () => {
    expect(backoffMs(1, 20, 250, () => 1)).toBe(20);
    expect(backoffMs(3, 20, 250, () => 1)).toBe(80);
    expect(backoffMs(10, 20, 250, () => 1)).toBe(250);
    expect(backoffMs(3, 20, 250, () => 0)).toBe(0);
  });
});

describe('RetryBudget', () => {
  it('allows the minimum per second plus a ratio of calls, over a sliding window', () => {
    const b = new RetryBudget(0.1, 1, 10);
    const t = 1_000_000;
    let allowed = 0;
    for (let i = 0; i < 100; i++) b.onCall(t);
    for (let i = 0; i < 100; i++) if (b.tryRetry(t)) allowed++;
    expect(allowed).toBe(20); // 1/s × 10 s + 10% of 100 calls
    expect(b.tryRetry(t + 11_000)).toBe(true); // the window moved on
  });
});
