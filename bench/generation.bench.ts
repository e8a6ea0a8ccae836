// Generation on the default model (gpt2-mini: GPT-2 architecture, 4 layers, 128 wide, the real 50,257-token
// vocabulary), the service as its own process with its default settings, clients in this process:
//   - decode throughput: tokens/s of 1 stream and aggregate tokens/s of 16 concurrent streams (goal ≥ 5×),
//     greedy and with sampling (temperature 0.8, top-p 0.95);
//   - time per token at position ~500 against position ~10 in one stream (goal ≤ 1.5×: the KV cache keeps a step
//     from recomputing the sequence);
//   - time to first token while 16 streams decode, against an idle service.
// Every figure is the median of a few repetitions, measured side by side in one run.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launch, type Launched } from '../cli/launch.js';
import { GenerationServiceClient, type GenerateRequest, type GenerationParameters } from '../gen/maas/generation/v1/generation.js';
import { buildGpt2Mini } from '../services/generation/defaults/gpt2-mini.js';
import { sharedCacheDir } from '../services/generation/testing/model-folder.js';
import { createClient, serverStream, waitForReady } from '../services/runtime/client.js';
import type { BenchResult } from './types.js';

const STREAM_TOKENS = 128;
const CONCURRENT = 16;
const REPEATS = 3;
const GREEDY: Partial<GenerationParameters> = { temperature: 0 };
const SAMPLED: Partial<GenerationParameters> = { temperature: 0.8, topP: 0.95 };

export default async function bench(): Promise<BenchResult[]> {
  const built = await buildGpt2Mini(sharedCacheDir());
  const root = mkdtempSync(join(tmpdir(), 'maas-generation-bench-'));
  mkdirSync(join(root, 'gpt2-mini'));
  writeFileSync(join(root, 'gpt2-mini', 'model.json'), JSON.stringify({ task: 'generation', aliases: { default: 1 } }));
  symlinkSync(built.dir, join(root, 'gpt2-mini', '1'), 'dir');
  let service: Launched | undefined;
  let client: GenerationServiceClient | undefined;
  try {
    service = launch('generation', 'services/generation/main.ts', {
      env: { MAAS_PORT: '0', MAAS_METRICS_ENABLED: 'false', MAAS_GENERATION_MODEL_DIR: root, OTEL_SDK_DISABLED: 'true' },
    });
    client = createClient(GenerationServiceClient, `127.0.0.1:${await service.port}`);
    await waitForReady(client, 10_000);
    const c = client;
    // Warm up (first runs allocate buffers and JIT the sampler).
    await Promise.all(Array.from({ length: CONCURRENT }, (_, i) => run(c, request(`warm up ${i}`, { ...SAMPLED, maxNewTokens: 32, seed: i }))));

    const results: BenchResult[] = [];
    for (const [label, params] of [
      ['greedy', GREEDY],
      ['sampled (T 0.8, top-p 0.95)', SAMPLED],
    ] as const) {
      const one = median(await repeat(() => throughput(c, 1, params)));
      const many = median(await repeat(() => throughput(c, CONCURRENT, params)));
      results.push(
        { group: 'generation', name: `tokens/s, 1 stream, ${label}`, value: one, unit: 'tokens/s', note: `${STREAM_TOKENS} tokens` },
        { group: 'generation', name: `tokens/s, ${CONCURRENT} streams, ${label}`, value: many, unit: 'tokens/s', note: `aggregate, ${STREAM_TOKENS} tokens each` },
        { group: 'generation', name: `${CONCURRENT} streams / 1 stream, ${label}`, value: many / one, unit: 'x', note: 'goal ≥ 5x' },
      );
    }

    const positions = await repeat(() => timePerTokenByPosition(c));
    const early = median(positions.map((p) => p.early));
    const late = median(positions.map((p) => p.late));
    results.push(
      { group: 'generation', name: 'time per token at position ~10, 1 stream', value: early, unit: 'ms' },
      { group: 'generation', name: 'time per token at position ~500, 1 stream', value: late, unit: 'ms' },
      { group: 'generation', name: 'position 500 / position 10', value: late / early, unit: 'x', note: 'goal ≤ 1.5x' },
    );

    const idle = median(await ttftSamples(c, 5));
    const busy = await underLoad(c, () => ttftSamples(c, 5));
    results.push(
      { group: 'generation', name: 'time to first token, idle', value: idle, unit: 'ms', note: 'prompt of 8 tokens' },
      { group: 'generation', name: `time to first token, ${CONCURRENT} streams decoding`, value: median(busy), unit: 'ms' },
      { group: 'generation', name: `time to first token, ${CONCURRENT} streams / idle`, value: median(busy) / idle, unit: 'x' },
    );
    return results;
  } finally {
    client?.close();
    await service?.stop();
    rmSync(root, { recursive: true, force: true });
  }
}

function request(prompt: string, parameters: Partial<GenerationParameters>): GenerateRequest {
  return { model: { name: '' }, prompt, messages: [], parameters: { stop: [], ignoreEos: true, ...parameters } };
}

/** Streams one request; returns arrival times (ms, performance.now) of each message and the token count. */
async function run(client: GenerationServiceClient, req: GenerateRequest): Promise<{ start: number; arrivals: number[]; tokens: number[] }> {
  const start = performance.now();
  const arrivals: number[] = [];
  const tokens: number[] = [];
  for await (const m of serverStream(client.generateStream.bind(client), req)) {
    if (m.tokenIds.length === 0) continue;
    arrivals.push(performance.now());
    tokens.push(m.tokenIds.length);
  }
  return { start, arrivals, tokens };
}

/** Aggregate decode tokens/s of n streams started together (first token to last, over all streams). */
async function throughput(client: GenerationServiceClient, n: number, params: Partial<GenerationParameters>): Promise<number> {
  const runs = await Promise.all(
    Array.from({ length: n }, (_, i) => run(client, request(`Stream ${i} says: once upon a time`, { ...params, maxNewTokens: STREAM_TOKENS, seed: 100 + i }))),
  );
  const first = Math.min(...runs.map((r) => r.arrivals[0]!));
  const last = Math.max(...runs.map((r) => r.arrivals[r.arrivals.length - 1]!));
  // Tokens after each stream's first: the first token is the prefill's.
  const tokens = runs.reduce((s, r) => s + r.tokens.reduce((a, b) => a + b, 0) - 1, 0);
  return (tokens * 1000) / (last - first);
}

/** Median inter-token time of one stream around positions 10 and 500 (prompt of 5 tokens). */
async function timePerTokenByPosition(client: GenerationServiceClient): Promise<{ early: number; late: number }> {
  const prompt = 'One two three four five';
  const r = await run(client, request(prompt, { ...GREEDY, maxNewTokens: 520 }));
  // arrivals[k] is token k (position 5 + k); gaps[k] = time of token k - token k-1.
  const gap = (k: number) => r.arrivals[k]! - r.arrivals[k - 1]!;
  const window = (from: number, to: number) => median(Array.from({ length: to - from }, (_, i) => gap(from + i)));
  return { early: window(5, 25), late: window(485, 505) };
}

async function ttftSamples(client: GenerationServiceClient, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = await run(client, request('How long until the first token?', { ...GREEDY, maxNewTokens: 2 }));
    out.push(r.arrivals[0]! - r.start);
  }
  return out;
}

/** Runs `measure` while CONCURRENT long streams decode. */
async function underLoad<T>(client: GenerationServiceClient, measure: () => Promise<T>): Promise<T> {
  const ac = new AbortController();
  let started = 0;
  const background = Array.from({ length: CONCURRENT }, async (_, i) => {
    try {
      for await (const _m of serverStream(client.generateStream.bind(client), request(`Background ${i}`, { ...SAMPLED, maxNewTokens: 900, seed: i }), { signal: ac.signal })) {
        if (_m.tokenIds.length > 0 && _m.model) started++;
      }
    } catch {
      /* cancelled when the measurement is done */
    }
  });
  while (started < CONCURRENT) await new Promise((r) => setTimeout(r, 10));
  try {
    return await measure();
  } finally {
    ac.abort();
    await Promise.all(background);
  }
}

async function repeat<T>(fn: () => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < REPEATS; i++) out.push(await fn());
  return out;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

