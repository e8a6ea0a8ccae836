// What the runtime and handlers use to trace: carrying W3C trace context in gRPC metadata, and the
// attribute names of the mesh. Without a started SDK these calls are no-ops.
import type { Metadata } from '@grpc/grpc-js';
import { context, propagation, trace, type Context, type Span, type TextMapGetter, type TextMapSetter } from '@opentelemetry/api';

export const tracer = () => trace.getTracer('maas');

/** Span attribute names used across the mesh. */
export const Attr = {
  model: 'maas.model',
  modelVersion: 'maas.model_version',
  task: 'maas.task',
  batchSize: 'maas.batch_size',
  executionProvider: 'maas.execution_provider',
  inputTokens: 'maas.input_tokens',
  outputTokens: 'maas.output_tokens',
  queueMs: 'maas.queue_ms',
} as const;

const getter: TextMapGetter<Metadata> = {
  keys: (md) => Object.keys(md.getMap()),
  get: (md, key) => {
    const v = md.get(key);
    if (v.length === 0) return undefined;
    return v.map((x) => (typeof x === 'string' ? x : x.toString())) as string[];
  },
};

const setter: TextMapSetter<Metadata> = {
  set: (md, key, value) => md.set(key, value),
};

/** The context a caller sent in `traceparent`/`tracestate` metadata, on top of the active one. */
export function extractContext(md: Metadata, base: Context = context.active()): Context {
  return propagation.extract(base, md, getter);
}

/** Writes the active (or given) context into outgoing metadata. */
export function injectContext(md: Metadata, ctx: Context = context.active()): void {
  propagation.inject(ctx, md, setter);
}

/** Sets attributes on the active span, if there is one (handlers: model, version, batch size). */
export function annotate(attributes: Record<string, string | number | boolean | undefined>, span: Span | undefined = trace.getActiveSpan()): void {
  if (!span) return;
  for (const [k, v] of Object.entries(attributes)) if (v !== undefined) span.setAttribute(k, v);
}

/**
 * A span for work done for many requests at once (a batch): linked to each request's span, and each request's
 * span gets an event naming the batch, so either side leads to the other in Jaeger. The batch span's parent
 * is the first member's span, so a request that rode alone shows one unbroken chain down to the model run.
 */
export function startBatchSpan(name: string, members: (Span | undefined)[], attributes: Record<string, string | number | boolean> = {}): Span {
  const links = members.filter((s): s is Span => s !== undefined).map((s) => ({ context: s.spanContext() }));
  const first = members.find((s) => s !== undefined);
  const parent = first ? trace.setSpan(context.active(), first) : context.active();
  const span = tracer().startSpan(name, { links, attributes: { [Attr.batchSize]: members.length, ...attributes } }, parent);
  const batchSpanId = span.spanContext().spanId;
  const batchTraceId = span.spanContext().traceId;
  for (const m of members) m?.addEvent('maas.batch', { 'maas.batch.span_id': batchSpanId, 'maas.batch.trace_id': batchTraceId, [Attr.batchSize]: members.length });
  return span;
}
