// Admission limits: a token bucket per caller (API key or JWT subject) and one global count of calls in
// flight. Both answer "not now, try again in N ms" rather than queueing.

export interface Rate {
  /** Tokens added per second. */
  rps: number;
  /** Bucket size. */
  burst: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private lastSweep = 0;

  /** Takes a token for `key`; returns 0 when allowed, otherwise the milliseconds until a token is there. */
  take(key: string, rate: Rate, now = Date.now()): number {
    if (rate.rps <= 0) return 0;
    let b = this.buckets.get(key);
    if (!b) {
      b = { tokens: rate.burst, at: now };
      this.buckets.set(key, b);
    } else {
      b.tokens = Math.min(rate.burst, b.tokens + ((now - b.at) / 1000) * rate.rps);
      b.at = now;
    }
    if (now - this.lastSweep > 60_000) this.sweep(now, rate);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil(((1 - b.tokens) / rate.rps) * 1000));
  }

  /** Forgets buckets idle long enough to be full again (they would start full anyway). */
  private sweep(now: number, rate: Rate): void {
    this.lastSweep = now;
    const fullAfterMs = (rate.burst / rate.rps) * 1000;
    for (const [k, b] of this.buckets) if (now - b.at > fullAfterMs) this.buckets.delete(k);
  }
}

export class ConcurrencyLimit {
  private count = 0;

  constructor(readonly max: number) {}

  get inFlight(): number {
    return this.count;
  }

  tryAcquire(): boolean {
    if (this.max > 0 && this.count >= this.max) return false;
    this.count++;
    return true;
  }

  release(): void {
    this.count--;
  }
}
