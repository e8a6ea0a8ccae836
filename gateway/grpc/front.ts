// The gateway's gRPC port: a plain HTTP/2 server that hands each call to a ProxyCall. Public methods come
// from the routing table; any other path (health, reflection, unknown methods) goes to the gateway's own
// in-process gRPC server, which answers health and reflection and says UNIMPLEMENTED for the rest.
import http2, { type Http2Server, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import type { Logger } from '../../services/runtime/logger.js';
import { rpcMetrics } from '../../services/runtime/telemetry/metrics.js';
import type { Admission } from '../domain/admission.js';
import type { Principal } from '../domain/auth.js';
import type { ModelRefLike, Resolution } from '../domain/catalog.js';
import type { AttemptFailure, RetryBudget } from '../domain/retry.js';
import type { ServicePool } from '../clients/service-pool.js';
import type { MethodRoute } from '../routes/method-table.js';
import { ProxyCall } from './proxy-call.js';
import { counter } from '../../services/runtime/telemetry/metrics.js';

export interface RetrySettings {
  maxAttempts: number;
  backoffMs: number;
  backoffMaxMs: number;
  budget: RetryBudget;
}

/** What a ProxyCall needs from the gateway. */
export interface FrontContext {
  admission: Admission;
  retry: RetrySettings;
  log: Logger;
  isDraining(): boolean;
  tracing(): boolean;
  pool(name: string): ServicePool | undefined;
  resolve(ref: ModelRefLike): Resolution | Promise<Resolution>;
  /** The authorization header to send to the replica (undefined: none). */
  upstreamAuthorization(route: MethodRoute, principal: Principal, incoming: string | undefined): string | undefined;
  onRetry(route: MethodRoute, reason: AttemptFailure): void;
  /** `model` is the registry model the call was routed for ('' when it named none or an unknown one). */
  onFinish(route: MethodRoute, code: number, ms: number, model: string): void;
  track(call: ProxyCall, active: boolean): void;
}

export interface FrontOptions {
  table: Map<string, MethodRoute>;
  /** Pool name of the gateway's own gRPC server (health, reflection, UNIMPLEMENTED). */
  internalPool: string;
  maxInternalRequestBytes: number;
  context: Omit<FrontContext, 'isDraining' | 'onFinish' | 'track' | 'onRetry'>;
}

export class GrpcFront {
  private readonly server: Http2Server;
  private readonly sessions = new Set<ServerHttp2Session>();
  private readonly active = new Set<ProxyCall>();
  private readonly internalRoutes = new Map<string, MethodRoute>();
  private readonly idleWaiters = new Set<() => void>();
  private draining = false;
  private busy = 0;
  private readonly ctx: FrontContext;
  private boundPort = 0;

  constructor(private readonly options: FrontOptions) {
    const metrics = rpcMetrics();
    const retries = counter('maas_gateway_retries', 'attempts the gateway made again on another replica, by pool and reason');
    const attrCache = new Map<string, Record<string, string>>();
    // Labels are method, model and status code; `model` only takes names the registry knows, so it stays bounded.
    const attrs = (route: MethodRoute, code: number, model: string) => {
      const key = `${route.path}|${code}|${model}`;
      let a = attrCache.get(key);
      if (!a) {
        a = { method: route.path.slice(1), model, code: CODE_NAMES[code] ?? String(code) };
        attrCache.set(key, a);
      }
      return a;
    };
    const methodAttrCache = new Map<string, Record<string, string>>();
    const methodAttrs = (method: string) => {
      let a = methodAttrCache.get(method);
      if (!a) methodAttrCache.set(method, (a = { method }));
      return a;
    };
    this.ctx = {
      ...options.context,
      isDraining: () => this.draining,
      onRetry: (route, reason) => retries.add(1, { pool: route.pool, reason }),
      onFinish: (route, code, ms, model) => {
        if (route.open) return;
        const a = attrs(route, code, model);
        metrics.requests.add(1, a);
        metrics.duration.record(ms, a);
      },
      // In flight as in every other component (maas_rpc_server_in_flight by method), watch streams excluded.
      track: (call, on) => {
        if (on) {
          this.active.add(call);
          if (!call.isLongLived) {
            this.busy++;
            metrics.inFlight.add(1, methodAttrs(call.method));
          }
        } else if (this.active.delete(call) && !call.isLongLived) {
          metrics.inFlight.add(-1, methodAttrs(call.method));
          if (--this.busy === 0) for (const w of [...this.idleWaiters]) w();
        }
      },
    };
    this.server = http2.createServer({
      settings: { maxConcurrentStreams: 10_000, initialWindowSize: 4 * 1024 * 1024 },
      maxSessionMemory: 64,
    });
    this.server.on('connection', (socket: Socket) => socket.setNoDelay(true));
    this.server.on('session', (session) => {
      this.sessions.add(session);
      session.on('close', () => this.sessions.delete(session));
      session.on('error', () => undefined);
    });
    this.server.on('stream', (stream, headers) => this.onStream(stream, headers));
  }

  private onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    const path = headers[':path'] ?? '';
    let route = this.options.table.get(path);
    if (!route) route = this.internalRoute(path);
    if (headers[':method'] !== 'POST' || !String(headers['content-type'] ?? '').startsWith('application/grpc')) {
      stream.on('error', () => undefined);
      stream.respond({ ':status': 415, 'content-type': 'text/plain' });
      stream.end('this port speaks gRPC (POST, content-type application/grpc); the OpenAI-compatible HTTP API is on the HTTP port\n');
      return;
    }
    new ProxyCall(this.ctx, stream, headers, route).start();
  }

  private internalRoute(path: string): MethodRoute {
    let r = this.internalRoutes.get(path);
    if (!r) {
      const slash = path.lastIndexOf('/');
      r = {
        path,
        service: path.slice(1, slash),
        method: path.slice(slash + 1),
        kind: 'bidi',
        pool: this.options.internalPool,
        modelRefPath: undefined,
        tasks: undefined,
        idempotent: false,
        scope: 'infer',
        defaultDeadlineMs: 0,
        maxRequestBytes: this.options.maxInternalRequestBytes,
        longLived: true,
        open: true,
      };
      if (this.internalRoutes.size < 1000) this.internalRoutes.set(path, r);
    }
    return r;
  }

  async listen(host: string, port: number): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const a = this.server.address();
    this.boundPort = typeof a === 'object' && a ? a.port : port;
    return this.boundPort;
  }

  get port(): number {
    return this.boundPort;
  }

  /** Calls in flight, watch streams excluded. */
  get inFlight(): number {
    return this.busy;
  }

  /** New calls get UNAVAILABLE from now on; watch streams end with UNAVAILABLE so callers reconnect elsewhere. */
  beginDrain(): void {
    this.draining = true;
    for (const call of [...this.active]) if (call.isLongLived && !call.isOpen) call.endForShutdown();
  }

  waitIdle(ms: number): Promise<boolean> {
    if (this.busy === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.idleWaiters.delete(done);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.idleWaiters.delete(done);
        resolve(false);
      }, ms);
      this.idleWaiters.add(done);
    });
  }

  /** Stops listening, ends what is still running, and closes every connection (GOAWAY first). */
  async close(): Promise<void> {
    this.draining = true;
    for (const call of [...this.active]) call.endForShutdown();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sessions) s.close();
    const t = setTimeout(() => {
      for (const s of this.sessions) s.destroy();
    }, 1000);
    await closed;
    clearTimeout(t);
  }
}

const CODE_NAMES = ['OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED'];
