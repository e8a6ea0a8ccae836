// When a failed attempt may be tried again, how long to wait, and the budget that keeps retries from
// multiplying load when a whole service is struggling (the gRPC/Envoy retry-budget idea).

/** How an attempt failed, as far as retrying is concerned. */
export type AttemptFailure =
  /** The call never reached a replica (connection refused, stream refused, no connection): always safe to retry. */
  | 'not_sent'
  /** The replica went away before it answered (connection reset, process killed). */
  | 'lost'
  /** The replica answered UNAVAILABLE (draining, overloaded dependency). */
  | 'unavailable';

export interface RetryContext {
  failure: AttemptFailure;
  /** The method has no side effects that repeat harmfully (reads, inference). */
  idempotent: boolean;
  /** Some of the response (headers or a message) already went to the caller. */
  answered: boolean;
  /** The request is held whole by the gateway (unary and server-streaming requests). */
  replayable: boolean;
  /** Attempts made so far, the failed one included. */
  attempts: number;
  maxAttempts: number;
}

export function mayRetry(c: RetryContext): boolean {
  if (c.answered || !c.replayable || c.attempts >= c.maxAttempts) return false;
  return c.failure === 'not_sent' || c.idempotent;
}

/** Full-jitter exponential backoff: uniform in [0, min(max, base × 2^(attempt-1))]. */
export function backoffMs(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  return Math.round(random() * Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1)));
}

/**
 * Retries allowed over a sliding window: `minPerSecond` per second always, plus `ratio` of the calls made
 * in the window. A retry that does not fit is not made and the call fails with the attempt's error.
 */
export class RetryBudget {
  private readonly calls: number[];
  private readonly retries: number[];
  private slot = 0;
  private slotSecond = 0;
  private callSum = 0;
  private retrySum = 0;

  constructor(
    private readonly ratio: number,
    private readonly minPerSecond: number,
    private readonly windowSeconds = 10,
  ) {
    this.calls = new Array<number>(windowSeconds).fill(0);
    this.retries = new Array<number>(windowSeconds).fill(0);
  }

  onCall(now = Date.now()): void {
    this.advance(now);
    this.calls[this.slot]!++;
    this.callSum++;
  }

  /** Takes one retry from the budget; false when it is spent. */
  tryRetry(now = Date.now()): boolean {
    this.advance(now);
    const allowed = this.minPerSecond * this.windowSeconds + this.ratio * this.callSum;
    if (this.retrySum + 1 > allowed) return false;
    this.retries[this.slot]!++;
    this.retrySum++;
    return true;
  }

  private advance(now: number): void {
    const second = Math.floor(now / 1000);
    if (second === this.slotSecond) return;
    const steps = Math.min(second - this.slotSecond, this.windowSeconds);
    for (let i = 0; i < steps; i++) {
      this.slot = (this.slot + 1) % this.windowSeconds;
      this.callSum -= this.calls[this.slot]!;
      this.retrySum -= this.retries[this.slot]!;
      this.calls[this.slot] = 0;
      this.retries[this.slot] = 0;
    }
    this.slotSecond = second;
  }
}
