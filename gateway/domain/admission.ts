// What every call (gRPC or HTTP) passes before it is routed: who the caller is (when auth is on), whether
// they hold the scope, their rate limit, and the gateway's global limit of calls in flight.
import { OverloadedError } from '../../services/runtime/errors.js';
import { ANONYMOUS, authorize, type Authenticator, type Principal, type Scope } from './auth.js';
import { ConcurrencyLimit, RateLimiter, type Rate } from './limits.js';

export interface AdmissionOptions {
  /** Undefined: auth is off and every caller is anonymous with every scope. */
  authenticator: Authenticator | undefined;
  /** Default per-caller rate (rps 0: none). */
  rate: Rate;
  maxConcurrentCalls: number;
}

export class Admission {
  private readonly limiter = new RateLimiter();
  readonly concurrency: ConcurrencyLimit;

  constructor(private readonly options: AdmissionOptions) {
    this.concurrency = new ConcurrencyLimit(options.maxConcurrentCalls);
  }

  get authEnabled(): boolean {
    return this.options.authenticator !== undefined;
  }

  /** The caller; throws UNAUTHENTICATED. Synchronous unless a JWT has to be verified. */
  authenticate(authorization: string | undefined): Principal | Promise<Principal> {
    const a = this.options.authenticator;
    return a ? a.authenticate(authorization) : ANONYMOUS;
  }

  /** Throws PERMISSION_DENIED without the scope and RESOURCE_EXHAUSTED (with a retry delay) over the caller's rate. */
  check(principal: Principal, scope: Scope): void {
    if (!this.options.authenticator) return;
    authorize(principal, scope);
    const rate = principal.rate ?? this.options.rate;
    if (rate.rps <= 0) return;
    const waitMs = this.limiter.take(principal.name, rate);
    if (waitMs > 0) {
      throw new OverloadedError(`rate limit of ${rate.rps} calls/s for ${principal.name} reached; retry in ${waitMs} ms`, waitMs, {
        reason: 'RATE_LIMITED',
        metadata: { principal: principal.name },
      });
    }
  }

  /** Takes a slot of the global concurrency limit; throws RESOURCE_EXHAUSTED when none is free. Release it with release(). */
  acquire(): void {
    if (!this.concurrency.tryAcquire()) {
      throw new OverloadedError(`the gateway has ${this.concurrency.max} calls in flight, its limit; retry shortly`, 100, { reason: 'GATEWAY_CONCURRENCY_LIMIT' });
    }
  }

  release(): void {
    this.concurrency.release();
  }
}
