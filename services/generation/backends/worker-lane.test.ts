import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../../runtime/config.js';
import { FailedPreconditionError, UnavailableError } from '../../runtime/errors.js';
import { silentLogger } from '../../runtime/logger.js';
import { engineLimits, spec } from '../config.js';
import type { GenerationModel } from '../domain/engine.js';
import { LaneLoop, type Lane, type LaneEvent, type LaneJoin } from '../domain/lane.js';
import type { SamplingParameters } from '../domain/params.js';
import { FinishReason } from '../domain/types.js';
import { buildTiny } from '../testing/model-folder.js';
import { laneCount, loadGenerationModel } from './model-loader.js';
import { OnnxDecoder } from './onnx-decoder.js';
import { WorkerLane } from './worker-lane.js';

const SESSION = { executionProviders: ['cpu'], intraOpThreads: 1, interOpThreads: 1 };
const HINTS = { maxPositions: 1024 };
const OPTIONS = { eosIds: [50256], maxLogprobs: 5 };
let model: string;
/** How a worker lane of `path` (the tiny model by default) is started. */
const init = (path = model) => ({ model: path, settings: SESSION, hints: HINTS, options: OPTIONS, niceness: 5 });
let local: LaneLoop;
let lane: WorkerLane;

/** Every event a lane sends, and a wait for a condition on them. */
function record(l: Lane) {
  const events: LaneEvent[] = [];
  let check: (() => void) | undefined;
  l.listen((e) => {
    events.push(e);
    check?.();
  });
  const until = (done: (events: LaneEvent[]) => boolean) =>
    new Promise<void>((resolve) => {
      check = () => done(events) && resolve();
      check();
    });
  return { events, until };
}

/** The tokens each sequence got, in order, and how each ended (finish reason, 'left' or 'failed'). */
function outcome(events: LaneEvent[]) {
  const tokens = new Map<number, number[]>();
  const ends = new Map<number, string>();
  const add = (s: { id: number; token: number; finish?: string }) => {
    tokens.set(s.id, [...(tokens.get(s.id) ?? []), s.token]);
    if (s.finish) ends.set(s.id, s.finish);
  };
  for (const e of events) {
    if (e.kind === 'prefill') add(e.sampled);
    else if (e.kind === 'step') e.sampled.forEach(add);
    else if (e.kind === 'left') ends.set(e.id, 'left');
    else for (const id of e.ids) ends.set(id, 'failed');
  }
  return { tokens, ends };
}

const params = (over: Partial<SamplingParameters> = {}): SamplingParameters => ({
  maxNewTokens: 6,
  temperature: 0,
  topK: 0,
  topP: 1,
  repetitionPenalty: 1,
  presencePenalty: 0,
  frequencyPenalty: 0,
  seed: 7n,
  stop: [],
  logprobs: undefined,
  ignoreEos: true,
  ...over,
});

const JOINS: LaneJoin[] = [
  { id: 1, promptTokens: [15496, 995], params: params() },
  { id: 2, promptTokens: [464, 3290, 318, 257, 1332, 286, 262], params: params({ temperature: 0.9, topP: 0.9, seed: 3n, maxNewTokens: 9, logprobs: 2 }) },
  { id: 3, promptTokens: [40], params: params({ maxNewTokens: 3, repetitionPenalty: 1.3 }) },
];

beforeAll(async () => {
  model = join((await buildTiny()).dir, 'model.onnx');
  local = new LaneLoop(await OnnxDecoder.create(model, SESSION, HINTS), OPTIONS);
  lane = await WorkerLane.create(init());
});
afterAll(async () => {
  await local?.close();
  await lane?.close();
});

describe('a lane', () => {
  it('on a worker thread has the shape of the same model loaded on this thread', () => {
    expect(lane.shape).toEqual(local.shape);
    expect(lane.executionProvider).toBe('cpu');
  });

  it.runIf(process.platform === 'linux')('on a worker thread runs that thread (and only it) at a lower priority than the main thread', () => {
    expect(lane.nicenessRefused).toBeUndefined();
    // Field 19 of /proc/<pid>/task/<tid>/stat is the thread's niceness.
    const niceness = (tid: string) => {
      const stat = readFileSync(`/proc/${process.pid}/task/${tid}/stat`, 'utf8');
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
    };
    const main = niceness(String(process.pid));
    const threads = readdirSync(`/proc/${process.pid}/task`).map(niceness);
    expect(threads.filter((n) => n === main + 5).length).toBeGreaterThanOrEqual(1);
    expect(threads.filter((n) => n === main).length).toBeGreaterThan(1);
  });

  it('on a worker thread samples the same tokens as on this thread, for sequences of different lengths and parameters in one batch', async () => {
    const results = [];
    for (const l of [local, lane] as Lane[]) {
      const r = record(l);
      for (const j of JOINS) l.join(j);
      await r.until((ev) => outcome(ev).ends.size === JOINS.length);
      results.push(outcome(r.events));
    }
    const [here, there] = results;
    expect([...there!.tokens]).toEqual([...here!.tokens]);
    expect([...here!.ends].sort()).toEqual([
      [1, FinishReason.LENGTH],
      [2, FinishReason.LENGTH],
      [3, FinishReason.LENGTH],
    ]);
    expect(JOINS.map((j) => here!.tokens.get(j.id)!.length)).toEqual(JOINS.map((j) => j.params.maxNewTokens));
  });

  it('on a worker thread says how far its decoder amended the graph, and samples the same tokens with the graph as exported', async () => {
    expect(lane.graph).toBe('split-attention');
    const exported = await WorkerLane.create({ ...init(), graph: 'as-exported' });
    try {
      expect(exported.graph).toBe('as-exported');
      const results = [];
      for (const l of [lane, exported]) {
        const r = record(l);
        for (const j of JOINS) l.join({ ...j, id: j.id + 20 });
        await r.until((ev) => outcome(ev).ends.size === JOINS.length);
        results.push(outcome(r.events).tokens);
      }
      expect([...results[1]!]).toEqual([...results[0]!]);
    } finally {
      await exported.close();
    }
  });

  it('samples what one sequence alone gets when it shares the batch', async () => {
    const r = record(local);
    local.join({ ...JOINS[1]!, id: 10 });
    await r.until((ev) => outcome(ev).ends.has(10));
    const alone = outcome(r.events).tokens.get(10);
    const shared = record(local);
    for (const j of JOINS) local.join({ ...j, id: j.id + 10 });
    await shared.until((ev) => outcome(ev).ends.size === JOINS.length);
    expect(outcome(shared.events).tokens.get(12)).toEqual(alone);
  });

  it('ends a sequence at its end-of-sequence token unless told to ignore it', async () => {
    // The tiny model's greedy continuation is fixed; take its first token as the "end of sequence".
    const probe = record(local);
    local.join({ id: 20, promptTokens: [40], params: params({ maxNewTokens: 1 }) });
    await probe.until((ev) => outcome(ev).ends.has(20));
    const first = outcome(probe.events).tokens.get(20)![0]!;
    const eosLane = new LaneLoop(await OnnxDecoder.create(model, SESSION, HINTS), { ...OPTIONS, eosIds: [first] });
    try {
      const r = record(eosLane);
      eosLane.join({ id: 1, promptTokens: [40], params: params({ ignoreEos: false }) });
      eosLane.join({ id: 2, promptTokens: [40], params: params({ ignoreEos: true, maxNewTokens: 2 }) });
      await r.until((ev) => outcome(ev).ends.size === 2);
      const { tokens, ends } = outcome(r.events);
      expect(tokens.get(1)).toEqual([first]);
      expect(ends.get(1)).toBe(FinishReason.EOS);
      expect(ends.get(2)).toBe(FinishReason.LENGTH);
    } finally {
      await eosLane.close();
    }
  });

  it('drops a sequence asked to leave before its next step, and reports it once', async () => {
    for (const l of [local, lane] as Lane[]) {
      const r = record(l);
      l.join({ id: 30, promptTokens: [1, 2, 3], params: params({ maxNewTokens: 200 }) });
      l.join({ id: 31, promptTokens: [4, 5], params: params({ maxNewTokens: 200 }) });
      await r.until((ev) => (outcome(ev).tokens.get(30)?.length ?? 0) >= 3);
      l.leave(30);
      l.leave(31);
      l.leave(31);
      await r.until((ev) => outcome(ev).ends.size === 2);
      const left = r.events.filter((e) => e.kind === 'left');
      expect(left.map((e) => e.id).sort()).toEqual([30, 31]);
      for (const e of left) expect(e.stepsAfter).toBeLessThanOrEqual(1);
      // Nothing after it left.
      const at = r.events.findIndex((e) => e.kind === 'left' && e.id === 30);
      expect(outcome(r.events.slice(at)).tokens.has(30)).toBe(false);
    }
  });

  it('starts its loop on a later turn, so a poll that reads the lane being constructed finds it', async () => {
    // A worker's poll hands joins to `lane`; one already waiting when the lane is built must not meet it
    // uninitialized (it once killed the worker: ReferenceError, the lane's sequences UNAVAILABLE).
    const polled: number[] = [];
    const early = new LaneLoop(await OnnxDecoder.create(model, SESSION, HINTS), { ...OPTIONS, poll: () => void polled.push(early.shape.vocabSize) });
    const r = record(early);
    early.join({ id: 1, promptTokens: [1, 2], params: params({ maxNewTokens: 2 }) });
    await r.until((ev) => outcome(ev).ends.has(1));
    expect(polled[0]).toBe(local.shape.vocabSize);
    await early.close();
    // Without the later turn the loop dies at once and the sequence never ends: fail within 10 s, not hang.
  }, 10_000);

  it('drops a sequence asked to leave before its prefill without running it', async () => {
    const r = record(local);
    local.join({ id: 40, promptTokens: [1, 2, 3], params: params() });
    local.leave(40);
    await r.until((ev) => outcome(ev).ends.has(40));
    expect(r.events).toEqual([{ kind: 'left', id: 40, stepsAfter: 0 }]);
  });

  it('on a worker thread fails to start with the reason when the model cannot be loaded or driven', async () => {
    await expect(WorkerLane.create(init(join(model, '..', 'missing.onnx')))).rejects.toThrow(/decode lane: .*missing\.onnx/);
    // A graph that is no decoder keeps its FailedPreconditionError (and so FAILED_PRECONDITION) across the thread.
    const { GraphBuilder, DataType } = await import('../defaults/onnx-graph.js');
    const g = new GraphBuilder('adder');
    g.input('x', DataType.FLOAT, ['batch', 4]);
    g.output('y', DataType.FLOAT, ['batch', 4]);
    g.op1('Add', ['x', g.float('one', [4], new Float32Array(4).fill(1))], {}, 'y');
    const dir = mkdtempSync(join(tmpdir(), 'maas-lane-'));
    try {
      writeFileSync(join(dir, 'adder.onnx'), g.serialize(17));
      const err = await WorkerLane.create(init(join(dir, 'adder.onnx'))).catch((e) => e);
      expect(err).toBeInstanceOf(FailedPreconditionError);
      expect((err as FailedPreconditionError).message).toMatch(/input_ids is missing/);
      expect((err as FailedPreconditionError).violations.length).toBeGreaterThan(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('on a worker thread fails its sequences with UNAVAILABLE when the worker dies, and those that join while a new worker starts; later ones run on it', async () => {
    const dying = await WorkerLane.create(init());
    const r = record(dying);
    // The sequence joins a worker already being stopped (while idle: a worker stopped in the middle of an
    // onnxruntime call takes the process down, as a crashing thread would), so it is in flight when it exits.
    const ending = dying.kill();
    dying.join({ id: 1, promptTokens: [1, 2, 3], params: params() });
    await ending;
    await r.until((ev) => outcome(ev).ends.get(1) === 'failed');
    const failed = r.events.find((e) => e.kind === 'failed')!;
    expect(failed.kind === 'failed' && failed.error).toBeInstanceOf(UnavailableError);
    // Right after the death (this runs before the new worker can have reported ready) the lane is not usable.
    expect(dying.usable).toBe(false);
    dying.join({ id: 2, promptTokens: [1], params: params() });
    await r.until((ev) => outcome(ev).ends.get(2) === 'failed');
    await expect.poll(() => dying.usable, { timeout: 60_000 }).toBe(true);
    dying.join({ id: 3, promptTokens: [1, 2, 3], params: params({ maxNewTokens: 4 }) });
    await r.until((ev) => outcome(ev).ends.has(3));
    expect(outcome(r.events).ends.get(3)).toBe('length');
    expect(outcome(r.events).tokens.get(3)).toHaveLength(4);
    await dying.close();
  });

  it('closes while its rows are stepping: the step running ends first, and nothing comes after', async () => {
    // Closing a worker in the middle of an onnxruntime run would take the process down; close() waits for it.
    const busy = [new LaneLoop(await OnnxDecoder.create(model, SESSION, HINTS), OPTIONS), await WorkerLane.create(init())];
    for (const l of busy as Lane[]) {
      const r = record(l);
      for (let id = 1; id <= 4; id++) l.join({ id, promptTokens: [1, 2, id], params: params({ maxNewTokens: 100_000 }) });
      await r.until((ev) => ev.filter((e) => e.kind === 'step').length >= 3);
      await l.close();
      const seen = r.events.length;
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(r.events.length).toBe(seen);
    }
  });

  it('on a worker thread answers UNAVAILABLE once closed', async () => {
    const closing = await WorkerLane.create(init());
    await closing.close();
    const r = record(closing);
    closing.join({ id: 1, promptTokens: [1], params: params() });
    await r.until((ev) => ev.length > 0);
    expect(r.events[0]).toMatchObject({ kind: 'failed', ids: [1] });
    expect((r.events[0] as { error: unknown }).error).toBeInstanceOf(UnavailableError);
  });
});

describe('a model with two lanes', () => {
  /** The tokens of one greedy request, run to its end. */
  async function tokens(model: GenerationModel, prompt: string): Promise<number[]> {
    const prepared = model.prepare({ prompt }, { temperature: 0, maxNewTokens: 8, ignoreEos: true });
    const out: number[] = [];
    for await (const c of model.generate(prepared, new AbortController().signal)) out.push(...c.tokenIds);
    return out;
  }

  it('stops placing sequences on a lane whose worker died, serves every request on the lanes left, and starts a new worker for it', async () => {
    const dir = join(model, '..');
    const loaded = await loadGenerationModel(dir, { session: SESSION, decodeLanes: 2, limits: engineLimits(loadConfig(spec, {})), log: silentLogger, name: 'tiny', version: 1 });
    try {
      const prompts = ['Hello there', 'The quick brown fox', 'A', 'One two three'];
      const alone = [];
      for (const p of prompts) alone.push(await tokens(loaded.model, p));
      expect(await Promise.all(prompts.map((p) => tokens(loaded.model, p)))).toEqual(alone);
      expect(loaded.model.stats()).toMatchObject({ lanes: 2, mostLanesInStep: 2 });
      const lane = (loaded.model as unknown as { lanes: WorkerLane[] }).lanes[1]!;
      await lane.kill();
      expect(lane.usable).toBe(false);
      expect(await Promise.all(prompts.map((p) => tokens(loaded.model, p)))).toEqual(alone);
      // The lane comes back with a new worker, and both lanes step again.
      await expect.poll(() => lane.usable, { timeout: 60_000 }).toBe(true);
      expect(await Promise.all(prompts.map((p) => tokens(loaded.model, p)))).toEqual(alone);
      expect(loaded.model.stats()).toMatchObject({ lanes: 2, mostLanesInStep: 2 });
    } finally {
      await loaded.model.close();
    }
  });

});

describe('loading a model with several lanes on the CPU', () => {
  const limits = () => engineLimits(loadConfig(spec, {}));

  /** The tiny model's folder with its config.json's vocab_size set (or removed, for undefined). */
  function variant(vocabSize: number | undefined): string {
    const from = join(model, '..');
    const dir = mkdtempSync(join(tmpdir(), 'maas-lanes-vocab-'));
    for (const f of readdirSync(from)) if (f !== 'config.json') symlinkSync(join(from, f), join(dir, f));
    const config = JSON.parse(readFileSync(join(from, 'config.json'), 'utf8')) as Record<string, unknown>;
    if (vocabSize === undefined) delete config.vocab_size;
    else config.vocab_size = vocabSize;
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    return dir;
  }

  it('builds no session on this thread when the vocabulary is known beforehand, and one to find it otherwise', async () => {
    // vocab_size as the graph has it; absent; smaller than the tokenizer's (wrong); larger than the graph's.
    const cases: [number | undefined, number][] = [
      [50257, 0],
      [undefined, 1],
      [40000, 1],
      [60000, 0],
    ];
    const create = vi.spyOn(OnnxDecoder, 'create');
    const outputs = [];
    try {
      for (const [vocab, sessionsHere] of cases) {
        const dir = variant(vocab);
        create.mockClear();
        const loaded = await loadGenerationModel(dir, { session: SESSION, decodeLanes: 2, limits: limits(), log: silentLogger, name: 'tiny', version: 1 });
        try {
          expect([vocab, create.mock.calls.length]).toEqual([vocab, sessionsHere]);
          expect(loaded.model.stats()).toMatchObject({ lanes: 2 });
          const prepared = loaded.model.prepare({ prompt: 'Hello there' }, { temperature: 0, maxNewTokens: 6, ignoreEos: true });
          const out: number[] = [];
          for await (const c of loaded.model.generate(prepared, new AbortController().signal)) out.push(...c.tokenIds);
          outputs.push(out);
        } finally {
          await loaded.model.close();
          rmSync(dir, { recursive: true, force: true });
        }
      }
    } finally {
      create.mockRestore();
    }
    expect(new Set(outputs.map((o) => o.join()))).toHaveLength(1);
    expect(outputs[0]).toHaveLength(6);
  });
});

describe('laneCount', () => {
  it('takes a set count as it is, and for 0 one lane per core (at most 4) on cpu, one on other providers', () => {
    expect(laneCount(3, 'cuda')).toBe(3);
    expect(laneCount(0, 'cuda')).toBe(1);
    expect(laneCount(0, 'cpu')).toBe(Math.min(4, availableParallelism()));
  });
});
