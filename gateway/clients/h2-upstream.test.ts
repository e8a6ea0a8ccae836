import { once } from 'node:events';
import http2, { type ServerHttp2Session } from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { H2Upstream } from './h2-upstream.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function listen(server: net.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

const headers = { ':method': 'POST', ':scheme': 'http', ':path': '/svc/M', ':authority': 'replica', 'content-type': 'application/grpc', te: 'trailers' };

describe('H2Upstream', () => {
  it('drops a connection whose replica stops answering keepalive pings, failing its calls and reporting it', async () => {
    // A replica that speaks the first HTTP/2 frame and then goes silent, socket open (a frozen process).
    const sockets: net.Socket[] = [];
    const frozen = net.createServer((sock) => {
      sockets.push(sock);
      sock.resume();
      sock.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]));
    });
    const port = await listen(frozen);
    cleanups.push(() => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => frozen.close(r));
    });
    const failures: Error[] = [];
    const up = new H2Upstream(`127.0.0.1:${port}`, { keepaliveTimeMs: 50, keepaliveTimeoutMs: 100, onConnectionFailure: (e) => failures.push(e) });
    cleanups.push(() => up.close(true));
    const call = up.request(headers);
    call.end(Buffer.from([0, 0, 0, 0, 0]));
    await once(call, 'close');
    expect(call.id, 'the call had been sent').toBe(1);
    expect(failures.map((e) => e.message)).toContain(`keepalive ping to 127.0.0.1:${port} unanswered`);
    expect(up.connected).toBe(false);
  });

  it('opens a new connection for the next call after the replica says GOAWAY', async () => {
    const sessions: ServerHttp2Session[] = [];
    const server = http2.createServer();
    server.on('session', (s) => sessions.push(s));
    server.on('stream', (stream) => {
      stream.on('error', () => undefined);
      stream.on('data', () => undefined);
      stream.on('end', () => {
        stream.respond({ ':status': 200 }, { waitForTrailers: true });
        stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        stream.end(Buffer.from([0, 0, 0, 0, 0]));
      });
    });
    const port = await listen(server as unknown as net.Server);
    cleanups.push(() => {
      for (const s of sessions) s.destroy();
      return new Promise((r) => server.close(r));
    });
    const up = new H2Upstream(`127.0.0.1:${port}`);
    cleanups.push(() => up.close(true));
    const ask = async () => {
      const call = up.request(headers);
      const trailers = new Promise((resolve) => call.once('trailers', resolve));
      call.end(Buffer.from([0, 0, 0, 0, 0]));
      await once(call, 'close');
      return trailers;
    };
    expect(await ask()).toMatchObject({ 'grpc-status': '0' });
    sessions[0]!.goaway();
    while (up.connected) await new Promise((r) => setTimeout(r, 5));
    expect(await ask()).toMatchObject({ 'grpc-status': '0' });
    expect(sessions).toHaveLength(2);
  });

  it('refuses calls once closed', async () => {
    const up = new H2Upstream('127.0.0.1:1');
    up.close();
    expect(() => up.request(headers)).toThrow(/closed/);
  });
});
