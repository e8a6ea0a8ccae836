import http2, { type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterEach, describe, expect, it, onTestFinished, vi } from 'vitest';
import { HealthClient, HealthCheckResponse_ServingStatus as S } from '../../gen/grpc/health/v1/health.js';
import { EchoClient, echoProto, echoService } from '../../test/fixtures/echo-service.js';
import { listServices } from '../../test/support/reflection.js';
import { createClient, serverStream, unary } from './client.js';
import { decodeStatus } from './grpc-status.js';
import { silentLogger } from './logger.js';
import { defineService, MeshServer, type CallContext } from './server.js';
import { InvalidArgumentError } from './errors.js';
import { takeStreamsFirst } from './stream-hook.js';
import { grpcFrame, UnaryStream } from './unary-stream.js';
import { waitFor } from './testing/wait.js';

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

describe('MeshServer: unary calls served on the HTTP/2 stream itself', () => {
  const ECHO = '/maas.testing.v1.EchoService/Echo';
  const echoBytes = (text: string) => Buffer.concat([Buffer.from([0x0a, Buffer.byteLength(text)]), Buffer.from(text)]);

  it('takes unary calls from grpc-js (the hook on its stream dispatch is in place), streaming ones not', async () => {
    const answered = vi.spyOn(UnaryStream.prototype, 'sendFrame');
    try {
      const { server, echo } = await start();
      expect(server.servesUnaryItself).toBe(true);
      expect((await call<{ text: string }>(echo, 'Echo', { text: 'mine' })).text).toBe('mine');
      expect(answered).toHaveBeenCalledTimes(1);
      const res = await new Promise<{ text: string }>((resolve, reject) => {
        const c = echo.Collect((err: Error | null, r: { text: string }) => (err ? reject(err) : resolve(r))) as grpc.ClientWritableStream<unknown>;
        c.write({ text: 'grpc-js' });
        c.end();
      });
      expect(res.text).toBe('grpc-js');
      expect(answered).toHaveBeenCalledTimes(1);
    } finally {
      answered.mockRestore();
    }
  });

  it('does not wrap a grpc-js Server without the stream dispatch methods (MeshServer then leaves every call to grpc-js)', () => {
    expect(takeStreamsFirst({} as grpc.Server, () => true)).toBe(false);
    expect(takeStreamsFirst(new grpc.Server(), () => false)).toBe(true);
  });

  it('answers a status whose message holds a lone surrogate, with U+FFFD in its place, unary or streaming', async () => {
    const refuse = () => {
      throw new InvalidArgumentError('input "\ud800" is not text');
    };
    await startWith({ Fail: async () => refuse(), Count: async function* () { yield refuse(); } });
    const err = (await call(echoClient!, 'Fail', { kind: 'x' }).catch((e) => e)) as grpc.ServiceError;
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toBe('input "\ufffd" is not text');
    const streamed = await new Promise<grpc.ServiceError>((resolve) => {
      const stream = echoClient!.Count({ ms: 1 }) as grpc.ClientReadableStream<unknown>;
      stream.on('data', () => undefined);
      stream.on('error', resolve);
    });
    expect([streamed.code, streamed.details]).toEqual([grpc.status.INVALID_ARGUMENT, 'input "\ufffd" is not text']);
    expect((await call<{ text: string }>(echoClient!, 'Echo', { text: 'alive' })).text).toBe('alive');
  });

  it('hands the handler the caller metadata, text and binary, without the transport headers', async () => {
    let seen: grpc.Metadata | undefined;
    await startWith({ Echo: async (req: { text: string }, ctx: CallContext) => ((seen = ctx.metadata), { text: req.text }) });
    const md = new grpc.Metadata();
    md.set('x-tenant', 'acme');
    md.set('x-blob-bin', Buffer.from([0, 1, 255]));
    await new Promise((resolve, reject) => echoClient!.Echo({ text: 'hi' }, md, { deadline: Date.now() + 60_000 }, (e: Error | null, r: unknown) => (e ? reject(e) : resolve(r))));
    expect(seen!.get('x-tenant')).toEqual(['acme']);
    expect(seen!.get('x-blob-bin')).toEqual([Buffer.from([0, 1, 255])]);
    for (const key of ['grpc-timeout', 'content-type', 'te', 'grpc-accept-encoding']) expect(seen!.get(key)).toEqual([]);
  });

  it('answers DEADLINE_EXCEEDED at the deadline even when the handler ignores its signal, and aborts the signal', async () => {
    const spans = recordSpans();
    let signal: AbortSignal | undefined;
    let release!: () => void;
    const { server } = await startWith({
      Slow: async (_req: unknown, ctx: CallContext) => {
        signal = ctx.signal;
        await new Promise<void>((r) => (release = r));
        return { text: 'late' };
      },
    });
    // Sent without a deadline of the client's own, so the status is the server's.
    const r = await raw(`127.0.0.1:${server.port}`, '/maas.testing.v1.EchoService/Slow', [grpcFrame(Buffer.from([0x08, 0x01]))], { 'grpc-timeout': '200m' });
    expect(Number(r.headers['grpc-status'])).toBe(grpc.status.DEADLINE_EXCEEDED);
    await waitFor(() => signal?.aborted === true);
    expect((signal!.reason as Error & { kind: string }).kind).toBe('deadline_exceeded');
    release();
    await waitFor(() => server.inFlight === 0);
    // The handler's late answer went nowhere; its span says what the caller got.
    await waitFor(() => spans.getFinishedSpans().length === 1);
    expect(spans.getFinishedSpans()[0]!.attributes['rpc.grpc.status_code']).toBe(grpc.status.DEADLINE_EXCEEDED);
  });

  it('aborts the handler signal when the caller cancels a unary call', async () => {
    let signal: AbortSignal | undefined;
    const { server } = await startWith({ Slow: async (_req: unknown, ctx: CallContext) => ((signal = ctx.signal), new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)))) });
    const pending = echoClient!.Slow({ ms: 1 }, (_e: Error | null) => undefined) as grpc.ClientUnaryCall;
    await waitFor(() => server.inFlight === 1);
    pending.cancel();
    await waitFor(() => server.inFlight === 0);
    expect((signal!.reason as Error & { kind: string }).kind).toBe('cancelled');
  });

  it('leaves a compressed request to grpc-js, which answers it', async () => {
    const answered = vi.spyOn(UnaryStream.prototype, 'sendFrame');
    onTestFinished(() => answered.mockRestore());
    const { address } = await start();
    const gz = new EchoClient(address, grpc.credentials.createInsecure(), { 'grpc.default_compression_algorithm': grpc.compressionAlgorithms.gzip }) as grpc.Client & Record<string, Function>;
    clients.push(gz);
    expect((await call<{ text: string }>(gz, 'Echo', { text: 'squeezed '.repeat(50) })).text).toBe('squeezed '.repeat(50));
    expect(answered).not.toHaveBeenCalled();
  });

  it('reads a request cut into one-byte DATA frames', async () => {
    const { address } = await start();
    const frame = grpcFrame(echoBytes('piece by piece'));
    const r = await raw(address, ECHO, [...frame].map((b) => Buffer.from([b])));
    expect(r.trailers['grpc-status']).toBe('0');
    expect(r.data.subarray(5)).toEqual(echoBytes('piece by piece'));
  });

  it.each([
    ['no message', [], grpc.status.UNIMPLEMENTED, /no request message/],
    ['half a message', [grpcFrame(echoBytes('cut')).subarray(0, 7)], grpc.status.UNIMPLEMENTED, /no request message/],
    ['two messages', [grpcFrame(echoBytes('a')), grpcFrame(echoBytes('b'))], grpc.status.UNIMPLEMENTED, /second request message/],
    ['bytes that are not the message', [grpcFrame(Buffer.from([0x0b]))], grpc.status.INVALID_ARGUMENT, /could not be decoded as protobuf/],
    ['a declared length over the limit', [Buffer.from([0, 0, 0x10, 0, 0, 1, 2, 3])], grpc.status.RESOURCE_EXHAUSTED, /larger than max \(1048576 vs 1000\)/],
  ])('answers %s with a status and keeps the connection serving', async (_name, body, code, message) => {
    const { address, echo } = await start({ maxReceiveMessageBytes: 1000 });
    const r = await raw(address, ECHO, body);
    expect(r.headers[':status']).toBe(200);
    expect(Number(r.headers['grpc-status'] ?? r.trailers['grpc-status'])).toBe(code);
    expect(decodeURI(String(r.headers['grpc-message'] ?? r.trailers['grpc-message']))).toMatch(message);
    expect((await call<{ text: string }>(echo, 'Echo', { text: 'still here' })).text).toBe('still here');
  });

  it('answers DEADLINE_EXCEEDED to a request whose message has not all arrived by its deadline, without running the handler', async () => {
    let ran = false;
    const { server } = await startWith({ Echo: async () => ((ran = true), { text: '' }) });
    const r = await raw(`127.0.0.1:${server.port}`, ECHO, [grpcFrame(echoBytes('slow upload')).subarray(0, 6)], { 'grpc-timeout': '100m' }, { halfOpen: true });
    expect(Number(r.headers['grpc-status'])).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(ran).toBe(false);
    expect(server.inFlight).toBe(0);
  });

  it('forgets a request the client resets while it is being read, and serves the next', async () => {
    let ran = false;
    const { server } = await startWith({ Echo: async (req: { text: string }) => ((ran = true), { text: req.text }) });
    const session = http2.connect(`http://127.0.0.1:${server.port}`);
    const req = session.request({ ':method': 'POST', ':path': ECHO, 'content-type': 'application/grpc', te: 'trailers' });
    req.on('error', () => undefined);
    req.write(grpcFrame(echoBytes('never finished')).subarray(0, 8));
    await new Promise((r) => setTimeout(r, 50));
    req.close(http2.constants.NGHTTP2_CANCEL);
    await new Promise((r) => req.once('close', r));
    session.close();
    expect(ran).toBe(false);
    expect((await call<{ text: string }>(echoClient!, 'Echo', { text: 'next' })).text).toBe('next');
    expect(server.inFlight).toBe(0);
  });

  it('refuses a response over the send limit with RESOURCE_EXHAUSTED, and the call span says so', async () => {
    const spans = recordSpans();
    const { echo } = await start({ maxSendMessageBytes: 100 });
    const err = (await call(echo, 'Echo', { text: 'y'.repeat(500) }).catch((e) => e)) as grpc.ServiceError;
    expect(err.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(err.details).toMatch(/Sent message larger than max/);
    await waitFor(() => spans.getFinishedSpans().length === 1);
    expect(spans.getFinishedSpans()[0]!.attributes['rpc.grpc.status_code']).toBe(grpc.status.RESOURCE_EXHAUSTED);
  });

  it('leaves what it does not serve to grpc-js: a malformed grpc-timeout, another content type', async () => {
    const { address } = await start();
    const badTimeout = await raw(address, ECHO, [grpcFrame(echoBytes('t'))], { 'grpc-timeout': 'soon' });
    expect(Number(badTimeout.headers['grpc-status'] ?? badTimeout.trailers['grpc-status'])).toBe(grpc.status.INTERNAL);
    const json = await raw(address, ECHO, [Buffer.from('{}')], { 'content-type': 'application/json' });
    expect(json.headers[':status']).toBe(415);
  });

  let echoClient: (grpc.Client & Record<string, Function>) | undefined;
  async function startWith(handlers: Record<string, unknown>) {
    const definition = EchoClient.service as unknown as Record<string, never>;
    const fallback = { Echo: async (req: { text: string }) => ({ text: req.text }), Slow: async () => ({ text: '' }), Fail: async () => ({ text: '' }), Count: async function* () {}, Collect: async () => ({ text: '' }) };
    server = new MeshServer({ component: 'echo', settings, log: silentLogger, services: [defineService(definition, { ...fallback, ...handlers } as never)], extraDescriptors: echoProto });
    const port = await server.start();
    echoClient = new EchoClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as grpc.Client & Record<string, Function>;
    clients.push(echoClient);
    return { server };
  }
});

/** Spans the server records from here to the end of the test (a tracer provider of its own, removed after). */
function recordSpans(): InMemorySpanExporter {
  const spans = new InMemorySpanExporter();
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }));
  onTestFinished(() => trace.disable());
  return spans;
}

/** One call over a plain node:http2 client: the request's DATA written piece by piece, the answer as it came. */
async function raw(address: string, path: string, pieces: Buffer[], extra: OutgoingHttpHeaders = {}, { halfOpen = false } = {}) {
  const session = http2.connect(`http://${address}`);
  try {
    const req = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...extra });
    let headers: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    req.on('response', (h) => (headers = h));
    req.on('trailers', (t) => (trailers = t));
    req.on('data', (c: Buffer) => chunks.push(c));
    for (const piece of pieces) {
      req.write(piece);
      await new Promise((r) => setImmediate(r));
    }
    // halfOpen: the request is never finished; the answer is whatever the server sends before it ends its side.
    if (halfOpen) req.once('end', () => req.close());
    else req.end();
    await new Promise<void>((resolve, reject) => {
      req.on('close', resolve);
      req.on('error', reject);
    });
    return { headers, trailers, data: Buffer.concat(chunks) };
  } finally {
    session.close();
  }
}

