import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GenerationServiceClient } from '../../gen/maas/generation/v1/generation.js';
import { createClient, unary } from '../runtime/client.js';
import { loadConfig } from '../runtime/config.js';
import { silentLogger } from '../runtime/logger.js';
import { spec } from './config.js';
import { createGenerationService, type GenerationService } from './service.js';
import { createGenerationModelFolder, type GenerationModelFolder } from './testing/model-folder.js';

const exporter = new InMemorySpanExporter();
let folder: GenerationModelFolder;
let service: GenerationService;
let client: GenerationServiceClient;

beforeAll(async () => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
  folder = await createGenerationModelFolder();
  const config = loadConfig(spec, { MAAS_HOST: '127.0.0.1', MAAS_PORT: '0', MAAS_GENERATION_MODEL_DIR: folder.root, MAAS_GENERATION_DEFAULT_MODEL: 'bigram' });
  service = await createGenerationService(config, silentLogger);
  client = createClient(GenerationServiceClient, `127.0.0.1:${await service.server.start()}`);
});

afterAll(async () => {
  client?.close();
  await service?.server.close();
  await service?.close();
  folder?.remove();
});

describe('generation tracing', () => {
  it('puts queue, prefill and one decode span with its step count under the call span', async () => {
    exporter.reset();
    const r = await unary(client.generate.bind(client), { model: { name: 'bigram' }, prompt: 'a', messages: [], parameters: { temperature: 0, maxNewTokens: 6, stop: [], ignoreEos: false } });
    expect(r.text).toBe('bcdefg');
    const spans = exporter.getFinishedSpans();
    const call = spans.find((s) => s.name === 'maas.generation.v1.GenerationService/Generate')!;
    expect(call.attributes).toMatchObject({ 'maas.model': 'bigram', 'maas.model_version': 1, 'maas.output_tokens': 6 });
    for (const name of ['generation.queue', 'generation.prefill', 'generation.decode']) {
      const s = spans.filter((x) => x.name === name);
      expect(s, name).toHaveLength(1);
      expect(s[0]!.spanContext().traceId).toBe(call.spanContext().traceId);
      expect(s[0]!.parentSpanContext?.spanId).toBe(call.spanContext().spanId);
      expect(s[0]!.attributes['maas.model']).toBe('bigram');
    }
    const decode = spans.find((s) => s.name === 'generation.decode')!;
    // The first token comes from the prefill; the other five from one decode step each.
    expect(decode.attributes).toMatchObject({ 'maas.decode_steps': 5, 'maas.output_tokens': 6, 'maas.batch_size': 1, 'maas.finish_reason': 'length' });
    expect(decode.events.map((e) => e.name)).toEqual(['first_token', 'maas.batch']);
  });
});
