// One gRPC call through the gateway, handled at the HTTP/2 level: the request's bytes are forwarded as they
// are (never decoded and re-encoded), except that the model reference is read from the first message to
// route it. Unary and server-streaming requests are held whole (they are one message) so a failed attempt can
// be replayed on another replica; streaming requests are piped with backpressure once the first message has
// chosen the replica. Responses are piped back with backpressure (an idempotent unary answer is held until it is
// complete, so a replica lost halfway through answering is retried too), and the caller's cancel or deadline
// cancels the replica's call at once.
import http2, { type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type Span } from '@opentelemetry/api';
import { DeadlineExceededError, FailedPreconditionError, NotFoundError, UnavailableError } from '../../services/runtime/errors.js';
import { toStatus } from '../../services/runtime/grpc-status.js';
import { Attr, tracer } from '../../services/runtime/telemetry/tracing.js';
import { ANONYMOUS, type Principal } from '../domain/auth.js';
import type { Resolution } from '../domain/catalog.js';
import { backoffMs, mayRetry, type AttemptFailure } from '../domain/retry.js';
import { H2Error, type H2Stream } from '../clients/h2-connection.js';
import type { PoolReplica } from '../clients/service-pool.js';
import type { MethodRoute } from '../routes/method-table.js';
import type { FrontContext } from './front.js';
import { decodeGrpcMessage, formatGrpcTimeout, MessageScanner, messageTooLarge, parseGrpcTimeout, plainMessage, readModelRef, statusHeaders } from './wire.js';

const HTTP2_FLAG_END_STREAM = 0x1;

/** Request headers that are not passed on as they are. */
const NOT_FORWARDED = new Set(['te', 'content-type', 'grpc-timeout', 'host', 'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'content-length', 'http2-settings']);
const TRACE_HEADERS = new Set(['traceparent', 'tracestate']);

const MAX_TIMER_MS = 2 ** 31 - 1;

type Status = { code: number; details: string; metadata?: import('@grpc/grpc-js').Metadata };

export class ProxyCall {
  private readonly started = Date.now();
  private deadline: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private span: Span | undefined;
  /** The CLIENT span of the current attempt on a replica (one per attempt; retries show as siblings). */
  private clientSpan: Span | undefined;
  /** The registry model the call was routed for, for the request metric's `model` label. */
  private model = '';
  private traceContext: Context | undefined;
  private slot = false;
  private finished = false;
  /** Response headers went to the caller: the call can no longer be retried. */
  private responded = false;
  /**
   * The replica's response headers (and, for unary calls, its message), held back from the caller while the
   * call may still be retried: a replica lost after it began to answer but before it finished is then retried
   * like one lost before it answered. Unary answers go out when complete; server streams at their first bytes.
   */
  private heldHeaders: OutgoingHttpHeaders | undefined;
  private heldData: Buffer[] | undefined;
  private finalTrailers: OutgoingHttpHeaders | undefined;

  private scanner: MessageScanner | undefined;
  private readonly replayable: boolean;
  private chunks: Buffer[] = [];
  private body: Buffer | undefined;
  private requestEnded = false;
  private affinity: string | undefined;

  private up: H2Stream | undefined;
  private replica: PoolReplica | undefined;
  private upEnded = false;
  private upTrailers: IncomingHttpHeaders | undefined;
  private attempts = 0;
  /** Replicas this call tried, made on the first retry. */
  private tried: Set<PoolReplica> | undefined;
  private lastFailure: Status | undefined;

  constructor(
    private readonly ctx: FrontContext,
    private readonly stream: ServerHttp2Stream,
    private readonly headers: IncomingHttpHeaders,
    private readonly route: MethodRoute,
  ) {
    this.replayable = route.kind === 'unary' || route.kind === 'server_stream';
  }

  start(): void {
    const { stream, route, ctx } = this;
    (stream as CallStream)[CALL] = this;
    stream.on('error', ignore);
    stream.on('close', onClientClose);
    stream.on('wantTrailers', onWantTrailers);
    ctx.track(this, true);
    if (ctx.isDraining() && !route.open) {
      this.fail(new UnavailableError('the gateway is draining; retry on another gateway replica', 0));
      return;
    }
    if (ctx.tracing()) {
      const parent = propagation.extract(ROOT_CONTEXT, this.headers);
      this.span = tracer().startSpan(route.path.slice(1), { kind: SpanKind.SERVER, attributes: { 'rpc.system': 'grpc', 'rpc.service': route.service, 'rpc.method': route.method } }, parent);
      this.traceContext = trace.setSpan(parent, this.span);
    }
    const timeout = parseGrpcTimeout(this.headers['grpc-timeout']) ?? (route.defaultDeadlineMs > 0 ? route.defaultDeadlineMs : undefined);
    if (timeout !== undefined) {
      this.deadline = this.started + timeout;
      // Timers cannot run longer than about 24.8 days; a deadline beyond that is no deadline in practice.
      if (timeout < MAX_TIMER_MS) this.timer = setTimeout(() => this.fail(new DeadlineExceededError()), timeout);
    }
    if (route.open) {
      this.admitted(ANONYMOUS);
      return;
    }
    let principal: Principal | Promise<Principal>;
    try {
      principal = ctx.admission.authenticate(this.headers.authorization);
    } catch (err) {
      this.fail(err);
      return;
    }
    if (principal instanceof Promise) principal.then((p) => this.admitted(p), (err: unknown) => this.fail(err));
    else this.admitted(principal);
  }

  private admitted(principal: Principal): void {
    if (this.finished) return;
    const { ctx, route } = this;
    try {
      if (!route.open) ctx.admission.check(principal, route.scope);
      if (!route.longLived && !route.open) {
        ctx.admission.acquire();
        this.slot = true;
      }
    } catch (err) {
      this.fail(err);
      return;
    }
    this.upstreamAuthorization = ctx.upstreamAuthorization(route, principal, this.headers.authorization as string | undefined);
    this.scanner = new MessageScanner((size) => {
      if (size <= route.maxRequestBytes) return true;
      this.fail(
        messageTooLarge(`request message of ${size} bytes is larger than the gateway's limit of ${route.maxRequestBytes} bytes for ${route.method}`, {
          limit_bytes: String(route.maxRequestBytes),
          size_bytes: String(size),
          method: route.path.slice(1),
        }),
      );
      return false;
    }, route.modelRefPath !== undefined);
    this.stream.on('data', onRequestData);
    this.stream.on('end', onRequestEnd);
    // Streaming calls not routed by model can start at once.
    if (!this.replayable && route.modelRefPath === undefined) this.attempt();
  }

  private upstreamAuthorization: string | undefined;

  onRequestData(chunk: Buffer): void {
    if (this.finished) return;
    if (!this.scanner!.push(chunk)) return;
    if (this.replayable || !this.up) {
      this.chunks.push(chunk);
      if (!this.replayable && !this.up && this.scanner!.first && this.affinity === undefined && this.attempts === 0) this.routeByModel();
      return;
    }
    if (!this.up.write(chunk)) {
      this.stream.pause();
      this.up.once('drain', () => this.stream.resume());
    }
  }

  onRequestEnd(): void {
    if (this.finished) return;
    this.requestEnded = true;
    if (this.replayable) {
      this.body = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
      this.chunks = [];
      if (this.route.modelRefPath) this.routeByModel();
      else this.attempt();
    } else if (this.up) this.up.end();
    else if (this.attempts === 0 && this.route.modelRefPath) this.routeByModel();
  }

  /** Reads the model reference of the first message and resolves it, then makes the first attempt. */
  private routeByModel(): void {
    this.affinity = '';
    const first = this.scanner!.first;
    const message = first ? plainMessage(first, this.headers['grpc-encoding'] as string | undefined) : undefined;
    const ref = message ? readModelRef(message, this.route.modelRefPath!) : undefined;
    if (!ref || ref.name === '') {
      this.attempt();
      return;
    }
    this.affinity = ref.name;
    const r = this.ctx.resolve(ref);
    if (r instanceof Promise) r.then((res) => this.resolved(res), () => this.attempt());
    else this.resolved(r);
  }

  private resolved(r: Resolution): void {
    if (this.finished) return;
    const route = this.route;
    if (r.status === 'not_found') {
      this.fail(new NotFoundError(r.resource, r.name, r.message));
      return;
    }
    if (r.status === 'found') {
      if (route.tasks && r.task !== 'unknown' && !route.tasks.includes(r.task)) {
        this.fail(
          new FailedPreconditionError(`model "${r.name}" is a ${r.task} model; ${route.service.slice(route.service.lastIndexOf('.') + 1)} serves ${route.tasks.join(' and ')} models`, [
            { type: 'TASK', subject: r.name, description: `task is ${r.task}` },
          ]),
        );
        return;
      }
      this.affinity = `${r.name}@${r.version}`;
      this.model = r.name;
      this.span?.setAttribute(Attr.model, r.name);
      this.span?.setAttribute(Attr.modelVersion, r.version);
      this.span?.setAttribute(Attr.task, r.task);
    }
    this.attempt();
  }

  private attempt(): void {
    if (this.finished) return;
    const pool = this.ctx.pool(this.route.pool);
    if (this.attempts > 0) (this.tried ??= new Set()).add(this.replica!);
    const replica = pool?.pick(this.affinity, this.tried);
    if (!replica) {
      if (this.lastFailure) {
        this.fail(this.notRetried(`no other replica of ${this.route.pool} is usable`));
        return;
      }
      this.fail(new UnavailableError(`no healthy replica of ${this.route.pool} is available; retry shortly`, 1000, { reason: 'NO_HEALTHY_REPLICA', metadata: { service: this.route.pool } }));
      return;
    }
    // Each call counts once towards the retry budget (a share of calls may be retried).
    if (this.attempts === 0) this.ctx.retry.budget.onCall();
    this.attempts++;
    this.replica = replica;
    this.upEnded = false;
    this.upTrailers = undefined;
    this.heldHeaders = undefined;
    this.heldData = undefined;
    let up: H2Stream;
    try {
      up = replica.handle.upstream.request(this.upstreamHeaders(replica));
    } catch (err) {
      this.attemptFailed(replica, 'not_sent', (err as Error).message);
      return;
    }
    this.up = up;
    replica.outstanding++;
    this.span?.setAttribute('maas.replica', replica.address);
    (up as UpStream)[CALL] = this;
    (up as UpStream)[REPLICA] = replica;
    up.on('response', onUpResponse);
    up.on('trailers', onUpTrailers);
    up.on('data', onUpData);
    up.on('end', onUpEnd);
    up.on('close', onUpClose);
    if (this.replayable) up.end(this.body);
    else {
      for (const c of this.chunks) up.write(c);
      this.chunks = [];
      if (this.requestEnded) up.end();
    }
  }

  private upstreamHeaders(replica: PoolReplica): OutgoingHttpHeaders {
    const h = this.headers;
    const out: OutgoingHttpHeaders = {
      ':method': 'POST',
      ':scheme': 'http',
      ':path': this.route.path,
      ':authority': replica.address,
      'content-type': h['content-type'],
      te: 'trailers',
    };
    const tracing = this.span?.isRecording() === true;
    for (const k in h) {
      if (k.charCodeAt(0) === 58 /* : */ || NOT_FORWARDED.has(k) || (tracing && TRACE_HEADERS.has(k)) || k === 'authorization') continue;
      out[k] = h[k];
    }
    if (this.upstreamAuthorization) out.authorization = this.upstreamAuthorization;
    if (this.deadline !== undefined) out['grpc-timeout'] = formatGrpcTimeout(this.deadline - Date.now());
    if (tracing) {
      this.endClientSpan(2, 'superseded by another attempt');
      this.clientSpan = tracer().startSpan(
        this.route.path.slice(1),
        { kind: SpanKind.CLIENT, attributes: { 'rpc.system': 'grpc', 'rpc.service': this.route.service, 'rpc.method': this.route.method, 'server.address': replica.address } },
        this.traceContext,
      );
      propagation.inject(trace.setSpan(this.traceContext!, this.clientSpan), out);
    }
    return out;
  }

  onResponse(up: H2Stream, h: IncomingHttpHeaders, flags: number): void {
    if (up !== this.up || this.finished) return;
    const statusCode = Number(h[':status']);
    const grpcStatus = h['grpc-status'];
    if (grpcStatus !== undefined && flags & HTTP2_FLAG_END_STREAM) {
      // Trailers-only: the replica answered with a status and nothing else.
      this.upEnded = true;
      const code = Number(grpcStatus);
      if (code === 14 && this.retryable('unavailable')) {
        this.lastFailure = { code, details: decodeGrpcMessage(h['grpc-message']) };
        this.retryAfter(up, 'unavailable');
        return;
      }
      this.respondTrailersOnly(copyHeaders(h), code);
      return;
    }
    if (statusCode !== 200) {
      this.fail(new UnavailableError(`replica ${this.replica?.address} answered HTTP ${statusCode}, not gRPC`));
      return;
    }
    if (this.replayable && this.route.idempotent) this.heldHeaders = copyHeaders(h);
    else this.commit(copyHeaders(h));
  }

  /** Sends the held headers and any held message to the caller (the call is no longer retried). */
  private releaseHeld(): boolean {
    const h = this.heldHeaders!;
    const data = this.heldData;
    this.heldHeaders = undefined;
    this.heldData = undefined;
    if (!this.commit(h)) return false;
    if (data) for (const c of data) this.stream.write(c);
    return true;
  }

  /** Sends the response headers to the caller; from here on the call is not retried. */
  private commit(headers: OutgoingHttpHeaders): boolean {
    this.responded = true;
    try {
      this.stream.respond(headers, { waitForTrailers: true });
      return true;
    } catch {
      this.cancelUpstream();
      return false;
    }
  }

  onUpTrailers(up: H2Stream, t: IncomingHttpHeaders): void {
    if (up === this.up) this.upTrailers = t;
  }

  onResponseData(up: H2Stream, chunk: Buffer): void {
    if (up !== this.up || this.finished) return;
    if (this.heldHeaders) {
      if (this.route.kind === 'unary') {
        (this.heldData ??= []).push(chunk);
        return;
      }
      if (!this.releaseHeld()) return;
    }
    if (!this.responded) return;
    if (!this.stream.write(chunk)) {
      up.pause();
      this.stream.once('drain', () => up.resume());
    }
  }

  onResponseEnd(up: H2Stream): void {
    // Without trailers the response did not really end (the replica's connection broke): 'close' decides.
    if (up !== this.up || this.finished || !this.upTrailers) return;
    if (this.heldHeaders && !this.releaseHeld()) return;
    if (!this.responded) return;
    this.upEnded = true;
    this.finalTrailers = copyTrailers(this.upTrailers);
    this.stream.end();
  }

  onUpstreamClose(up: H2Stream, replica: PoolReplica): void {
    replica.outstanding--;
    if (up !== this.up) return;
    if (this.upEnded) {
      replica.answered++;
      return;
    }
    if (this.finished) return;
    replica.failed++;
    const neverSent = up.id === undefined || up.rstCode === H2Error.REFUSED_STREAM;
    const began = this.responded || this.heldHeaders !== undefined;
    this.attemptFailed(replica, neverSent ? 'not_sent' : 'lost', neverSent ? 'could not be reached' : began ? 'failed before it finished answering' : 'failed before it answered');
  }

  private attemptFailed(replica: PoolReplica, failure: AttemptFailure, what: string): void {
    this.lastFailure = toStatus(new UnavailableError(`replica ${replica.address} of ${this.route.pool} ${what}`, 100, { reason: 'REPLICA_FAILED' }));
    if (!this.responded && this.retryable(failure)) {
      this.retryAfter(undefined, failure);
      return;
    }
    if (this.responded) {
      this.finalTrailers = statusHeaders(this.lastFailure);
      this.stream.end();
    } else this.fail(this.lastFailure);
  }

  private retryable(failure: AttemptFailure): boolean {
    return mayRetry({
      failure,
      idempotent: this.route.idempotent,
      answered: this.responded,
      replayable: this.replayable,
      attempts: this.attempts,
      maxAttempts: this.ctx.retry.maxAttempts,
    });
  }

  private endClientSpan(code: number, message?: string): void {
    if (!this.clientSpan) return;
    this.clientSpan.setAttribute('rpc.grpc.status_code', code);
    if (code !== 0) this.clientSpan.setStatus({ code: SpanStatusCode.ERROR, message });
    this.clientSpan.end();
    this.clientSpan = undefined;
  }

  private retryAfter(up: H2Stream | undefined, reason: AttemptFailure): void {
    this.endClientSpan(14, `attempt failed (${reason}); retrying`);
    if (up) up.close(H2Error.CANCEL);
    this.up = undefined;
    const r = this.ctx.retry;
    const delay = backoffMs(this.attempts, r.backoffMs, r.backoffMaxMs);
    if (this.deadline !== undefined && Date.now() + delay >= this.deadline) {
      this.fail(this.lastFailure!);
      return;
    }
    if (!r.budget.tryRetry()) {
      this.fail(this.notRetried("the gateway's retry budget is spent (too many calls failing)"));
      return;
    }
    this.ctx.onRetry(this.route, reason);
    this.span?.addEvent('retry', { reason, attempt: this.attempts, replica: this.replica?.address ?? '' });
    setTimeout(() => this.attempt(), delay);
  }

  /** The last attempt's failure, saying why it was not retried. */
  private notRetried(why: string): Status {
    return { ...this.lastFailure!, details: `${this.lastFailure!.details}; not retried: ${why}` };
  }

  private respondTrailersOnly(h: OutgoingHttpHeaders, code: number): void {
    try {
      this.stream.respond(h, { endStream: true });
    } catch {
      /* the caller is gone */
    }
    this.finish(code);
  }

  sendFinalTrailers(): void {
    const t = this.finalTrailers ?? statusHeaders({ code: 13, details: 'the call ended without a status' });
    try {
      this.stream.sendTrailers(t);
    } catch {
      /* the caller is gone */
    }
    this.finish(Number(t['grpc-status'] ?? 2));
  }

  /** Ends the call with the gateway's own status (an error thrown before or while routing). */
  private fail(err: unknown): void {
    if (this.finished) return;
    const status = isStatus(err) ? err : toStatus(err, this.ctx.log);
    this.cancelUpstream();
    if (this.stream.closed || this.stream.destroyed) {
      this.finish(status.code);
      return;
    }
    if (!this.responded) {
      this.respondTrailersOnly({ ':status': 200, 'content-type': 'application/grpc', ...statusHeaders(status) }, status.code);
      // The caller may still be sending (an oversized message): discard the rest, and after the answer has
      // gone out tell it to stop (RST_STREAM NO_ERROR, as HTTP/2 allows after a complete response).
      this.stream.resume();
      const s = this.stream;
      setTimeout(() => {
        if (!s.closed && !s.destroyed) s.close(http2.constants.NGHTTP2_NO_ERROR);
      }, 200).unref();
      return;
    }
    this.finalTrailers = statusHeaders(status);
    this.stream.end();
  }

  /** Ends the call with UNAVAILABLE because the gateway is stopping (watch streams at drain, all at close). */
  endForShutdown(): void {
    this.fail(new UnavailableError('the gateway is shutting down; reconnect to another gateway replica', 0));
  }

  /** package.Service/Method of the call. */
  get method(): string {
    return this.route.path.slice(1);
  }

  get isLongLived(): boolean {
    return this.route.longLived || this.route.open === true;
  }

  get isOpen(): boolean {
    return this.route.open === true;
  }

  /**
   * Cancels the replica's call and lets go of it: its 'close' that follows must not count as a replica failure
   * (nor replace the status this call is ending with, say the gateway's own DEADLINE_EXCEEDED, by UNAVAILABLE).
   */
  private cancelUpstream(): void {
    const up = this.up;
    this.up = undefined;
    if (up && !up.closed) up.close(H2Error.CANCEL);
  }

  onClientClose(): void {
    if (this.finished) return;
    // The caller went away (cancelled or its deadline passed): stop the replica's work now.
    this.cancelUpstream();
    this.finish(this.deadline !== undefined && Date.now() >= this.deadline ? 4 : 1);
  }

  private finish(code: number): void {
    if (this.finished) return;
    this.finished = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.slot) this.ctx.admission.release();
    this.chunks = [];
    this.body = undefined;
    this.endClientSpan(code);
    if (this.span) {
      this.span.setAttribute('rpc.grpc.status_code', code);
      if (code !== 0) this.span.setStatus({ code: SpanStatusCode.ERROR });
      this.span.end();
    }
    this.ctx.track(this, false);
    this.ctx.onFinish(this.route, code, Date.now() - this.started, this.model);
  }
}

function isStatus(err: unknown): err is Status {
  return typeof err === 'object' && err !== null && !(err instanceof Error) && typeof (err as Status).code === 'number' && typeof (err as Status).details === 'string';
}

/** Non-pseudo headers, with :status 200, for the caller's side. */
function copyHeaders(h: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { ':status': 200 };
  for (const k in h) if (k.charCodeAt(0) !== 58) out[k] = h[k];
  return out;
}

/** Non-pseudo trailers. */
function copyTrailers(h: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const k in h) if (k.charCodeAt(0) !== 58) out[k] = h[k];
  return out;
}

// Listeners shared by every call (no closures per call): each stream carries its ProxyCall.
const CALL = Symbol('proxyCall');
const REPLICA = Symbol('replica');
type CallStream = ServerHttp2Stream & { [CALL]: ProxyCall };
type UpStream = H2Stream & { [CALL]: ProxyCall; [REPLICA]: PoolReplica };

function ignore(): void {}
function onClientClose(this: CallStream): void {
  this[CALL].onClientClose();
}
function onWantTrailers(this: CallStream): void {
  this[CALL].sendFinalTrailers();
}
function onRequestData(this: CallStream, chunk: Buffer): void {
  this[CALL].onRequestData(chunk);
}
function onRequestEnd(this: CallStream): void {
  this[CALL].onRequestEnd();
}
function onUpResponse(this: UpStream, h: IncomingHttpHeaders, flags: number): void {
  this[CALL].onResponse(this, h, flags);
}
function onUpTrailers(this: UpStream, t: IncomingHttpHeaders): void {
  this[CALL].onUpTrailers(this, t);
}
function onUpData(this: UpStream, chunk: Buffer): void {
  this[CALL].onResponseData(this, chunk);
}
function onUpEnd(this: UpStream): void {
  this[CALL].onResponseEnd(this);
}
function onUpClose(this: UpStream): void {
  this[CALL].onUpstreamClose(this, this[REPLICA]);
}
