// The order of two HTTP/2 events on two different sessions cannot be forced with real sockets: when the gateway
// ends an answered stream at its deadline, does the caller's 'wantTrailers' come first, or the 'close' of the
// replica stream it has just cancelled? Here both streams are stand-ins, so the test can put the replica's
// 'close' first, the order that once turned DEADLINE_EXCEEDED into UNAVAILABLE (seen in the hostile-input test).
import { EventEmitter } from 'node:events';
import type { ClientHttp2Stream, IncomingHttpHeaders, OutgoingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../services/runtime/logger.js';
import type { PoolReplica, ServicePool } from '../clients/service-pool.js';
import type { MethodRoute } from '../routes/method-table.js';
import type { FrontContext } from './front.js';
import { ProxyCall } from './proxy-call.js';

class CallerStream extends EventEmitter {
  closed = false;
  destroyed = false;
  trailers: OutgoingHttpHeaders | undefined;
  respond(): void {}
  write(): boolean {
    return true;
  }
  end(): void {}
  sendTrailers(t: OutgoingHttpHeaders): void {
    this.trailers = t;
  }
  close(): void {}
  pause(): void {}
  resume(): void {}
}

class ReplicaStream extends EventEmitter {
  id = 1;
  closed = false;
  destroyed = false;
  rstCode: number | undefined;
  write(): boolean {
    return true;
  }
  end(): void {}
  /** Closes at once: the replica side's 'close' is delivered before anything else happens on the caller side. */
  close(code: number): void {
    this.closed = true;
    this.rstCode = code;
    process.nextTick(() => this.emit('close'));
  }
}

const route: MethodRoute = {
  path: '/maas.testing.v1.EchoService/Count',
  service: 'maas.testing.v1.EchoService',
  method: 'Count',
  kind: 'server_stream',
  pool: 'echo',
  modelRefPath: undefined,
  tasks: undefined,
  idempotent: true,
  scope: 'infer',
  defaultDeadlineMs: 30,
  maxRequestBytes: 1024,
  longLived: false,
  open: true,
};

describe('ProxyCall', () => {
  it('ends an answered stream at its deadline with DEADLINE_EXCEEDED even when the cancelled replica stream closes first', async () => {
    const up = new ReplicaStream();
    const replica = { address: '127.0.0.1:1', outstanding: 0, answered: 0, failed: 0, handle: { upstream: { request: () => up } } } as unknown as PoolReplica;
    const finished: number[] = [];
    const ctx = {
      retry: { maxAttempts: 3, backoffMs: 1, backoffMaxMs: 1, budget: { tryRetry: () => true } },
      log: silentLogger,
      isDraining: () => false,
      tracing: () => false,
      pool: () => ({ pick: () => replica }) as unknown as ServicePool,
      upstreamAuthorization: () => undefined,
      onRetry: () => undefined,
      onFinish: (_route: MethodRoute, code: number) => finished.push(code),
      track: () => undefined,
    } as unknown as FrontContext;
    const caller = new CallerStream();
    const call = new ProxyCall(ctx, caller as unknown as ServerHttp2Stream, { ':path': route.path, 'content-type': 'application/grpc' } as IncomingHttpHeaders, route);
    call.start();
    caller.emit('data', Buffer.from([0, 0, 0, 0, 0]));
    caller.emit('end');
    // The replica answers and streams a message; the call is now past the point of retrying.
    up.emit('response', { ':status': 200, 'content-type': 'application/grpc' }, 0);
    up.emit('data', Buffer.from([0, 0, 0, 0, 0]));
    // The deadline passes; the gateway cancels the replica stream, whose 'close' arrives before the caller
    // side asks for the trailers.
    await new Promise((r) => setTimeout(r, 80));
    expect(up.rstCode, 'the replica stream was cancelled').toBeDefined();
    caller.emit('wantTrailers');
    expect(caller.trailers?.['grpc-status']).toBe('4');
    expect(finished).toEqual([4]);
    expect(replica.failed, 'a stream the gateway cancelled is not a replica failure').toBe(0);
  });
});
