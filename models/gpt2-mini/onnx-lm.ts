// The trained weights as the generation service's decoder builder wants them, and a minimal onnxruntime
// driver for the exported model (prefill, then one token at a time through the KV cache) used to check the
// export, score held-out text and sample completions.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { Gpt2Config, Gpt2LayerWeights, Gpt2Weights } from '../../services/generation/defaults/decoder-onnx.js';

interface Manifest {
  config: { n_layer: number; n_head: number; n_embd: number; n_positions: number; vocab_size: number; eos_token_id: number; bos_token_id: number; layer_norm_epsilon: number };
  tensors: { name: string; shape: number[]; offset: number }[];
}

/** Reads weights.json + weights.bin (written by train.py) into the builder's config and weights. */
export function readTrainedWeights(workDir: string): { config: Gpt2Config; weights: Gpt2Weights } {
  const manifest = JSON.parse(readFileSync(join(workDir, 'weights.json'), 'utf8')) as Manifest;
  const bin = readFileSync(join(workDir, 'weights.bin'));
  const all = new Float32Array(bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength));
  const byName = new Map<string, Float32Array>();
  for (const t of manifest.tensors) byName.set(t.name, all.subarray(t.offset, t.offset + t.shape.reduce((a, b) => a * b, 1)));
  const get = (name: string) => {
    const a = byName.get(name);
    if (!a) throw new Error(`weights.json has no tensor ${name}`);
    return a;
  };
  const c = manifest.config;
  const config: Gpt2Config = {
    model_type: 'gpt2',
    n_layer: c.n_layer,
    n_head: c.n_head,
    n_embd: c.n_embd,
    vocab_size: c.vocab_size,
    n_positions: c.n_positions,
    bos_token_id: c.bos_token_id,
    eos_token_id: c.eos_token_id,
    layer_norm_epsilon: c.layer_norm_epsilon,
  };
  const layers: Gpt2LayerWeights[] = Array.from({ length: c.n_layer }, (_, i) => {
    const p = `transformer.h.${i}`;
    return {
      ln1: { weight: get(`${p}.ln_1.weight`), bias: get(`${p}.ln_1.bias`) },
      attnQkv: { weight: get(`${p}.attn.c_attn.weight`), bias: get(`${p}.attn.c_attn.bias`) },
      attnProj: { weight: get(`${p}.attn.c_proj.weight`), bias: get(`${p}.attn.c_proj.bias`) },
      ln2: { weight: get(`${p}.ln_2.weight`), bias: get(`${p}.ln_2.bias`) },
      fc: { weight: get(`${p}.mlp.c_fc.weight`), bias: get(`${p}.mlp.c_fc.bias`) },
      proj: { weight: get(`${p}.mlp.c_proj.weight`), bias: get(`${p}.mlp.c_proj.bias`) },
    };
  });
  const weights: Gpt2Weights = {
    wte: get('transformer.wte.weight'),
    wpe: get('transformer.wpe.weight'),
    layers,
    lnF: { weight: get('transformer.ln_f.weight'), bias: get('transformer.ln_f.bias') },
  };
  return { config, weights };
}

/** One sequence (batch 1) on the exported decoder. */
export class OnnxLm {
  private past: Record<string, ort.Tensor> = {};
  private length = 0;

  private constructor(
    private readonly session: ort.InferenceSession,
    readonly config: Pick<Gpt2Config, 'n_layer' | 'n_head' | 'n_embd' | 'vocab_size' | 'n_positions'>,
  ) {
    this.reset();
  }

  static async load(modelDir: string): Promise<OnnxLm> {
    const config = JSON.parse(readFileSync(join(modelDir, 'config.json'), 'utf8')) as Gpt2Config;
    const session = await ort.InferenceSession.create(join(modelDir, 'model.onnx'), { intraOpNumThreads: 1, interOpNumThreads: 1 });
    return new OnnxLm(session, config);
  }

  /** Forgets the cached context. */
  reset(): void {
    const D = this.config.n_embd / this.config.n_head;
    this.past = {};
    for (let i = 0; i < this.config.n_layer; i++) {
      for (const kind of ['key', 'value']) this.past[`past_key_values.${i}.${kind}`] = new ort.Tensor('float32', new Float32Array(0), [1, this.config.n_head, 0, D]);
    }
    this.length = 0;
  }

  /** Feeds `ids` after the cached context; returns the logits of the last position. */
  async feed(ids: number[]): Promise<Float32Array> {
    const total = this.length + ids.length;
    if (total > this.config.n_positions) throw new Error(`context of ${total} tokens exceeds n_positions ${this.config.n_positions}`);
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, (t) => BigInt(t)), [1, ids.length]),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(total).fill(1n), [1, total]),
      position_ids: new ort.Tensor('int64', BigInt64Array.from(ids, (_, i) => BigInt(this.length + i)), [1, ids.length]),
      ...this.past,
    };
    const out = await this.session.run(feeds);
    for (let i = 0; i < this.config.n_layer; i++) {
      this.past[`past_key_values.${i}.key`] = out[`present.${i}.key`]!;
      this.past[`past_key_values.${i}.value`] = out[`present.${i}.value`]!;
    }
    this.length = total;
    const logits = out.logits!.data as Float32Array;
    return logits.subarray(logits.length - this.config.vocab_size);
  }

  async close(): Promise<void> {
    await this.session.release();
  }
}

/** ln softmax(logits)[target]. */
export function logProb(logits: Float32Array, target: number): number {
  let max = -Infinity;
  for (const v of logits) if (v > max) max = v;
  let sum = 0;
  for (const v of logits) sum += Math.exp(v - max);
  return logits[target]! - max - Math.log(sum);
}

/** Samples from softmax(logits / temperature) restricted to the top k, with `random` in [0, 1). */
export function sampleTopK(logits: Float32Array, temperature: number, k: number, random: () => number): number {
  const idx = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]!).slice(0, k);
  const top = logits[idx[0]!]!;
  const w = idx.map((i) => Math.exp((logits[i]! - top) / temperature));
  let r = random() * w.reduce((a, b) => a + b, 0);
  for (let j = 0; j < idx.length; j++) {
    r -= w[j]!;
    if (r <= 0) return idx[j]!;
  }
  return idx[idx.length - 1]!;
}
