import { BinaryWriter } from '@bufbuild/protobuf/wire';
import http2, { type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { context, propagation, SpanKind, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterEach, describe, expect, it, onTestFinished } from 'vitest';
import { EchoClient, startEchoServer } from '../../test/fixtures/echo-service.js';
import { freePort } from '../../test/support/free-port.js';
import { startH2Server } from '../../test/support/h2-server.js';
import { decodeStatus, isServiceError } from '../../services/runtime/grpc-status.js';
import { waitFor } from '../../services/runtime/testing/wait.js';
import { grpcFrame } from '../../services/runtime/unary-stream.js';
import { H2Upstream } from './h2-upstream.js';
import { serverStreamCall, unaryCall, type MethodDefinition } from './typed-calls.js';

type Text = { text: string };
const methods = EchoClient.service as unknown as Record<string, MethodDefinition<unknown, Text>>;
const echo = methods.Echo as MethodDefinition<Text, Text>;
const slow = methods.Slow as MethodDefinition<{ ms: number }, Text>;
const fail = methods.Fail as MethodDefinition<{ kind: string }, Text>;
const count = methods.Count as MethodDefinition<{ ms: number }, Text>;

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** The echo service on a MeshServer, and an upstream to it. */
async function echoReplica(): Promise<H2Upstream> {
  const { server, port } = await startEchoServer();
  cleanups.push(() => server.close());
  return upstreamTo(port);
}

function upstreamTo(port: number): H2Upstream {
  const up = new H2Upstream(`127.0.0.1:${port}`);
  cleanups.push(() => up.close(true));
  return up;
}

/** A plain node:http2 server answering each stream with `answer`; what it saw is in `seen`. */
async function rawReplica(answer: (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void) {
  const seen: { headers: IncomingHttpHeaders; rstCode?: number }[] = [];
  const server = await startH2Server((stream, headers) => {
    const entry: { headers: IncomingHttpHeaders; rstCode?: number } = { headers };
    seen.push(entry);
    stream.on('close', () => (entry.rstCode = stream.rstCode));
    stream.resume();
    answer(stream, headers);
  });
  cleanups.push(() => server.close());
  return { upstream: upstreamTo(server.port), seen };
}

const grpcHeaders = { ':status': 200, 'content-type': 'application/grpc' };
/** A gRPC frame of an EchoResponse. */
const message = (text: string) => grpcFrame(new BinaryWriter().uint32(0x0a).string(text).finish());

async function failure(p: Promise<unknown>) {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isServiceError(err)) throw new Error(`expected a gRPC error, got ${String(err)}`);
  return err;
}

describe('typed calls over an H2Upstream', () => {
  it('answers many concurrent unary calls, each with its own message, bodies spanning several frames', async () => {
    const up = await echoReplica();
    const texts = Array.from({ length: 100 }, (_, i) => `${i}:${'x'.repeat(30_000 + i)}`);
    const answers = await Promise.all(texts.map((text) => unaryCall(up, echo, { text })));
    expect(answers.map((a) => a.text)).toEqual(texts);
  });

  it("rejects with the replica's status as grpc-js does, google.rpc details included", async () => {
    const up = await echoReplica();
    const invalid = await failure(unaryCall(up, fail, { kind: 'invalid' }));
    expect(invalid.code).toBe(3);
    expect(invalid.message).toBe('3 INVALID_ARGUMENT: inputs[2]: must not be empty');
    expect(decodeStatus(invalid).badRequest?.fieldViolations[0]?.field).toBe('inputs[2]');
    const overloaded = decodeStatus(await failure(unaryCall(up, fail, { kind: 'overloaded' })));
    expect(overloaded).toMatchObject({ code: 8, message: 'queue full', retryAfterMs: 250 });
    const bug = await failure(unaryCall(up, fail, { kind: 'bug' }));
    expect(bug.code).toBe(13);
    expect(bug.details).not.toContain('secret');
  });

  it('ends a call at its deadline with DEADLINE_EXCEEDED, and tells the replica the deadline', async () => {
    const { upstream, seen } = await rawReplica(() => undefined);
    const err = await failure(unaryCall(upstream, slow, { ms: 0 }, { deadline: Date.now() + 150 }));
    expect(err.code).toBe(4);
    expect(seen[0]!.headers['grpc-timeout']).toMatch(/^\d+[mu]$/);
    await waitFor(() => seen[0]!.rstCode !== undefined);
    expect(seen[0]!.rstCode, 'the replica is told to stop').toBe(http2.constants.NGHTTP2_CANCEL);
    // A deadline already passed never leaves the gateway.
    expect((await failure(unaryCall(upstream, slow, { ms: 0 }, { deadline: Date.now() - 1 }))).code).toBe(4);
    expect(seen).toHaveLength(1);
  });

  it('cancels the call on the replica when the signal aborts', async () => {
    const { upstream, seen } = await rawReplica(() => undefined);
    const abort = new AbortController();
    const call = unaryCall(upstream, slow, { ms: 0 }, { signal: abort.signal });
    await waitFor(() => seen.length === 1);
    abort.abort();
    expect((await failure(call)).code).toBe(1);
    await waitFor(() => seen[0]!.rstCode !== undefined);
    expect(seen[0]!.rstCode).toBe(http2.constants.NGHTTP2_CANCEL);
    const before = new AbortController();
    before.abort();
    expect((await failure(unaryCall(upstream, slow, { ms: 0 }, { signal: before.signal }))).code).toBe(1);
    expect(seen).toHaveLength(1);
  });

  it('streams messages in order, and the connection serves the next call after the loop stops early', async () => {
    const up = await echoReplica();
    const got: string[] = [];
    for await (const m of serverStreamCall(up, count, { ms: 1 })) {
      got.push(m.text);
      if (got.length === 30) break;
    }
    expect(got).toEqual(Array.from({ length: 30 }, (_, i) => String(i)));
    // The connection is still good for the next call.
    expect((await unaryCall(up, echo, { text: 'after' })).text).toBe('after');
  });

  it('cancels a stream on the replica when the loop stops early', async () => {
    const { upstream, seen } = await rawReplica((stream) => {
      stream.respond(grpcHeaders);
      let i = 0;
      const t = setInterval(() => stream.write(message(String(i++))), 1);
      stream.on('close', () => clearInterval(t));
    });
    for await (const m of serverStreamCall(upstream, count, { ms: 0 })) if (m.text === '5') break;
    await waitFor(() => seen[0]!.rstCode !== undefined);
    expect(seen[0]!.rstCode).toBe(http2.constants.NGHTTP2_CANCEL);
  });

  it('stops reading from the replica while the loop does not take messages (flow control), then reads the rest', async () => {
    // 40 MB in 16 KB messages, ten times the connection's 4 MiB window: a reader that stops taking messages
    // must hold the replica's writes back rather than buffer everything.
    const n = 2560;
    let sent = () => 0;
    const { upstream } = await rawReplica((stream) => {
      const socket = stream.session!.socket;
      sent = () => socket.bytesWritten;
      stream.respond(grpcHeaders, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      const big = message('a'.repeat(16384));
      for (let i = 0; i < n; i++) stream.write(big);
      stream.end();
    });
    let got = 0;
    for await (const m of serverStreamCall(upstream, count, { ms: 0 })) {
      expect(m.text).toHaveLength(16384);
      if (++got === 10) {
        await new Promise((r) => setTimeout(r, 500));
        expect(sent(), 'what the replica could send while the reader stood still').toBeLessThan(20_000_000);
      }
    }
    expect(got).toBe(n);
  });

  it('reads a fast stream for a slow reader without losing or reordering a message', async () => {
    const n = 2000;
    const { upstream } = await rawReplica((stream) => {
      stream.respond(grpcHeaders, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      for (let i = 0; i < n; i++) stream.write(message(String(i)));
      stream.end();
    });
    let i = 0;
    for await (const m of serverStreamCall(upstream, count, { ms: 0 })) {
      expect(m.text).toBe(String(i++));
      if (i % 100 === 0) await new Promise((r) => setTimeout(r, 5));
    }
    expect(i).toBe(n);
  });

  it('reads messages cut anywhere across DATA frames, and several in one frame', async () => {
    const { upstream } = await rawReplica((stream) => {
      stream.respond(grpcHeaders, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      const all = Buffer.concat([message('first'), message('second'), message('third')]);
      const cuts = [1, 3, 7, 8, 20, all.length];
      let at = 0;
      const next = () => {
        const to = cuts.shift();
        if (to === undefined) return void stream.end();
        stream.write(all.subarray(at, to));
        at = to;
        setTimeout(next, 2);
      };
      next();
    });
    const got: string[] = [];
    for await (const m of serverStreamCall(upstream, count, { ms: 0 })) got.push(m.text);
    expect(got).toEqual(['first', 'second', 'third']);
  });

  it('reads a trailers-only answer, and decodes its percent-encoded message', async () => {
    const { upstream } = await rawReplica((stream) => {
      stream.respond({ ...grpcHeaders, 'grpc-status': '5', 'grpc-message': 'no%20model%20%22x%22' }, { endStream: true });
    });
    const err = await failure(unaryCall(upstream, echo, { text: 'a' }));
    expect(err.code).toBe(5);
    expect(err.details).toBe('no model "x"');
  });

  it('answers UNAVAILABLE when the replica cannot be reached or vanishes mid-answer (so the routing may retry)', async () => {
    const refused = await failure(unaryCall(upstreamTo(await freePort()), echo, { text: 'a' }));
    expect(refused.code).toBe(14);
    expect(refused.details).toContain('could not be reached');

    const { upstream } = await rawReplica((stream) => {
      stream.respond(grpcHeaders);
      stream.write(message('half').subarray(0, 4));
      setTimeout(() => stream.session?.destroy(), 20);
    });
    const lost = await failure(unaryCall(upstream, echo, { text: 'a' }));
    expect(lost.code).toBe(14);
    expect(lost.details).toContain('connection was lost');
  });

  it('maps answers that are not gRPC as grpc-js does, and refuses odd ones with a status', async () => {
    const answers: Record<string, (s: ServerHttp2Stream) => void> = {
      '/404': (s) => s.respond({ ':status': 404 }, { endStream: true }),
      '/503': (s) => s.respond({ ':status': 503 }, { endStream: true }),
      '/html': (s) => {
        s.respond({ ':status': 200, 'content-type': 'text/html' });
        s.end('<html>');
      },
      '/empty': (s) => {
        s.respond(grpcHeaders, { waitForTrailers: true });
        s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0' }));
        s.end();
      },
      '/two': (s) => {
        s.respond(grpcHeaders, { waitForTrailers: true });
        s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0' }));
        s.end(Buffer.concat([message('a'), message('b')]));
      },
      '/cut': (s) => {
        s.respond(grpcHeaders, { waitForTrailers: true });
        s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0' }));
        s.end(message('abc').subarray(0, 6));
      },
      '/status': (s) => s.respond({ ...grpcHeaders, 'grpc-status': '99' }, { endStream: true }),
      '/garbage': (s) => {
        s.respond(grpcHeaders, { waitForTrailers: true });
        s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0' }));
        s.end(message('not what it seems'));
      },
      '/compressed': (s) => {
        s.respond(grpcHeaders);
        const f = message('z');
        f[0] = 1;
        s.end(f);
      },
      '/reset': (s) => s.close(http2.constants.NGHTTP2_INTERNAL_ERROR),
      '/no-status': (s) => {
        s.respond(grpcHeaders);
        s.end(message('a'));
      },
    };
    const { upstream } = await rawReplica((s, h) => answers[h[':path'] as string]!(s));
    const codeOf = async (path: string) => (await failure(unaryCall(upstream, { ...echo, path }, { text: 'a' }))).code;
    expect(await codeOf('/404')).toBe(12);
    expect(await codeOf('/503')).toBe(14);
    expect(await codeOf('/html')).toBe(2);
    expect(await codeOf('/empty')).toBe(12);
    expect(await codeOf('/two')).toBe(12);
    expect(await codeOf('/cut')).toBe(13);
    expect(await codeOf('/status')).toBe(2);
    const undecodable = {
      ...echo,
      path: '/garbage',
      responseDeserialize: (): Text => {
        throw new Error('bad bytes');
      },
    };
    const garbage = await failure(unaryCall(upstream, undecodable, { text: 'a' }));
    expect(garbage.code).toBe(13);
    expect(garbage.details).toContain('could not be decoded: bad bytes');
    expect(await codeOf('/compressed')).toBe(13);
    expect(await codeOf('/reset')).toBe(13);
    const noStatus = await failure(unaryCall(upstream, { ...echo, path: '/no-status' }, { text: 'a' }));
    expect(noStatus.code).toBe(13);
    expect(noStatus.details).toContain('without a gRPC status');
  });

  it('fails a request that cannot be encoded with INTERNAL, without sending it (not UNAVAILABLE, which would be retried)', async () => {
    const { upstream, seen } = await rawReplica(() => undefined);
    const unencodable = {
      ...echo,
      requestSerialize: (): Buffer => {
        throw new Error('no such field');
      },
    };
    const err = await failure(unaryCall(upstream, unencodable, { text: 'a' }));
    expect(err.code).toBe(13);
    expect(err.details).toContain('could not be encoded: no such field');
    expect(seen).toHaveLength(0);
  });

  it('refuses an answer over the size limit before reading it, and resets the stream', async () => {
    const { upstream, seen } = await rawReplica((stream) => {
      stream.respond(grpcHeaders);
      const prefix = Buffer.from([0, 0, 0x10, 0, 0]);
      stream.write(prefix);
    });
    const err = await failure(unaryCall(upstream, echo, { text: 'a' }, { maxReceiveMessageBytes: 1024 }));
    expect(err.code).toBe(8);
    expect(err.details).toContain('1048576 bytes, over the 1024 bytes');
    await waitFor(() => seen[0]!.rstCode !== undefined);
    expect(seen[0]!.rstCode).toBe(http2.constants.NGHTTP2_CANCEL);
  });

  it('records a CLIENT span per call and sends its trace context to the replica', async () => {
    const spans = new InMemorySpanExporter();
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }));
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    onTestFinished(() => {
      trace.disable();
      propagation.disable();
      context.disable();
    });
    const { upstream, seen } = await rawReplica((stream) => stream.respond({ ...grpcHeaders, 'grpc-status': '7', 'grpc-message': 'no' }, { endStream: true }));
    const parent = trace.getTracer('test').startSpan('route');
    await context.with(trace.setSpan(context.active(), parent), () => failure(unaryCall(upstream, echo, { text: 'a' })));
    parent.end();
    const client = spans.getFinishedSpans().find((s) => s.kind === SpanKind.CLIENT)!;
    expect(client.name).toBe('maas.testing.v1.EchoService/Echo');
    expect(client.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
    expect(client.attributes['rpc.grpc.status_code']).toBe(7);
    expect(seen[0]!.headers.traceparent).toBe(`00-${client.spanContext().traceId}-${client.spanContext().spanId}-01`);
  });
});
