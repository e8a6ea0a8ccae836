// A plain `node:http2` server on a loopback port for tests of HTTP/2 clients: each stream goes to `onStream`
// (stream errors are swallowed: a reset is what many tests provoke), and it keeps its sessions and sockets so a
// test can break them; close() destroys the sessions and closes the server.
import { once } from 'node:events';
import http2, { type Http2Server, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';

export interface TestH2Server {
  server: Http2Server;
  port: number;
  sessions: ServerHttp2Session[];
  sockets: Socket[];
  close(): Promise<void>;
}

export async function startH2Server(onStream: (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void, options: http2.ServerOptions = {}): Promise<TestH2Server> {
  const server = http2.createServer(options);
  const sessions: ServerHttp2Session[] = [];
  const sockets: Socket[] = [];
  server.on('connection', (socket: Socket) => sockets.push(socket));
  server.on('session', (session) => sessions.push(session));
  server.on('stream', (stream, headers) => {
    stream.on('error', () => undefined);
    onStream(stream, headers);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    server,
    port: (server.address() as AddressInfo).port,
    sessions,
    sockets,
    close: () => {
      for (const session of sessions) session.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
