// grpc.health.v1 state: one status per service name plus the overall status (""). Kubernetes' native gRPC
// probes and the gateway's replica watcher read it through Check and Watch.
import { EventEmitter } from 'node:events';
import { HealthCheckResponse_ServingStatus as ServingStatus } from '../../gen/grpc/health/v1/health.js';

export { ServingStatus };

export class HealthState {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly events = new EventEmitter();

  constructor() {
    this.events.setMaxListeners(0);
    this.statuses.set('', ServingStatus.NOT_SERVING);
  }

  set(service: string, status: ServingStatus): void {
    if (this.statuses.get(service) === status) return;
    this.statuses.set(service, status);
    this.events.emit('change', service, status);
  }

  /** Sets the overall status and every named service's status at once. */
  setAll(status: ServingStatus): void {
    for (const service of [...this.statuses.keys()]) this.set(service, status);
  }

  /** The status of a service, or undefined when the server does not know the name. */
  get(service: string): ServingStatus | undefined {
    return this.statuses.get(service);
  }

  all(): Map<string, ServingStatus> {
    return new Map(this.statuses);
  }

  /** Calls listener on every change of the service's status until the returned function is called. */
  watch(service: string, listener: (status: ServingStatus) => void): () => void {
    const onChange = (name: string, status: ServingStatus) => {
      if (name === service) listener(status);
    };
    this.events.on('change', onChange);
    return () => this.events.off('change', onChange);
  }
}
