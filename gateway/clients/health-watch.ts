// Watches grpc.health.v1 of one replica for one service name and reports each change: SERVING, NOT_SERVING
// (draining), or unreachable when the watch stream breaks; it watches again with backoff until stopped.
import type * as grpc from '@grpc/grpc-js';
import { HealthClient, HealthCheckResponse_ServingStatus as S } from '../../gen/grpc/health/v1/health.js';
import { createClient, serverStream } from '../../services/runtime/client.js';
import type { ReplicaHealth } from '../domain/replicas.js';

export class HealthWatch {
  private readonly client: HealthClient;
  private readonly abort = new AbortController();
  private stopped = false;

  constructor(
    address: string,
    private readonly service: string,
    private readonly report: (health: ReplicaHealth) => void,
  ) {
    this.client = createClient(HealthClient, address, {
      channelOptions: { 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 1000, 'grpc.enable_retries': 0 },
    });
    void this.run();
  }

  private async run(): Promise<void> {
    let delay = 100;
    while (!this.stopped) {
      try {
        for await (const r of serverStream(this.client.watch.bind(this.client), { service: this.service }, { signal: this.abort.signal })) {
          delay = 100;
          this.report(r.status === S.SERVING ? 'serving' : 'not_serving');
        }
        if (!this.stopped) this.report('unreachable');
      } catch (err) {
        if (this.stopped) return;
        // A replica without this service name (or without Watch) is not one to send calls to.
        this.report((err as grpc.ServiceError).code === 12 ? 'not_serving' : 'unreachable');
      }
      await new Promise((r) => setTimeout(r, delay).unref());
      delay = Math.min(delay * 2, 1000);
    }
  }

  stop(): void {
    this.stopped = true;
    this.abort.abort();
    this.client.close();
  }
}
