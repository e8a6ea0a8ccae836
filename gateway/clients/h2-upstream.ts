// One HTTP/2 connection to one replica, used for raw gRPC pass-through: the gateway forwards frames instead of
// decoding messages, so it does not need a gRPC client object per call. The connection is opened on first use,
// dropped when it fails or the replica sends GOAWAY (the next call opens a new one), and pinged while open so
// a replica that vanished without closing its socket is noticed.
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type OutgoingHttpHeaders } from 'node:http2';
import net from 'node:net';

export interface UpstreamOptions {
  /** Called when a connection could not be made or broke (the replica should be left out for a while). */
  onConnectionFailure?(err: Error): void;
  keepaliveTimeMs?: number;
  keepaliveTimeoutMs?: number;
}

const SESSION_OPTIONS: http2.ClientSessionOptions = {
  settings: { enablePush: false, initialWindowSize: 4 * 1024 * 1024 },
  maxSessionMemory: 64,
  // Calls beyond the replica's stream limit wait for a free stream instead of failing.
  peerMaxConcurrentStreams: 1000,
};

export class H2Upstream {
  private session: ClientHttp2Session | undefined;
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
  request(headers: OutgoingHttpHeaders): ClientHttp2Stream {
    return this.connect().request(headers, { endStream: false });
  }

  /** True when a connection is open (or opening) now. */
  get connected(): boolean {
    return this.session !== undefined;
  }

  private connect(): ClientHttp2Session {
    if (this.session && !this.session.closed && !this.session.destroyed) return this.session;
    if (this.closed) throw new Error(`upstream ${this.address} is closed`);
    const { host, port } = splitHostPort(this.address);
    const session = http2.connect(`http://${this.authority}`, {
      ...SESSION_OPTIONS,
      createConnection: () => {
        const socket = net.connect({ host, port });
        socket.setNoDelay(true);
        return socket;
      },
    });
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
    session.unref();
    this.startPinging(session);
    return session;
  }

  private startPinging(session: ClientHttp2Session): void {
    const every = this.options.keepaliveTimeMs ?? 30_000;
    const timeout = this.options.keepaliveTimeoutMs ?? 10_000;
    this.pinger = setInterval(() => {
      if (session.closed || session.destroyed || session.connecting) return;
      const t = setTimeout(() => session.destroy(new Error(`keepalive ping to ${this.address} unanswered`)), timeout);
      t.unref();
      try {
        session.ping(() => clearTimeout(t));
      } catch {
        clearTimeout(t);
      }
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
