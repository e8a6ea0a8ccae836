// The tracer provider behind register.ts. Kept apart so tests can start it in-process too.
import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter as OtlpGrpcExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { OTLPTraceExporter as OtlpJsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OtlpProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { defaultResource, detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';

const STARTED = Symbol.for('maas.telemetry.started');

export interface TracingHandle {
  provider: NodeTracerProvider;
  /** Exports what is buffered and stops; call before the process exits. */
  shutdown(): Promise<void>;
}

export function startTracing(env: NodeJS.ProcessEnv = process.env): TracingHandle | undefined {
  const g = globalThis as Record<symbol, TracingHandle | undefined>;
  if (g[STARTED]) return g[STARTED];
  if ((env.OTEL_SDK_DISABLED ?? '').toLowerCase() === 'true') return undefined;
  env.OTEL_TRACES_SAMPLER ??= 'parentbased_traceidratio';
  env.OTEL_TRACES_SAMPLER_ARG ??= '1';

  const processors: SpanProcessor[] = [];
  const exporter = otlpExporter(env);
  if (exporter) processors.push(new BatchSpanProcessor(exporter, { scheduledDelayMillis: Number(env.OTEL_BSP_SCHEDULE_DELAY ?? 1000) }));

  const provider = new NodeTracerProvider({
    // OTEL_RESOURCE_ATTRIBUTES (pod, node and namespace in the Kubernetes manifests) joins the defaults.
    resource: defaultResource()
      .merge(detectResources({ detectors: [envDetector] }))
      .merge(
        resourceFromAttributes({
          [ATTR_SERVICE_NAME]: env.OTEL_SERVICE_NAME ?? defaultServiceName(),
          [ATTR_SERVICE_VERSION]: env.npm_package_version ?? '0.1.0',
        }),
      ),
    spanProcessors: processors,
  });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }));
  trace.setGlobalTracerProvider(provider);

  const handle: TracingHandle = { provider, shutdown: () => provider.shutdown() };
  g[STARTED] = handle;
  return handle;
}

export function tracingHandle(): TracingHandle | undefined {
  return (globalThis as Record<symbol, TracingHandle | undefined>)[STARTED];
}

function otlpExporter(env: NodeJS.ProcessEnv): SpanExporter | undefined {
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_ENDPOINT;
  if (!endpoint) return undefined;
  const protocol = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL ?? 'http/protobuf';
  // The exporters read the endpoint (and headers, timeouts) from the same variables themselves.
  switch (protocol) {
    case 'grpc':
      return new OtlpGrpcExporter();
    case 'http/json':
      return new OtlpJsonExporter();
    case 'http/protobuf':
      return new OtlpProtoExporter();
    default:
      throw new Error(`configuration: OTEL_EXPORTER_OTLP_PROTOCOL is invalid (got "${protocol}"): use grpc, http/protobuf or http/json`);
  }
}

/** `maas-<component>` from the entry script's path (services/<component>/main.ts, gateway/main.ts). */
function defaultServiceName(): string {
  const m = /(?:services\/([a-z-]+)|(gateway))\/main\.[jt]s$/.exec(process.argv[1] ?? '');
  return m ? `maas-${m[1] ?? m[2]}` : 'maas';
}
