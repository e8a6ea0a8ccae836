import { createHash } from 'node:crypto';
import { once } from 'node:events';
import http2, { type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { frame } from '../../services/runtime/testing/h2-client.js';
import { freePort } from '../../test/support/free-port.js';
import { startH2Server, type TestH2Server } from '../../test/support/h2-server.js';
import { H2Connection, H2Error, type H2Stream } from './h2-connection.js';

// Every test talks to a real `node:http2` server on a loopback port.
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function server(onStream: (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void, options: http2.ServerOptions = {}): Promise<TestH2Server> {
  const s = await startH2Server(onStream, options);
  cleanups.push(() => s.close());
  return s;
}

function connect(port: number, options = {}): H2Connection {
  const socket = net.connect({ host: '127.0.0.1', port });
  const c = new H2Connection(socket, options);
  c.on('error', () => undefined);
  cleanups.push(() => c.destroy());
  return c;
}

const request = (path = '/svc/Method', extra: Record<string, string | string[]> = {}) => ({
  ':method': 'POST',
  ':scheme': 'http',
  ':path': path,
  ':authority': 'replica',
  'content-type': 'application/grpc',
  te: 'trailers',
  ...extra,
});

/** Everything a stream said, in order, and its body. */
function record(s: H2Stream) {
  const events: string[] = [];
  const chunks: Buffer[] = [];
  let headers: IncomingHttpHeaders | undefined;
  let trailers: IncomingHttpHeaders | undefined;
  let flags = -1;
  s.on('response', (h: IncomingHttpHeaders, f: number) => {
    events.push('response');
    headers = h;
    flags = f;
  });
  s.on('data', (d: Buffer) => {
    if (events.at(-1) !== 'data') events.push('data');
    chunks.push(d);
  });
  s.on('trailers', (t: IncomingHttpHeaders) => {
    events.push('trailers');
    trailers = t;
  });
  s.on('end', () => events.push('end'));
  const closed = new Promise<void>((r) => s.on('close', () => (events.push('close'), r())));
  return {
    events,
    closed,
    body: () => Buffer.concat(chunks),
    get headers() {
      return headers;
    },
    get trailers() {
      return trailers;
    },
    get flags() {
      return flags;
    },
  };
}

/** A gRPC-like answer: headers, the request echoed back, trailers. */
function echo(stream: ServerHttp2Stream): void {
  const parts: Buffer[] = [];
  stream.on('data', (d: Buffer) => parts.push(d));
  stream.on('end', () => {
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': 'fine' }));
    stream.end(Buffer.concat(parts));
  });
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Answers `/big` with `size` bytes and anything else with 'small'. */
const bigOrSmall = (size: number) => (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
  stream.on('data', () => undefined);
  stream.on('end', () => {
    stream.respond({ ':status': 200 }, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.end(headers[':path'] === '/big' ? Buffer.alloc(size, 9) : Buffer.from('small'));
  });
};

/** A small call still gets through: the connection's window is not used up. */
async function expectSmallCallThrough(c: H2Connection): Promise<void> {
  const next = c.request(request());
  const n = record(next);
  next.end();
  await n.closed;
  expect(n.body().toString()).toBe('small');
}

describe('H2Connection against node:http2', () => {
  it('sends a request with its metadata and reads headers, data and trailers in order', async () => {
    let seen: IncomingHttpHeaders | undefined;
    const { port } = await server((stream, headers) => {
      seen = headers;
      echo(stream);
    });
    const c = connect(port);
    const s = c.request(request('/svc/Method', { 'x-one': 'a', 'x-many': ['b', 'c'], 'x-bin-bin': Buffer.from([0, 255]).toString('base64'), 'x-latin': 'caf\u00e9' }));
    const r = record(s);
    s.end(Buffer.from('hello'));
    await r.closed;
    expect(r.events).toEqual(['response', 'data', 'trailers', 'end', 'close']);
    expect(r.headers?.[':status'], 'a number, as node:http2 gives it').toBe(200);
    expect(r.headers?.['content-type']).toBe('application/grpc');
    expect(r.trailers).toMatchObject({ 'grpc-status': '0', 'grpc-message': 'fine' });
    expect(r.body().toString()).toBe('hello');
    expect(s.id).toBe(1);
    expect(s.rstCode).toBeUndefined();
    expect(seen).toMatchObject({ ':path': '/svc/Method', ':authority': 'replica', te: 'trailers', 'x-one': 'a', 'x-many': 'b, c', 'x-latin': 'caf\u00e9' });
    expect(Buffer.from(seen!['x-bin-bin'] as string, 'base64')).toEqual(Buffer.from([0, 255]));
  });

  it('answers 300 concurrent streams on one connection, each with its own body', async () => {
    const { port, sessions } = await server(echo);
    const c = connect(port);
    const results = await Promise.all(
      Array.from({ length: 300 }, async (_, i) => {
        const s = c.request(request());
        const r = record(s);
        s.end(Buffer.from(`call ${i}`));
        await r.closed;
        return r.body().toString();
      }),
    );
    expect(results).toEqual(Array.from({ length: 300 }, (_, i) => `call ${i}`));
    expect(sessions).toHaveLength(1);
  });

  it('moves 6 MB each way through the default 64 KiB windows of the peer', async () => {
    const { port } = await server(echo);
    const c = connect(port);
    const big = Buffer.alloc(6 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4) big.writeUInt32LE(i * 2654435761 >>> 0, i);
    const s = c.request(request());
    const r = record(s);
    s.end(big);
    await r.closed;
    expect(r.events).toEqual(['response', 'data', 'trailers', 'end', 'close']);
    expect(sha(r.body())).toBe(sha(big));
  });

  it("follows the peer's window size changing mid-call, without resetting its streams", async () => {
    const { port, sessions } = await server((stream) => {
      const parts: Buffer[] = [];
      stream.on('data', (d: Buffer) => {
        parts.push(d);
        // The same size again, then a smaller one, then a larger one while the upload is under way.
        if (parts.length === 1) sessions[0]!.settings({ initialWindowSize: 65_535 });
        if (parts.length === 2) sessions[0]!.settings({ initialWindowSize: 1024 });
        if (parts.length === 40) sessions[0]!.settings({ initialWindowSize: 1024 * 1024 });
      });
      stream.on('end', () => {
        stream.respond({ ':status': 200 }, { waitForTrailers: true });
        stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        stream.end(Buffer.concat(parts));
      });
    });
    const c = connect(port);
    const body = Buffer.alloc(3 * 1024 * 1024, 5);
    const s = c.request(request());
    const r = record(s);
    s.end(body);
    await r.closed;
    expect(s.rstCode).toBeUndefined();
    expect(r.body().equals(body)).toBe(true);
  });

  it('writes in chunks with backpressure: write says wait, and drain follows once the peer reads', async () => {
    let serverStream: ServerHttp2Stream | undefined;
    const { port } = await server((stream) => {
      serverStream = stream;
      stream.pause();
      echo(stream);
    });
    const c = connect(port);
    const s = c.request(request());
    const r = record(s);
    let refused = false;
    const chunk = Buffer.alloc(32 * 1024, 7);
    let written = 0;
    for (let i = 0; i < 200 && !refused; i++) {
      refused = !s.write(chunk);
      written += chunk.length;
    }
    expect(refused, 'write asked to wait while the peer read nothing').toBe(true);
    await new Promise((res) => setTimeout(res, 50));
    const drained = once(s, 'drain');
    serverStream!.resume();
    await drained;
    s.end();
    await r.closed;
    expect(r.body().length).toBe(written);
  });

  it('holds a paused response within its window and delivers all of it on resume', async () => {
    const total = 12 * 1024 * 1024;
    let sent = 0;
    const { port } = await server((stream) => {
      stream.on('data', () => undefined);
      stream.on('end', () => {
        stream.respond({ ':status': 200 }, { waitForTrailers: true });
        stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        const piece = Buffer.alloc(64 * 1024, 1);
        const pump = () => {
          while (sent < total) {
            sent += piece.length;
            if (!stream.write(piece)) return void stream.once('drain', pump);
          }
          stream.end();
        };
        pump();
      });
    });
    const c = connect(port, { initialWindowSize: 1024 * 1024 });
    const s = c.request(request());
    const r = record(s);
    s.once('response', () => s.pause());
    s.end();
    await new Promise((res) => setTimeout(res, 300));
    expect(r.body().length, 'nothing is delivered while paused').toBe(0);
    expect(sent, 'the peer is held back by the stream window (plus its own buffers)').toBeLessThan(total);
    s.resume();
    await r.closed;
    expect(r.body().length).toBe(total);
    expect(r.events.slice(-2)).toEqual(['end', 'close']);
    expect(r.trailers).toEqual({ 'grpc-status': '0' });
  });

  it('bounds what paused streams hold in all, and gives the window back once they are read', async () => {
    const size = 6 * 1024 * 1024;
    const { port } = await server(bigOrSmall(size));
    const c = connect(port, { initialWindowSize: 16 * 1024 * 1024, connectionWindowSize: 2 * 1024 * 1024, maxHeldBytes: 1024 * 1024 });
    const paused = [c.request(request('/big')), c.request(request('/big'))];
    const records = paused.map((s) => {
      s.once('response', () => s.pause());
      s.end();
      return record(s);
    });
    await new Promise((res) => setTimeout(res, 300));
    expect(c.heldBytes, 'held: at most the limit plus one connection window').toBeLessThanOrEqual(3 * 1024 * 1024);
    expect(c.heldBytes).toBeGreaterThan(1024 * 1024);
    for (const s of paused) s.resume();
    await Promise.all(records.map((r) => r.closed));
    for (const r of records) expect(r.body().length).toBe(size);
    expect(c.heldBytes).toBe(0);
    await expectSmallCallThrough(c);
  });

  it('gives the window back for what a paused stream held when it is cancelled', async () => {
    const { port } = await server(bigOrSmall(4 * 1024 * 1024));
    const c = connect(port, { initialWindowSize: 16 * 1024 * 1024, connectionWindowSize: 1024 * 1024, maxHeldBytes: 0 });
    for (let i = 0; i < 3; i++) {
      const s = c.request(request('/big'));
      s.once('response', () => s.pause());
      const r = record(s);
      s.end();
      await new Promise((res) => setTimeout(res, 100));
      s.close(H2Error.CANCEL);
      await r.closed;
    }
    expect(c.heldBytes).toBe(0);
    await expectSmallCallThrough(c);
  });

  it('gives a small receive window back in time to read a response many times its size', async () => {
    const { port } = await server(echo);
    const c = connect(port, { initialWindowSize: 1000 });
    const body = Buffer.alloc(200_000, 3);
    const s = c.request(request());
    const r = record(s);
    s.end(body);
    await r.closed;
    expect(r.body().equals(body)).toBe(true);
  });

  it('reads a trailers-only answer as a response that ends the stream', async () => {
    const { port } = await server((stream) => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '5', 'grpc-message': 'no such thing' }, { endStream: true });
    });
    const c = connect(port);
    const s = c.request(request());
    const r = record(s);
    s.end(Buffer.from('x'));
    await r.closed;
    expect(r.events).toEqual(['response', 'end', 'close']);
    expect(r.flags & 1).toBe(1);
    expect(r.headers?.['grpc-status']).toBe('5');
  });

  it('cancels a stream with RST_STREAM, which the peer sees, and closes it on a later tick', async () => {
    const serverClosed = new Promise<number>((resolve) => {
      void server((stream) => stream.on('close', () => resolve(stream.rstCode))).then(({ port }) => {
        const c = connect(port);
        const s = c.request(request());
        s.write(Buffer.from('partial'));
        s.once('close', () => undefined);
        setTimeout(() => {
          let closedSync = false;
          s.once('close', () => (closedSync = true));
          s.close(H2Error.CANCEL);
          expect(closedSync, "'close' is not emitted inside close()").toBe(false);
          expect(s.closed).toBe(true);
          expect(s.rstCode).toBe(H2Error.CANCEL);
        }, 50);
      });
    });
    expect(await serverClosed).toBe(http2.constants.NGHTTP2_CANCEL);
  });

  it('closes a stream the peer resets, with its code', async () => {
    const { port } = await server((stream) => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR));
    const c = connect(port);
    const s = c.request(request());
    const r = record(s);
    s.end(Buffer.from('x'));
    await r.closed;
    expect(s.rstCode).toBe(H2Error.INTERNAL_ERROR);
    expect(r.events).toEqual(['close']);
  });

  it('on GOAWAY, finishes the streams the peer took, refuses the others, and opens nothing new', async () => {
    const held: ServerHttp2Stream[] = [];
    const { port, sessions } = await server((stream) => held.push(stream));
    const c = connect(port);
    const first = c.request(request());
    first.end(Buffer.from('a'));
    const r1 = record(first);
    while (held.length < 1) await new Promise((res) => setTimeout(res, 5));
    const goaway = once(c, 'goaway');
    sessions[0]!.goaway(http2.constants.NGHTTP2_NO_ERROR, 1);
    const [, lastId] = await goaway;
    expect(lastId).toBe(1);
    expect(c.usable).toBe(false);
    expect(() => c.request(request())).toThrow(/closed/);
    // The stream the peer took still completes.
    held[0]!.respond({ ':status': 200 }, { waitForTrailers: true });
    held[0]!.once('wantTrailers', () => held[0]!.sendTrailers({ 'grpc-status': '0' }));
    held[0]!.end(Buffer.from('done'));
    await r1.closed;
    expect(r1.body().toString()).toBe('done');
    await once(c, 'close');
  });

  it('marks streams above the GOAWAY last stream id as refused', async () => {
    const held: ServerHttp2Stream[] = [];
    const { port, sessions } = await server((stream) => held.push(stream));
    const c = connect(port);
    const streams = [c.request(request()), c.request(request()), c.request(request())];
    for (const s of streams) s.end(Buffer.from('a'));
    const records = streams.map(record);
    while (held.length < 3) await new Promise((res) => setTimeout(res, 5));
    sessions[0]!.goaway(http2.constants.NGHTTP2_NO_ERROR, 1);
    await Promise.all([records[1]!.closed, records[2]!.closed]);
    expect(streams.map((s) => s.rstCode)).toEqual([undefined, H2Error.REFUSED_STREAM, H2Error.REFUSED_STREAM]);
    expect(streams[0]!.closed).toBe(false);
  });

  it('fails a connection nobody listens on: the streams close unsent, with no id', async () => {
    const c = connect(await freePort());
    const errors: Error[] = [];
    c.on('error', (e: Error) => errors.push(e));
    const s = c.request(request());
    s.end(Buffer.from('x'));
    const r = record(s);
    await r.closed;
    await once(c, 'close');
    expect(s.id).toBeUndefined();
    expect(errors[0]?.message).toMatch(/ECONNREFUSED/);
  });

  it('closes its streams when the peer vanishes halfway through an answer', async () => {
    const { port, sockets } = await server((stream) => {
      stream.respond({ ':status': 200 });
      stream.write(Buffer.from('half'));
      setTimeout(() => sockets[0]!.destroy(), 20);
    });
    const c = connect(port);
    const s = c.request(request());
    const r = record(s);
    s.end(Buffer.from('x'));
    await r.closed;
    expect(s.id).toBe(1);
    expect(r.events).toEqual(['response', 'data', 'close']);
    expect(r.trailers).toBeUndefined();
  });

  it('sends request headers larger than a frame in CONTINUATION frames', async () => {
    let seen: IncomingHttpHeaders | undefined;
    const { port } = await server(
      (stream, headers) => {
        seen = headers;
        echo(stream);
      },
      { maxHeaderListSize: 1024 * 1024, settings: { maxHeaderListSize: 1024 * 1024 } } as http2.ServerOptions,
    );
    const c = connect(port);
    const big = 'v'.repeat(40_000);
    const s = c.request(request('/svc/Method', { 'x-big': big }));
    const r = record(s);
    s.end(Buffer.from('x'));
    await r.closed;
    expect(seen?.['x-big']).toBe(big);
  });

  it("keeps to the peer's limit of concurrent streams, queueing the rest", async () => {
    let open = 0;
    let most = 0;
    const { port } = await server(
      (stream) => {
        open++;
        most = Math.max(most, open);
        stream.on('close', () => open--);
        setTimeout(() => echo(stream), 5);
      },
      { settings: { maxConcurrentStreams: 2 } },
    );
    const c = connect(port);
    // Wait for the peer's SETTINGS before the burst (before it, the connection assumes 1000, as HTTP/2 allows).
    const warm = c.request(request());
    const w = record(warm);
    warm.end(Buffer.from('w'));
    await w.closed;
    const bodies = await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        const s = c.request(request());
        const r = record(s);
        s.end(Buffer.from(String(i)));
        await r.closed;
        return r.body().toString();
      }),
    );
    expect(bodies).toEqual(Array.from({ length: 10 }, (_, i) => String(i)));
    expect(most).toBeLessThanOrEqual(2);
  });

  it('answers its pings', async () => {
    const { port } = await server(echo);
    const c = connect(port);
    await once(c, 'connect');
    await new Promise<void>((r) => c.ping(r));
  });

  it('resets a stream whose response headers are too large and keeps serving the connection', async () => {
    const { port } = await server((stream, headers) => {
      if (headers[':path'] === '/big') stream.respond({ ':status': 200, 'x-huge': 'h'.repeat(30_000), 'x-next': 'kept-in-table' });
      else echo(stream);
      stream.on('data', () => undefined);
    }, { maxHeaderListSize: 1024 * 1024 } as http2.ServerOptions);
    const c = connect(port, { maxHeaderListSize: 16 * 1024 });
    const s = c.request(request('/big'));
    const r = record(s);
    s.end(Buffer.from('x'));
    await r.closed;
    expect(s.rstCode).toBe(H2Error.ENHANCE_YOUR_CALM);
    const next = c.request(request());
    const n = record(next);
    next.end(Buffer.from('after'));
    await n.closed;
    expect(n.body().toString()).toBe('after');
  });

  it('drops a connection to something that does not speak HTTP/2, closing its streams', async () => {
    const raw = net.createServer((sock) => sock.resume().end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n'));
    raw.listen(0, '127.0.0.1');
    await once(raw, 'listening');
    cleanups.push(() => new Promise((r) => raw.close(r)));
    const c = connect((raw.address() as AddressInfo).port);
    const errors: Error[] = [];
    c.on('error', (e: Error) => errors.push(e));
    const s = c.request(request());
    const r = record(s);
    s.end(Buffer.from('x'));
    await r.closed;
    expect(r.events).toEqual(['close']);
    await once(c, 'close');
  });

  it('survives a peer sending random frames: every stream closes, nothing throws', async () => {
    // A deterministic generator, so a failure can be replayed.
    let seed = 12345;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    let script: Buffer[] = [];
    const raw = net.createServer((sock) => {
      sock.resume();
      sock.on('error', () => undefined);
      sock.write(frame(4, 0, 0, Buffer.alloc(0)));
      for (const f of script) sock.write(f);
      setTimeout(() => sock.destroy(), 20);
    });
    raw.listen(0, '127.0.0.1');
    await once(raw, 'listening');
    cleanups.push(() => new Promise((r) => raw.close(r)));
    const port = (raw.address() as AddressInfo).port;
    const uncaught: unknown[] = [];
    const onUncaught = (e: unknown) => uncaught.push(e);
    process.on('uncaughtException', onUncaught);
    try {
      for (let round = 0; round < 150; round++) {
        script = Array.from({ length: 1 + rand(6) }, () => {
          const type = rand(11);
          const payload = Buffer.from(Array.from({ length: rand(3) === 0 ? rand(40) : [0, 4, 5, 8][rand(4)]! }, () => rand(256)));
          return frame(type, rand(256), [0, 1, 3, 2, 1001][rand(5)]!, payload);
        });
        const c = connect(port);
        const streams = [c.request(request()), c.request(request())];
        for (const st of streams) st.end(Buffer.from('x'));
        await Promise.all(streams.map((st) => record(st).closed));
        if (!c.destroyed) c.destroy();
      }
    } finally {
      process.off('uncaughtException', onUncaught);
    }
    expect(uncaught).toEqual([]);
  });

  it('fails the connection, not the process, when a listener throws while a frame is handled', async () => {
    const { port } = await server(echo);
    const c = connect(port);
    const errors: Error[] = [];
    c.on('error', (e: Error) => errors.push(e));
    const s = c.request(request());
    s.on('response', () => {
      throw new Error('a bug in a listener');
    });
    const r = record(s);
    s.end(Buffer.from('x'));
    await r.closed;
    expect(errors[0]?.message).toMatch(/the gateway failed while handling a frame: Error: a bug in a listener/);
    expect(c.destroyed).toBe(true);
  });

  it('finishes open streams before a graceful close ends the connection', async () => {
    const { port } = await server((stream) => setTimeout(() => echo(stream), 30));
    const c = connect(port);
    const s = c.request(request());
    const r = record(s);
    s.end(Buffer.from('last'));
    await once(c, 'connect');
    c.close();
    expect(() => c.request(request())).toThrow();
    await r.closed;
    expect(r.body().toString()).toBe('last');
    await once(c, 'close');
  });
});
