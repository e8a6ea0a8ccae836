import http2, { type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { acceptUnary, grpcFrame } from './unary-stream.js';

const limits = { maxReceiveMessageBytes: 1000, maxSendMessageBytes: 1000 };
const closers: (() => void)[] = [];
afterEach(() => {
  for (const close of closers.splice(0)) close();
});

/** A real HTTP/2 stream on the server side of a loopback connection, opened with `headers`. */
async function serverStream(headers: OutgoingHttpHeaders): Promise<{ stream: ServerHttp2Stream; headers: IncomingHttpHeaders }> {
  const server = http2.createServer();
  const accepted = new Promise<{ stream: ServerHttp2Stream; headers: IncomingHttpHeaders }>((resolve) => server.once('stream', (stream, h) => resolve({ stream, headers: h })));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const session = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  const req = session.request({ ':method': 'POST', ':path': '/maas.testing.v1.EchoService/Echo', ...headers });
  req.on('error', () => undefined);
  closers.push(() => {
    session.destroy();
    server.close();
  });
  return accepted;
}

describe('acceptUnary', () => {
  it.each([
    ['another content type', { 'content-type': 'application/json' }],
    ['a compressed request', { 'content-type': 'application/grpc', 'grpc-encoding': 'gzip' }],
    ['a grpc-timeout it cannot read', { 'content-type': 'application/grpc', 'grpc-timeout': 'soon' }],
    ['a grpc-timeout grpc-js reads more loosely', { 'content-type': 'application/grpc', 'grpc-timeout': '5 S' }],
    ['a grpc-timeout of nine digits', { 'content-type': 'application/grpc', 'grpc-timeout': '123456789m' }],
  ])('leaves %s to grpc-js', async (_name, headers) => {
    const { stream, headers: received } = await serverStream(headers);
    expect(acceptUnary(stream, received, limits)).toBeUndefined();
  });

  it('takes a plain call: its deadline from grpc-timeout, metadata without the transport headers', async () => {
    const { stream, headers } = await serverStream({ 'content-type': 'application/grpc+proto', 'grpc-timeout': '2S', 'grpc-encoding': 'identity', te: 'trailers', 'x-tenant': 'acme' });
    const before = Date.now();
    const call = acceptUnary(stream, headers, limits)!;
    const after = Date.now();
    expect(call).toBeDefined();
    // 2 s from when it was read, whatever the machine's speed: between the clock before and after.
    expect(call.deadline!).toBeGreaterThanOrEqual(before + 2000);
    expect(call.deadline!).toBeLessThanOrEqual(after + 2000);
    expect(call.metadata.toJSON()).toEqual({ 'x-tenant': ['acme'] });
    call.sendStatus({ code: 0, details: 'OK' });
  });

  it('frames a message with a zero flag byte and its length', () => {
    expect([...grpcFrame(Uint8Array.from([7, 8, 9]))]).toEqual([0, 0, 0, 0, 3, 7, 8, 9]);
    expect([...grpcFrame(new Uint8Array(0))]).toEqual([0, 0, 0, 0, 0]);
  });
});
