import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  FinishReason,
  GenerationServiceClient,
  type GenerateRequest,
  type GenerateResponse,
  type GenerateStreamResponse,
  type GenerationParameters,
} from '../../gen/maas/generation/v1/generation.js';
import { createClient, serverStream, unary } from '../runtime/client.js';
import { loadConfig } from '../runtime/config.js';
import { decodeStatus } from '../runtime/grpc-status.js';
import { silentLogger } from '../runtime/logger.js';
import { spec } from './config.js';
import { createGenerationService, type GenerationService } from './service.js';
import { CHINESE_TOKENS, DIGIT, EOS, createGenerationModelFolder, lettersAfter, type GenerationModelFolder } from './testing/model-folder.js';
import { waitFor } from '../runtime/testing/wait.js';

let folder: GenerationModelFolder;
const running: { service: GenerationService; client: GenerationServiceClient }[] = [];

async function start(env: Record<string, string> = {}) {
  const config = loadConfig(spec, {
    MAAS_HOST: '127.0.0.1',
    MAAS_PORT: '0',
    MAAS_METRICS_ENABLED: 'false',
    MAAS_LOG_LEVEL: 'silent',
    MAAS_GENERATION_MODEL_DIR: folder.root,
    MAAS_GENERATION_DEFAULT_MODEL: 'tiny',
    MAAS_GENERATION_MAX_NEW_TOKENS: '4096',
    // Two lanes whatever the machine's core count, so batches run on two worker threads side by side.
    MAAS_GENERATION_DECODE_LANES: '2',
    ...env,
  });
  const service = await createGenerationService(config, silentLogger);
  const port = await service.server.start();
  const client = createClient(GenerationServiceClient, `127.0.0.1:${port}`);
  running.push({ service, client });
  return { service, client };
}

let svc: GenerationService;
let client: GenerationServiceClient;

beforeAll(async () => {
  folder = await createGenerationModelFolder();
  ({ service: svc, client } = await start());
});

afterAll(async () => {
  for (const r of running) {
    r.client.close();
    await r.service.server.close();
    await r.service.close();
  }
  folder?.remove();
});

const request = (model: string, prompt: string, parameters: Partial<GenerationParameters> = {}, messages: GenerateRequest['messages'] = []): GenerateRequest => ({
  model: { name: model },
  prompt,
  messages,
  parameters: { stop: [], ignoreEos: false, ...parameters },
});

const generate = (req: GenerateRequest, c = client, options: { deadline?: number } = {}) => unary(c.generate.bind(c), req, options);

async function stream(req: GenerateRequest, c = client): Promise<GenerateStreamResponse[]> {
  const out: GenerateStreamResponse[] = [];
  for await (const m of serverStream(c.generateStream.bind(c), req)) out.push(m);
  return out;
}

async function status(p: Promise<unknown>) {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!err) throw new Error('the call succeeded');
  return decodeStatus(err as grpc.ServiceError);
}

describe('GenerationService with a hand-built model', () => {
  it('counts up through the digits and stops at its end-of-sequence token', async () => {
    const r = await generate(request('bigram', '3', { temperature: 0 }));
    expect(r.text).toBe('456789');
    expect(r.tokenIds).toEqual([...[4, 5, 6, 7, 8, 9].map(DIGIT), EOS]);
    expect(r.finishReason).toBe(FinishReason.FINISH_REASON_EOS);
    expect(r.usage).toEqual({ inputTokens: 1, outputTokens: 7, totalTokens: 8 });
    expect(r.model).toMatchObject({ name: 'bigram', version: 1, alias: 'default', executionProvider: 'cpu' });
  });

  it('stops at max_new_tokens with finish reason length', async () => {
    const r = await generate(request('bigram', 'a', { temperature: 0, maxNewTokens: 30 }));
    expect(r.text).toBe(lettersAfter('a', 30));
    expect(r.finishReason).toBe(FinishReason.FINISH_REASON_LENGTH);
    expect(r.usage?.outputTokens).toBe(30);
  });

  it('streams the same text chunk by chunk, with timings and usage on the last message', async () => {
    const chunks = await stream(request('bigram', 'a', { temperature: 0, maxNewTokens: 10 }));
    expect(chunks.map((c) => c.text).join('')).toBe(lettersAfter('a', 10));
    expect(chunks.slice(0, -1).every((c) => c.finishReason === FinishReason.FINISH_REASON_UNSPECIFIED)).toBe(true);
    const last = chunks[chunks.length - 1]!;
    expect(last.finishReason).toBe(FinishReason.FINISH_REASON_LENGTH);
    expect(last.usage?.outputTokens).toBe(10);
    expect(last.timings!.totalMs).toBeGreaterThanOrEqual(last.timings!.timeToFirstTokenMs);
    expect(chunks[0]!.model?.name).toBe('bigram');
  });

  it('ends at a stop sequence that spans several tokens and never sends any of it', async () => {
    const r = await generate(request('bigram', 'a', { temperature: 0, maxNewTokens: 30, stop: ['ghi'] }));
    expect(r).toMatchObject({ text: 'bcdef', finishReason: FinishReason.FINISH_REASON_STOP, stopSequence: 'ghi' });
    const chunks = await stream(request('bigram', 'a', { temperature: 0, maxNewTokens: 30, stop: ['ghi'] }));
    expect(chunks.map((c) => c.text).join('')).toBe('bcdef');
    expect(chunks.some((c) => c.text.includes('g'))).toBe(false);
  });

  it('releases text held back for a stop sequence that then does not match', async () => {
    const r = await generate(request('bigram', 'a', { temperature: 0, maxNewTokens: 30, stop: ['xyz!'] }));
    expect(r.text).toBe(lettersAfter('a', 30));
    expect(r.finishReason).toBe(FinishReason.FINISH_REASON_LENGTH);
  });

  it('streams Chinese output as whole UTF-8 characters although tokens end inside them', async () => {
    const chunks = await stream(request('bigram', '你', { temperature: 0, maxNewTokens: 12 }));
    expect(chunks.map((c) => c.text).join('')).toBe('好世界你好世');
    expect(chunks.flatMap((c) => c.tokenIds)).toEqual([...CHINESE_TOKENS.slice(2), ...CHINESE_TOKENS.slice(0, 6)]);
    expect(chunks.some((c) => c.text === '' && c.tokenIds.length > 0)).toBe(true);
    for (const c of chunks) expect(c.text).not.toContain('\uFFFD');
  });

  it('returns log probabilities of the chosen tokens and the top alternatives', async () => {
    const r = await generate(request('bigram', 'a', { temperature: 0, maxNewTokens: 3, logprobs: 2 }));
    expect(r.logprobs).toHaveLength(3);
    for (const [i, l] of r.logprobs.entries()) {
      expect(l.tokenId).toBe(r.tokenIds[i]);
      expect(l.top[0]!.tokenId).toBe(l.tokenId);
      expect(l.logprob).toBeLessThanOrEqual(0);
      expect(l.top).toHaveLength(2);
    }
    expect(r.logprobs[0]!.token).toBe('b');
  });

  it('renders chat messages with the model template', async () => {
    const messages = [
      { role: 'system', content: 'Count.' },
      { role: 'user', content: '5' },
    ];
    const t = await unary(client.tokenize.bind(client), { model: { name: 'bigram' }, text: '', messages });
    expect(t.text).toBe('<|system|>\nCount.\n<|user|>\n5\n<|assistant|>\n');
    const count = await unary(client.countTokens.bind(client), { model: { name: 'bigram' }, prompt: '', messages });
    expect(count.inputTokens).toBe(t.tokens.length);
    const r = await generate(request('bigram', '', { temperature: 0 }, messages));
    expect(r.usage?.inputTokens).toBe(t.tokens.length);
    expect(r.finishReason).toBe(FinishReason.FINISH_REASON_EOS);
  });
});

describe('GenerationService sampling and batching', () => {
  it('reproduces sampled output from a seed, and returns the seed it drew', async () => {
    const params = { temperature: 1, topP: 0.9, topK: 100, maxNewTokens: 24, ignoreEos: true };
    const a = await generate(request('tiny', 'Once upon a time', { ...params, seed: 123 }));
    const b = await generate(request('tiny', 'Once upon a time', { ...params, seed: 123 }));
    const c = await generate(request('tiny', 'Once upon a time', { ...params, seed: 124 }));
    expect(a.tokenIds).toEqual(b.tokenIds);
    expect(a.tokenIds).not.toEqual(c.tokenIds);
    expect(a.seed).toBe(123);
    const drawn = await generate(request('tiny', 'Once upon a time', params));
    const again = await generate(request('tiny', 'Once upon a time', { ...params, seed: drawn.seed }));
    expect(again.tokenIds).toEqual(drawn.tokenIds);
  });

  it('gives each of N concurrent requests in one batch, token for token, what it gets alone', async () => {
    const prompts = ['Hello', 'The quick brown fox jumps over the lazy dog', 'A', 'In a hole in the ground there lived a hobbit.', '1 2 3', 'To be or not'];
    const cases = prompts.flatMap((p, i) => [
      request('tiny', p, { temperature: 0, maxNewTokens: 16 + i * 3, ignoreEos: true }),
      request('tiny', p, { temperature: 0.9, topP: 0.95, seed: 1000 + i, maxNewTokens: 20 + i, ignoreEos: true, repetitionPenalty: 1.2 }),
    ]);
    const alone: GenerateResponse[] = [];
    for (const c of cases) alone.push(await generate(c));
    const before = svc.generator.list().find((m) => m.served.name === 'tiny')!.stats.largestBatch;
    const together = await Promise.all(cases.map((c) => stream(c)));
    together.forEach((chunks, i) => {
      expect(chunks.flatMap((c) => c.tokenIds), `case ${i}`).toEqual(alone[i]!.tokenIds);
      expect(chunks.map((c) => c.text).join('')).toBe(alone[i]!.text);
    });
    const stats = svc.generator.list().find((m) => m.served.name === 'tiny')!.stats;
    expect(stats.largestBatch).toBeGreaterThan(Math.max(1, before));
    // The batch was split over both lanes (two worker threads), and still every row matched.
    expect(stats).toMatchObject({ lanes: 2, mostLanesInStep: 2 });

    // One lane, on this thread (as on a GPU): the same tokens again.
    const { client: single, service: one } = await start({ MAAS_GENERATION_DECODE_LANES: '1' });
    const onThisThread = await Promise.all(cases.map((c) => stream(c, single)));
    onThisThread.forEach((chunks, i) => expect(chunks.flatMap((c) => c.tokenIds), `case ${i}, one lane`).toEqual(alone[i]!.tokenIds));
    expect(one.generator.list().find((m) => m.served.name === 'tiny')!.stats).toMatchObject({ lanes: 1 });
  });

  it('removes a cancelled stream from the batch within one step while the others go on', async () => {
    const long = { temperature: 1, maxNewTokens: 1000, ignoreEos: true, seed: 5 };
    const other = new AbortController();
    let otherChunks = 0;
    const otherDone = (async () => {
      try {
        for await (const _ of serverStream(client.generateStream.bind(client), request('tiny', 'keep going', long), { signal: other.signal })) otherChunks++;
      } catch {
        /* cancelled at the end of the test */
      }
    })();
    const cancelled = new AbortController();
    let seen = 0;
    await expect(
      (async () => {
        for await (const _ of serverStream(client.generateStream.bind(client), request('tiny', 'stop me', long), { signal: cancelled.signal })) {
          if (++seen === 5) cancelled.abort();
        }
      })(),
    ).rejects.toMatchObject({ code: grpc.status.CANCELLED });
    const model = () => svc.generator.list().find((m) => m.served.name === 'tiny')!;
    await waitFor(() => model().stats.running === 1, 20_000);
    const stats = model().stats;
    expect(stats.cancelled).toBeGreaterThanOrEqual(1);
    expect(stats.maxStepsAfterCancel).toBeLessThanOrEqual(1);
    const listed = await unary(client.listModels.bind(client), {});
    expect(listed.models.find((m) => m.model?.name === 'tiny')?.running).toBe(1);
    // The other stream keeps receiving tokens.
    const at = otherChunks;
    await waitFor(() => otherChunks > at + 3, 20_000);
    other.abort();
    await otherDone;
    await waitFor(() => model().stats.running === 0, 20_000);
  });

  it('ends a request whose deadline passes with DEADLINE_EXCEEDED and frees its place', async () => {
    // 1000 tokens take far longer than 50 ms.
    const s = await status(generate(request('tiny', 'slow', { maxNewTokens: 1000, ignoreEos: true, seed: 1 }), client, { deadline: Date.now() + 50 }));
    expect(s.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    await waitFor(() => svc.generator.list().find((m) => m.served.name === 'tiny')!.stats.running === 0, 20_000);
  });

  it('answers RESOURCE_EXHAUSTED with a retry delay when the waiting queue is full', async () => {
    const { service, client: small } = await start({ MAAS_GENERATION_MAX_BATCH_SIZE: '1', MAAS_GENERATION_MAX_QUEUE: '1', MAAS_GENERATION_DEFAULT_MODEL: 'tiny' });
    const ac = new AbortController();
    const long = request('tiny', 'busy', { maxNewTokens: 1000, ignoreEos: true, seed: 2 });
    const results = await Promise.allSettled(
      [0, 1, 2].map(async () => {
        for await (const _ of serverStream(small.generateStream.bind(small), long, { signal: ac.signal })) return 'streaming';
        return 'ended';
      }),
    );
    const refused = results.filter((r) => r.status === 'rejected').map((r) => decodeStatus((r as PromiseRejectedResult).reason));
    expect(refused.length).toBeGreaterThanOrEqual(1);
    for (const s of refused) {
      expect(s.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(s.retryAfterMs).toBeGreaterThan(0);
    }
    ac.abort();
    await waitFor(() => {
      const st = service.generator.list()[0]?.stats;
      return !st || (st.running === 0 && st.waiting === 0);
    }, 20_000);
  });
});

describe('GenerationService validation', () => {
  it.each([
    ['a negative temperature', request('tiny', 'x', { temperature: -1 }), 'parameters.temperature'],
    ['a NaN temperature', request('tiny', 'x', { temperature: Number.NaN }), 'parameters.temperature'],
    ['top_p of 0', request('tiny', 'x', { topP: 0 }), 'parameters.top_p'],
    ['top_p above 1', request('tiny', 'x', { topP: 1.5 }), 'parameters.top_p'],
    ['a huge max_new_tokens', request('tiny', 'x', { maxNewTokens: 100_000_000 }), 'parameters.max_new_tokens'],
    ['max_new_tokens beyond the context', request('bigram', 'x', { maxNewTokens: 300 }), 'parameters.max_new_tokens'],
    ['an empty prompt', request('tiny', ''), 'prompt'],
    ['both prompt and messages', request('tiny', 'x', {}, [{ role: 'user', content: 'y' }]), 'messages'],
    ['a bad role', request('tiny', '', {}, [{ role: 'User!', content: 'y' }]), 'messages[0].role'],
    ['a prompt longer than the context', request('bigram', 'a '.repeat(400)), 'prompt'],
    ['an empty stop sequence', request('tiny', 'x', { stop: [''] }), 'parameters.stop[0]'],
  ])('refuses %s with INVALID_ARGUMENT naming the field', async (_, req, field) => {
    for (const call of [generate(req), stream(req)]) {
      const s = await status(call);
      expect(s.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(s.badRequest?.fieldViolations[0]?.field).toBe(field);
      expect(s.message).toContain(field);
    }
  });

  it('answers NOT_FOUND for an unknown model and FAILED_PRECONDITION for one it cannot drive or of another task', async () => {
    expect((await status(generate(request('nope', 'x')))).code).toBe(grpc.status.NOT_FOUND);
    const adder = await status(generate(request('adder', 'x')));
    expect(adder.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(adder.message).toMatch(/not a decoder/);
    expect((await status(generate(request('ocr-lines', 'x')))).code).toBe(grpc.status.FAILED_PRECONDITION);
  });
});

describe('GenerationService model information', () => {
  it('tokenizes and counts with the model tokenizer', async () => {
    const t = await unary(client.tokenize.bind(client), { model: { name: 'tiny' }, text: 'Hello World', messages: [] });
    expect(t.tokens.map((x) => [x.id, x.text])).toEqual([
      [15496, 'Hello'],
      [2159, 'ĠWorld'],
    ]);
    const c = await unary(client.countTokens.bind(client), { model: { name: '' }, prompt: 'Hello World', messages: [] });
    expect(c).toMatchObject({ inputTokens: 2, contextLength: 1024, maxNewTokens: 1022 });
    expect(c.model?.name).toBe('tiny');
  });

  it('describes a version and lists what is loaded', async () => {
    const { info } = await unary(client.getModelInfo.bind(client), { model: { name: 'tiny' } });
    expect(info).toMatchObject({ contextLength: 1024, vocabSize: 50257, eosTokenIds: [EOS], hasChatTemplate: true, layers: 2, kvHeads: 2, headDim: 16 });
    expect(info?.notes.maas_weights).toBe('synthetic');
    expect(info?.limits?.maxNewTokens).toBe(4096);
    const list = await unary(client.listModels.bind(client), {});
    expect(list.defaultModel).toBe('tiny');
    expect(list.models.map((m) => m.model?.name)).toEqual(expect.arrayContaining(['bigram', 'tiny']));
  });
});
