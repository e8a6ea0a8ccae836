// The mesh's metric instruments. They record through the global MeterProvider that process.ts installs
// (Prometheus on MAAS_METRICS_PORT); without one, they are no-ops. Names are documented in docs/observability.md.
import { metrics, type Attributes, type Counter, type Histogram, type UpDownCounter } from '@opentelemetry/api';

const meter = () => metrics.getMeter('maas');

let rpc: { requests: Counter; duration: Histogram; inFlight: UpDownCounter } | undefined;

/** Instruments the server builder records for every call. */
export function rpcMetrics() {
  rpc ??= {
    requests: meter().createCounter('maas_rpc_server_requests', { description: 'gRPC calls handled, by method and status code' }),
    duration: meter().createHistogram('maas_rpc_server_duration_ms', {
      description: 'gRPC call duration in milliseconds, by method and status code',
      unit: 'ms',
      advice: { explicitBucketBoundaries: [0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000] },
    }),
    inFlight: meter().createUpDownCounter('maas_rpc_server_in_flight', { description: 'gRPC calls being handled now, by method' }),
  };
  return rpc;
}

/** A histogram with latency buckets in milliseconds. */
export function latencyHistogram(name: string, description: string): Histogram<Attributes> {
  return meter().createHistogram(name, {
    description,
    unit: 'ms',
    advice: { explicitBucketBoundaries: [0.1, 0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000] },
  });
}

export function counter(name: string, description: string): Counter<Attributes> {
  return meter().createCounter(name, { description });
}

export function histogram(name: string, description: string, boundaries: number[]): Histogram<Attributes> {
  return meter().createHistogram(name, { description, advice: { explicitBucketBoundaries: boundaries } });
}

export function upDownCounter(name: string, description: string): UpDownCounter<Attributes> {
  return meter().createUpDownCounter(name, { description });
}

/** A gauge read when metrics are collected (queue depth, loaded models). */
export function observableGauge(name: string, description: string, read: () => { value: number; attributes?: Attributes }[]): void {
  meter()
    .createObservableGauge(name, { description })
    .addCallback((result) => {
      for (const { value, attributes } of read()) result.observe(value, attributes);
    });
}
