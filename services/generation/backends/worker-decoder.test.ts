import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../runtime/config.js';
import { UnavailableError } from '../../runtime/errors.js';
import { silentLogger } from '../../runtime/logger.js';
import { engineLimits, spec } from '../config.js';
import type { GenerationModel } from '../domain/engine.js';
import { buildTiny } from '../testing/model-folder.js';
import { laneCount, loadGenerationModel } from './model-loader.js';
import { OnnxDecoder } from './onnx-decoder.js';
import { WorkerDecoder } from './worker-decoder.js';

const SESSION = { executionProviders: ['cpu'], intraOpThreads: 1, interOpThreads: 1 };
const HINTS = { maxPositions: 1024 };
let model: string;
let local: OnnxDecoder;
let lane: WorkerDecoder;

beforeAll(async () => {
  model = join((await buildTiny()).dir, 'model.onnx');
  local = await OnnxDecoder.create(model, SESSION, HINTS);
  lane = await WorkerDecoder.create({ model, settings: SESSION, hints: HINTS });
});
afterAll(async () => {
  await local?.close();
  await lane?.close();
});

describe('a decode lane on a worker thread', () => {
  it('has the shape of the same model loaded on this thread', () => {
    expect(lane.shape).toEqual(local.shape);
    expect(lane.executionProvider).toBe('cpu');
  });

  it('gives the same logits as the decoder on this thread, for prefills and for steps of rows of different lengths', async () => {
    const V = local.shape.vocabSize;
    const prompts = [[15496, 995], [464, 3290, 318, 257, 1332, 286, 262], [40]];
    const here = [];
    const there = [];
    for (const p of prompts) {
      const a = await local.prefill(p);
      const b = await lane.prefill(p);
      expect([...b.logits.subarray(b.offset, b.offset + V)]).toEqual([...a.logits.subarray(a.offset, a.offset + V)]);
      here.push(a.cache);
      there.push(b.cache);
    }
    let tokens = [11, 12, 13];
    for (let step = 0; step < 4; step++) {
      // A row leaves after two steps, as a finished sequence would.
      const rows = step < 2 ? 3 : 2;
      const a = await local.decode(here.slice(0, rows).map((cache, i) => ({ cache, token: tokens[i]! })));
      const b = await lane.decode(there.slice(0, rows).map((cache, i) => ({ cache, token: tokens[i]! })));
      expect(b.length).toBe(rows * V);
      expect([...b]).toEqual([...a.subarray(0, rows * V)]);
      tokens = tokens.map((t) => t + 1);
    }
    expect(there.map((c) => c.length)).toEqual(here.map((c) => c.length));
    for (const c of here) local.release(c);
    for (const c of there) lane.release(c);
  });

  it('rejects a step on a released cache with the reason, and goes on working', async () => {
    const { cache } = await lane.prefill([1, 2, 3]);
    lane.release(cache);
    await expect(lane.decode([{ cache, token: 4 }])).rejects.toThrow(/no cache/);
    const again = await lane.prefill([1, 2, 3]);
    await expect(lane.decode([{ cache: again.cache, token: 4 }])).resolves.toHaveLength(lane.shape.vocabSize);
    lane.release(again.cache);
  });

  it('fails to start with the reason when the model cannot be loaded', async () => {
    await expect(WorkerDecoder.create({ model: join(model, '..', 'missing.onnx'), settings: SESSION, hints: HINTS })).rejects.toThrow(/decode lane: .*missing\.onnx/);
  });

  it('fails the calls in flight with UNAVAILABLE when its worker dies, and every later call too', async () => {
    const dying = await WorkerDecoder.create({ model, settings: SESSION, hints: HINTS });
    const { cache } = await dying.prefill([1, 2, 3]);
    // The step goes to a worker already being stopped, so it is in flight when the worker exits whatever the
    // timing (posted before terminate(), a fast step could be answered first on a busy machine).
    const ending = (dying as unknown as { worker: { terminate(): Promise<number> } }).worker.terminate();
    const step = dying.decode([{ cache, token: 4 }]);
    await ending;
    await expect(step).rejects.toBeInstanceOf(UnavailableError);
    await expect(dying.prefill([1])).rejects.toThrow(/decode lane of this model stopped \(worker exited/);
    await dying.close();
  });

  it('answers UNAVAILABLE once closed', async () => {
    const closing = await WorkerDecoder.create({ model, settings: SESSION, hints: HINTS });
    await closing.close();
    await expect(closing.prefill([1])).rejects.toBeInstanceOf(UnavailableError);
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

  it('stops placing sequences on a lane whose worker died, and serves every request on the lanes left', async () => {
    const dir = join(model, '..');
    const loaded = await loadGenerationModel(dir, { session: SESSION, decodeLanes: 2, limits: engineLimits(loadConfig(spec, {})), log: silentLogger, name: 'tiny', version: 1 });
    try {
      const prompts = ['Hello there', 'The quick brown fox', 'A', 'One two three'];
      const alone = [];
      for (const p of prompts) alone.push(await tokens(loaded.model, p));
      expect(await Promise.all(prompts.map((p) => tokens(loaded.model, p)))).toEqual(alone);
      expect(loaded.model.stats()).toMatchObject({ lanes: 2, mostLanesInStep: 2 });
      const worker = (loaded.model as unknown as { decoders: { worker?: { terminate(): Promise<number> } }[] }).decoders[1]!.worker!;
      await worker.terminate();
      expect(await Promise.all(prompts.map((p) => tokens(loaded.model, p)))).toEqual(alone);
    } finally {
      await loaded.model.close();
    }
  });
});

describe('laneCount', () => {
  it('takes a set count as it is, and for 0 one lane per core (at most 4) on cpu, one on other providers', () => {
    expect(laneCount(3, 'cuda')).toBe(3);
    expect(laneCount(0, 'cuda')).toBe(1);
    expect(laneCount(0, 'cpu')).toBe(Math.min(4, availableParallelism()));
  });
});
