// A component process exports its server spans over OTLP/gRPC and continues the caller's W3C trace context.
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launch, type Launched } from '../cli/launch.js';
import { EchoClient } from './fixtures/echo-service.js';
import { OtlpReceiver } from './support/otlp-receiver.js';

let receiver: OtlpReceiver;
let echo: Launched;
let client: grpc.Client & Record<string, Function>;

beforeAll(async () => {
  receiver = new OtlpReceiver();
  await receiver.start();
  echo = launch('echo', 'test/fixtures/echo-main.ts', { env: { MAAS_PORT: '0', MAAS_METRICS_PORT: '0', OTEL_SERVICE_NAME: 'maas-echo', ...receiver.env() } });
  client = new EchoClient(`127.0.0.1:${await echo.port}`, grpc.credentials.createInsecure()) as typeof client;
});

afterAll(async () => {
  client?.close();
  await echo?.stop();
  receiver?.close();
});

function call(method: string, req: unknown, md = new grpc.Metadata()) {
  return new Promise((resolve, reject) => client[method](req, md, (err: Error | null, res: unknown) => (err ? reject(err) : resolve(res))));
}

describe('tracing in a component process', () => {
  it("continues the caller's traceparent and records the method on the server span", async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const md = new grpc.Metadata();
    md.set('traceparent', `00-${traceId}-00f067aa0ba902b7-01`);
    await call('Echo', { text: 'hi' }, md);
    await receiver.waitFor(() => receiver.trace(traceId).length > 0);
    const [span] = receiver.trace(traceId);
    expect(span).toMatchObject({ service: 'maas-echo', parentSpanId: '00f067aa0ba902b7', kind: 2, name: 'maas.testing.v1.EchoService/Echo' });
    expect(span!.attributes['rpc.grpc.status_code']).toBe(0);
  });

  it('marks a failed call with an error status and its gRPC code', async () => {
    const traceId = '0af7651916cd43dd8448eb211c80319c';
    const md = new grpc.Metadata();
    md.set('traceparent', `00-${traceId}-b7ad6b7169203331-01`);
    await call('Fail', { kind: 'not_found' }, md).catch(() => undefined);
    await receiver.waitFor(() => receiver.trace(traceId).length > 0);
    const [span] = receiver.trace(traceId);
    expect(span!.statusCode).toBe(2);
    expect(span!.attributes['rpc.grpc.status_code']).toBe(grpc.status.NOT_FOUND);
  });
});

describe('resource attributes', () => {
  it('carries OTEL_RESOURCE_ATTRIBUTES (pod and namespace in Kubernetes) on exported spans', async () => {
    const r = new OtlpReceiver();
    await r.start();
    const p = launch('echo', 'test/fixtures/echo-main.ts', {
      env: { MAAS_PORT: '0', MAAS_METRICS_PORT: '0', ...r.env(), OTEL_SERVICE_NAME: 'maas-echo', OTEL_RESOURCE_ATTRIBUTES: 'k8s.pod.name=echo-7d9f,service.namespace=maas' },
    });
    try {
      const c = new EchoClient(`127.0.0.1:${await p.port}`, grpc.credentials.createInsecure()) as grpc.Client & Record<string, Function>;
      await new Promise((res, rej) => c.Echo({ text: 'x' }, (err: Error | null, v: unknown) => (err ? rej(err) : res(v))));
      c.close();
      await r.waitFor((spans) => spans.length > 0);
      expect(r.spans[0]!.resource).toMatchObject({ 'k8s.pod.name': 'echo-7d9f', 'service.namespace': 'maas', 'service.name': 'maas-echo' });
    } finally {
      await p.stop();
      r.close();
    }
  });
});
