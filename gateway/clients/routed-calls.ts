// Typed gRPC calls through the gateway's routing, for the HTTP API: the same pools, health-aware balancing,
// retry policy and budget as the gRPC front; the calls themselves go over each replica's HTTP/2 connection
// (typed-calls.ts). A unary call is retried on UNAVAILABLE when the method is idempotent; a stream only until
// its first message arrived.
import * as grpc from '@grpc/grpc-js';
import { UnavailableError } from '../../services/runtime/errors.js';
import { isServiceError } from '../../services/runtime/grpc-status.js';
import { backoffMs, mayRetry } from '../domain/retry.js';
import type { RetrySettings } from '../grpc/front.js';
import type { PoolReplica, ServicePool } from './service-pool.js';

export interface RoutedCall {
  pool: ServicePool | undefined;
  /** Model key for affinity (name@version), or undefined. */
  affinity: string | undefined;
  idempotent: boolean;
  /** Absolute deadline (epoch ms), if any. */
  deadline: number | undefined;
  signal: AbortSignal;
}

export class RoutedCaller {
  constructor(private readonly retry: RetrySettings) {}

  async unary<T>(call: RoutedCall, run: (replica: PoolReplica) => Promise<T>): Promise<T> {
    const tried = new Set<PoolReplica>();
    for (let attempt = 1; ; attempt++) {
      const replica = this.pick(call, tried);
      replica.outstanding++;
      try {
        const result = await run(replica);
        replica.answered++;
        return result;
      } catch (err) {
        if (!isServiceError(err) || err.code !== grpc.status.UNAVAILABLE || call.signal.aborted) throw err;
        replica.failed++;
        const again = mayRetry({ failure: 'unavailable', idempotent: call.idempotent, answered: false, replayable: true, attempts: attempt, maxAttempts: this.retry.maxAttempts });
        if (!again || !(await this.waitBeforeRetry(call, attempt))) throw err;
      } finally {
        replica.outstanding--;
      }
    }
  }

  /** A server stream; retried (on another replica) only while nothing has been received. */
  async *stream<T>(call: RoutedCall, open: (replica: PoolReplica) => AsyncIterable<T>): AsyncIterable<T> {
    const tried = new Set<PoolReplica>();
    for (let attempt = 1; ; attempt++) {
      const replica = this.pick(call, tried);
      let received = false;
      replica.outstanding++;
      try {
        for await (const m of open(replica)) {
          received = true;
          yield m;
        }
        replica.answered++;
        return;
      } catch (err) {
        if (received || !isServiceError(err) || err.code !== grpc.status.UNAVAILABLE || call.signal.aborted) throw err;
        replica.failed++;
        const again = mayRetry({ failure: 'unavailable', idempotent: call.idempotent, answered: false, replayable: true, attempts: attempt, maxAttempts: this.retry.maxAttempts });
        if (!again || !(await this.waitBeforeRetry(call, attempt))) throw err;
      } finally {
        replica.outstanding--;
      }
    }
  }

  private pick(call: RoutedCall, tried: Set<PoolReplica>): PoolReplica {
    // Each call counts once towards the retry budget (a share of calls may be retried).
    if (tried.size === 0) this.retry.budget.onCall();
    const replica = call.pool?.pick(call.affinity, tried);
    if (!replica) {
      const name = call.pool?.name ?? 'the service';
      throw new UnavailableError(`no healthy replica of ${name} is available; retry shortly`, 1000, { reason: 'NO_HEALTHY_REPLICA', metadata: { service: name } });
    }
    tried.add(replica);
    return replica;
  }

  private async waitBeforeRetry(call: RoutedCall, attempt: number): Promise<boolean> {
    const delay = backoffMs(attempt, this.retry.backoffMs, this.retry.backoffMaxMs);
    if ((call.deadline !== undefined && Date.now() + delay >= call.deadline) || !this.retry.budget.tryRetry()) return false;
    await new Promise((r) => setTimeout(r, delay));
    return !call.signal.aborted;
  }
}
