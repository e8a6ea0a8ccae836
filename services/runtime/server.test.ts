import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { HealthClient, HealthCheckResponse_ServingStatus as S } from '../../gen/grpc/health/v1/health.js';
import { EchoClient, echoProto, echoService } from '../../test/fixtures/echo-service.js';
import { listServices } from '../../test/support/reflection.js';
import { createClient, serverStream, unary } from './client.js';
import { decodeStatus } from './grpc-status.js';
import { silentLogger } from './logger.js';
import { MeshServer } from './server.js';

const settings = {
  host: '127.0.0.1',
  port: 0,
  drainGraceMs: 5000,
  maxReceiveMessageBytes: 1024 * 1024,
  maxSendMessageBytes: 1024 * 1024,
  keepaliveTimeMs: 30_000,
  keepaliveTimeoutMs: 10_000,
};

let server: MeshServer | undefined;
const clients: grpc.Client[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await server?.close();
  server = undefined;
});

async function start(overrides: Partial<typeof settings> = {}) {
  server = new MeshServer({ component: 'echo', settings: { ...settings, ...overrides }, log: silentLogger, services: [echoService()], extraDescriptors: echoProto });
  const port = await server.start();
  const address = `127.0.0.1:${port}`;
  const health = createClient(HealthClient, address);
  const echo = new EchoClient(address, grpc.credentials.createInsecure()) as grpc.Client & Record<string, Function>;
  clients.push(health, echo);
  return { server, address, health, echo };
}

function call<T>(client: Record<string, Function>, method: string, req: unknown, options: grpc.CallOptions = {} as grpc.CallOptions): Promise<T> {
  return new Promise((resolve, reject) => client[method](req, new grpc.Metadata(), options, (err: Error | null, res: T) => (err ? reject(err) : resolve(res))));
}

describe('MeshServer', () => {
  it('reports SERVING for the server and each service once started', async () => {
    const { health } = await start();
    expect((await unary(health.check.bind(health), { service: '' })).status).toBe(S.SERVING);
    expect((await unary(health.check.bind(health), { service: 'maas.testing.v1.EchoService' })).status).toBe(S.SERVING);
    expect((await unary(health.check.bind(health), { service: 'grpc.health.v1.Health' })).status).toBe(S.SERVING);
    const list = await unary(health.list.bind(health), {});
    expect(Object.keys(list.statuses).sort()).toEqual(['', 'grpc.health.v1.Health', 'maas.testing.v1.EchoService']);
  });

  it('answers Check for an unknown service with NOT_FOUND', async () => {
    const { health } = await start();
    await expect(unary(health.check.bind(health), { service: 'nope.Service' })).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
  });

  it('streams status changes to Watch through drain', async () => {
    const { health, server } = await start();
    const seen: S[] = [];
    const watching = (async () => {
      try {
        for await (const r of serverStream(health.watch.bind(health), { service: '' })) seen.push(r.status);
      } catch {
        /* the stream ends when the server stops */
      }
    })();
    await waitFor(() => seen.length === 1);
    await server.drain();
    await watching;
    expect(seen[0]).toBe(S.SERVING);
    expect(seen).toContain(S.NOT_SERVING);
  });

  it('answers Watch for an unknown service with SERVICE_UNKNOWN instead of failing', async () => {
    const { health } = await start();
    const ac = new AbortController();
    for await (const r of serverStream(health.watch.bind(health), { service: 'nope' }, { signal: ac.signal })) {
      expect(r.status).toBe(S.SERVICE_UNKNOWN);
      break;
    }
  });

  it('lists every service through a reflection client', async () => {
    const { address } = await start();
    expect(await listServices(address)).toEqual(['grpc.health.v1.Health', 'maas.testing.v1.EchoService']);
  });

  it('lets a slow call finish during drain and refuses new calls with UNAVAILABLE', async () => {
    const { echo, server } = await start();
    const slow = call<{ text: string }>(echo, 'Slow', { ms: 400 });
    await waitFor(() => server.inFlight === 1);
    const draining = server.drain();
    await waitFor(() => server.isDraining);
    await expect(call(echo, 'Echo', { text: 'x' })).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    expect((await slow).text).toBe('slept 400');
    expect((await draining).completed).toBe(true);
  });

  it('cuts off calls that outlive the grace period', async () => {
    const { echo, server } = await start({ drainGraceMs: 100 });
    const slow = call(echo, 'Slow', { ms: 60_000 });
    await waitFor(() => server.inFlight === 1);
    expect((await server.drain()).completed).toBe(false);
    await expect(slow).rejects.toMatchObject({ code: expect.any(Number) });
  });

  it.each([
    ['invalid', grpc.status.INVALID_ARGUMENT],
    ['not_found', grpc.status.NOT_FOUND],
    ['exists', grpc.status.ALREADY_EXISTS],
    ['precondition', grpc.status.FAILED_PRECONDITION],
    ['overloaded', grpc.status.RESOURCE_EXHAUSTED],
    ['unavailable', grpc.status.UNAVAILABLE],
    ['unauthenticated', grpc.status.UNAUTHENTICATED],
    ['denied', grpc.status.PERMISSION_DENIED],
    ['data_loss', grpc.status.DATA_LOSS],
    ['cancelled', grpc.status.CANCELLED],
  ])('maps a %s error to status %i with ErrorInfo', async (kind, code) => {
    const { echo } = await start();
    const err = await call(echo, 'Fail', { kind }).catch((e: grpc.ServiceError) => e);
    const decoded = decodeStatus(err as grpc.ServiceError);
    expect(decoded.code).toBe(code);
    expect(decoded.errorInfo?.domain).toBe('maas.dev');
    expect(decoded.errorInfo?.reason).toMatch(/^[A-Z_]+$/);
  });

  it('sends field violations, precondition failures, resource info and retry delays as google.rpc details', async () => {
    const { echo } = await start();
    const get = async (kind: string) => decodeStatus((await call(echo, 'Fail', { kind }).catch((e) => e)) as grpc.ServiceError);
    expect((await get('invalid')).badRequest?.fieldViolations).toEqual([{ field: 'inputs[2]', description: 'must not be empty', reason: '' }]);
    expect((await get('precondition')).preconditionFailure?.violations[0]).toMatchObject({ type: 'ALIAS', subject: 'prod' });
    expect((await get('not_found')).resourceInfo).toMatchObject({ resourceType: 'model', resourceName: 'nope' });
    expect((await get('overloaded')).retryAfterMs).toBe(250);
    expect((await get('unavailable')).retryAfterMs).toBe(100);
  });

  it('turns an unexpected error into INTERNAL without leaking its message', async () => {
    const { echo } = await start();
    const err = (await call(echo, 'Fail', { kind: 'bug' }).catch((e) => e)) as grpc.ServiceError;
    expect(err.code).toBe(grpc.status.INTERNAL);
    expect(err.details).not.toContain('secret');
  });

  it('aborts the handler signal when the caller cancels a stream, and when the deadline passes', async () => {
    const { echo, server } = await start();
    const stream = echo.Count({ ms: 20 }) as grpc.ClientReadableStream<{ text: string }>;
    const got: string[] = [];
    await new Promise<void>((resolve) => {
      stream.on('data', (m) => {
        got.push(m.text);
        if (got.length === 3) stream.cancel();
      });
      stream.on('error', () => resolve());
    });
    await waitFor(() => server.inFlight === 0);
    const err = (await call(echo, 'Slow', { ms: 60_000 }, { deadline: Date.now() + 150 } as grpc.CallOptions).catch((e) => e)) as grpc.ServiceError;
    expect(err.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    await waitFor(() => server.inFlight === 0);
  });

  it('reads a client stream', async () => {
    const { echo } = await start();
    const res = await new Promise<{ text: string }>((resolve, reject) => {
      const c = echo.Collect((err: Error | null, r: { text: string }) => (err ? reject(err) : resolve(r))) as grpc.ClientWritableStream<unknown>;
      for (const t of ['a', 'b', 'c']) c.write({ text: t });
      c.end();
    });
    expect(res.text).toBe('a,b,c');
  });

  it('rejects a message over the size limit with RESOURCE_EXHAUSTED instead of dropping the connection', async () => {
    const { echo } = await start({ maxReceiveMessageBytes: 1000 });
    await expect(call(echo, 'Echo', { text: 'x'.repeat(5000) })).rejects.toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED });
    expect((await call<{ text: string }>(echo, 'Echo', { text: 'ok' })).text).toBe('ok');
  });
});

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
