import { describe, expect, it } from 'vitest';
import type { SamplingParameters } from './params.js';
import { Prng } from './prng.js';
import { PenaltyState, Sampler } from './sampler.js';

const base: SamplingParameters = {
  maxNewTokens: 16,
  temperature: 1,
  topK: 0,
  topP: 1,
  repetitionPenalty: 1,
  presencePenalty: 0,
  frequencyPenalty: 0,
  seed: 1n,
  stop: [],
  logprobs: undefined,
  ignoreEos: false,
};

/** The tokens top-k then top-p keep, by a plain sort (descending probability, lower id first on ties). */
function referenceKept(logits: number[], p: SamplingParameters): Set<number> {
  const probs = logits.map((l) => Math.exp((l - Math.max(...logits)) / p.temperature));
  let order = probs.map((_, i) => i).sort((a, b) => probs[b]! - probs[a]! || a - b);
  if (p.topK > 0) order = order.slice(0, p.topK);
  if (p.topP < 1) {
    const mass = order.reduce((s, i) => s + probs[i]!, 0);
    let acc = 0;
    const kept = [];
    for (const i of order) {
      kept.push(i);
      acc += probs[i]!;
      if (acc >= p.topP * mass) break;
    }
    order = kept;
  }
  return new Set(order);
}

function randomLogits(n: number, seed: number): number[] {
  const rng = new Prng(seed);
  return Array.from({ length: n }, () => rng.normal() * 2);
}

function draw(sampler: Sampler, logits: number[], p: SamplingParameters, rng: Prng, penalties?: PenaltyState): number {
  return sampler.next(Float32Array.from(logits), 0, p, rng, penalties);
}

describe('Sampler', () => {
  it('takes the most likely token when greedy, the lowest id on ties', () => {
    const s = new Sampler(5, 0);
    expect(draw(s, [0, 3, 1, 3, 2], { ...base, temperature: 0 }, new Prng(1))).toBe(1);
    expect(draw(s, [0, 1, 9, 3, 2], { ...base, topK: 1 }, new Prng(1))).toBe(2);
  });

  it.each([
    ['top_k 5', { topK: 5 }],
    ['top_p 0.5', { topP: 0.5 }],
    ['top_k 20 then top_p 0.8', { topK: 20, topP: 0.8 }],
    ['top_p 0.95 at temperature 0.7', { topP: 0.95, temperature: 0.7 }],
  ])('draws only from the tokens %s keeps, in proportion to their probabilities', (_, over) => {
    const V = 64;
    const p = { ...base, ...over };
    const logits = randomLogits(V, 3);
    const kept = referenceKept(logits, p);
    const sampler = new Sampler(V, 0);
    const rng = new Prng(11);
    const counts = new Map<number, number>();
    const n = 10_000;
    for (let i = 0; i < n; i++) {
      const t = draw(sampler, logits, p, rng);
      counts.set(t, (counts.get(t) ?? 0) + 1);
    }
    expect([...counts.keys()].every((t) => kept.has(t))).toBe(true);
    const weights = [...kept].map((i) => Math.exp((logits[i]! - Math.max(...logits)) / p.temperature));
    const total = weights.reduce((a, b) => a + b, 0);
    [...kept].forEach((id, j) => expect(Math.abs((counts.get(id) ?? 0) / n - weights[j]! / total)).toBeLessThan(0.02));
  });

  it('keeps exactly the tokens a full sort keeps, with many ties and cuts inside one bucket', () => {
    // Logits on a grid: many tokens share a probability, so cuts fall inside runs of ties. Grids fine enough
    // put several distinct probabilities in one of the sampler's buckets, and top-p then cuts inside the
    // bucket top-k cut in.
    const V = 300;
    const cases: [number, Partial<SamplingParameters>][] = [
      [4, { topK: 7 }],
      [4, { topK: 40, topP: 0.6 }],
      [4, { topK: 150, topP: 0.99 }],
      [4, { topP: 0.3 }],
      [4, { topP: 0.9, temperature: 0.5 }],
      [4, { topK: 299, topP: 0.999 }],
      [1000, { topK: 30, topP: 0.5 }],
      [1e6, { topK: 60, topP: 0.7 }],
    ];
    for (const [c, [grid, over]] of cases.entries()) {
      for (let seed = 1; seed <= 4; seed++) {
        const rng = new Prng(seed * 100 + c);
        const logits = Array.from({ length: V }, () => Math.round(rng.normal() * 2 * grid) / grid);
        const p = { ...base, ...over };
        const kept = referenceKept(logits, p);
        const sampler = new Sampler(V, 0);
        const seen = new Set<number>();
        for (let i = 0; i < 4000; i++) seen.add(draw(sampler, logits, p, rng));
        expect([...seen].filter((t) => !kept.has(t))).toEqual([]);
        // Every kept token of at least 0.5% of the kept mass shows up.
        const weights = [...kept].map((i) => Math.exp((logits[i]! - Math.max(...logits)) / p.temperature));
        const total = weights.reduce((a, b) => a + b, 0);
        expect([...kept].filter((t, j) => weights[j]! / total > 0.005 && !seen.has(t))).toEqual([]);
      }
    }
    // All equally likely: top-k 5 keeps ids 0-4, then top-p 0.5 of those keeps ids 0-2.
    const sampler = new Sampler(10, 0);
    const seen = new Set<number>();
    const rng = new Prng(8);
    for (let i = 0; i < 500; i++) seen.add(draw(sampler, new Array(10).fill(1), { ...base, topK: 5, topP: 0.5 }, rng));
    expect([...seen].sort()).toEqual([0, 1, 2]);
  });

  it('keeps the lower ids among equally likely tokens at the top-k cut', () => {
    const sampler = new Sampler(10, 0);
    const seen = new Set<number>();
    const rng = new Prng(5);
    for (let i = 0; i < 500; i++) seen.add(draw(sampler, new Array(10).fill(1), { ...base, topK: 3 }, rng));
    expect([...seen].sort()).toEqual([0, 1, 2]);
  });

  it('reproduces the same draws from the same seed', () => {
    const logits = randomLogits(1000, 9);
    const sampler = new Sampler(1000, 0);
    const run = (seed: bigint) => {
      const rng = new Prng(seed);
      return Array.from({ length: 50 }, () => draw(sampler, logits, { ...base, topP: 0.9 }, rng));
    };
    expect(run(42n)).toEqual(run(42n));
    expect(run(42n)).not.toEqual(run(43n));
  });

  it('applies the repetition penalty to prompt and output tokens and presence/frequency penalties to output tokens', () => {
    const sampler = new Sampler(4, 0);
    const greedy = { ...base, temperature: 0 };
    const state = new PenaltyState(4, 16);
    state.addPrompt([0]);
    expect(draw(sampler, [5, 4, 0, 0], { ...greedy, repetitionPenalty: 1.5 }, new Prng(1), state)).toBe(1);
    const out = new PenaltyState(4, 16);
    out.addOutput(0);
    out.addOutput(0);
    expect(draw(sampler, [5, 4, 0, 0], { ...greedy, presencePenalty: 0.5 }, new Prng(1), out)).toBe(0);
    expect(draw(sampler, [5, 4, 0, 0], { ...greedy, presencePenalty: 0.5, frequencyPenalty: 0.5 }, new Prng(1), out)).toBe(1);
  });

  it('reports log probabilities of the raw distribution and the most likely alternatives', () => {
    const sampler = new Sampler(4, 3);
    const logits = [1, 3, 2, 0];
    const logZ = Math.log(logits.reduce((s, l) => s + Math.exp(l), 0));
    const state = new PenaltyState(4, 8);
    state.addPrompt([1]);
    const t = draw(sampler, logits, { ...base, temperature: 0, logprobs: 2, repetitionPenalty: 2 }, new Prng(1), state);
    expect(t).toBe(2);
    expect(sampler.chosenLogprob).toBeCloseTo(2 - logZ, 5);
    expect(sampler.topCount).toBe(2);
    expect([...sampler.topIds.subarray(0, 2)]).toEqual([1, 2]);
    expect(sampler.topLogprobs[0]).toBeCloseTo(3 - logZ, 5);
  });
});
