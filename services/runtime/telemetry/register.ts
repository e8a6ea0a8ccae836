// Loaded before anything else (`node --import tsx --import ./services/runtime/telemetry/register.ts main.ts`):
// starts the OpenTelemetry tracer provider from the standard OTEL_* variables.
//   OTEL_SERVICE_NAME                      service.name (each component sets its own default, see process.ts)
//   OTEL_EXPORTER_OTLP_ENDPOINT            OTLP endpoint; with none set (nor the _TRACES_ one), nothing is exported
//   OTEL_EXPORTER_OTLP_TRACES_ENDPOINT     the traces endpoint, overriding the one above
//   OTEL_EXPORTER_OTLP_PROTOCOL            grpc | http/protobuf (default) | http/json
//   OTEL_TRACES_SAMPLER / _ARG             default parentbased_traceidratio with ratio 1
//   OTEL_RESOURCE_ATTRIBUTES               extra resource attributes (k8s labels in the manifests)
//   OTEL_SDK_DISABLED=true                 no tracing at all
import { startTracing } from './tracing-sdk.js';

startTracing();
