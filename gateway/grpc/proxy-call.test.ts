// ProxyCall with stand-in streams, for what real sockets cannot force or show: the order of two HTTP/2 events
// on two sessions (when the gateway ends an answered stream at its deadline, the 'close' of the replica stream
// it has just cancelled may come before the caller's 'wantTrailers'; that order once turned DEADLINE_EXCEEDED
// into UNAVAILABLE), and why a lost attempt was not retried (a spent retry budget, no replica left).
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
  written: Buffer[] = [];
  trailers: OutgoingHttpHeaders | undefined;
  /** The response headers (with the status, for a trailers-only answer). */
  headers: OutgoingHttpHeaders | undefined;
  respond(h: OutgoingHttpHeaders): void {
    this.headers = h;
  }
  write(chunk: Buffer): boolean {
    this.written.push(chunk);
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

function context(replicas: () => PoolReplica | undefined, budget: { onCall(): void; tryRetry(): boolean }, finished: number[]): FrontContext {
  return {
    retry: { maxAttempts: 3, backoffMs: 1, backoffMaxMs: 1, budget },
    log: silentLogger,
    isDraining: () => false,
    tracing: () => false,
    pool: () => ({ pick: replicas }) as unknown as ServicePool,
    upstreamAuthorization: () => undefined,
    onRetry: () => undefined,
    onFinish: (_route: MethodRoute, code: number) => finished.push(code),
    track: () => undefined,
  } as unknown as FrontContext;
}

const replicaWith = (up: ReplicaStream, address = '127.0.0.1:1') =>
  ({ address, outstanding: 0, answered: 0, failed: 0, handle: { upstream: { request: () => up } } }) as unknown as PoolReplica;

function startCall(ctx: FrontContext, on: MethodRoute = route): CallerStream {
  const caller = new CallerStream();
  const call = new ProxyCall(ctx, caller as unknown as ServerHttp2Stream, { ':path': on.path, 'content-type': 'application/grpc' } as IncomingHttpHeaders, on);
  call.start();
  caller.emit('data', Buffer.from([0, 0, 0, 0, 0]));
  caller.emit('end');
  return caller;
}

describe('ProxyCall', () => {
  it('ends an answered stream at its deadline with DEADLINE_EXCEEDED even when the cancelled replica stream closes first', async () => {
    const up = new ReplicaStream();
    const replica = replicaWith(up);
    const finished: number[] = [];
    const caller = startCall(context(() => replica, { onCall: () => undefined, tryRetry: () => true }, finished));
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

  it('counts each call once towards the retry budget, and says why a lost attempt was not retried', async () => {
    const calls: number[] = [];
    const budget = { onCall: () => calls.push(1), tryRetry: () => false };
    const up = new ReplicaStream();
    const finished: number[] = [];
    const caller = startCall(context(() => replicaWith(up), budget, finished));
    // The replica's process dies before it answers: its stream closes without a response.
    up.emit('close');
    await new Promise((r) => setTimeout(r, 5));
    expect(calls).toEqual([1]);
    expect(finished).toEqual([14]);
    expect(String(caller.headers?.['grpc-message'])).toMatch(/failed before it answered.*not retried.*retry budget is spent/);
  });

  it("passes on a replica's UNAVAILABLE message it did not retry as the replica wrote it, not percent-encoded twice", async () => {
    const up = new ReplicaStream();
    const finished: number[] = [];
    const caller = startCall(context(() => replicaWith(up), { onCall: () => undefined, tryRetry: () => false }, finished));
    // Trailers-only UNAVAILABLE, its message percent-encoded as gRPC sends it.
    up.emit('response', { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '14', 'grpc-message': 'the%20model%20is%20draining%20(100%25)' }, 1);
    await new Promise((r) => setTimeout(r, 5));
    expect(finished).toEqual([14]);
    expect(decodeURIComponent(String(caller.headers?.['grpc-message']))).toMatch(/^the model is draining \(100%\); not retried: the gateway's retry budget is spent/);
  });

  it('says so when no other replica is left to retry a lost attempt on', async () => {
    const up = new ReplicaStream();
    const only = replicaWith(up);
    let picks = 0;
    const finished: number[] = [];
    const caller = startCall(context(() => (picks++ === 0 ? only : undefined), { onCall: () => undefined, tryRetry: () => true }, finished));
    up.emit('close');
    await new Promise((r) => setTimeout(r, 10));
    expect(finished).toEqual([14]);
    expect(String(caller.headers?.['grpc-message'])).toMatch(/replica 127\.0\.0\.1:1 of echo failed before it answered.*not retried: no other replica of echo is usable/);
  });

  it('retries a unary call whose replica is lost after its response headers but before its trailers, and the caller sees only the answer', async () => {
    const unaryRoute: MethodRoute = { ...route, path: '/maas.testing.v1.EchoService/Echo', method: 'Echo', kind: 'unary', defaultDeadlineMs: 5000 };
    const lost = new ReplicaStream();
    const good = new ReplicaStream();
    const replicas = [replicaWith(lost, '127.0.0.1:1'), replicaWith(good, '127.0.0.1:2')];
    let picks = 0;
    const finished: number[] = [];
    const caller = startCall(context(() => replicas[picks++], { onCall: () => undefined, tryRetry: () => true }, finished), unaryRoute);
    const grpcHeaders = { ':status': 200, 'content-type': 'application/grpc' };
    // The first replica begins to answer, then its process dies: no trailers, the stream just closes.
    lost.emit('response', grpcHeaders, 0);
    lost.emit('data', Buffer.from([0, 0, 0, 0, 1, 7]));
    lost.emit('close');
    expect(caller.headers, 'nothing of the lost answer reached the caller').toBeUndefined();
    await new Promise((r) => setTimeout(r, 10));
    expect(picks, 'a second replica was tried').toBe(2);
    good.emit('response', grpcHeaders, 0);
    good.emit('data', Buffer.from([0, 0, 0, 0, 1, 9]));
    good.emit('trailers', { 'grpc-status': '0' });
    good.emit('end');
    caller.emit('wantTrailers');
    expect(caller.headers?.[':status']).toBe(200);
    expect(Buffer.concat(caller.written)).toEqual(Buffer.from([0, 0, 0, 0, 1, 9]));
    expect(caller.trailers?.['grpc-status']).toBe('0');
    expect(finished).toEqual([0]);
  });
});
