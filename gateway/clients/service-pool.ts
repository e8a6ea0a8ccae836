// The replicas of one service: their addresses (static, or re-resolved from DNS), one HTTP/2 connection each
// (for the pass-through and for the HTTP API's typed calls alike, see typed-calls.ts) and one health watch each,
// and the balancing of ReplicaSet.
import { lookup } from 'node:dns/promises';
import type { Logger } from '../../services/runtime/logger.js';
import { ReplicaSet, type Balancing, type Replica } from '../domain/replicas.js';
import { joinHostPort, type TargetSpec } from '../domain/targets.js';
import { H2Upstream } from './h2-upstream.js';
import { HealthWatch } from './health-watch.js';

export interface ReplicaHandle {
  upstream: H2Upstream;
  watch: HealthWatch | undefined;
}

export type PoolReplica = Replica<ReplicaHandle>;

export interface ServicePoolOptions {
  /** Pool name (registry, embeddings, ...), for logs and errors. */
  name: string;
  /** The gRPC service name whose health is watched on each replica. */
  healthService: string;
  targets: TargetSpec;
  balancing: Balancing;
  ejectMs: number;
  dnsRefreshMs: number;
  keepaliveTimeMs?: number;
  keepaliveTimeoutMs?: number;
  /** Watch grpc.health.v1 of each replica (off only for the gateway's own in-process server). */
  watchHealth?: boolean;
  log: Logger;
  onAvailability?(available: boolean): void;
}

export class ServicePool {
  readonly name: string;
  readonly set: ReplicaSet<ReplicaHandle>;
  private dnsTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly options: ServicePoolOptions) {
    this.name = options.name;
    this.set = new ReplicaSet<ReplicaHandle>({
      balancing: options.balancing,
      ejectMs: options.ejectMs,
      create: (address) => this.createHandle(address),
      dispose: (h) => {
        h.watch?.stop();
        h.upstream.close();
      },
      onAvailability: (available) => {
        options.log.info({ pool: options.name, available, replicas: this.set.replicas.length }, available ? 'service available' : 'no usable replica');
        options.onAvailability?.(available);
      },
    });
    const t = options.targets;
    if (t.kind === 'static') this.set.setAddresses(t.addresses);
    else if (t.kind === 'dns') {
      void this.resolve(t.host, t.port);
      this.dnsTimer = setInterval(() => void this.resolve(t.host, t.port), options.dnsRefreshMs);
      this.dnsTimer.unref();
    }
  }

  private createHandle(address: string): ReplicaHandle {
    const handle: ReplicaHandle = {
      upstream: new H2Upstream(address, {
        keepaliveTimeMs: this.options.keepaliveTimeMs,
        keepaliveTimeoutMs: this.options.keepaliveTimeoutMs,
        onConnectionFailure: (err) => {
          const r = this.set.replicas.find((x) => x.handle === handle);
          if (!r) return;
          this.options.log.warn({ pool: this.name, replica: address, err: err.message }, 'connection to replica failed; leaving it out');
          this.set.eject(r);
        },
      }),
      watch: undefined,
    };
    if (this.options.watchHealth === false) queueMicrotask(() => this.setHealth(handle, 'serving'));
    else {
      handle.watch = new HealthWatch(address, this.options.healthService, (health) => {
        this.setHealth(handle, health);
      });
    }
    return handle;
  }

  private setHealth(handle: ReplicaHandle, health: Replica<ReplicaHandle>['health']): void {
    const r = this.set.replicas.find((x) => x.handle === handle);
    if (!r || r.health === health) return;
    this.options.log.info({ pool: this.name, replica: r.address, health }, 'replica health changed');
    this.set.setHealth(r, health);
  }

  private async resolve(host: string, port: number): Promise<void> {
    try {
      const found = await lookup(host, { all: true });
      if (this.closed) return;
      const addresses = [...new Set(found.map((a) => joinHostPort(a.address, port)))].sort();
      const { added, removed } = this.set.setAddresses(addresses);
      if (added.length || removed.length) {
        this.options.log.info({ pool: this.name, added: added.map((r) => r.address), removed: removed.map((r) => r.address) }, 'replicas changed (DNS)');
      }
    } catch (err) {
      // Keep the last known replicas: a DNS hiccup must not empty the pool.
      this.options.log.warn({ pool: this.name, host, err: (err as Error).message }, 'DNS lookup failed; keeping the known replicas');
    }
  }

  pick(affinity: string | undefined, exclude?: ReadonlySet<PoolReplica>): PoolReplica | undefined {
    return this.set.pick(affinity, exclude);
  }

  get usable(): number {
    return this.set.usableCount;
  }

  close(): void {
    this.closed = true;
    if (this.dnsTimer) clearInterval(this.dnsTimer);
    this.set.close();
  }
}
