// The whole mesh (registry, embeddings, generation, vision, gateway: each its own process, started by the
// same code as `maas up`) with small queues, driven through the gateway at several times its capacity:
// the excess is refused at once with RESOURCE_EXHAUSTED and RetryInfo (429 with Retry-After over HTTP), every
// accepted request is answered correctly, memory stays bounded and latency comes back to its idle level.
// Then cancellation: callers that cancel or whose deadline passes free their place, and every in-flight
// count goes back to zero. Load is bounded in time and count; all traffic stays on 127.0.0.1.
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmbeddingServiceClient, EmbedRequest, type EmbedResponse } from '../gen/maas/embeddings/v1/embeddings.js';
import { GenerationServiceClient } from '../gen/maas/generation/v1/generation.js';
import { VisionServiceClient } from '../gen/maas/vision/v1/vision.js';
import { createClient, serverStream, unary } from '../services/runtime/client.js';
import { decodeStatus } from '../services/runtime/grpc-status.js';
import { sentences } from '../services/embeddings/testing/load.js';
import { renderPages } from './fixtures/vision/pages.js';
import { waitFor } from './gateway-support.js';
import { Figures } from './support/resilience/figures.js';
import { drive, median, sequentialLatencies, statusName, type LoadReport, type Outcome } from './support/resilience/load.js';
import { MiB, rssOf, sampleMemory } from './support/resilience/memory.js';
import { scrape } from './support/resilience/metrics.js';
import { startTestMesh, type TestMesh } from './support/resilience/mesh.js';

let mesh: TestMesh;
let gw: string;
const figures = new Figures('load');

beforeAll(async () => {
  mesh = await startTestMesh({
    MAAS_EMBEDDINGS_MAX_QUEUE_INPUTS: '64',
    MAAS_EMBEDDINGS_MAX_BATCH_SIZE: '16',
    MAAS_GENERATION_MAX_BATCH_SIZE: '2',
    MAAS_GENERATION_MAX_QUEUE: '2',
    MAAS_VISION_MAX_CONCURRENT_PAGES: '2',
  });
  gw = mesh.grpc.gateway!;
}, 400_000);

afterAll(async () => {
  await mesh?.stop();
  figures.write();
});

/** A gRPC call's outcome; a RESOURCE_EXHAUSTED without RetryInfo counts as its own (failing) kind. */
async function grpcOutcome(run: () => Promise<string | undefined>): Promise<Outcome> {
  const t0 = performance.now();
  try {
    const wrong = await run();
    return wrong === undefined ? { kind: 'OK', ms: performance.now() - t0 } : { kind: 'WRONG', ms: performance.now() - t0, detail: wrong };
  } catch (err) {
    const ms = performance.now() - t0;
    const e = err as grpc.ServiceError;
    if (typeof e.code !== 'number') return { kind: 'ERROR', ms, detail: String(err) };
    const d = decodeStatus(e);
    if (e.code === grpc.status.RESOURCE_EXHAUSTED && !(d.retryAfterMs !== undefined && d.retryAfterMs > 0))
      return { kind: 'RESOURCE_EXHAUSTED_WITHOUT_RETRYINFO', ms, detail: e.details };
    return { kind: statusName(e.code), ms, detail: e.details };
  }
}

/**
 * Calls again, as a well-behaved client does, while the service answers RESOURCE_EXHAUSTED: the queue of two
 * is shared by the fillers and the callers under test, so a turn of the queue must not decide an outcome.
 */
async function admitted<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      if ((err as grpc.ServiceError).code !== grpc.status.RESOURCE_EXHAUSTED || attempt >= 200) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** An HTTP call's outcome; a 429 without Retry-After counts as its own (failing) kind. */
async function httpOutcome(path: string, body: unknown, check: (json: Record<string, unknown>) => string | undefined): Promise<Outcome> {
  const t0 = performance.now();
  try {
    const res = await fetch(`http://127.0.0.1:${mesh.httpPort}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(60_000),
    });
    const json = (await res.json()) as Record<string, unknown>;
    const ms = performance.now() - t0;
    if (res.status === 200) {
      const wrong = check(json);
      return wrong === undefined ? { kind: 'OK', ms } : { kind: 'WRONG', ms, detail: wrong };
    }
    if (res.status === 429 && !(Number(res.headers.get('retry-after')) >= 1)) return { kind: 'HTTP 429 WITHOUT Retry-After', ms };
    return { kind: `HTTP ${res.status}`, ms, detail: JSON.stringify(json).slice(0, 200) };
  } catch (err) {
    return { kind: 'ERROR', ms: performance.now() - t0, detail: String(err) };
  }
}

interface OverloadPlan {
  service: 'embeddings' | 'generation' | 'vision';
  call: (worker: number, i: number) => Promise<Outcome>;
  workers: number;
  durationMs: number;
  maxRequests: number;
}

/** Idle latency, then the overload with memory sampled, then idle latency again; returns everything measured. */
async function overload(plan: OverloadPlan): Promise<{ report: LoadReport; idleMs: number; afterMs: number; rssBefore: number; rssPeak: number }> {
  const pid = mesh.pid[plan.service]!;
  const idle = await sequentialLatencies(12, () => plan.call(0, 0));
  const rssBefore = rssOf(pid);
  const sampler = sampleMemory([pid]);
  const report = await drive({ workers: plan.workers, durationMs: plan.durationMs, maxRequests: plan.maxRequests, call: plan.call });
  sampler.stop();
  await waitFor(async () => (await scrape(mesh.metricsPort[plan.service]!, 'maas_rpc_server_in_flight')) === 0, 30_000, 'the service to be idle');
  const after = await sequentialLatencies(12, () => plan.call(0, 0));
  return { report, idleMs: median(idle), afterMs: median(after), rssBefore, rssPeak: sampler.peak(pid) };
}

function checkOverload(name: string, r: Awaited<ReturnType<typeof overload>>, rejectedKind: string): void {
  const rejected = r.report.byKind[rejectedKind] ?? 0;
  figures.set(name, {
    sent: r.report.sent,
    byKind: r.report.byKind,
    acceptedMedianMs: Math.round(median(r.report.okMs)),
    rejectedMedianMs: Math.round(median(r.report.rejectedMs)),
    idleMedianMs: Math.round(r.idleMs),
    afterMedianMs: Math.round(r.afterMs),
    rssBeforeMiB: Math.round(r.rssBefore / MiB),
    rssPeakMiB: Math.round(r.rssPeak / MiB),
  });
  // Only correct answers and the expected refusal; nothing failed, nothing answered wrong.
  expect(r.report.failures, name).toEqual([]);
  expect(Object.keys(r.report.byKind).sort(), name).toEqual(['OK', rejectedKind].sort());
  expect(rejected, `${name}: some requests were refused`).toBeGreaterThan(0);
  expect(r.report.byKind.OK ?? 0, `${name}: some requests were served`).toBeGreaterThan(0);
  // Refusals do not wait in a queue: they come back no slower than the requests that were served.
  expect(median(r.report.rejectedMs)).toBeLessThanOrEqual(median(r.report.okMs) + 50);
  // Memory stays bounded: the queues are bounded, so a burst costs at most a little working memory.
  expect(r.rssPeak - r.rssBefore, `${name}: RSS growth under overload`).toBeLessThan(384 * MiB);
  // Back to the idle level after (a behavioural bound, loose for a shared machine).
  expect(r.afterMs, `${name}: median latency after the load`).toBeLessThanOrEqual(5 * r.idleMs + 50);
}

describe('overload through the gateway', () => {
  it('embeddings: refuses the excess with RESOURCE_EXHAUSTED and RetryInfo, serves the rest correctly, recovers', async () => {
    const client = createClient(EmbeddingServiceClient, gw);
    const pool = sentences(64, 7);
    const requests = Array.from({ length: 8 }, (_, k) => pool.slice(k * 8, k * 8 + 8).concat(pool.slice(0, 24)));
    const expected: EmbedResponse[] = [];
    try {
      for (const inputs of requests) expected.push(await unary(client.embed.bind(client), EmbedRequest.fromPartial({ inputs, truncate: true })));
      const call = (w: number, i: number) =>
        grpcOutcome(async () => {
          const k = (w + i) % requests.length;
          const res = await unary(client.embed.bind(client), EmbedRequest.fromPartial({ inputs: requests[k]!, truncate: true }), { deadline: Date.now() + 30_000 });
          const want = expected[k]!.embeddings;
          if (res.embeddings.length !== want.length) return `got ${res.embeddings.length} vectors`;
          for (let j = 0; j < want.length; j++)
            for (let d = 0; d < want[j]!.values.length; d++)
              if (Math.abs(res.embeddings[j]!.values[d]! - want[j]!.values[d]!) > 1e-4) return `vector ${j} differs at ${d}`;
          return undefined;
        });
      checkOverload('embeddings gRPC', await overload({ service: 'embeddings', call, workers: 24, durationMs: 8000, maxRequests: 6000 }), 'RESOURCE_EXHAUSTED');

      const want = expected[0]!.embeddings[0]!.values;
      const httpCall = () =>
        httpOutcome('/v1/embeddings', { model: 'glove-100d', input: requests[0], encoding_format: 'float' }, (json) => {
          const data = json.data as { embedding: number[] }[];
          return data.length === requests[0]!.length && data[0]!.embedding.every((v, d) => Math.abs(v - want[d]!) < 1e-4) ? undefined : 'wrong vectors';
        });
      checkOverload('embeddings HTTP', await overload({ service: 'embeddings', call: httpCall, workers: 24, durationMs: 6000, maxRequests: 4000 }), 'HTTP 429');
    } finally {
      client.close();
    }
  });

  it('generation: refuses the excess with RESOURCE_EXHAUSTED and RetryInfo, serves the rest correctly, recovers', async () => {
    const client = createClient(GenerationServiceClient, gw);
    const prompts = ['In the beginning', 'And God said', 'The LORD is my shepherd', 'Blessed are the'];
    const req = (k: number) => ({ model: { name: 'gpt2-mini' }, prompt: prompts[k]!, messages: [], parameters: { maxNewTokens: 24, temperature: 0, stop: [], ignoreEos: true } });
    try {
      const expected: string[] = [];
      for (let k = 0; k < prompts.length; k++) expected.push((await unary(client.generate.bind(client), req(k))).text);
      const call = (w: number, i: number) =>
        grpcOutcome(async () => {
          const k = (w + i) % prompts.length;
          const res = await unary(client.generate.bind(client), req(k), { deadline: Date.now() + 60_000 });
          return res.text === expected[k] ? undefined : `text ${JSON.stringify(res.text)} != ${JSON.stringify(expected[k])}`;
        });
      checkOverload('generation gRPC', await overload({ service: 'generation', call, workers: 12, durationMs: 8000, maxRequests: 2000 }), 'RESOURCE_EXHAUSTED');

      const httpCall = () =>
        httpOutcome('/v1/completions', { model: 'gpt2-mini', prompt: prompts[0], max_tokens: 24, temperature: 0 }, (json) => {
          const choices = json.choices as { text: string }[];
          return typeof choices[0]?.text === 'string' && choices[0].text.length > 0 ? undefined : `no text: ${JSON.stringify(json).slice(0, 100)}`;
        });
      checkOverload('generation HTTP', await overload({ service: 'generation', call: httpCall, workers: 12, durationMs: 6000, maxRequests: 1500 }), 'HTTP 429');
    } finally {
      client.close();
    }
  });

  it('vision: refuses the excess with RESOURCE_EXHAUSTED and RetryInfo, serves the rest correctly, recovers', async () => {
    const client = createClient(VisionServiceClient, gw);
    const [page] = await renderPages(['sans-plain']);
    const req = { image: page!.bytes, model: undefined, options: undefined };
    try {
      const reference = await unary(client.recognizeText.bind(client), req as never);
      const text = (r: typeof reference) => JSON.stringify((r as unknown as { lines: { text: string }[] }).lines.map((l) => l.text));
      expect(text(reference)).toContain('quick brown fox');
      const call = () =>
        grpcOutcome(async () => {
          const res = await unary(client.recognizeText.bind(client), req as never, { deadline: Date.now() + 60_000 });
          return text(res) === text(reference) ? undefined : `lines ${text(res)}`;
        });
      checkOverload('vision gRPC', await overload({ service: 'vision', call, workers: 8, durationMs: 8000, maxRequests: 1000 }), 'RESOURCE_EXHAUSTED');
    } finally {
      client.close();
    }
  });
});

describe('cancellation through the gateway', () => {
  const genMetric = (name: string) => scrape(mesh.metricsPort.generation!, name, { model: 'gpt2-mini' });
  const MAX_NEW = 250; // the model holds 256 tokens
  const long = (prompt: string, maxNewTokens = MAX_NEW) => ({ model: { name: 'gpt2-mini' }, prompt, messages: [], parameters: { maxNewTokens, stop: [], ignoreEos: true } });

  it('stops a cancelled generation stream long before its end, and its sequence leaves the batch', async () => {
    const client = createClient(GenerationServiceClient, gw);
    const cancelledRequests = async () => (await scrape(mesh.metricsPort.generation!, 'maas_generation_requests_total', { model: 'gpt2-mini', reason: 'cancelled' })) || 0;
    try {
      // A counter shows once something counted (NaN before).
      const before = (await genMetric('maas_generation_output_tokens_total')) || 0;
      const cancelledBefore = await cancelledRequests();
      const cancel = new AbortController();
      let seen = 0;
      let code = 'OK';
      try {
        for await (const m of serverStream(client.generateStream.bind(client), long('In the beginning'), { signal: cancel.signal })) {
          seen += (m as { tokenIds?: number[] }).tokenIds?.length ?? 1;
          if (seen >= 5) cancel.abort();
        }
      } catch (err) {
        code = statusName((err as grpc.ServiceError).code);
      }
      expect(code, 'the caller sees its own cancel').toBe('CANCELLED');
      await waitFor(async () => (await genMetric('maas_generation_sequences_running')) === 0, 10_000, 'the sequence to leave the batch');
      const produced = (await genMetric('maas_generation_output_tokens_total')) - before;
      figures.set('cancelled stream', { tokensSeenByCaller: seen, tokensProducedByService: produced, maxNewTokens: MAX_NEW });
      expect((await cancelledRequests()) - cancelledBefore, 'the service ended the sequence as cancelled').toBe(1);
      // Tokens made before the cancel reached the service were on the wire (how many depends on the path's
      // latency: a decode lane does not wait for the caller); after it, at most the step then running (the
      // service's own tests check that). Either way it stopped long before max_new_tokens.
      expect(produced).toBeLessThan(MAX_NEW);
    } finally {
      client.close();
    }
  });

  it('ends requests whose deadlines pass while queued or running, and every in-flight count returns to zero', async () => {
    const client = createClient(GenerationServiceClient, gw);
    try {
      const tokens0 = await genMetric('maas_generation_output_tokens_total');
      const finished0 = await genMetric('maas_generation_requests_total');
      // Two callers keep the batch of two full with long streams, one after the other.
      let filling = true;
      let fills = 0;
      const fillers = [0, 1].map(async (k) => {
        for (let i = 0; filling && i < 50; i++) {
          let n = 0;
          await admitted(async () => {
            n = 0;
            for await (const m of serverStream(client.generateStream.bind(client), long(`Fill ${k}`), { deadline: Date.now() + 60_000 })) n += (m as { tokenIds?: number[] }).tokenIds?.length ?? 0;
          });
          expect(n).toBe(MAX_NEW);
          fills++;
        }
      });
      await waitFor(async () => (await genMetric('maas_generation_sequences_running')) === 2, 20_000, 'the batch to be full');
      // Callers with short deadlines: each waits in the queue or starts decoding, and its deadline ends it.
      const outcomes: Record<string, number> = {};
      const EXPIRING = 12;
      for (let i = 0; i < EXPIRING; i++) {
        const code = await admitted(() => unary(client.generate.bind(client), long(`Hurry ${i}`), { deadline: Date.now() + 150 })).then(
          () => 'OK',
          (e: grpc.ServiceError) => statusName(e.code),
        );
        outcomes[code] = (outcomes[code] ?? 0) + 1;
      }
      // And callers that cancel.
      for (let i = 0; i < 4; i++) {
        const cancel = new AbortController();
        const call = admitted(() => unary(client.generate.bind(client), long(`Give up ${i}`), { signal: cancel.signal })).then(
          () => 'OK',
          (e: grpc.ServiceError) => statusName(e.code),
        );
        setTimeout(() => cancel.abort(), 100);
        const code = await call;
        outcomes[code] = (outcomes[code] ?? 0) + 1;
      }
      filling = false;
      await Promise.all(fillers);
      await waitFor(
        async () =>
          (await genMetric('maas_generation_sequences_running')) === 0 &&
          (await genMetric('maas_generation_sequences_waiting')) === 0 &&
          (await scrape(mesh.metricsPort.generation!, 'maas_rpc_server_in_flight')) === 0,
        15_000,
        'in-flight counts to return to zero',
      );
      const finished = (await genMetric('maas_generation_requests_total')) - finished0;
      const wastedTokens = (await genMetric('maas_generation_output_tokens_total')) - tokens0 - fills * MAX_NEW;
      figures.set('expired and cancelled callers', { outcomes, fills, finished, tokensSpentOnGivenUpCallers: wastedTokens, maxNewTokens: MAX_NEW });
      expect(outcomes).toEqual({ DEADLINE_EXCEEDED: EXPIRING, CANCELLED: 4 });
      // Every request that reached the service ended (none left behind), and the given-up callers cost little decoding.
      expect(finished).toBeLessThanOrEqual(fills + EXPIRING + 4);
      expect(wastedTokens).toBeLessThan(((EXPIRING + 4) * MAX_NEW) / 2);
    } finally {
      client.close();
    }
  });

  it('drops queued embedding inputs whose callers give up before their batch runs', async () => {
    const client = createClient(EmbeddingServiceClient, gw);
    const port = mesh.metricsPort.embeddings!;
    const dropped = async () => {
      const n = await scrape(port, 'maas_batch_dropped_entries_total');
      return Number.isNaN(n) ? 0 : n;
    };
    const pool = sentences(16, 11);
    try {
      const before = await dropped();
      // Three steady loaders keep about three batches queued (48 of the 64 queue places), so an impatient
      // caller's 8 inputs are always admitted and wait behind them. Its deadline is a third of the loaders'
      // measured latency, so it passes while the inputs still wait, on a fast machine or a slow one.
      let busy = true;
      const latencies: number[] = [];
      const loaders = Array.from({ length: 3 }, async () => {
        for (let i = 0; busy && i < 4000; i++) {
          const t0 = performance.now();
          const ok = await unary(client.embed.bind(client), EmbedRequest.fromPartial({ inputs: pool, truncate: true }), { deadline: Date.now() + 30_000 }).then(
            () => true,
            () => false,
          );
          if (ok) latencies.push(performance.now() - t0);
        }
      });
      await waitFor(async () => latencies.length >= 12, 60_000, 'the loaders to be answered');
      const outcomes: Record<string, number> = {};
      for (let i = 0; i < 200 && (await dropped()) === before; i++) {
        const patience = Math.max(2, median(latencies.slice(-12)) / 3);
        const code = await unary(client.embed.bind(client), EmbedRequest.fromPartial({ inputs: pool.slice(0, 8), truncate: true }), { deadline: Date.now() + patience }).then(
          () => 'OK',
          (e: grpc.ServiceError) => statusName(e.code),
        );
        outcomes[code] = (outcomes[code] ?? 0) + 1;
      }
      busy = false;
      await Promise.all(loaders);
      await waitFor(async () => (await scrape(port, 'maas_rpc_server_in_flight')) === 0, 30_000, 'embeddings to be idle');
      const droppedEntries = (await dropped()) - before;
      figures.set('impatient embedding callers', { outcomes, droppedQueuedInputs: droppedEntries });
      expect(droppedEntries).toBeGreaterThan(0);
      expect(Object.keys(outcomes).filter((k) => !['OK', 'DEADLINE_EXCEEDED', 'RESOURCE_EXHAUSTED'].includes(k))).toEqual([]);
    } finally {
      client.close();
    }
  });

  it('leaves no call in flight anywhere in the mesh after the load and the cancellations', async () => {
    const counts: Record<string, number> = {};
    for (const name of ['gateway', 'embeddings', 'generation', 'vision']) counts[name] = await scrape(mesh.metricsPort[name]!, 'maas_rpc_server_in_flight');
    for (const name of ['registry', 'gateway', 'embeddings', 'generation', 'vision']) expect(mesh.proc[name]!.child.exitCode, name).toBeNull();
    expect(counts).toEqual({ gateway: 0, embeddings: 0, generation: 0, vision: 0 });
  });
});
