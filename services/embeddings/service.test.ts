// Component tests: the real embeddings server on port 0 over real gRPC, serving real models from a local model
// folder (the GloVe default model and project-built BERT-style encoders) on onnxruntime.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as ort from 'onnxruntime-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  EmbeddingServiceClient,
  EmbedRequest,
  Pooling,
  TruncationDirection,
  type EmbedResponse,
  type EmbedStreamResponse,
} from '../../gen/maas/embeddings/v1/embeddings.js';
import { createClient, unary, type CallOptions } from '../runtime/client.js';
import { loadConfig } from '../runtime/config.js';
import { decodeStatus } from '../runtime/grpc-status.js';
import { silentLogger } from '../runtime/logger.js';
import { DirectorySource } from '../runtime/models/directory-source.js';
import { spec } from './config.js';
import { cosine } from './domain/vectors.js';
import { createEmbeddingsService, type EmbeddingsService } from './service.js';
import { createModelFolder, type ModelFolder } from './testing/model-folder.js';

let folder: ModelFolder;
beforeAll(async () => {
  folder = await createModelFolder();
});
afterAll(() => folder?.remove());

interface Running {
  service: EmbeddingsService;
  client: EmbeddingServiceClient;
}
const running: Running[] = [];
afterEach(async () => {
  for (const r of running.splice(0)) {
    r.client.close();
    await r.service.server.close();
    await r.service.close();
  }
});

async function start(env: Record<string, string> = {}, pollMs = 1000): Promise<Running> {
  const config = loadConfig(spec, { MAAS_HOST: '127.0.0.1', MAAS_PORT: '0', MAAS_EMBEDDINGS_MODEL_DIR: folder.root, MAAS_LOG_LEVEL: 'silent', ...env });
  const service = await createEmbeddingsService(config, silentLogger, { source: new DirectorySource(folder.root, pollMs) });
  const port = await service.server.start();
  const client = createClient(EmbeddingServiceClient, `127.0.0.1:${port}`);
  const r = { service, client };
  running.push(r);
  return r;
}

const embed = (client: EmbeddingServiceClient, req: Partial<EmbedRequest>, options?: CallOptions): Promise<EmbedResponse> =>
  unary(client.embed.bind(client), EmbedRequest.fromPartial(req), options);

async function failure(p: Promise<unknown>) {
  const err = await p.then(
    () => undefined,
    (e: grpc.ServiceError) => e,
  );
  expect(err, 'the call should have failed').toBeDefined();
  return decodeStatus(err!);
}

const norm = (v: number[]) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
function expectClose(a: number[], b: number[], tolerance = 1e-5) {
  expect(a.length).toBe(b.length);
  const worst = Math.max(...a.map((x, i) => Math.abs(x - b[i]!)));
  expect(worst).toBeLessThan(tolerance);
}

async function until(check: () => boolean, what: string) {
  for (let i = 0; i < 2000 && !check(); i++) await new Promise((r) => setTimeout(r, 5));
  expect(check(), what).toBe(true);
}

async function batcherOf(service: EmbeddingsService, name: string) {
  const lease = await service.host.acquire({ name }, new AbortController().signal);
  lease.release();
  return lease.model.batcher;
}

const MIXED = [
  'cat',
  'The quick brown fox jumps over the lazy dog near the river bank.',
  'Markets rallied after the central bank held interest rates steady, while oil prices slipped for a third day.',
  'hello world',
  'A man is playing a guitar on the street while children dance and a dog barks at passing cars in the evening.',
  'rain',
  'Where is the train station?',
];

const LONG = 'a b c d e f g h i j k l m n o p q r s t u v w x y z';

describe('Embed', () => {
  it.each(['glove-100d', 'bert-mean', 'bert-cls', 'bert-last-token'])('returns the same vectors batched as one at a time for inputs of mixed lengths (%s)', async (model) => {
    const { client, service } = await start();
    // The bert-* test models read at most 24 tokens: longer inputs are cut, shorter ones stay mixed.
    const together = await embed(client, { model: { name: model }, inputs: MIXED, truncate: true });
    const batcher = await batcherOf(service, model);
    expect(batcher.stats().lastBatchSize).toBe(MIXED.length);
    for (const [i, text] of MIXED.entries()) {
      const alone = await embed(client, { model: { name: model }, inputs: [text], truncate: true });
      expect(batcher.stats().lastBatchSize).toBe(1);
      expectClose(together.embeddings[i]!.values, alone.embeddings[0]!.values);
    }
  });

  it('answers a request of many inputs of mixed lengths, queued as several runs, each input in its place', async () => {
    const { client, service } = await start();
    const alone = await Promise.all(MIXED.map(async (text) => (await embed(client, { model: { name: 'bert-mean' }, inputs: [text], truncate: true })).embeddings[0]!));
    // 150 inputs: more than one run of 64, and runs cut where the lengths change.
    const inputs = Array.from({ length: 150 }, (_, i) => MIXED[(i * 3) % MIXED.length]!);
    const together = await embed(client, { model: { name: 'bert-mean' }, inputs, truncate: true });
    expect(together.embeddings.map((e) => e.index)).toEqual(inputs.map((_, i) => i));
    for (const [i, e] of together.embeddings.entries()) {
      const expected = alone[(i * 3) % MIXED.length]!;
      expectClose(e.values, expected.values);
      expect([e.tokens, e.truncated]).toEqual([expected.tokens, expected.truncated]);
    }
    expect(together.usage?.inputTokens).toBe(together.embeddings.reduce((s, e) => s + e.tokens, 0));
    expect((await batcherOf(service, 'bert-mean')).stats().submitted).toBe(MIXED.length + inputs.length);
  });

  it('answers with one unit-length vector per input, usage, the served model and timings', async () => {
    const { client } = await start();
    const res = await embed(client, { inputs: ['first text', 'the second text here'] });
    expect(res.embeddings.map((e) => e.index)).toEqual([0, 1]);
    expect(res.dimensions).toBe(100);
    for (const e of res.embeddings) {
      expect(e.values).toHaveLength(100);
      expect(norm(e.values)).toBeCloseTo(1, 5);
    }
    expect(res.embeddings.map((e) => e.tokens)).toEqual([2, 4]);
    expect(res.usage).toEqual({ inputTokens: 6, outputTokens: 0, totalTokens: 6 });
    expect(res.model).toEqual({ name: 'glove-100d', version: 1, alias: 'default', executionProvider: 'cpu' });
    expect(res.timings!.totalMs).toBeGreaterThan(0);
    expect(res.timings!.inferenceMs).toBeGreaterThan(0);
    expect(res.timings!.queueMs).toBeGreaterThanOrEqual(0);
  });

  it('normalizes by default and returns the pooled vector as is when normalize is false', async () => {
    const { client } = await start();
    const text = 'the cat sat on the mat';
    const raw = (await embed(client, { model: { name: 'bert-mean' }, inputs: [text], normalize: false })).embeddings[0]!.values;
    const unit = (await embed(client, { model: { name: 'bert-mean' }, inputs: [text] })).embeddings[0]!.values;
    expect(Math.abs(norm(raw) - 1)).toBeGreaterThan(0.01);
    expect(norm(unit)).toBeCloseTo(1, 5);
    expectClose(unit, raw.map((x) => x / norm(raw)));
  });

  it('pools last_hidden_state of a BERT-style model (token_type_ids, no pooled output) as its config says', async () => {
    const { client } = await start();
    const text = 'the cat sat on the mat';
    // The expected vectors, computed here from the same ONNX file and the tokens the service reports.
    const tokens = await unary(client.tokenize.bind(client), { model: { name: 'bert-cls' }, inputs: [text], truncate: false, truncationDirection: 0 });
    const ids = tokens.inputs[0]!.tokens.map((t) => t.id);
    expect(tokens.inputs[0]!.tokens[0]).toMatchObject({ text: '[CLS]', special: true });
    const session = await ort.InferenceSession.create(join(folder.root, 'bert-cls', '1', 'model.onnx'));
    const feed = (v: number[]) => new ort.Tensor('int64', BigInt64Array.from(v.map(BigInt)), [1, v.length]);
    const out = await session.run({ input_ids: feed(ids), attention_mask: feed(ids.map(() => 1)), token_type_ids: feed(ids.map(() => 0)) });
    const hidden = Array.from(out.last_hidden_state!.data as Float32Array);
    const width = out.last_hidden_state!.dims[2]!;
    const row = (t: number) => hidden.slice(t * width, (t + 1) * width);
    const unit = (v: number[]) => v.map((x) => x / norm(v));
    const mean = row(0).map((_, d) => ids.reduce((s, _id, t) => s + row(t)[d]!, 0) / ids.length);
    await session.release();
    // The three bert-* models share weights (same seed); only their configured pooling differs.
    const expected: Record<string, number[]> = { 'bert-cls': unit(row(0)), 'bert-mean': unit(mean), 'bert-last-token': unit(row(ids.length - 1)) };
    for (const [model, want] of Object.entries(expected)) {
      const got = (await embed(client, { model: { name: model }, inputs: [text] })).embeddings[0]!.values;
      expect(got).toHaveLength(32);
      expectClose(got, want);
    }
  });

  it('cuts long inputs from the end or the start when truncate is set', async () => {
    const { client } = await start();
    // Every word is one token of bert-cls; its maximum length is 24 with [CLS] and [SEP], so 22 words fit.
    const words = 'the cat dog sat on mat rug table chair house car train station city park tree river sea sky sun moon rain storm snow'.split(' ');
    expect(words.length).toBe(24);
    const model = { name: 'bert-cls' };
    const long = words.join(' ');
    const right = await embed(client, { model, inputs: [long], truncate: true });
    const left = await embed(client, { model, inputs: [long], truncate: true, truncationDirection: TruncationDirection.TRUNCATION_DIRECTION_LEFT });
    expect(right.embeddings[0]).toMatchObject({ tokens: 24, truncated: true });
    expect(left.embeddings[0]).toMatchObject({ tokens: 24, truncated: true });
    const head = await embed(client, { model, inputs: [words.slice(0, 22).join(' ')] });
    const tail = await embed(client, { model, inputs: [words.slice(2).join(' ')] });
    expect(head.embeddings[0]!.truncated).toBe(false);
    expectClose(right.embeddings[0]!.values, head.embeddings[0]!.values);
    expectClose(left.embeddings[0]!.values, tail.embeddings[0]!.values);

    const tokenized = await unary(client.tokenize.bind(client), {
      model,
      inputs: [long],
      truncate: true,
      truncationDirection: TruncationDirection.TRUNCATION_DIRECTION_LEFT,
    });
    const texts = tokenized.inputs[0]!.tokens.map((t) => t.text);
    expect(texts).toEqual(['[CLS]', ...words.slice(2), '[SEP]']);
    expect(tokenized.inputs[0]!.truncated).toBe(true);
  });

  it('refuses an input over the maximum length when truncate is off, naming its index', async () => {
    const { client } = await start();
    const s = await failure(embed(client, { model: { name: 'bert-cls' }, inputs: ['short', 'a b c d e f g h i j k l m n o p q r s t u v w x y z'] }));
    expect(s.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(s.badRequest?.fieldViolations[0]?.field).toBe('inputs[1]');
    expect(s.message).toContain('24');
    // The first over-long input is named, past the first run of the request's inputs too.
    const later = await failure(embed(client, { model: { name: 'bert-cls' }, inputs: [...Array.from({ length: 70 }, () => 'short'), 'x', LONG, LONG] }));
    expect(later.badRequest?.fieldViolations[0]?.field).toBe('inputs[71]');
  });

  it('keeps the first N dimensions and renormalizes them', async () => {
    const { client } = await start();
    const text = 'heavy rain caused flooding in the city';
    const full = (await embed(client, { inputs: [text], normalize: false })).embeddings[0]!.values;
    const cut = await embed(client, { inputs: [text], dimensions: 32 });
    expect(cut.dimensions).toBe(32);
    expect(cut.embeddings[0]!.values).toHaveLength(32);
    expect(norm(cut.embeddings[0]!.values)).toBeCloseTo(1, 5);
    const head = full.slice(0, 32);
    expectClose(cut.embeddings[0]!.values, head.map((x) => x / norm(head)));
    const raw = await embed(client, { inputs: [text], dimensions: 32, normalize: false });
    expectClose(raw.embeddings[0]!.values, head);
    const s = await failure(embed(client, { inputs: [text], dimensions: 101 }));
    expect(s.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(s.badRequest?.fieldViolations[0]?.field).toBe('dimensions');
  });

  it('shapes and cuts each input as its own request asks when requests share a batch', async () => {
    // Texts are tokenized and vectors shaped where the batch runs: four requests with different options, made
    // to meet in one batch, each get what they would get alone.
    const { client, service } = await start({ MAAS_EMBEDDINGS_MAX_QUEUE_DELAY_MS: '300' });
    const model = { name: 'bert-cls' };
    const long = 'the cat dog sat on mat rug table chair house car train station city park tree river sea sky sun moon rain storm snow';
    const requests: Partial<EmbedRequest>[] = [
      { model, inputs: [long, 'rain'], truncate: true, truncationDirection: TruncationDirection.TRUNCATION_DIRECTION_LEFT },
      { model, inputs: ['the cat sat', long], truncate: true, dimensions: 5 },
      { model, inputs: ['hello world'], normalize: false, dimensions: 7 },
      { model, inputs: ['where is the train station'], normalize: false },
    ];
    const together = await Promise.all(requests.map((r) => embed(client, r)));
    const batcher = await batcherOf(service, 'bert-cls');
    expect(batcher.stats().lastBatchSize).toBe(6);
    for (const [i, r] of requests.entries()) {
      const alone = await embed(client, r);
      expect(batcher.stats().lastBatchSize).toBe(r.inputs!.length);
      expect(together[i]!.embeddings.map((e) => [e.values.length, e.tokens, e.truncated])).toEqual(alone.embeddings.map((e) => [e.values.length, e.tokens, e.truncated]));
      together[i]!.embeddings.forEach((e, j) => expectClose(e.values, alone.embeddings[j]!.values));
    }
    expect(together[1]!.embeddings[1]).toMatchObject({ tokens: 24, truncated: true });
    expect(norm(together[1]!.embeddings[0]!.values)).toBeCloseTo(1, 5);
    expect(norm(together[2]!.embeddings[0]!.values)).not.toBeCloseTo(1, 2);
  });

  it('answers the same with the tokenizer and session on the event loop (MAAS_EMBEDDINGS_ENCODER_THREAD=false)', async () => {
    const threaded = await start();
    const inline = await start({ MAAS_EMBEDDINGS_ENCODER_THREAD: 'false' });
    const long = 'a b c d e f g h i j k l m n o p q r s t u v w x y z';
    for (const req of [
      { inputs: MIXED },
      { model: { name: 'bert-mean' }, inputs: [...MIXED, long], truncate: true, dimensions: 9 },
      { model: { name: 'bert-last-token' }, inputs: MIXED, normalize: false, truncate: true, truncationDirection: TruncationDirection.TRUNCATION_DIRECTION_LEFT },
    ] satisfies Partial<EmbedRequest>[]) {
      const [a, b] = await Promise.all([embed(threaded.client, req), embed(inline.client, req)]);
      expect(b.embeddings.map((e) => [e.index, e.tokens, e.truncated])).toEqual(a.embeddings.map((e) => [e.index, e.tokens, e.truncated]));
      b.embeddings.forEach((e, i) => expectClose(e.values, a.embeddings[i]!.values));
    }
    const s = await failure(embed(inline.client, { model: { name: 'bert-cls' }, inputs: ['short', long] }));
    expect(s.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(s.badRequest?.fieldViolations[0]?.field).toBe('inputs[1]');
  });

  it('scores similar sentences above unrelated ones on the default model', async () => {
    const { client } = await start();
    const triples = [
      ['A man is playing a guitar.', 'Someone is playing an instrument.', 'The stock market fell sharply today.'],
      ['The cat sat on the mat.', 'A kitten is resting on a rug.', 'The government passed a new tax law.'],
      ['How do I reset my password?', 'I forgot my password and cannot log in.', 'What is the weather like in Paris?'],
      ['The team won the football match.', 'The soccer club celebrated its victory.', 'She baked a chocolate cake for dinner.'],
      ['Heavy rain caused flooding in the city.', 'Storms flooded streets downtown.', 'He bought a new laptop yesterday.'],
      ['The doctor examined the patient.', 'A physician checked the sick man.', 'The train leaves the station at noon.'],
    ];
    for (const [anchor, similar, unrelated] of triples) {
      const { embeddings } = await embed(client, { inputs: [anchor!, similar!, unrelated!] });
      const [a, b, c] = embeddings.map((e) => e.values);
      expect(cosine(a!, b!), `"${anchor}" should be closer to "${similar}" than to "${unrelated}"`).toBeGreaterThan(cosine(a!, c!));
    }
  });

  it('refuses bad requests with INVALID_ARGUMENT naming the field', async () => {
    const { client } = await start({ MAAS_EMBEDDINGS_MAX_INPUTS_PER_REQUEST: '4', MAAS_EMBEDDINGS_MAX_INPUT_CHARS: '100' });
    const cases: [Partial<EmbedRequest>, string][] = [
      [{ inputs: [] }, 'inputs'],
      [{ inputs: ['fine', ''] }, 'inputs[1]'],
      [{ inputs: ['fine', '   '] }, 'inputs[1]'],
      [{ inputs: ['a', 'b', 'c', 'd', 'e'] }, 'inputs'],
      [{ inputs: ['x'.repeat(101)] }, 'inputs[0]'],
    ];
    for (const [req, field] of cases) {
      const s = await failure(embed(client, req));
      expect(s.code, JSON.stringify(req).slice(0, 60)).toBe(grpc.status.INVALID_ARGUMENT);
      expect(s.badRequest?.fieldViolations.map((v) => v.field)).toEqual([field]);
    }
  });

  it('answers NOT_FOUND for an unknown model, version or alias', async () => {
    const { client } = await start();
    for (const model of [{ name: 'no-such-model' }, { name: 'glove-100d', version: 9 }, { name: 'glove-100d', alias: 'prod' }]) {
      const s = await failure(embed(client, { model, inputs: ['x'] }));
      expect(s.code, JSON.stringify(model)).toBe(grpc.status.NOT_FOUND);
      expect(s.resourceInfo).toBeDefined();
    }
  });

  it('answers FAILED_PRECONDITION for a model of another task', async () => {
    const { client } = await start();
    const s = await failure(embed(client, { model: { name: 'ocr-lines' }, inputs: ['x'] }));
    expect(s.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(s.message).toContain('ocr');
  });
});

describe('Embed under load', () => {
  it('answers RESOURCE_EXHAUSTED with RetryInfo at once when the queue is full', async () => {
    // Batches of 4 and a long queue delay: a request of 2 inputs waits in the queue, filling it.
    const { client, service } = await start({ MAAS_EMBEDDINGS_MAX_QUEUE_INPUTS: '3', MAAS_EMBEDDINGS_MAX_BATCH_SIZE: '4', MAAS_EMBEDDINGS_MAX_QUEUE_DELAY_MS: '60000' });
    const batcher = await batcherOf(service, 'glove-100d');
    const ac = new AbortController();
    const waiting = embed(client, { inputs: ['one', 'two'] }, { signal: ac.signal });
    await until(() => batcher.stats().depth === 2, 'the first request is queued');
    const s = await failure(embed(client, { inputs: ['three', 'four'] }));
    expect(s.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(s.retryAfterMs).toBeGreaterThanOrEqual(1);
    expect(s.errorInfo?.reason).toBe('OVERLOADED');
    expect(batcher.stats().rejected).toBe(1);
    ac.abort();
    await failure(waiting);
  });

  it('drops a cancelled request before it runs', async () => {
    const { client, service } = await start({ MAAS_EMBEDDINGS_MAX_BATCH_SIZE: '4', MAAS_EMBEDDINGS_MAX_QUEUE_DELAY_MS: '60000' });
    const batcher = await batcherOf(service, 'glove-100d');
    const ac = new AbortController();
    const cancelled = embed(client, { inputs: ['never', 'runs'] }, { signal: ac.signal });
    await until(() => batcher.stats().depth === 2, 'the request is queued');
    ac.abort();
    expect((await failure(cancelled)).code).toBe(grpc.status.CANCELLED);
    await until(() => batcher.stats().dropped === 2, 'the server dropped both inputs');
    expect(batcher.stats()).toMatchObject({ depth: 0, ran: 0, batches: 0 });
    // A full batch runs at once; the dropped inputs never reach the model.
    const res = await embed(client, { inputs: ['a', 'full', 'batch', 'now'] });
    expect(res.embeddings).toHaveLength(4);
    expect(batcher.stats()).toMatchObject({ ran: 4, batches: 1, dropped: 2 });
  });

  it('drops a request whose deadline passes while it is queued', async () => {
    const { client, service } = await start({ MAAS_EMBEDDINGS_MAX_BATCH_SIZE: '4', MAAS_EMBEDDINGS_MAX_QUEUE_DELAY_MS: '60000' });
    const batcher = await batcherOf(service, 'glove-100d');
    const s = await failure(embed(client, { inputs: ['late'] }, { deadline: Date.now() + 300 }));
    expect(s.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    await until(() => batcher.stats().dropped === 1, 'the server dropped the input');
    expect(batcher.stats().ran).toBe(0);
  });

  it('swaps to the version an alias moves to under steady load without a failed request', async () => {
    const { client, service } = await start({}, 25);
    const seen = new Set<number>();
    let failures = 0;
    let ok = 0;
    let stop = false;
    const worker = async () => {
      while (!stop) {
        try {
          const res = await embed(client, { model: { name: 'swap' }, inputs: ['steady load during a swap', 'second input'] });
          seen.add(res.model!.version);
          ok++;
        } catch {
          failures++;
        }
      }
    };
    const workers = Array.from({ length: 8 }, worker);
    await until(() => ok > 50, 'load is flowing');
    folder.setAliases('swap', { default: 2 });
    await until(() => seen.has(2), 'requests are served by version 2');
    const after = ok;
    await until(() => ok > after + 50, 'load keeps flowing after the swap');
    stop = true;
    await Promise.all(workers);
    folder.setAliases('swap', { default: 1 });
    expect(failures).toBe(0);
    expect([...seen].sort()).toEqual([1, 2]);
    await until(() => !service.host.list().some((m) => m.name === 'swap' && m.version === 1), 'version 1 is unloaded');
  });
});

describe('EmbedStream', () => {
  it('answers every request in order, with errors in place, on one call', async () => {
    const { client } = await start({ MAAS_EMBEDDINGS_STREAM_WINDOW: '4' });
    const call = client.embedStream();
    const received: EmbedStreamResponse[] = [];
    const done = new Promise<void>((resolve, reject) => {
      call.on('data', (m: EmbedStreamResponse) => received.push(m));
      call.on('end', resolve);
      call.on('error', reject);
    });
    const texts = Array.from({ length: 20 }, (_, i) => `message number ${i} about ${i % 2 ? 'cats' : 'markets'}`);
    texts.forEach((text, i) => {
      call.write({ tag: `t${i}`, request: EmbedRequest.fromPartial({ inputs: i === 7 ? [''] : [text, 'and more'] }) });
    });
    call.end();
    await done;
    expect(received.map((r) => r.tag)).toEqual(texts.map((_, i) => `t${i}`));
    expect(received[7]!.error).toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    expect(received[7]!.response).toBeUndefined();
    for (const [i, r] of received.entries()) {
      if (i === 7) continue;
      expect(r.response!.embeddings).toHaveLength(2);
    }
    const direct = await embed(client, { inputs: [texts[3]!, 'and more'] });
    expectClose(received[3]!.response!.embeddings[0]!.values, direct.embeddings[0]!.values);
  });

  it('keeps a full window of requests in flight without piling listeners on the call signal', async () => {
    // Every request in flight listens for the call's cancellation; with all of them on one signal, Node warned
    // of a "possible EventTarget memory leak" (MaxListenersExceededWarning) once more than 10 were in flight.
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      const { client } = await start({ MAAS_EMBEDDINGS_STREAM_WINDOW: '32' });
      const call = client.embedStream();
      let received = 0;
      const done = new Promise<void>((resolve, reject) => {
        call.on('data', () => received++);
        call.on('end', resolve);
        call.on('error', reject);
      });
      for (let i = 0; i < 64; i++) call.write({ tag: String(i), request: EmbedRequest.fromPartial({ inputs: [`request ${i} of many`, 'and another'] }) });
      call.end();
      await done;
      expect(received).toBe(64);
      await new Promise((r) => setImmediate(r));
      expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('answers each message before the next is sent (a client in lockstep)', async () => {
    const { client } = await start();
    const call = client.embedStream();
    const next = () => new Promise<EmbedStreamResponse>((resolve, reject) => {
      call.once('data', resolve);
      call.once('error', reject);
    });
    for (let i = 0; i < 3; i++) {
      const answer = next();
      call.write({ tag: String(i), request: EmbedRequest.fromPartial({ inputs: [`lockstep ${i}`] }) });
      expect((await answer).tag).toBe(String(i));
    }
    call.end();
  });
});

describe('Tokenize, CountTokens, ListModels, GetModelInfo', () => {
  it('tokenizes as Embed does and counts tokens before truncation', async () => {
    const { client } = await start();
    const tok = await unary(client.tokenize.bind(client), { model: { name: 'bert-cls' }, inputs: ['The cats'], truncate: false, truncationDirection: 0 });
    // "cats" is not in its vocabulary: WordPiece takes the longest known prefix, then `##` pieces.
    expect(tok.inputs[0]!.tokens.map((t) => t.text)).toEqual(['[CLS]', 'the', 'cat', '##s', '[SEP]']);
    expect(tok.inputs[0]!.tokens.map((t) => t.special)).toEqual([true, false, false, false, true]);
    const bare = await unary(client.tokenize.bind(client), { model: { name: 'bert-cls' }, inputs: ['The cats'], addSpecialTokens: false, truncate: false, truncationDirection: 0 });
    expect(bare.inputs[0]!.tokens).toHaveLength(3);
    const counts = await unary(client.countTokens.bind(client), { model: { name: 'bert-cls' }, inputs: ['The cats', 'a '.repeat(100)] });
    expect(counts).toMatchObject({ tokenCounts: [5, 102], totalTokens: 107, maxInputTokens: 24 });
    const glove = await unary(client.countTokens.bind(client), { model: undefined, inputs: ['Hello, world!'] });
    expect(glove.tokenCounts).toEqual([4]);
    expect(glove.model?.name).toBe('glove-100d');
  });

  it('describes models, loading them on first use, and lists the loaded ones', async () => {
    const { client } = await start();
    const { info } = await unary(client.getModelInfo.bind(client), { model: { name: 'bert-last-token' } });
    expect(info).toMatchObject({
      model: { name: 'bert-last-token', version: 1, alias: 'default', executionProvider: 'cpu' },
      dimensions: 32,
      maxInputTokens: 24,
      pooling: Pooling.POOLING_LAST_TOKEN,
      pooledByModel: false,
    });
    const glove = (await unary(client.getModelInfo.bind(client), { model: undefined })).info!;
    expect(glove).toMatchObject({ dimensions: 100, maxInputTokens: 512, pooling: Pooling.POOLING_MEAN, pooledByModel: true, vocabSize: 50_002 });
    expect(glove.memoryBytes).toBeGreaterThan(10_000_000);
    const list = await unary(client.listModels.bind(client), {});
    expect(list.defaultModel).toBe('glove-100d');
    expect(list.models.map((m) => `${m.model!.name}:${m.model!.version}`)).toEqual(['bert-last-token:1', 'glove-100d:1']);
    expect(list.models.find((m) => m.model!.name === 'glove-100d')!.aliases).toEqual(['default']);
  });

  it('answers Tokenize for a model of another task with FAILED_PRECONDITION and unknown ones with NOT_FOUND', async () => {
    const { client } = await start();
    const req = { inputs: ['x'], truncate: false, truncationDirection: 0 };
    expect((await failure(unary(client.tokenize.bind(client), { ...req, model: { name: 'ocr-lines' } }))).code).toBe(grpc.status.FAILED_PRECONDITION);
    expect((await failure(unary(client.countTokens.bind(client), { inputs: ['x'], model: { name: 'nope' } }))).code).toBe(grpc.status.NOT_FOUND);
    expect((await failure(unary(client.getModelInfo.bind(client), { model: { name: 'nope' } }))).code).toBe(grpc.status.NOT_FOUND);
  });
});

describe('the GloVe default model files', () => {
  it('have the Hugging Face signature and a config the service reads', () => {
    const config = JSON.parse(readFileSync(join(folder.gloveDir, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(config).toMatchObject({ pooling: 'mean', max_length: 512, hidden_size: 100, vocab_size: 50_002 });
  });
});
