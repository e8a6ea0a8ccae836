// Step 3 of the pipeline: the trained weights to ONNX through the generation service's decoder builder, then
// checks of the exported model with onnxruntime.
//   npx tsx models/gpt2-mini/export.ts [--heldout-windows N] [--work DIR]
// Writes model.onnx, config.json and generation_config.json beside the tokenizer files in ./model/, then:
//  - compares the ONNX logits of train.py's reference input with the PyTorch ones (reference.json);
//  - scores the held-out ids through the ONNX model one token at a time with the KV cache, in the same
//    windows train.py used, so the held-out loss reported is the exported model's own;
//  - samples completions of a few prompts (KV cache, seeded top-k sampling).
// Results go to training-result.json and samples.md beside this file (docs/training.md quotes them).
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Tokenizer } from '@huggingface/tokenizers';
import { buildDecoderOnnx } from '../../services/generation/defaults/decoder-onnx.js';
import { Prng } from '../../services/generation/domain/prng.js';
import { logProb, OnnxLm, readTrainedWeights, sampleTopK } from './onnx-lm.js';
import { HERE, isMain, MODEL_DIR, WORK_DIR } from './paths.js';

export const PROMPTS = [
  'In the beginning',
  'And the LORD said unto Moses,',
  'The king of Israel',
  'Blessed are the',
  'And he went up into the mountain',
  'My son, hear the instruction of thy father',
];

export interface Reference {
  input_ids: number[];
  logits: number[];
}

/** Largest absolute difference between the ONNX logits of the reference input and PyTorch's. */
export async function referenceDifference(lm: OnnxLm, ref: Reference): Promise<number> {
  lm.reset();
  const logits = await lm.feed(ref.input_ids);
  let max = 0;
  for (let i = 0; i < ref.logits.length; i++) max = Math.max(max, Math.abs(logits[i]! - ref.logits[i]!));
  return max;
}

/** Mean NLL over windows of `block` ids (scoring ids 1..block of each), fed one token at a time. */
export async function onnxHeldOutLoss(lm: OnnxLm, ids: Uint16Array, block: number, maxWindows = Infinity): Promise<{ loss: number; tokens: number }> {
  const windows = Math.min(Math.floor((ids.length - 1) / block), maxWindows);
  let nll = 0;
  for (let w = 0; w < windows; w++) {
    lm.reset();
    let logits = await lm.feed([ids[w * block]!]);
    for (let j = 1; j <= block; j++) {
      nll -= logProb(logits, ids[w * block + j]!);
      if (j < block) logits = await lm.feed([ids[w * block + j]!]);
    }
  }
  return { loss: nll / (windows * block), tokens: windows * block };
}

/** Prompt + up to `maxTokens` sampled tokens (stops at EOS). */
export async function complete(lm: OnnxLm, tokenizer: Tokenizer, prompt: string, maxTokens: number, seed: number, eosId: number): Promise<string> {
  const rng = new Prng(seed);
  lm.reset();
  const ids = tokenizer.encode(prompt).ids;
  const out: number[] = [];
  let logits = await lm.feed(ids);
  for (let i = 0; i < maxTokens; i++) {
    const next = sampleTopK(logits, 0.8, 40, () => rng.next());
    if (next === eosId) break;
    out.push(next);
    logits = await lm.feed([next]);
  }
  return tokenizer.decode(out, { skip_special_tokens: true });
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { 'heldout-windows': { type: 'string' }, work: { type: 'string' } } });
  const work = values.work ?? WORK_DIR;
  const maxWindows = values['heldout-windows'] ? Number(values['heldout-windows']) : 16;
  const { config, weights } = readTrainedWeights(work);
  const result = JSON.parse(readFileSync(join(work, 'result.json'), 'utf8')) as Record<string, unknown> & { train: { blockSize: number }; heldOutLossByWindow: number[] };

  writeFileSync(join(MODEL_DIR, 'model.onnx'), buildDecoderOnnx(config, weights));
  const provenance = {
    maas_weights: 'trained',
    maas_corpus: 'King James Bible (Debian bible-kjv-text, public domain)',
    maas_training: 'models/gpt2-mini (docs/training.md)',
  };
  writeFileSync(join(MODEL_DIR, 'config.json'), `${JSON.stringify({ architectures: ['GPT2LMHeadModel'], activation_function: 'gelu_new', n_ctx: config.n_positions, ...config, ...provenance }, null, 1)}\n`);
  writeFileSync(join(MODEL_DIR, 'generation_config.json'), `${JSON.stringify({ bos_token_id: config.bos_token_id, eos_token_id: config.eos_token_id }, null, 1)}\n`);
  const ref = JSON.parse(readFileSync(join(work, 'reference.json'), 'utf8')) as Reference;
  writeFileSync(join(HERE, 'reference.json'), `${JSON.stringify({ input_ids: ref.input_ids, logits: ref.logits.map((v) => Number(v.toPrecision(7))) })}\n`);

  const lm = await OnnxLm.load(MODEL_DIR);
  const diff = await referenceDifference(lm, ref);
  console.log(`ONNX vs PyTorch logits, reference input: max |difference| ${diff.toExponential(2)}`);

  const tokJson = JSON.parse(readFileSync(join(MODEL_DIR, 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
  const tokConfig = JSON.parse(readFileSync(join(MODEL_DIR, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  const tokenizer = new Tokenizer(tokJson, tokConfig);

  const held = readFileSync(join(work, 'heldout.bin'));
  const heldIds = new Uint16Array(held.buffer.slice(held.byteOffset, held.byteOffset + held.byteLength));
  const t0 = performance.now();
  const onnx = await onnxHeldOutLoss(lm, heldIds, result.train.blockSize, maxWindows);
  const seconds = (performance.now() - t0) / 1000;
  const sameWindows = result.heldOutLossByWindow.slice(0, onnx.tokens / result.train.blockSize);
  const torchSame = sameWindows.reduce((a, b) => a + b, 0) / sameWindows.length;
  console.log(`held-out loss through ONNX with KV cache: ${onnx.loss.toFixed(4)} nats/token over ${onnx.tokens} tokens (PyTorch on the same windows ${torchSame.toFixed(4)}; ${(onnx.tokens / seconds).toFixed(0)} tokens/s)`);

  const samples: { prompt: string; completion: string }[] = [];
  for (const [i, prompt] of PROMPTS.entries()) {
    const completion = await complete(lm, tokenizer, prompt, 40, 1000 + i, config.eos_token_id);
    samples.push({ prompt, completion });
    console.log(`> ${prompt}${completion}`);
  }
  await lm.close();

  const stats = JSON.parse(readFileSync(join(work, 'stats.json'), 'utf8')) as Record<string, unknown>;
  delete stats.heldOutNames;
  const report = { ...result, onnx: { referenceMaxAbsDiff: diff, heldOutLossFirstWindows: onnx.loss, torchHeldOutLossSameWindows: torchSame, heldOutTokensScored: onnx.tokens, decodeTokensPerSecond: onnx.tokens / seconds }, corpus: stats, samples };
  writeFileSync(join(HERE, 'training-result.json'), `${JSON.stringify(report, null, 1)}\n`);
  const md = samples.map((s) => `- **${s.prompt}**${s.completion.replace(/\n/g, ' / ')}`).join('\n');
  writeFileSync(join(HERE, 'samples.md'), `# gpt2-mini samples\n\nONNX model, KV cache, temperature 0.8, top-k 40, 40 tokens at most, seeds 1000+i (verse breaks shown as " / ").\n\n${md}\n`);
  copyFileSync(join(work, 'stats.json'), join(HERE, 'corpus-stats.json'));
}

if (isMain(import.meta.url)) await main();
