// The server every component is built on: @grpc/grpc-js plus grpc.health.v1 (Check, List, Watch), server
// reflection over every registered service, message-size limits, keepalive, graceful drain, and one wrapper
// around each handler that turns the call into (request, CallContext) and any thrown error into a status.
// grpc-js owns the connections; plain unary calls are read and answered on their HTTP/2 stream by the runtime
// itself (unary-stream.ts, stream-hook.ts), which costs the event loop a fifth to a quarter less per call.
import { readFileSync } from 'node:fs';
import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import { addAbortSignal, type Readable, type Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { loadFileDescriptorSetFromBuffer, type PackageDefinition } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { context, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import { HealthService, type HealthCheckRequest, type HealthCheckResponse, type HealthListResponse } from '../../gen/grpc/health/v1/health.js';
import { callSignal, type Cancellable } from './call-signal.js';
import type { ServerSettings } from './config.js';
import { abortReason, InvalidArgumentError, NotFoundError, UnavailableError } from './errors.js';
import { toStatus } from './grpc-status.js';
import { HealthState, ServingStatus } from './health.js';
import type { Logger } from './logger.js';
import { rpcMetrics } from './telemetry/metrics.js';
import { extractContext, tracer } from './telemetry/tracing.js';
import { takeStreamsFirst } from './stream-hook.js';
import { acceptUnary, grpcFrame, type UnaryLimits } from './unary-stream.js';

/** What a handler gets besides the request. */
export interface CallContext {
  /** Aborted when the caller cancels, the deadline passes, or the server stops this call. */
  signal: AbortSignal;
  /** Absolute deadline in epoch ms, if the caller set one. */
  deadline: number | undefined;
  /** The request's metadata (headers). Handlers read auth and similar from it; the domain never sees it. */
  metadata: grpc.Metadata;
  /** Full method name, e.g. `maas.embeddings.v1.EmbeddingService/Embed`. */
  method: string;
  /** The server span of this call. */
  span: Span;
  log: Logger;
}

interface MethodLike {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestSerialize: (value: never) => Buffer;
  requestDeserialize: (value: Buffer) => unknown;
  responseSerialize: (value: never) => Buffer;
  responseDeserialize: (value: Buffer) => unknown;
  /**
   * Optional: the response as a whole gRPC message frame (flag byte, 4-byte length, message), for services
   * that can write it in one piece; unary calls served on the stream itself (unary-stream.ts) send it as is.
   */
  responseFrame?: (value: never) => Buffer;
}
type Req<M> = M extends { requestDeserialize: (value: Buffer) => infer R } ? R : never;
type Res<M> = M extends { responseSerialize: (value: infer R) => Buffer } ? R : never;

export type HandlerOf<M> = M extends { requestStream: false; responseStream: false }
  ? (request: Req<M>, ctx: CallContext) => Promise<Res<M>> | Res<M>
  : M extends { requestStream: false; responseStream: true }
    ? (request: Req<M>, ctx: CallContext) => AsyncIterable<Res<M>>
    : M extends { requestStream: true; responseStream: false }
      ? (requests: AsyncIterable<Req<M>>, ctx: CallContext) => Promise<Res<M>>
      : (requests: AsyncIterable<Req<M>>, ctx: CallContext) => AsyncIterable<Res<M>>;

export type Handlers<D> = { [K in keyof D]: HandlerOf<D[K]> };

export interface ServiceRegistration {
  /** Fully qualified service name, e.g. `maas.registry.v1.ModelRegistryService`. */
  name: string;
  definition: Record<string, MethodLike>;
  handlers: Record<string, (...args: never[]) => unknown>;
  /** Methods whose calls may run forever (watch streams): not waited for on drain but ended with UNAVAILABLE. */
  longLived: Set<string>;
  /** Served during drain too (health). */
  servesDuringDrain: boolean;
}

/** Binds a generated service definition to handlers written in the runtime's style. */
export function defineService<D extends Record<string, MethodLike>>(
  definition: D,
  handlers: Handlers<D>,
  options: { longLived?: (keyof D & string)[] } = {},
): ServiceRegistration {
  const first = Object.values(definition)[0];
  if (!first) throw new Error('a service needs at least one method');
  return {
    name: first.path.slice(1, first.path.lastIndexOf('/')),
    definition,
    handlers: handlers as unknown as ServiceRegistration['handlers'],
    longLived: new Set(options.longLived ?? []),
    servesDuringDrain: false,
  };
}

export interface MeshServerOptions {
  /** Component name for logs (registry, embeddings, gateway, ...). */
  component: string;
  settings: Pick<ServerSettings, 'host' | 'port' | 'drainGraceMs' | 'maxReceiveMessageBytes' | 'maxSendMessageBytes' | 'keepaliveTimeMs' | 'keepaliveTimeoutMs'>;
  log: Logger;
  services: ServiceRegistration[];
  /** Descriptors for reflection beyond gen/descriptors.binpb (tests' own services). */
  extraDescriptors?: PackageDefinition;
  /** Extra grpc-js channel options. */
  channelOptions?: grpc.ChannelOptions;
}

const DESCRIPTORS = new URL('../../gen/descriptors.binpb', import.meta.url);

export class MeshServer {
  readonly health = new HealthState();
  private readonly server: grpc.Server;
  private readonly log: Logger;
  private draining = false;
  private stopped = false;
  private inFlightCount = 0;
  private readonly idleWaiters = new Set<() => void>();
  /** Watch streams, ended at drain (or, for health watches, at close so they report NOT_SERVING first). */
  private readonly longLivedCalls = new Map<(reason: Error) => void, { untilClose: boolean }>();
  private boundPort = 0;
  /** Whether unary calls are served on the HTTP/2 stream itself (unary-stream.ts) rather than by grpc-js. */
  readonly servesUnaryItself: boolean;

  constructor(private readonly options: MeshServerOptions) {
    this.log = options.log;
    const s = options.settings;
    const serverOptions: grpc.ServerOptions = {
      'grpc.max_receive_message_length': s.maxReceiveMessageBytes,
      'grpc.max_send_message_length': s.maxSendMessageBytes,
      'grpc.keepalive_time_ms': s.keepaliveTimeMs,
      'grpc.keepalive_timeout_ms': s.keepaliveTimeoutMs,
      'grpc.keepalive_permit_without_calls': 1,
      // Clients may ping every 10 s without being sent GOAWAY (grpc-js default is 5 min between pings).
      'grpc.http2.min_ping_interval_without_data_ms': 10_000,
      ...options.channelOptions,
    };
    this.server = new grpc.Server(serverOptions);
    const limits = {
      maxReceiveMessageBytes: serverOptions['grpc.max_receive_message_length'] as number,
      maxSendMessageBytes: serverOptions['grpc.max_send_message_length'] as number,
    };
    const services = [healthRegistration(this.health), ...options.services];
    const unaryRoutes = new Map<string, (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => boolean>();
    for (const reg of services) {
      const definition = tolerantDefinition(reg.definition);
      this.server.addService(definition as unknown as grpc.ServiceDefinition, this.implementation(reg, definition));
      for (const [key, method] of Object.entries(definition)) {
        if (!method.requestStream && !method.responseStream) unaryRoutes.set(method.path, this.unaryRoute(reg, key, method, this.handlerOf(reg, key), limits));
      }
      this.health.set(reg.name, ServingStatus.NOT_SERVING);
    }
    // grpc-js server interceptors (none today) would be bypassed by the unary path, so with any it is not taken.
    this.servesUnaryItself =
      !serverOptions.interceptors?.length && takeStreamsFirst(this.server, (stream, headers) => unaryRoutes.get(headers[':path'] as string)?.(stream, headers) ?? false);
    const names = services.map((r) => r.name);
    const pkg = { ...loadFileDescriptorSetFromBuffer(readFileSync(DESCRIPTORS)), ...options.extraDescriptors };
    new ReflectionService(pkg, { services: names }).addToServer(this.server);
  }

  /** Binds the port, marks every service SERVING and returns the bound port. */
  async start(): Promise<number> {
    const { host, port } = this.options.settings;
    this.boundPort = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(`${host.includes(':') ? `[${host}]` : host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    this.health.setAll(ServingStatus.SERVING);
    this.log.info({ host, port: this.boundPort }, `${this.options.component} serving`);
    return this.boundPort;
  }

  get port(): number {
    return this.boundPort;
  }

  /** Calls being handled now, long-lived streams (watches) excluded. */
  get inFlight(): number {
    return this.inFlightCount;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /**
   * Graceful stop: health turns NOT_SERVING, new calls get UNAVAILABLE, watch streams end with UNAVAILABLE,
   * in-flight calls get up to drainGraceMs to finish, then the server shuts down (cutting off what is left).
   */
  async drain(graceMs = this.options.settings.drainGraceMs): Promise<{ completed: boolean }> {
    if (this.stopped) return { completed: true };
    this.draining = true;
    this.health.setAll(ServingStatus.NOT_SERVING);
    this.log.info({ inFlight: this.inFlightCount, graceMs }, 'draining');
    this.endLongLived(false);
    // Let health watchers receive NOT_SERVING before anything is cut off.
    await new Promise((r) => setTimeout(r, 20));
    const completed = await this.waitIdle(graceMs);
    if (!completed) this.log.warn({ inFlight: this.inFlightCount }, 'drain grace period over; cutting off the calls still running');
    await this.close(completed);
    return { completed };
  }

  /** Stops at once (or, with graceful, after in-flight calls). */
  async close(graceful = false): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.draining = true;
    this.health.setAll(ServingStatus.NOT_SERVING);
    this.endLongLived(true);
    if (!graceful) this.server.forceShutdown();
    else {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          this.server.forceShutdown();
          resolve();
        }, 2000);
        this.server.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  private endLongLived(all: boolean): void {
    for (const [end, { untilClose }] of this.longLivedCalls) {
      if (all || !untilClose) end(new UnavailableError('the server is shutting down; reconnect to another replica', 0));
    }
  }

  private waitIdle(ms: number): Promise<boolean> {
    if (this.inFlightCount === 0) return Promise.resolve(true);
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

  private handlerOf(reg: ServiceRegistration, key: string): (...args: unknown[]) => unknown {
    const handler = reg.handlers[key];
    if (!handler) throw new Error(`${reg.name}: no handler for ${key}`);
    return handler as (...args: unknown[]) => unknown;
  }

  private implementation(reg: ServiceRegistration, definition: Record<string, MethodLike>): grpc.UntypedServiceImplementation {
    const impl: grpc.UntypedServiceImplementation = {};
    for (const [key, method] of Object.entries(definition)) {
      impl[key] = this.wrap(reg, key, method, this.handlerOf(reg, key)) as unknown as grpc.UntypedHandleCall;
    }
    return impl;
  }

  private wrap(reg: ServiceRegistration, key: string, method: MethodLike, handler: (...args: unknown[]) => unknown) {
    const site = callSite(reg, key, method);
    return (call: grpc.ServerUnaryCall<unknown, unknown> & Readable & Writable, callback?: grpc.sendUnaryData<unknown>) => {
      const fail = (status: ReturnType<typeof toStatus>) => {
        if (callback) callback(status as grpc.ServiceError, null);
        else call.emit('error', status);
      };
      const refused = this.refusal(reg);
      if (refused) {
        fail(refused);
        return;
      }
      const c = this.begin(reg, site, call, call.metadata);
      context.with(c.context, () => {
        run(method, handler, call, callback, c.ctx).then(
          () => c.finish(grpc.status.OK),
          (err: unknown) => {
            const status = c.status(err);
            fail(status);
            c.finish(status.code, status.details);
          },
        );
      });
    };
  }

  /** Serves a unary method's plain calls on the HTTP/2 stream itself (see unary-stream.ts); false leaves it to grpc-js. */
  private unaryRoute(reg: ServiceRegistration, key: string, method: MethodLike, handler: (...args: unknown[]) => unknown, limits: UnaryLimits) {
    const site = callSite(reg, key, method);
    return (stream: ServerHttp2Stream, headers: IncomingHttpHeaders): boolean => {
      const call = acceptUnary(stream, headers, limits);
      if (!call) return false;
      call.read((bytes) => {
        const refused = this.refusal(reg);
        if (refused) {
          call.sendStatus(refused);
          return;
        }
        const request = method.requestDeserialize(bytes);
        let c: ReturnType<MeshServer['begin']>;
        try {
          c = this.begin(reg, site, call, call.metadata);
        } catch (err) {
          // Not expected (the tracer or a metric threw); answered, as grpc-js answers a handler that throws.
          call.sendStatus(toStatus(err, this.log));
          return;
        }
        const fail = (err: unknown) => {
          const status = c.status(err);
          call.sendStatus(status);
          c.finish(status.code, status.details);
        };
        context.with(c.context, () => {
          answer(handler, request, c.ctx).then((response) => {
            let frame: Buffer;
            try {
              frame = method.responseFrame ? method.responseFrame(response as never) : grpcFrame(method.responseSerialize(response as never));
            } catch (err) {
              fail(err);
              return;
            }
            const refused = call.sendFrame(frame);
            if (refused) c.finish(refused.code, refused.details);
            else c.finish(grpc.status.OK);
          }, fail);
        });
      });
      return true;
    };
  }

  /** UNAVAILABLE for a new call while the server drains (health is served throughout). */
  private refusal(reg: ServiceRegistration): ReturnType<typeof toStatus> | undefined {
    return this.draining && !reg.servesDuringDrain ? toStatus(new UnavailableError('the server is draining; retry on another replica', 0)) : undefined;
  }

  /** What every call does around its handler: the signal, the server span, metrics, in-flight accounting. */
  private begin(reg: ServiceRegistration, site: CallSite, call: Cancellable, metadata: grpc.Metadata) {
    const { fullName, methodName, metrics } = site;
    const cs = callSignal(call);
    const parent = extractContext(metadata, ROOT_CONTEXT);
    const span = tracer().startSpan(
      fullName,
      { kind: SpanKind.SERVER, attributes: { 'rpc.system': 'grpc', 'rpc.service': reg.name, 'rpc.method': methodName } },
      parent,
    );
    const started = performance.now();
    const attrs = { method: fullName };
    let endLongLived: ((reason: Error) => void) | undefined;
    if (site.longLived) {
      endLongLived = (reason) => cs.abort(reason);
      this.longLivedCalls.set(endLongLived, { untilClose: reg.servesDuringDrain });
    } else {
      this.inFlightCount++;
      metrics.inFlight.add(1, attrs);
    }
    const ctx: CallContext = { signal: cs.signal, deadline: cs.deadline, metadata, method: fullName, span, log: this.log };
    return {
      ctx,
      context: trace.setSpan(parent, span),
      /** The status for what the handler threw; a call stopped by its own signal reports the signal's reason. */
      status: (err: unknown) => toStatus(cs.signal.aborted && !(err instanceof Error && 'kind' in err) ? abortReason(cs.signal) : err, this.log),
      finish: (code: grpc.status, details?: string) => {
        span.setAttribute('rpc.grpc.status_code', code);
        if (code !== grpc.status.OK) span.setStatus({ code: SpanStatusCode.ERROR, message: details });
        span.end();
        metrics.requests.add(1, { ...attrs, code: grpc.status[code] });
        metrics.duration.record(performance.now() - started, { ...attrs, code: grpc.status[code] });
        cs.dispose();
        if (endLongLived) this.longLivedCalls.delete(endLongLived);
        else {
          metrics.inFlight.add(-1, attrs);
          if (--this.inFlightCount === 0) for (const w of [...this.idleWaiters]) w();
        }
      },
    };
  }
}

/** What is fixed per method for the calls to it. */
interface CallSite {
  fullName: string;
  methodName: string;
  longLived: boolean;
  metrics: ReturnType<typeof rpcMetrics>;
}

function callSite(reg: ServiceRegistration, key: string, method: MethodLike): CallSite {
  const fullName = method.path.slice(1);
  return { fullName, methodName: fullName.slice(fullName.lastIndexOf('/') + 1), longLived: reg.longLived.has(key), metrics: rpcMetrics() };
}

async function answer(handler: (...args: unknown[]) => unknown, request: unknown, ctx: CallContext): Promise<unknown> {
  if (request instanceof UndecodableRequest) throw request.error();
  return handler(request, ctx);
}

async function run(
  method: MethodLike,
  handler: (...args: unknown[]) => unknown,
  call: grpc.ServerUnaryCall<unknown, unknown> & Readable & Writable,
  callback: grpc.sendUnaryData<unknown> | undefined,
  ctx: CallContext,
): Promise<void> {
  const input = method.requestStream ? readMessages(call, ctx.signal) : call.request;
  if (!method.responseStream) {
    const response = await answer(handler, input, ctx);
    callback!(null, response);
    return;
  }
  if (input instanceof UndecodableRequest) throw input.error();
  for await (const message of handler(input, ctx) as AsyncIterable<unknown>) {
    if (ctx.signal.aborted) throw abortReason(ctx.signal);
    if (!call.write(message)) await writable(call, ctx.signal);
  }
  call.end();
}

/**
 * A request message whose bytes do not decode. grpc-js answers a throwing deserializer with INTERNAL ("Error
 * deserializing request"), which blames the server for the caller's bad bytes; the handler wrapper turns this
 * marker into INVALID_ARGUMENT instead.
 */
class UndecodableRequest {
  constructor(readonly reason: string) {}
  error(): InvalidArgumentError {
    return new InvalidArgumentError(`the request message could not be decoded as protobuf: ${this.reason}`);
  }
}

function tolerantDefinition(definition: Record<string, MethodLike>): Record<string, MethodLike> {
  return Object.fromEntries(
    Object.entries(definition).map(([key, m]) => [
      key,
      {
        ...m,
        requestDeserialize: (value: Buffer) => {
          try {
            return m.requestDeserialize(value);
          } catch (err) {
            return new UndecodableRequest(err instanceof Error ? err.message : String(err));
          }
        },
      },
    ]),
  );
}

/** The call's incoming messages; iteration ends with the signal's reason when the call is cancelled. */
async function* readMessages(call: Readable, signal: AbortSignal): AsyncIterable<unknown> {
  addAbortSignal(signal, call);
  try {
    // destroyOnReturn: false, or the end of the client's messages would destroy the whole duplex call and a
    // bidi handler could no longer answer the messages it is still working on.
    for await (const message of call.iterator({ destroyOnReturn: false })) {
      if (message instanceof UndecodableRequest) throw message.error();
      yield message;
    }
  } catch (err) {
    if (signal.aborted) throw abortReason(signal);
    throw err;
  }
}

function writable(call: Writable, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      call.off('drain', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    call.once('drain', done);
    signal.addEventListener('abort', done, { once: true });
  });
}

function healthRegistration(health: HealthState): ServiceRegistration {
  const reg = defineService(
    HealthService,
    {
      check(request: HealthCheckRequest): HealthCheckResponse {
        const status = health.get(request.service);
        if (status === undefined) throw new NotFoundError('service', request.service, `unknown service "${request.service}"`);
        return { status };
      },
      list(): HealthListResponse {
        const statuses: HealthListResponse['statuses'] = {};
        for (const [name, status] of health.all()) statuses[name] = { status };
        return { statuses };
      },
      async *watch(request: HealthCheckRequest, ctx: CallContext): AsyncIterable<HealthCheckResponse> {
        const queue: ServingStatus[] = [health.get(request.service) ?? ServingStatus.SERVICE_UNKNOWN];
        let wake: (() => void) | undefined;
        const unsubscribe = health.watch(request.service, (s) => {
          queue.push(s);
          wake?.();
        });
        const onAbort = () => wake?.();
        ctx.signal.addEventListener('abort', onAbort);
        try {
          while (!ctx.signal.aborted) {
            while (queue.length > 0) yield { status: queue.shift()! };
            await new Promise<void>((r) => (wake = r));
            wake = undefined;
          }
        } finally {
          unsubscribe();
          ctx.signal.removeEventListener('abort', onAbort);
        }
      },
    },
    { longLived: ['watch'] },
  );
  return { ...reg, servesDuringDrain: true };
}
