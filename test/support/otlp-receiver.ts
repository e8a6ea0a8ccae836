// A real OTLP/gRPC trace receiver for tests: components export to it through their ordinary OTLP exporter
// (OTEL_EXPORTER_OTLP_PROTOCOL=grpc), and tests read the spans back.
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

export interface ReceivedSpan {
  service: string;
  /** Resource attributes of the process that sent the span. */
  resource: Record<string, string | number | boolean>;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  /** 1 internal, 2 server, 3 client. */
  kind: number;
  attributes: Record<string, string | number | boolean>;
  links: { traceId: string; spanId: string }[];
  events: { name: string; attributes: Record<string, string | number | boolean> }[];
  /** 0 unset, 1 ok, 2 error. */
  statusCode: number;
  statusMessage: string;
  startNs: bigint;
  endNs: bigint;
}

type Kv = { key: string; value?: { string_value?: string; bool_value?: boolean; int_value?: string; double_value?: number; value?: string } };

const def = loadSync(fileURLToPath(new URL('../fixtures/otlp/trace_service.proto', import.meta.url)), { keepCase: true, longs: String, defaults: true, oneofs: true });
const pkg = grpc.loadPackageDefinition(def) as unknown as {
  opentelemetry: { proto: { collector: { trace: { v1: { TraceService: grpc.ServiceClientConstructor } } } } };
};

function attrs(list: Kv[] = []): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const kv of list) {
    const v = kv.value;
    if (!v) continue;
    if (v.string_value !== undefined && v.value === 'string_value') out[kv.key] = v.string_value;
    else if (v.value === 'bool_value') out[kv.key] = Boolean(v.bool_value);
    else if (v.value === 'int_value') out[kv.key] = Number(v.int_value);
    else if (v.value === 'double_value') out[kv.key] = Number(v.double_value);
  }
  return out;
}

const hex = (b: Buffer | undefined) => (b ? Buffer.from(b).toString('hex') : '');

export class OtlpReceiver {
  readonly spans: ReceivedSpan[] = [];
  private readonly server = new grpc.Server();
  port = 0;

  async start(): Promise<string> {
    this.server.addService(pkg.opentelemetry.proto.collector.trace.v1.TraceService.service, {
      Export: (call: grpc.ServerUnaryCall<{ resource_spans: unknown[] }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        for (const rs of call.request.resource_spans as { resource?: { attributes: Kv[] }; scope_spans: { spans: Record<string, unknown>[] }[] }[]) {
          const resource = attrs(rs.resource?.attributes);
          const service = String(resource['service.name'] ?? '');
          for (const ss of rs.scope_spans) {
            for (const s of ss.spans) {
              this.spans.push({
                service,
                resource,
                traceId: hex(s.trace_id as Buffer),
                spanId: hex(s.span_id as Buffer),
                parentSpanId: hex(s.parent_span_id as Buffer),
                name: String(s.name),
                kind: Number(s.kind),
                attributes: attrs(s.attributes as Kv[]),
                links: ((s.links as { trace_id: Buffer; span_id: Buffer }[]) ?? []).map((l) => ({ traceId: hex(l.trace_id), spanId: hex(l.span_id) })),
                events: ((s.events as { name: string; attributes: Kv[] }[]) ?? []).map((e) => ({ name: e.name, attributes: attrs(e.attributes) })),
                statusCode: Number((s.status as { code?: number } | undefined)?.code ?? 0),
                statusMessage: String((s.status as { message?: string } | undefined)?.message ?? ''),
                startNs: BigInt(String(s.start_time_unix_nano)),
                endNs: BigInt(String(s.end_time_unix_nano)),
              });
            }
          }
        }
        cb(null, {});
      },
    });
    this.port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    return `http://127.0.0.1:${this.port}`;
  }

  /** Environment that points a component's exporter here, exporting quickly. */
  env(): Record<string, string> {
    return {
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${this.port}`,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
      OTEL_BSP_SCHEDULE_DELAY: '100',
      OTEL_TRACES_SAMPLER: 'parentbased_always_on',
    };
  }

  trace(traceId: string): ReceivedSpan[] {
    return this.spans.filter((s) => s.traceId === traceId);
  }

  /** Waits until pred holds for the received spans. */
  async waitFor(pred: (spans: ReceivedSpan[]) => boolean, timeoutMs = 20_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!pred(this.spans)) {
      if (Date.now() > end) throw new Error(`spans not received in time; have: ${this.spans.map((s) => `${s.service}:${s.name}`).join(', ')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  close(): void {
    this.server.forceShutdown();
  }
}
