// Writes a GPT-2-architecture decoder as ONNX with the signature Hugging Face exports use for decoders with
// a KV cache (optimum's `decoder_model_merged` minus the `use_cache_branch` switch):
//   inputs  input_ids i64[batch, seq], attention_mask i64[batch, past+seq], position_ids i64[batch, seq],
//           past_key_values.<i>.key / .value f32[batch, n_head, past, head_dim]   (past may be 0)
//   outputs logits f32[batch, 1, vocab] (the last position only), present.<i>.key / .value f32[batch, n_head, past+seq, head_dim]
// Logits are computed for the last position only: generation never reads the others, and the LM head over a
// 50k vocabulary is most of a step's cost. The engine reads the last row of `logits` whatever its length, so
// full-length exports (HF's [batch, seq, vocab]) run too.
//
// The weights follow the Hugging Face GPT-2 state dict (Conv1D weights are [in, out]), so a trainer can hand
// its tensors over without reshaping: see Gpt2Weights.
import { DataType, GraphBuilder } from './onnx-graph.js';

/** The fields of a Hugging Face GPT-2 config.json that the graph depends on. */
export interface Gpt2Config {
  model_type: 'gpt2';
  n_layer: number;
  n_head: number;
  n_embd: number;
  vocab_size: number;
  /** Longest sequence (positions of the position embedding). */
  n_positions: number;
  bos_token_id: number;
  eos_token_id: number;
  layer_norm_epsilon: number;
  /** Hidden size of the MLP; 4 * n_embd when absent. */
  n_inner?: number | null;
}

export interface Linear {
  /** [in, out], as Hugging Face's Conv1D stores it (`*.c_attn.weight` etc.). */
  weight: Float32Array;
  /** [out] */
  bias: Float32Array;
}

export interface Norm {
  /** [n_embd] */
  weight: Float32Array;
  /** [n_embd] */
  bias: Float32Array;
}

/** One block: transformer.h.<i>.* */
export interface Gpt2LayerWeights {
  /** ln_1 */
  ln1: Norm;
  /** attn.c_attn: [n_embd, 3 * n_embd], query | key | value. */
  attnQkv: Linear;
  /** attn.c_proj: [n_embd, n_embd]. */
  attnProj: Linear;
  /** ln_2 */
  ln2: Norm;
  /** mlp.c_fc: [n_embd, n_inner]. */
  fc: Linear;
  /** mlp.c_proj: [n_inner, n_embd]. */
  proj: Linear;
}

export interface Gpt2Weights {
  /** transformer.wte.weight: [vocab_size, n_embd]. */
  wte: Float32Array;
  /** transformer.wpe.weight: [n_positions, n_embd]. */
  wpe: Float32Array;
  layers: Gpt2LayerWeights[];
  /** transformer.ln_f */
  lnF: Norm;
  /** lm_head.weight: [vocab_size, n_embd]. Absent: tied to wte, as GPT-2 does. */
  lmHead?: Float32Array;
}

export const pastKeyName = (i: number) => `past_key_values.${i}.key`;
export const pastValueName = (i: number) => `past_key_values.${i}.value`;
export const presentKeyName = (i: number) => `present.${i}.key`;
export const presentValueName = (i: number) => `present.${i}.value`;

/** Checks that every tensor has the size the config implies; throws naming the first that does not. */
export function checkWeights(config: Gpt2Config, w: Gpt2Weights): void {
  const E = config.n_embd;
  const I = config.n_inner ?? 4 * E;
  const want = (name: string, a: Float32Array | undefined, n: number) => {
    if (!a || a.length !== n) throw new Error(`weights ${name}: expected ${n} values, got ${a?.length ?? 'none'}`);
  };
  if (E % config.n_head !== 0) throw new Error(`n_embd ${E} is not divisible by n_head ${config.n_head}`);
  if (w.layers.length !== config.n_layer) throw new Error(`weights: expected ${config.n_layer} layers, got ${w.layers.length}`);
  want('wte', w.wte, config.vocab_size * E);
  want('wpe', w.wpe, config.n_positions * E);
  if (w.lmHead) want('lmHead', w.lmHead, config.vocab_size * E);
  want('lnF.weight', w.lnF.weight, E);
  want('lnF.bias', w.lnF.bias, E);
  w.layers.forEach((l, i) => {
    want(`layers[${i}].ln1.weight`, l.ln1.weight, E);
    want(`layers[${i}].ln1.bias`, l.ln1.bias, E);
    want(`layers[${i}].attnQkv.weight`, l.attnQkv.weight, E * 3 * E);
    want(`layers[${i}].attnQkv.bias`, l.attnQkv.bias, 3 * E);
    want(`layers[${i}].attnProj.weight`, l.attnProj.weight, E * E);
    want(`layers[${i}].attnProj.bias`, l.attnProj.bias, E);
    want(`layers[${i}].ln2.weight`, l.ln2.weight, E);
    want(`layers[${i}].ln2.bias`, l.ln2.bias, E);
    want(`layers[${i}].fc.weight`, l.fc.weight, E * I);
    want(`layers[${i}].fc.bias`, l.fc.bias, I);
    want(`layers[${i}].proj.weight`, l.proj.weight, I * E);
    want(`layers[${i}].proj.bias`, l.proj.bias, E);
  });
}

/** Serializes the decoder to ONNX bytes (IR 8, opset 17). */
export function buildDecoderOnnx(config: Gpt2Config, weights: Gpt2Weights): Uint8Array {
  checkWeights(config, weights);
  const E = config.n_embd;
  const H = config.n_head;
  const D = E / H;
  const I = config.n_inner ?? 4 * E;
  const V = config.vocab_size;
  const eps = { float: config.layer_norm_epsilon };
  const g = new GraphBuilder('gpt2_decoder');

  const inputIds = g.input('input_ids', DataType.INT64, ['batch_size', 'sequence_length']);
  const attentionMask = g.input('attention_mask', DataType.INT64, ['batch_size', 'total_sequence_length']);
  const positionIds = g.input('position_ids', DataType.INT64, ['batch_size', 'sequence_length']);
  for (let i = 0; i < config.n_layer; i++) {
    g.input(pastKeyName(i), DataType.FLOAT, ['batch_size', H, 'past_sequence_length', D]);
    g.input(pastValueName(i), DataType.FLOAT, ['batch_size', H, 'past_sequence_length', D]);
  }
  g.output('logits', DataType.FLOAT, ['batch_size', 1, V]);
  for (let i = 0; i < config.n_layer; i++) {
    g.output(presentKeyName(i), DataType.FLOAT, ['batch_size', H, 'total_sequence_length', D]);
    g.output(presentValueName(i), DataType.FLOAT, ['batch_size', H, 'total_sequence_length', D]);
  }

  // Constants.
  const wte = g.float('transformer.wte.weight', [V, E], weights.wte);
  const wpe = g.float('transformer.wpe.weight', [config.n_positions, E], weights.wpe);
  const lmHead = weights.lmHead ? g.float('lm_head.weight', [V, E], weights.lmHead) : wte;
  const zero = g.ints('const_zero', [0], []);
  const one = g.ints('const_one', [1], []);
  const idx1 = g.ints('const_idx1', [1]);
  const axes12 = g.ints('const_axes12', [1, 2]);
  const axes01 = g.ints('const_axes01', [0, 1]);
  const lastIndex = g.ints('const_last', [-1]);
  const splitQkv = g.ints('const_split_qkv', [E, E, E]);
  const headsShape = g.ints('const_heads_shape', [0, 0, H, D]);
  const mergeShape = g.ints('const_merge_shape', [0, 0, E]);
  const flatShape = g.ints('const_flat_shape', [-1, E]);
  const logitsShape = g.ints('const_logits_shape', [-1, 1, V]);
  const scale = g.scalar('const_scale', 1 / Math.sqrt(D));
  const masked = g.scalar('const_masked', -3.4028234663852886e38);
  const half = g.scalar('const_half', 0.5);
  const oneF = g.scalar('const_one_f', 1);
  const geluC = g.scalar('const_gelu_c', Math.sqrt(2 / Math.PI));
  const geluK = g.scalar('const_gelu_k', 0.044715);

  // Embeddings.
  const tok = g.op1('Gather', [wte, inputIds], { axis: 0 });
  const pos = g.op1('Gather', [wpe, positionIds], { axis: 0 });
  let h = g.op1('Add', [tok, pos]);

  // The mask, once for every layer: key j is visible to new token i when attention_mask[b, j] is 1 and
  // j <= past + i (causal), as [batch, 1, seq, total].
  const total = g.op1('Gather', [g.op1('Shape', [attentionMask]), one], { axis: 0 });
  const seq = g.op1('Gather', [g.op1('Shape', [inputIds]), one], { axis: 0 });
  const past = g.op1('Sub', [total, seq]);
  const keyPos = g.op1('Range', [zero, total, one]);
  const queryPos = g.op1('Unsqueeze', [g.op1('Range', [past, total, one]), idx1]);
  const causal = g.op1('Unsqueeze', [g.op1('LessOrEqual', [keyPos, queryPos]), axes01]);
  const padding = g.op1('Unsqueeze', [g.op1('Cast', [attentionMask], { to: DataType.BOOL }), axes12]);
  const visible = g.op1('And', [causal, padding]);

  for (let i = 0; i < config.n_layer; i++) {
    const L = weights.layers[i]!;
    const p = `transformer.h.${i}`;
    // Attention.
    const a = g.op1('LayerNormalization', [h, g.float(`${p}.ln_1.weight`, [E], L.ln1.weight), g.float(`${p}.ln_1.bias`, [E], L.ln1.bias)], { axis: -1, epsilon: eps });
    const qkv = g.op1('Add', [g.op1('MatMul', [a, g.float(`${p}.attn.c_attn.weight`, [E, 3 * E], L.attnQkv.weight)]), g.float(`${p}.attn.c_attn.bias`, [3 * E], L.attnQkv.bias)]);
    const [q, k, v] = g.op('Split', [qkv, splitQkv], { axis: 2 }, 3) as [string, string, string];
    const heads = (x: string) => g.op1('Transpose', [g.op1('Reshape', [x, headsShape])], { perm: [0, 2, 1, 3] });
    const qh = g.op1('Mul', [heads(q), scale]);
    const presentK = g.op1('Concat', [pastKeyName(i), heads(k)], { axis: 2 }, presentKeyName(i));
    const presentV = g.op1('Concat', [pastValueName(i), heads(v)], { axis: 2 }, presentValueName(i));
    const scores = g.op1('MatMul', [qh, g.op1('Transpose', [presentK], { perm: [0, 1, 3, 2] })]);
    const probs = g.op1('Softmax', [g.op1('Where', [visible, scores, masked])], { axis: -1 });
    const ctx = g.op1('Reshape', [g.op1('Transpose', [g.op1('MatMul', [probs, presentV])], { perm: [0, 2, 1, 3] }), mergeShape]);
    const attnOut = g.op1('Add', [g.op1('MatMul', [ctx, g.float(`${p}.attn.c_proj.weight`, [E, E], L.attnProj.weight)]), g.float(`${p}.attn.c_proj.bias`, [E], L.attnProj.bias)]);
    h = g.op1('Add', [h, attnOut]);
    // MLP with GPT-2's tanh GELU ("gelu_new").
    const m = g.op1('LayerNormalization', [h, g.float(`${p}.ln_2.weight`, [E], L.ln2.weight), g.float(`${p}.ln_2.bias`, [E], L.ln2.bias)], { axis: -1, epsilon: eps });
    const f = g.op1('Add', [g.op1('MatMul', [m, g.float(`${p}.mlp.c_fc.weight`, [E, I], L.fc.weight)]), g.float(`${p}.mlp.c_fc.bias`, [I], L.fc.bias)]);
    const cube = g.op1('Mul', [g.op1('Mul', [f, f]), f]);
    const inner = g.op1('Mul', [g.op1('Add', [f, g.op1('Mul', [cube, geluK])]), geluC]);
    const gelu = g.op1('Mul', [g.op1('Mul', [f, half]), g.op1('Add', [g.op1('Tanh', [inner]), oneF])]);
    const mlpOut = g.op1('Add', [g.op1('MatMul', [gelu, g.float(`${p}.mlp.c_proj.weight`, [I, E], L.proj.weight)]), g.float(`${p}.mlp.c_proj.bias`, [E], L.proj.bias)]);
    h = g.op1('Add', [h, mlpOut]);
  }

  // The last position only, final norm, LM head (Gemm with transB reads [vocab, n_embd] as stored).
  const last = g.op1('Gather', [h, lastIndex], { axis: 1 });
  const normed = g.op1('LayerNormalization', [last, g.float('transformer.ln_f.weight', [E], weights.lnF.weight), g.float('transformer.ln_f.bias', [E], weights.lnF.bias)], { axis: -1, epsilon: eps });
  const flat = g.op1('Reshape', [normed, flatShape]);
  const logits2d = g.op1('Gemm', [flat, lmHead], { transB: 1 });
  g.op1('Reshape', [logits2d, logitsShape], {}, 'logits');
  return g.serialize(17, 'maas generation defaults');
}
