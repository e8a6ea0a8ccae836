// One trace per request across the mesh, collected by a real OTLP/gRPC receiver: the caller's traceparent
// continues through the gateway (server span, client span) into the model service (server span) and down to
// its queue, batch and model-run spans, with model and version on them and batch links to the requests.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmbeddingServiceClient, EmbedRequest } from '../gen/maas/embeddings/v1/embeddings.js';
import { GenerateRequest, GenerationServiceClient } from '../gen/maas/generation/v1/generation.js';
import { RecognizeTextRequest, VisionServiceClient } from '../gen/maas/vision/v1/vision.js';
import { components } from '../cli/components.js';
import { startMesh, type RunningMesh } from '../cli/up.js';
import { unary } from '../services/runtime/client.js';
import { renderPages } from './fixtures/vision/pages.js';
import { OtlpReceiver, type ReceivedSpan } from './support/otlp-receiver.js';

const SERVER = 2;
const CLIENT = 3;
const dataDir = mkdtempSync(join(tmpdir(), 'maas-trace-mesh-'));
const receiver = new OtlpReceiver();
let mesh: RunningMesh;
let gateway: string;
let httpAddress: string;
const saved: Record<string, string | undefined> = {};

beforeAll(async () => {
  await receiver.start();
  // Children inherit the test's environment: point every component's exporter at the receiver.
  for (const [k, v] of Object.entries({ ...receiver.env(), MAAS_GATEWAY_HTTP_PORT: '0' })) {
    saved[k] = process.env[k];
    process.env[k] = v;
  }
  mesh = await startMesh({ dataDir, ports: Object.fromEntries(components.map((c) => [c.name, 0])), print: () => undefined });
  gateway = mesh.addresses.grpc.gateway!;
  httpAddress = mesh.addresses.other.gateway!.http!;
});

afterAll(async () => {
  await mesh?.stop();
  receiver.close();
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  rmSync(dataDir, { recursive: true, force: true });
});

function traceparent(traceId: string, parent = '00f067aa0ba902b7') {
  const md = new grpc.Metadata();
  md.set('traceparent', `00-${traceId}-${parent}-01`);
  return md;
}

const byId = (spans: ReceivedSpan[]) => new Map(spans.map((s) => [s.spanId, s]));

/** The chain of ancestors of a span inside the trace, nearest first. */
function ancestors(span: ReceivedSpan, spans: ReceivedSpan[]): ReceivedSpan[] {
  const ids = byId(spans);
  const out: ReceivedSpan[] = [];
  for (let p = ids.get(span.parentSpanId); p; p = ids.get(p.parentSpanId)) out.push(p);
  return out;
}

/** True once the gateway has exported its server and client spans of the trace (processes flush independently). */
const gatewayDone = (traceId: string) => {
  const spans = receiver.trace(traceId).filter((s) => s.service === 'maas-gateway');
  return spans.some((s) => s.kind === SERVER) && spans.some((s) => s.kind === CLIENT);
};

/** Checks the hop chain and returns the model service's server span. */
function checkHops(spans: ReceivedSpan[], service: string, method: string): ReceivedSpan {
  const gwServer = spans.find((s) => s.service === 'maas-gateway' && s.kind === SERVER && s.name.endsWith(method));
  expect(gwServer, 'gateway server span').toBeDefined();
  expect(gwServer!.parentSpanId).toBe('00f067aa0ba902b7');
  const gwClient = spans.find((s) => s.service === 'maas-gateway' && s.kind === CLIENT && s.parentSpanId === gwServer!.spanId);
  expect(gwClient, 'gateway client span').toBeDefined();
  const svcServer = spans.find((s) => s.service === service && s.kind === SERVER && s.name.endsWith(method));
  expect(svcServer, `${service} server span`).toBeDefined();
  expect(svcServer!.parentSpanId).toBe(gwClient!.spanId);
  return svcServer!;
}

/** Spans of the service below its server span, by name pattern. */
function below(server: ReceivedSpan, spans: ReceivedSpan[], pattern: RegExp): ReceivedSpan[] {
  return spans.filter((s) => s.service === server.service && pattern.test(s.name) && ancestors(s, spans).some((a) => a.spanId === server.spanId));
}

describe('one trace per request across the mesh', () => {
  it('follows an Embed call from the caller through the gateway to the queue, batch and model run', async () => {
    const traceId = 'a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1';
    const client = new EmbeddingServiceClient(gateway, grpc.credentials.createInsecure());
    await unary(client.embed.bind(client), EmbedRequest.fromPartial({ model: { name: 'glove-100d' }, inputs: ['the cat sat on the mat'] }), { metadata: traceparent(traceId) });
    client.close();
    await receiver.waitFor(() => gatewayDone(traceId) && receiver.trace(traceId).some((s) => /onnxruntime/.test(s.name)));
    const spans = receiver.trace(traceId);
    expect(spans.every((s) => s.traceId === traceId)).toBe(true);
    const server = checkHops(spans, 'maas-embeddings', '/Embed');
    expect(below(server, spans, /queue/).length).toBeGreaterThan(0);
    const batch = below(server, spans, /batch/);
    expect(batch.length).toBeGreaterThan(0);
    expect(batch[0]!.links.some((l) => l.traceId === traceId)).toBe(true);
    expect(batch[0]!.attributes['maas.batch_size']).toBeGreaterThanOrEqual(1);
    const run = below(server, spans, /onnxruntime/);
    expect(run.length).toBeGreaterThan(0);
    const modelSpan = spans.find((s) => s.service === 'maas-embeddings' && s.attributes['maas.model'] === 'glove-100d');
    expect(modelSpan?.attributes['maas.model_version']).toBe(1);
  });

  it('follows a POST /v1/embeddings request from the HTTP API into the service, as one trace', async () => {
    const traceId = 'e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5';
    const res = await fetch(`http://${httpAddress}/v1/embeddings`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: `00-${traceId}-00f067aa0ba902b7-01` },
      body: JSON.stringify({ model: 'glove-100d', input: ['the cat sat on the mat'] }),
    });
    expect(res.status).toBe(200);
    await receiver.waitFor(() => gatewayDone(traceId) && receiver.trace(traceId).some((s) => /onnxruntime/.test(s.name)));
    const spans = receiver.trace(traceId);
    const http = spans.find((s) => s.service === 'maas-gateway' && s.kind === SERVER && s.name === 'POST /v1/embeddings');
    expect(http?.parentSpanId, 'the HTTP span continues the caller').toBe('00f067aa0ba902b7');
    const call = spans.find((s) => s.service === 'maas-gateway' && s.kind === CLIENT && s.name === 'maas.embeddings.v1.EmbeddingService/Embed');
    expect(call?.parentSpanId).toBe(http!.spanId);
    expect(call!.attributes['rpc.grpc.status_code']).toBe(0);
    const server = spans.find((s) => s.service === 'maas-embeddings' && s.kind === SERVER && s.name.endsWith('/Embed'));
    expect(server?.parentSpanId, "the service's span is the gateway call's child").toBe(call!.spanId);
    expect(below(server!, spans, /batch/).length).toBeGreaterThan(0);
  });

  it('follows a GenerateStream call down to prefill and decode', async () => {
    const traceId = 'b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2';
    const client = new GenerationServiceClient(gateway, grpc.credentials.createInsecure());
    const stream = client.generateStream(GenerateRequest.fromPartial({ model: { name: 'gpt2-mini' }, prompt: 'In the beginning', parameters: { maxNewTokens: 8, temperature: 0 } }), traceparent(traceId));
    for await (const _ of stream) void _;
    client.close();
    await receiver.waitFor(() => gatewayDone(traceId) && receiver.trace(traceId).some((s) => /decode/.test(s.name)));
    const spans = receiver.trace(traceId);
    const server = checkHops(spans, 'maas-generation', '/GenerateStream');
    expect(below(server, spans, /queue/).length).toBeGreaterThan(0);
    expect(below(server, spans, /prefill/).length).toBeGreaterThan(0);
    const decode = below(server, spans, /decode/);
    expect(decode[0]!.attributes['maas.model']).toBe('gpt2-mini');
  });

  it('follows a RecognizeText call through decoding and each OCR stage', async () => {
    const traceId = 'c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3';
    const [page] = await renderPages(['sans-plain']);
    const client = new VisionServiceClient(gateway, grpc.credentials.createInsecure());
    await unary(client.recognizeText.bind(client), RecognizeTextRequest.fromPartial({ model: { name: 'ppocr-v4' }, image: page!.bytes }), { metadata: traceparent(traceId) });
    client.close();
    await receiver.waitFor(() => gatewayDone(traceId) && receiver.trace(traceId).some((s) => /recogni/i.test(s.name) && s.kind !== SERVER));
    const spans = receiver.trace(traceId);
    const server = checkHops(spans, 'maas-vision', '/RecognizeText');
    expect(below(server, spans, /decode/i).length).toBeGreaterThan(0);
    expect(below(server, spans, /detect/i).length).toBeGreaterThan(0);
    expect(below(server, spans, /recogni/i).length).toBeGreaterThan(0);
    expect(spans.some((s) => s.service === 'maas-vision' && s.attributes['maas.model'] === 'ppocr-v4')).toBe(true);
  });

  it('marks a failed request with an error status on the gateway span', async () => {
    const traceId = 'd4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4';
    const client = new EmbeddingServiceClient(gateway, grpc.credentials.createInsecure());
    const err = await unary(client.embed.bind(client), EmbedRequest.fromPartial({ model: { name: 'no-such-model' }, inputs: ['x'] }), { metadata: traceparent(traceId) }).catch((e: grpc.ServiceError) => e);
    client.close();
    expect((err as grpc.ServiceError).code).toBe(grpc.status.NOT_FOUND);
    await receiver.waitFor(() => receiver.trace(traceId).some((s) => s.service === 'maas-gateway' && s.kind === SERVER));
    const gw = receiver.trace(traceId).find((s) => s.service === 'maas-gateway' && s.kind === SERVER)!;
    expect(gw.statusCode).toBe(2);
    expect(gw.attributes['rpc.grpc.status_code']).toBe(grpc.status.NOT_FOUND);
  });
});

describe('metrics across the mesh', () => {
  async function metricsOf(name: string): Promise<string> {
    const p = mesh.processes.find((x) => x.name === name)!;
    return (await fetch(`http://127.0.0.1:${await p.metricsPort}/metrics`)).text();
  }

  it('counts requests by method, model and status code at the gateway, and model load times in the services', async () => {
    const client = new EmbeddingServiceClient(gateway, grpc.credentials.createInsecure());
    await unary(client.embed.bind(client), EmbedRequest.fromPartial({ model: { name: 'glove-100d' }, inputs: ['count me'] }));
    client.close();
    const gw = await metricsOf('gateway');
    expect(gw).toMatch(/maas_rpc_server_requests_total\{[^}]*method="maas.embeddings.v1.EmbeddingService\/Embed"[^}]*model="glove-100d"[^}]*code="OK"/);
    // The gateway counts its calls in flight like every component; all have ended.
    expect(gw).toMatch(/maas_rpc_server_in_flight\{[^}]*method="maas.embeddings.v1.EmbeddingService\/Embed"[^}]*\} 0\n/);
    const emb = await metricsOf('embeddings');
    expect(emb).toMatch(/maas_model_load_ms_count\{[^}]*model="glove-100d"/);
    expect(emb).toMatch(/maas_model_loaded_bytes\{[^}]*model="glove-100d"/);
    expect(emb).toContain('maas_batch_queue_depth');
    const gen = await metricsOf('generation');
    expect(gen).toContain('maas_generation_time_to_first_token_ms');
    expect(gen).toContain('maas_generation_inter_token_latency_ms');
  });
});
