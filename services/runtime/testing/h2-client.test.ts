import { afterEach, describe, expect, it } from 'vitest';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import * as grpc from '@grpc/grpc-js';
import net from 'node:net';
import { startEchoServer } from '../../../test/fixtures/echo-service.js';
import type { MeshServer } from '../server.js';
import { grpcFrame } from '../unary-stream.js';
import { H2GrpcClient } from './h2-client.js';

/** A gRPC frame holding a message whose field 1 is `text` (EchoRequest and FailRequest alike). */
function frame(text: string): Buffer {
  return grpcFrame(new BinaryWriter().uint32(0x0a).string(text).finish());
}

let server: MeshServer | undefined;
let client: H2GrpcClient | undefined;
afterEach(async () => {
  client?.close();
  await server?.close();
  server = client = undefined;
  port = 0;
});

let port = 0;

async function start(): Promise<H2GrpcClient> {
  ({ server, port } = await startEchoServer({ port }));
  return (client ??= new H2GrpcClient(`127.0.0.1:${port}`));
}

describe('H2GrpcClient', () => {
  it('completes many concurrent calls whose bodies exceed a frame and the flow-control windows', async () => {
    const c = await start();
    // 64 × 40 KB: each body is split over several DATA frames, and together they pass the 64 KB windows the
    // server starts with, so the client must wait for its WINDOW_UPDATEs.
    const request = frame('x'.repeat(40_000));
    const answers = await Promise.all(Array.from({ length: 64 }, () => c.call('/maas.testing.v1.EchoService/Echo', request)));
    // The echo answers the same message it was sent.
    expect(answers).toEqual(Array(64).fill(request.length));
    // The connection stays usable, and stream ids go on.
    await expect(c.call('/maas.testing.v1.EchoService/Echo', frame('again'))).resolves.toBe(frame('again').length);
  });

  it('reads frames that arrive cut anywhere, even inside their 9-byte headers', async () => {
    await start();
    // A proxy that passes the server's bytes on in pieces of 1 to 13 bytes, one piece per turn of its event loop.
    const sockets: net.Socket[] = [];
    const proxy = net.createServer((down) => {
      const up = net.connect({ host: '127.0.0.1', port, noDelay: true });
      down.setNoDelay(true);
      sockets.push(down, up);
      down.pipe(up);
      let queue = Promise.resolve();
      let size = 0;
      up.on('data', (chunk: Buffer) => {
        queue = queue.then(async () => {
          for (let at = 0; at < chunk.length; ) {
            size = (size % 13) + 1;
            down.write(chunk.subarray(at, at + size));
            at += size;
            await new Promise((r) => setImmediate(r));
          }
        });
      });
    });
    const proxyPort = await new Promise<number>((resolve) => proxy.listen(0, '127.0.0.1', () => resolve((proxy.address() as net.AddressInfo).port)));
    const sliced = new H2GrpcClient(`127.0.0.1:${proxyPort}`);
    try {
      const request = frame('y'.repeat(3000));
      const answers = await Promise.all(Array.from({ length: 4 }, () => sliced.call('/maas.testing.v1.EchoService/Echo', request)));
      expect(answers).toEqual(Array(4).fill(request.length));
      await expect(sliced.call('/maas.testing.v1.EchoService/Fail', frame('not_found'))).rejects.toThrow(/without a response message/);
    } finally {
      sliced.close();
      for (const socket of sockets) socket.destroy();
      await new Promise((r) => proxy.close(r));
    }
  });

  it('counts a call answered with an error status, or an unknown method, as failed', async () => {
    const c = await start();
    await expect(c.call('/maas.testing.v1.EchoService/Fail', frame('not_found'))).rejects.toThrow(/without a response message/);
    await expect(c.call('/maas.testing.v1.EchoService/Nope', frame('x'))).rejects.toThrow(/without a response message/);
    await expect(c.call('/maas.testing.v1.EchoService/Echo', frame('fine'))).resolves.toBeGreaterThan(5);
  });

  it('fails the calls in flight when the server goes away, and connects again for the next one', async () => {
    const c = await start();
    await c.call('/maas.testing.v1.EchoService/Echo', frame('x'));
    const slow = c.call('/maas.testing.v1.EchoService/Slow', grpcFrame(new BinaryWriter().uint32(0x08).uint32(5000).finish())); // SlowRequest.ms
    await new Promise((r) => setTimeout(r, 50));
    await server!.close();
    await expect(slow).rejects.toThrow();
    await expect(c.call('/maas.testing.v1.EchoService/Echo', frame('x'))).rejects.toThrow();
    await start(); // on the same port
    await expect(c.call('/maas.testing.v1.EchoService/Echo', frame('back'))).resolves.toBe(frame('back').length);
  });
});

describe('H2GrpcClient streams', () => {
  const bytes = (b: Buffer) => b;
  const definition = {
    Repeat: { path: '/t.Stream/Repeat', requestStream: false, responseStream: true, requestSerialize: bytes, requestDeserialize: bytes, responseSerialize: bytes, responseDeserialize: bytes, originalName: 'repeat' },
    Forever: { path: '/t.Stream/Forever', requestStream: false, responseStream: true, requestSerialize: bytes, requestDeserialize: bytes, responseSerialize: bytes, responseDeserialize: bytes, originalName: 'forever' },
  } as unknown as grpc.ServiceDefinition;
  let raw: grpc.Server | undefined;
  let cancelled = 0;
  afterEach(async () => {
    await new Promise<void>((resolve) => (raw ? raw.tryShutdown(() => resolve()) : resolve()));
    raw = undefined;
  });

  async function startRaw(): Promise<H2GrpcClient> {
    raw = new grpc.Server();
    raw.addService(definition, {
      // The request says how many messages of how many bytes: message i is filled with i.
      Repeat: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
        const [n, size] = [call.request.readUInt32BE(0), call.request.readUInt32BE(4)];
        for (let i = 0; i < n; i++) call.write(Buffer.alloc(size, i % 256));
        call.end();
      },
      Forever: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
        const timer = setInterval(() => call.write(Buffer.from('tick')), 2);
        call.on('cancelled', () => {
          cancelled++;
          clearInterval(timer);
        });
      },
    });
    const port = await new Promise<number>((resolve, reject) => raw!.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    return (client = new H2GrpcClient(`127.0.0.1:${port}`));
  }

  const request = (n: number, size: number) => {
    const body = Buffer.alloc(8);
    body.writeUInt32BE(n, 0);
    body.writeUInt32BE(size, 4);
    return grpcFrame(body);
  };

  it('hands over each message whole, small ones packed together and large ones split over frames', async () => {
    const c = await startRaw();
    for (const [n, size] of [
      [200, 3],
      [5, 40_000],
      [3, 0],
    ] as const) {
      const got: Buffer[] = [];
      await c.stream('/t.Stream/Repeat', request(n, size), (m) => got.push(Buffer.from(m)));
      expect(got.map((m) => m.length)).toEqual(Array(n).fill(size));
      got.forEach((m, i) => expect(m.every((b) => b === i % 256)).toBe(true));
    }
  });

  it('resets the stream when the caller throws, and the connection goes on', async () => {
    const c = await startRaw();
    let seen = 0;
    const stop = new Error('enough');
    await expect(
      c.stream('/t.Stream/Forever', request(0, 0), () => {
        if (++seen === 5) throw stop;
      }),
    ).rejects.toBe(stop);
    await expect.poll(() => cancelled, { timeout: 10_000 }).toBe(1);
    const got: number[] = [];
    await c.stream('/t.Stream/Repeat', request(2, 7), (m) => got.push(m.length));
    expect(got).toEqual([7, 7]);
  });
});
