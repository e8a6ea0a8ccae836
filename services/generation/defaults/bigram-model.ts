// A hand-built decoder whose greedy output is known in advance: each token in a table is followed by the
// token the table names (for example "3" → "4", "a" → "b"), every other token by a fallback (EOS by
// default). Embeddings are one-hot per table entry, the blocks' output projections are zero (the residual
// stream stays the embedding), and the LM head maps entry k to its successor. It runs through exactly the
// same graph, cache and batching code as a trained GPT-2, which makes it the reference for end-to-end tests.
import { Prng } from '../domain/prng.js';
import type { Gpt2Config, Gpt2Weights } from './decoder-onnx.js';
import { GPT2_EOS_ID } from './gpt2-tokenizer.js';

export interface BigramSpec {
  /** token id → the id that follows it. */
  next: Map<number, number>;
  /** What follows any other token. */
  fallback?: number;
  vocabSize?: number;
  nPositions?: number;
}

export function bigramModel(spec: BigramSpec): { config: Gpt2Config; weights: Gpt2Weights } {
  const sources = [...spec.next.keys()];
  const dims = sources.length + 1;
  const E = Math.max(8, Math.ceil(dims / 8) * 8);
  const V = spec.vocabSize ?? 50257;
  const P = spec.nPositions ?? 256;
  const config: Gpt2Config = { model_type: 'gpt2', n_layer: 1, n_head: 2, n_embd: E, vocab_size: V, n_positions: P, bos_token_id: GPT2_EOS_ID, eos_token_id: GPT2_EOS_ID, layer_norm_epsilon: 1e-5 };
  const other = dims - 1;
  const dimOf = new Map(sources.map((t, i) => [t, i]));
  const wte = new Float32Array(V * E);
  for (let v = 0; v < V; v++) wte[v * E + (dimOf.get(v) ?? other)] = 1;
  const lmHead = new Float32Array(V * E);
  for (const [from, to] of spec.next) lmHead[to * E + dimOf.get(from)!] = 10;
  lmHead[(spec.fallback ?? GPT2_EOS_ID) * E + other] = 10;
  // Attention and MLP read the stream (random query/key/value, so the cache is exercised) but write nothing back.
  const rng = new Prng(7);
  const rand = (n: number) => Float32Array.from({ length: n }, () => rng.normal() * 0.1);
  const zeros = (n: number) => new Float32Array(n);
  const ones = (n: number) => new Float32Array(n).fill(1);
  return {
    config,
    weights: {
      wte,
      wpe: zeros(P * E),
      layers: [
        {
          ln1: { weight: ones(E), bias: zeros(E) },
          attnQkv: { weight: rand(E * 3 * E), bias: zeros(3 * E) },
          attnProj: { weight: zeros(E * E), bias: zeros(E) },
          ln2: { weight: ones(E), bias: zeros(E) },
          fc: { weight: rand(E * 4 * E), bias: zeros(4 * E) },
          proj: { weight: zeros(4 * E * E), bias: zeros(E) },
        },
      ],
      lnF: { weight: ones(E), bias: zeros(E) },
      lmHead,
    },
  };
}
