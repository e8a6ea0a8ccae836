import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FailedPreconditionError } from '../../runtime/errors.js';
import { argmax } from '../domain/sampler.js';
import { buildTiny } from '../testing/model-folder.js';
import { DECODER_GRAPH_MODES } from '../config.js';
import { OnnxDecoder, type DecoderOptions } from './onnx-decoder.js';

const SESSION = { executionProviders: ['cpu'], intraOpThreads: 1, interOpThreads: 1 };
const GRAPHS = DECODER_GRAPH_MODES;
let model: string;
let decoder: OnnxDecoder;
let V: number;
const decoders = new Map<string, OnnxDecoder>();

beforeAll(async () => {
  const tiny = await buildTiny();
  model = join(tiny.dir, 'model.onnx');
  for (const graph of GRAPHS) decoders.set(graph, await OnnxDecoder.create(model, SESSION, { maxPositions: 1024 }, undefined, { graph }));
  decoder = decoders.get('split-attention')!;
  V = decoder.shape.vocabSize;
});
afterAll(async () => {
  for (const d of decoders.values()) await d.close();
});

const PROMPTS = [
  [15496, 995],
  [464, 3290, 318, 257, 1332, 286, 262, 1080, 13],
  [40, 1101],
  [7454, 2402, 257, 640, 612, 373, 257, 1310, 3797, 11, 290, 340],
];

/** Greedy tokens recomputing the whole sequence (no cache) at every step, with the last row's logits. */
async function greedyRecompute(prompt: number[], steps: number, decoder = decoders.get('as-exported')!): Promise<{ tokens: number[]; logits: Float32Array[] }> {
  const seq = [...prompt];
  const tokens: number[] = [];
  const logits: Float32Array[] = [];
  for (let i = 0; i < steps; i++) {
    const out = await decoder.prefill(seq);
    decoder.release(out.cache);
    const row = out.logits.slice(out.offset, out.offset + V);
    logits.push(row);
    const t = argmax(row, 0, V);
    tokens.push(t);
    seq.push(t);
  }
  return { tokens, logits };
}

/** Greedy tokens with the cache, alone. */
async function greedyCached(prompt: number[], steps: number, decoder: OnnxDecoder): Promise<{ tokens: number[]; logits: Float32Array[] }> {
  const first = await decoder.prefill(prompt);
  const tokens = [argmax(first.logits, first.offset, V)];
  const logits = [first.logits.slice(first.offset, first.offset + V)];
  for (let i = 1; i < steps; i++) {
    const out = await decoder.decode([{ cache: first.cache, token: tokens[i - 1]! }]);
    logits.push(out.slice(0, V));
    tokens.push(argmax(out, 0, V));
  }
  decoder.release(first.cache);
  return { tokens, logits };
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe('OnnxDecoder', () => {
  it('reads the Hugging Face decoder signature of the built model', () => {
    expect(decoder.shape).toEqual({ vocabSize: 50257, maxPositions: 1024, layers: 2, kvHeads: 2, headDim: 16 });
  });

  it('amends the graph as far as it allows: new entries as outputs, attention split', () => {
    expect([...decoders].map(([asked, d]) => [asked, d.graph])).toEqual([
      ['split-attention', 'split-attention'],
      ['new-entries', 'new-entries'],
      ['as-exported', 'as-exported'],
    ]);
  });

  it.each(GRAPHS)('decodes greedily with the key/value cache exactly as recomputing the whole sequence at every step (graph: %s)', async (graph) => {
    for (const prompt of PROMPTS) {
      const cached = await greedyCached(prompt, 40, decoders.get(graph)!);
      const full = await greedyRecompute(prompt, 40);
      expect(cached.tokens).toEqual(full.tokens);
      for (let i = 0; i < cached.logits.length; i++) expect(maxDiff(cached.logits[i]!, full.logits[i]!)).toBeLessThan(1e-4);
    }
  });

  it.each(GRAPHS)('gives every row of a batch of different lengths, joining and leaving, the tokens it gets alone (graph: %s)', async (graph) => {
    const decoder = decoders.get(graph)!;
    // Up to 12 + 40 tokens: the batch's room grows past its first 32 positions while rows come and go.
    const steps = [30, 12, 40, 16];
    const solo = [];
    for (let i = 0; i < PROMPTS.length; i++) solo.push(await greedyCached(PROMPTS[i]!, steps[i]!, decoder));

    // Batched: sequences 0 and 1 start together, 2 joins after 3 steps, 3 after 7; each leaves when done.
    const joinAt = [0, 0, 3, 7];
    const live: { i: number; cache: import('../domain/decoder.js').SequenceCache; tokens: number[]; logits: Float32Array[] }[] = [];
    const done: typeof live = [];
    for (let step = 0; live.length > 0 || done.length < PROMPTS.length; step++) {
      for (let i = 0; i < PROMPTS.length; i++) {
        if (joinAt[i] !== step) continue;
        const p = await decoder.prefill(PROMPTS[i]!);
        live.push({ i, cache: p.cache, tokens: [argmax(p.logits, p.offset, V)], logits: [p.logits.slice(p.offset, p.offset + V)] });
      }
      for (const s of live.filter((s) => s.tokens.length >= steps[s.i]!)) {
        live.splice(live.indexOf(s), 1);
        decoder.release(s.cache);
        done.push(s);
      }
      if (live.length === 0) continue;
      const out = await decoder.decode(live.map((s) => ({ cache: s.cache, token: s.tokens[s.tokens.length - 1]! })));
      live.forEach((s, r) => {
        s.logits.push(out.slice(r * V, (r + 1) * V));
        s.tokens.push(argmax(out, r * V, V));
      });
    }
    for (const s of done) {
      expect(s.tokens, `sequence ${s.i}`).toEqual(solo[s.i]!.tokens);
      // Padding changes the order of the attention sums, so logits agree to float rounding (about 1e-7), not bit for bit.
      for (let k = 0; k < s.logits.length; k++) expect(maxDiff(s.logits[k]!, solo[s.i]!.logits[k]!)).toBeLessThan(1e-5);
    }
  });

  it.each(GRAPHS)('steps a sequence to the model\'s last position and refuses one more token (graph: %s)', async (graph) => {
    const options: DecoderOptions = { graph };
    const short = await OnnxDecoder.create(model, SESSION, { maxPositions: 20 }, undefined, options);
    try {
      const prompt = PROMPTS[1]!;
      const full = await greedyRecompute(prompt, 20 - prompt.length + 1);
      const first = await short.prefill(prompt);
      const tokens = [argmax(first.logits, first.offset, V)];
      // A second row that leaves early, so that the batch is laid out again near the end.
      const other = await short.prefill(PROMPTS[0]!);
      let otherToken = argmax(other.logits, other.offset, V);
      while (first.cache.length < 20) {
        const rows = [{ cache: first.cache, token: tokens[tokens.length - 1]! }];
        if (other.cache.length < 10) rows.push({ cache: other.cache, token: otherToken });
        const out = await short.decode(rows);
        tokens.push(argmax(out, 0, V));
        if (rows.length > 1) otherToken = argmax(out, V, V);
      }
      expect(tokens).toEqual(full.tokens);
      await expect(short.decode([{ cache: first.cache, token: tokens[tokens.length - 1]! }])).rejects.toThrow(/limit of 20 positions/);
    } finally {
      await short.close();
    }
  });

  it('refuses a graph that is not a decoder with a key/value cache with FailedPreconditionError', async () => {
    const { GraphBuilder, DataType } = await import('../defaults/onnx-graph.js');
    const g = new GraphBuilder('adder');
    g.input('x', DataType.FLOAT, ['batch', 4]);
    g.output('y', DataType.FLOAT, ['batch', 4]);
    g.op1('Add', ['x', g.float('one', [4], new Float32Array(4).fill(1))], {}, 'y');
    const err = await OnnxDecoder.create(g.serialize(17), SESSION, {}).catch((e) => e);
    expect(err).toBeInstanceOf(FailedPreconditionError);
    expect((err as FailedPreconditionError).message).toMatch(/input_ids is missing/);
  });
});
