// The gateway's gRPC pass-through against echo replicas in this process: results and errors unchanged,
// deadlines shortened, cancellation, trace context, balancing over healthy replicas, retries, size limits,
// admission limits, health, reflection and drain.
import * as grpc from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { HealthClient, HealthCheckResponse_ServingStatus as S } from '../gen/grpc/health/v1/health.js';
import { createClient, unary } from '../services/runtime/client.js';
import { decodeStatus } from '../services/runtime/grpc-status.js';
import { startTracing } from '../services/runtime/telemetry/tracing-sdk.js';
import { listServices } from './support/reflection.js';
import { ECHO_SERVICE, echoCall, echoClient, startEchoReplica, startGateway, waitFor, type EchoStub, type StartedGateway } from './gateway-support.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

beforeAll(() => {
  // The gateway continues the caller's trace with its own span when tracing runs (no exporter here).
  startTracing({ ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: '', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: '' });
});

async function replica(port = 0) {
  const r = await startEchoReplica(port);
  cleanups.push(() => r.server.close());
  return r;
}

async function gatewayFor(targets: string[], env: Record<string, string> = {}): Promise<StartedGateway & { client: EchoStub }> {
  const gw = await startGateway(env, { echoTargets: targets });
  const client = echoClient(gw.address);
  cleanups.push(async () => {
    client.close();
    await gw.close();
  });
  await waitFor(() => gw.gateway.pools.get('echo')!.usable === targets.length || targets.length === 0, 10_000, 'replicas healthy');
  return { ...gw, client };
}

function failure(p: Promise<unknown>): Promise<grpc.ServiceError> {
  return p.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (e: grpc.ServiceError) => e,
  );
}

describe('gateway gRPC pass-through', () => {
  it('returns what the replica returns for unary, server-streaming and client-streaming calls', async () => {
    const r = await replica();
    const { client } = await gatewayFor([r.address]);
    expect(await echoCall(client, 'Echo', { text: 'héllo wörld' })).toEqual({ text: 'héllo wörld' });
    const big = 'x'.repeat(200_000);
    expect((await echoCall(client, 'Echo', { text: big })).text).toBe(big);

    const collected = await new Promise<{ text: string }>((resolve, reject) => {
      const call = (client.Collect as Function)((err: Error | null, res: { text: string }) => (err ? reject(err) : resolve(res))) as grpc.ClientWritableStream<{ text: string }>;
      for (const t of ['a', 'b', 'c']) call.write({ text: t });
      call.end();
    });
    expect(collected.text).toBe('a,b,c');

    const stream = client.Count({ ms: 1 }) as grpc.ClientReadableStream<{ text: string }>;
    const got: string[] = [];
    await new Promise<void>((resolve) => {
      stream.on('data', (m: { text: string }) => {
        got.push(m.text);
        if (got.length === 5) stream.cancel();
      });
      stream.on('error', () => resolve());
    });
    expect(got).toEqual(['0', '1', '2', '3', '4']);
  });

  it('passes every error with its google.rpc details exactly as the replica sent it', async () => {
    const r = await replica();
    const { client } = await gatewayFor([r.address]);
    const direct = echoClient(r.address);
    cleanups.push(() => direct.close());
    for (const kind of ['invalid', 'not_found', 'exists', 'precondition', 'overloaded', 'unauthenticated', 'denied', 'data_loss', 'bug']) {
      const viaGateway = decodeStatus(await failure(echoCall(client, 'Fail', { kind })));
      const straight = decodeStatus(await failure(echoCall(direct, 'Fail', { kind })));
      expect(viaGateway, kind).toEqual(straight);
    }
  });

  it('passes the caller deadline on to the replica, shortened by the time already spent', async () => {
    const r = await replica();
    const { client } = await gatewayFor([r.address]);
    await echoCall(client, 'Echo', { text: 'x' }, { deadline: Date.now() + 5000 });
    const seen = r.record.remainingMs.at(-1)!;
    expect(seen).toBeGreaterThan(0);
    expect(seen).toBeLessThan(5000);
    // A deadline weeks away (beyond what a timer can hold) is honoured too, not cut short.
    expect(await echoCall(client, 'Echo', { text: 'far' }, { deadline: Date.now() + 40 * 86_400_000 })).toEqual({ text: 'far' });
  });

  it("sets the method's default deadline when the caller sets none", async () => {
    const r = await replica();
    const { client } = await gatewayFor([r.address], { MAAS_GATEWAY_DEFAULT_DEADLINES: '*=30s,EchoService/Echo=7s' });
    await echoCall(client, 'Echo', { text: 'x' });
    const seen = r.record.remainingMs.at(-1)!;
    expect(seen).toBeGreaterThan(0);
    expect(seen).toBeLessThanOrEqual(7000);
  });

  it('ends the call with DEADLINE_EXCEEDED and stops the replica when the deadline passes', async () => {
    const r = await replica();
    const { client } = await gatewayFor([r.address], { MAAS_GATEWAY_DEFAULT_DEADLINES: 'EchoService/Count=300ms' });
    const stream = client.Count({ ms: 20 }) as grpc.ClientReadableStream<unknown>;
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      stream.on('data', () => undefined);
      stream.on('error', resolve);
    });
    expect(err.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    await waitFor(() => r.record.countAborted === 1, 5000, 'the replica to see the deadline');
  });

  it('ends a stream whose deadline passes while the caller is not reading with DEADLINE_EXCEEDED', async () => {
    const r = await replica();
    const { client } = await gatewayFor([r.address], { MAAS_GATEWAY_DEFAULT_DEADLINES: 'EchoService/Count=300ms' });
    // The caller stops reading, so the gateway's answer waits behind the data it holds (backpressure on both
    // sides); when it goes out it still carries the deadline's status. (Which of the two streams' events comes
    // first cannot be forced over real sockets; gateway/grpc/proxy-call.test.ts puts the replica's first.)
    const stream = client.Count({ ms: 0 }) as grpc.ClientReadableStream<unknown>;
    stream.pause();
    const err = new Promise<grpc.ServiceError>((resolve) => stream.on('error', resolve));
    await new Promise((res) => setTimeout(res, 800));
    stream.on('data', () => undefined);
    stream.resume();
    const e = await err;
    expect(`${grpc.status[e.code]}: ${e.details}`).toMatch(/^DEADLINE_EXCEEDED/);
  });

  it("cancels the replica's stream as soon as the caller cancels", async () => {
    const r = await replica();
    const { client } = await gatewayFor([r.address]);
    const stream = client.Count({ ms: 10 }) as grpc.ClientReadableStream<unknown>;
    let n = 0;
    stream.on('data', () => {
      if (++n === 3) stream.cancel();
    });
    stream.on('error', () => undefined);
    await waitFor(() => r.record.countAborted === 1, 5000, 'the replica to see the cancel');
    const produced = r.record.countProduced[0]!;
    await new Promise((res) => setTimeout(res, 100));
    expect(r.record.countProduced[0]).toBe(produced);
  });

  it("continues the caller's W3C trace context to the replica under the gateway's own span", async () => {
    const r = await replica();
    const { client } = await gatewayFor([r.address]);
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const md = new grpc.Metadata();
    md.set('traceparent', `00-${traceId}-00f067aa0ba902b7-01`);
    md.set('x-custom', 'kept');
    await echoCall(client, 'Echo', { text: 'x' }, { metadata: md });
    const got = r.record.metadata.at(-1)!;
    const traceparent = String(got.get('traceparent')[0]);
    expect(traceparent.split('-')[1]).toBe(traceId);
    expect(traceparent.split('-')[2]).not.toBe('00f067aa0ba902b7');
    expect(got.get('x-custom')).toEqual(['kept']);
    expect(trace.getTracerProvider()).toBeDefined();
  });

  it('spreads calls over healthy replicas and moves off one that starts draining', async () => {
    const a = await replica();
    const b = await replica();
    const { client, gateway } = await gatewayFor([a.address, b.address]);
    await Promise.all(Array.from({ length: 40 }, (_, i) => echoCall(client, 'Echo', { text: String(i) })));
    expect(a.record.calls).toBeGreaterThan(0);
    expect(b.record.calls).toBeGreaterThan(0);
    const draining = a.server.drain(60_000);
    const pool = gateway.pools.get('echo')!;
    await waitFor(() => pool.set.replicas.find((x) => x.address === a.address)!.health !== 'serving', 5000, 'the gateway to see the drain');
    const before = b.record.calls;
    await Promise.all(Array.from({ length: 20 }, (_, i) => echoCall(client, 'Echo', { text: String(i) })));
    expect(b.record.calls - before).toBe(20);
    await draining;
  });

  it('retries an UNAVAILABLE answer on another replica, up to the attempt limit', async () => {
    const a = await replica();
    const b = await replica();
    const { client } = await gatewayFor([a.address, b.address], { MAAS_GATEWAY_RETRY_MAX_ATTEMPTS: '3' });
    const err = await failure(echoCall(client, 'Fail', { kind: 'unavailable' }));
    expect(err.code).toBe(grpc.status.UNAVAILABLE);
    expect(a.record.calls + b.record.calls).toBe(3);
    expect(a.record.calls).toBeGreaterThan(0);
    expect(b.record.calls).toBeGreaterThan(0);
  });

  it('moves a call to a healthy replica when the chosen one cannot be reached', async () => {
    const a = await replica();
    const b = await replica();
    const { client, gateway } = await gatewayFor([a.address, b.address]);
    // Whether the health watch or a refused connection tells the gateway first, no call fails.
    await a.server.close();
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => echoCall(client, 'Echo', { text: String(i) })));
    expect(results.map((r) => r.text)).toEqual(Array.from({ length: 20 }, (_, i) => String(i)));
    const pool = gateway.pools.get('echo')!;
    await waitFor(() => !pool.set.replicas.find((x) => x.address === a.address)!.usable(Date.now()), 5000, 'the closed replica to be left out');
  });

  it('answers UNAVAILABLE with a retry delay when no replica is healthy', async () => {
    const gw2 = await startGateway({}, { echoTargets: ['127.0.0.1:1'] });
    cleanups.push(() => gw2.close());
    const c2 = echoClient(gw2.address);
    cleanups.push(() => c2.close());
    await waitFor(() => gw2.gateway.pools.get('echo')!.set.replicas[0]!.health === 'unreachable', 5000, 'the replica to be unreachable');
    const d = decodeStatus(await failure(echoCall(c2, 'Echo', { text: 'x' })));
    expect(d.code).toBe(grpc.status.UNAVAILABLE);
    expect(d.errorInfo?.reason).toBe('NO_HEALTHY_REPLICA');
    expect(d.retryAfterMs).toBeGreaterThan(0);
  });

  it("refuses a request message over the method's size limit with a clear RESOURCE_EXHAUSTED and keeps the connection", async () => {
    const r = await replica();
    const { client } = await gatewayFor([r.address], { MAAS_GATEWAY_MAX_REQUEST_BYTES: 'EchoService/*=1KiB' });
    const d = decodeStatus(await failure(echoCall(client, 'Echo', { text: 'x'.repeat(5000) })));
    expect(d.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(d.message).toMatch(/larger than the gateway's limit of 1024 bytes for Echo/);
    expect(d.errorInfo?.reason).toBe('MESSAGE_TOO_LARGE');
    expect(d.retryAfterMs).toBeUndefined();
    expect(r.record.calls).toBe(0);

    const streamErr = await new Promise<grpc.ServiceError>((resolve) => {
      const call = (client.Collect as Function)((err: grpc.ServiceError) => resolve(err)) as grpc.ClientWritableStream<{ text: string }>;
      call.write({ text: 'small' });
      call.write({ text: 'y'.repeat(5000) });
      call.end();
    });
    expect(streamErr.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(await echoCall(client, 'Echo', { text: 'still fine' })).toEqual({ text: 'still fine' });
  });

  it('answers RESOURCE_EXHAUSTED with a retry delay beyond the concurrency limit', async () => {
    const r = await replica();
    const { client, gateway } = await gatewayFor([r.address], { MAAS_GATEWAY_MAX_CONCURRENT_CALLS: '2' });
    const slow = [echoCall(client, 'Slow', { ms: 500 }), echoCall(client, 'Slow', { ms: 500 })];
    await waitFor(() => gateway.admission.concurrency.inFlight === 2);
    const d = decodeStatus(await failure(echoCall(client, 'Echo', { text: 'x' })));
    expect(d.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(d.retryAfterMs).toBeGreaterThan(0);
    await Promise.all(slow);
    expect(await echoCall(client, 'Echo', { text: 'after' })).toEqual({ text: 'after' });
  });

  it('serves health per fronted service and reflection listing every public service', async () => {
    const r = await replica();
    const { address } = await gatewayFor([r.address]);
    const services = await listServices(address);
    expect(services).toEqual(expect.arrayContaining(['grpc.health.v1.Health', ECHO_SERVICE, 'maas.registry.v1.ModelRegistryService']));
    const health = createClient(HealthClient, address);
    cleanups.push(() => health.close());
    expect((await unary(health.check.bind(health), { service: '' })).status).toBe(S.SERVING);
    await waitFor(async () => (await unary(health.check.bind(health), { service: ECHO_SERVICE })).status === S.SERVING);
    // The registry of this test does not exist: its service is reported as not serving.
    expect((await unary(health.check.bind(health), { service: 'maas.registry.v1.ModelRegistryService' })).status).toBe(S.NOT_SERVING);
  });

  it('drains: calls in flight finish, new calls get UNAVAILABLE, health turns NOT_SERVING', async () => {
    const r = await replica();
    const { client, gateway } = await gatewayFor([r.address]);
    const slow = echoCall(client, 'Slow', { ms: 400 });
    await waitFor(() => gateway.server.inFlight === 1);
    const drained = gateway.server.drain(10_000);
    await waitFor(() => gateway.server.health.get('') === S.NOT_SERVING);
    const err = await failure(echoCall(client, 'Echo', { text: 'late' }));
    expect(err.code).toBe(grpc.status.UNAVAILABLE);
    expect(await slow).toEqual({ text: 'slept 400' });
    expect((await drained).completed).toBe(true);
  });
});
