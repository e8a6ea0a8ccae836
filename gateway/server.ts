// The gateway's server: a MeshServer (so the runtime's process lifecycle, health and reflection apply) whose
// public port is the raw HTTP/2 front. The MeshServer itself listens on a loopback port that only the front
// talks to: it answers grpc.health.v1 and reflection, which list every public service the gateway fronts.
import type { PackageDefinition } from '@grpc/proto-loader';
import type { ServerSettings } from '../services/runtime/config.js';
import { UnavailableError } from '../services/runtime/errors.js';
import { ServingStatus } from '../services/runtime/health.js';
import type { Logger } from '../services/runtime/logger.js';
import { defineService, MeshServer, type ServiceRegistration } from '../services/runtime/server.js';
import type { GrpcFront } from './grpc/front.js';

export interface HttpListener {
  listen(): Promise<number>;
  /** Stops taking new requests and waits (up to graceMs) for those in flight. */
  drain(graceMs: number): Promise<boolean>;
  close(): Promise<void>;
}

export interface GatewayServerOptions {
  settings: Pick<ServerSettings, 'host' | 'port' | 'drainGraceMs' | 'maxReceiveMessageBytes' | 'maxSendMessageBytes' | 'keepaliveTimeMs' | 'keepaliveTimeoutMs'>;
  log: Logger;
  front: GrpcFront;
  /** Service definitions (from the descriptors) of the public services, for health and reflection. */
  publicServices: { name: string; definition: Record<string, unknown> }[];
  extraDescriptors?: PackageDefinition;
  /** Told the loopback port of the in-process server once it is bound. */
  onInternalPort(port: number): void;
  http?: HttpListener;
}

export class GatewayServer extends MeshServer {
  private readonly gw: GatewayServerOptions;
  private httpPort: number | undefined;
  private stopping = false;

  constructor(options: GatewayServerOptions) {
    super({
      component: 'gateway-internal',
      settings: { ...options.settings, host: '127.0.0.1', port: 0 },
      // Its own "serving" line would name the loopback port; the gateway logs its public one.
      log: options.log.child({ scope: 'internal' }, { level: 'warn' }),
      services: options.publicServices.map((s) => stubService(s.definition)),
      extraDescriptors: options.extraDescriptors,
    });
    this.gw = options;
  }

  override async start(): Promise<number> {
    const internal = await super.start();
    this.gw.onInternalPort(internal);
    const { host, port } = this.gw.settings;
    const bound = await this.gw.front.listen(host, port);
    if (this.gw.http) this.httpPort = await this.gw.http.listen();
    this.gw.log.info({ host, port: bound, httpPort: this.httpPort, services: this.gw.publicServices.map((s) => s.name) }, 'gateway serving');
    return bound;
  }

  override get port(): number {
    return this.gw.front.port;
  }

  get boundHttpPort(): number | undefined {
    return this.httpPort;
  }

  override get inFlight(): number {
    return this.gw.front.inFlight;
  }

  /** Sets a public service's health (SERVING while it has a usable replica). */
  setServiceHealth(service: string, serving: boolean): void {
    if (this.stopping) return;
    this.health.set(service, serving ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
  }

  override async drain(graceMs = this.gw.settings.drainGraceMs): Promise<{ completed: boolean }> {
    this.stopping = true;
    this.health.setAll(ServingStatus.NOT_SERVING);
    this.gw.front.beginDrain();
    this.gw.log.info({ inFlight: this.gw.front.inFlight, graceMs }, 'draining');
    const [grpcDone, httpDone] = await Promise.all([this.gw.front.waitIdle(graceMs), this.gw.http?.drain(graceMs) ?? true]);
    const completed = grpcDone && httpDone;
    if (!completed) this.gw.log.warn({ inFlight: this.gw.front.inFlight }, 'drain grace period over; cutting off the calls still running');
    await this.close(true);
    return { completed };
  }

  override async close(graceful = false): Promise<void> {
    this.stopping = true;
    await Promise.all([this.gw.front.close(), this.gw.http?.close()]);
    await super.close(graceful);
  }
}

/** Health and reflection need the service registered; calls to it arrive through the front, never here. */
function stubService(definition: Record<string, unknown>): ServiceRegistration {
  const handlers: Record<string, () => never> = {};
  for (const key of Object.keys(definition)) {
    handlers[key] = () => {
      throw new UnavailableError('call this service through the gateway port');
    };
  }
  return defineService(definition as never, handlers as never);
}
