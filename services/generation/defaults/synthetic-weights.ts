// Seeded random weights for a GPT-2-architecture decoder, initialized the way GPT-2 initializes before
// training (normal(0, 0.02), residual projections scaled by 1/sqrt(2 * n_layer), layer norms at 1 and 0).
// They make a model that runs exactly like a trained one and writes gibberish: the default model uses them
// until a trained checkpoint replaces them.
import { Prng } from '../domain/prng.js';
import type { Gpt2Config, Gpt2Weights, Linear, Norm } from './decoder-onnx.js';

export function syntheticWeights(config: Gpt2Config, seed: number): Gpt2Weights {
  const rng = new Prng(seed);
  const E = config.n_embd;
  const I = config.n_inner ?? 4 * E;
  const normal = (n: number, std: number) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = rng.normal() * std;
    return a;
  };
  const norm = (): Norm => ({ weight: new Float32Array(E).fill(1), bias: new Float32Array(E) });
  const linear = (inDim: number, outDim: number, std: number): Linear => ({ weight: normal(inDim * outDim, std), bias: new Float32Array(outDim) });
  const residualStd = 0.02 / Math.sqrt(2 * config.n_layer);
  return {
    wte: normal(config.vocab_size * E, 0.02),
    wpe: normal(config.n_positions * E, 0.01),
    layers: Array.from({ length: config.n_layer }, () => ({
      ln1: norm(),
      attnQkv: linear(E, 3 * E, 0.02),
      attnProj: linear(E, E, residualStd),
      ln2: norm(),
      fc: linear(E, I, 0.02),
      proj: linear(I, E, residualStd),
    })),
    lnF: norm(),
  };
}
