// One HTTP/2 connection to one replica, used for raw gRPC pass-through: the gateway forwards frames instead of
// decoding messages, so it does not need a gRPC client object per call (nor `node:http2`'s client: see
// h2-connection.ts). The connection is opened on first use,
// dropped when it fails or the replica sends GOAWAY (the next call opens a new one), and pinged while open so
// a replica that vanished without closing its socket is noticed.
import type { OutgoingHttpHeaders } from 'node:http2';
import net from 'node:net';
import { H2Connection, type H2ConnectionOptions, type H2Stream } from './h2-connection.js';

export interface UpstreamOptions {
  /** Called when a connection could not be made or broke (the replica should be left out for a while). */
  onConnectionFailure?(err: Error): void;
  keepaliveTimeMs?: number;
  keepaliveTimeoutMs?: number;
}

const CONNECTION_OPTIONS: H2ConnectionOptions = {
  initialWindowSize: 4 * 1024 * 1024,
  // Calls beyond the replica's stream limit wait for a free stream instead of failing.
  assumedMaxConcurrentStreams: 1000,
};

export class H2Upstream {
  private session: H2Connection | undefined;
  private pinger: NodeJS.Timeout | undefined;
  private closed = false;
  readonly authority: string;

  constructor(
    readonly address: string,
    private readonly options: UpstreamOptions = {},
  ) {
    this.authority = address;
  }

  /** Starts a call; the stream is queued until the connection is up. */
  request(headers: OutgoingHttpHeaders): H2Stream {
    return this.connect().request(headers);
  }

  /** True when a connection is open (or opening) now. */
  get connected(): boolean {
    return this.session !== undefined;
  }

  private connect(): H2Connection {
    if (this.session?.usable) return this.session;
    if (this.closed) throw new Error(`upstream ${this.address} is closed`);
    // A connection out of stream ids finishes its calls and closes; the next calls go on a new one.
    this.stopPinging();
    this.session?.close();
    const { host, port } = splitHostPort(this.address);
    const socket = net.connect({ host, port });
    socket.setNoDelay(true);
    const session = new H2Connection(socket, CONNECTION_OPTIONS);
    this.session = session;
    let connected = false;
    session.once('connect', () => {
      connected = true;
    });
    const drop = (err?: Error) => {
      if (this.session === session) {
        this.session = undefined;
        this.stopPinging();
      }
      if (err && !this.closed) this.options.onConnectionFailure?.(err);
    };
    session.on('error', (err) => drop(err));
    session.on('goaway', () => drop());
    session.on('close', () => drop(connected ? undefined : new Error(`could not connect to ${this.address}`)));
    socket.unref();
    this.startPinging(session);
    return session;
  }

  private startPinging(session: H2Connection): void {
    const every = this.options.keepaliveTimeMs ?? 30_000;
    const timeout = this.options.keepaliveTimeoutMs ?? 10_000;
    this.pinger = setInterval(() => {
      if (session.closed || session.connecting) return;
      const t = setTimeout(() => session.destroy(new Error(`keepalive ping to ${this.address} unanswered`)), timeout);
      t.unref();
      session.ping(() => clearTimeout(t));
    }, every);
    this.pinger.unref();
  }

  private stopPinging(): void {
    if (this.pinger) clearInterval(this.pinger);
    this.pinger = undefined;
  }

  /** Closes the connection; calls in flight finish first unless `now`. */
  close(now = false): void {
    this.closed = true;
    this.stopPinging();
    const s = this.session;
    this.session = undefined;
    if (!s) return;
    if (now) s.destroy();
    else s.close();
  }
}

export function splitHostPort(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  const host = address.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(address.slice(i + 1)) };
}
