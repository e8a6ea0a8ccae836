// Reproducibility checks of the trained default decoder's pieces: the BPE trainer and the committed
// tokenizer, the corpus parsing and unigram baseline, and the committed ONNX export against the PyTorch
// forward pass it came from (reference.json), with and without the KV cache.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDecoderOnnx } from '../../services/generation/defaults/decoder-onnx.js';
import { byteAlphabet, EOS, preTokenize, tokenizerConfig, tokenizerJson, trainBpe } from './bpe.js';
import { OnnxLm, readTrainedWeights } from './onnx-lm.js';
import { HERE, MODEL_DIR } from './paths.js';
import { parseBible, unigramLoss } from './prepare.js';

const readJson = (path: string) => JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
const SAMPLE = [
  'In the beginning God created the heaven and the earth.',
  'And the earth was without form, and void; and darkness was upon the face of the deep.',
  "And God said, Let there be light: and there was light. Isn't it 1611?",
];

describe('byte-level BPE trainer', () => {
  it('maps all 256 bytes to distinct printable symbols', () => {
    const table = byteAlphabet();
    expect(new Set(table).size).toBe(256);
    expect(table[32]).toBe('Ġ');
    expect(table[65]).toBe('A');
  });

  it('learns the same merges from the same text and numbers the vocabulary bytes, merges, then EOS', () => {
    const a = trainBpe(SAMPLE, 300);
    const b = trainBpe(SAMPLE, 300);
    expect(a).toEqual(b);
    expect(Object.keys(a.vocab)).toHaveLength(256 + a.merges.length + 1);
    expect(a.vocab[EOS]).toBe(256 + a.merges.length);
    // Only pairs seen at least twice are merged; "the" is the sample's most frequent word.
    expect(a.merges.slice(0, 3)).toEqual(['t h', 'th e', 'Ġ the']);
  });

  it('builds a tokenizer.json that @huggingface/tokenizers loads, that shortens text and round-trips it', () => {
    const bpe = trainBpe(SAMPLE, 400);
    const tok = new Tokenizer(tokenizerJson(bpe), tokenizerConfig(64));
    const text = SAMPLE.join('\n');
    const ids = tok.encode(text).ids;
    const bytes = preTokenize(text).join('').length;
    expect(new Tokenizer(tokenizerJson(trainBpe([], 257)), tokenizerConfig(64)).encode(text).ids).toHaveLength(bytes);
    expect(ids.length).toBeLessThan(bytes * 0.6);
    expect(tok.decode(ids, { skip_special_tokens: false })).toBe(text);
    expect(tok.encode(`light${EOS}`).ids.at(-1)).toBe(bpe.vocab[EOS]);
  });
});

describe('corpus preparation', () => {
  it('groups `bible -f` verses into chapters, one verse a line', () => {
    const dump = 'Ge1:1 In the beginning.\nGe1:2 And the earth.\nGe2:1 Thus the heavens.\n1Sm1:1 Now there was.\n';
    expect(parseBible(dump)).toEqual([
      { book: 'Ge', chapter: 1, text: 'In the beginning.\nAnd the earth.' },
      { book: 'Ge', chapter: 2, text: 'Thus the heavens.' },
      { book: '1Sm', chapter: 1, text: 'Now there was.' },
    ]);
  });

  it('scores held-out ids under add-one smoothed unigram counts', () => {
    // counts + 1 over a vocabulary of 2: token 0 → 3/5, token 1 → 2/5.
    const loss = unigramLoss(Uint16Array.of(0, 0, 1), Uint16Array.of(0, 1), 2);
    expect(loss).toBeCloseTo(-(Math.log(3 / 5) + Math.log(2 / 5)) / 2, 12);
  });
});

describe('the committed model', () => {
  const config = readJson(join(MODEL_DIR, 'config.json'));
  const tokenizer = new Tokenizer(readJson(join(MODEL_DIR, 'tokenizer.json')), readJson(join(MODEL_DIR, 'tokenizer_config.json')));
  let lm: OnnxLm;
  beforeAll(async () => {
    lm = await OnnxLm.load(MODEL_DIR);
  });
  afterAll(async () => {
    await lm.close();
  });

  it('fits in 20 MB and names its end-of-text token consistently', () => {
    const total = ['model.onnx', 'config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json'].reduce(
      (n, f) => n + statSync(join(MODEL_DIR, f)).size,
      0,
    );
    expect(total).toBeLessThan(20 * 1024 * 1024);
    expect(tokenizer.token_to_id(EOS)).toBe(config.eos_token_id);
    expect(config.vocab_size).toBe((config.eos_token_id as number) + 1);
    expect(readJson(join(MODEL_DIR, 'tokenizer_config.json')).eos_token).toBe(EOS);
  });

  it('round-trips English, punctuation, digits, newlines and non-Latin text through its tokenizer', () => {
    const text = 'And the LORD said unto Moses, "Go!"\n  Psalm 23:1 — café, naïve, 你好 🙂';
    const ids = tokenizer.encode(text).ids;
    expect(Math.max(...ids)).toBeLessThan(config.vocab_size as number);
    expect(tokenizer.decode(ids, { skip_special_tokens: false })).toBe(text);
    expect(tokenizer.encode(' the LORD').ids).toHaveLength(2); // frequent corpus words are single tokens
  });

  it('computes the same last-position logits as the PyTorch forward pass it was exported from', async () => {
    const ref = readJson(join(HERE, 'reference.json')) as { input_ids: number[]; logits: number[] };
    lm.reset();
    const logits = await lm.feed(ref.input_ids);
    let maxDiff = 0;
    for (let i = 0; i < ref.logits.length; i++) maxDiff = Math.max(maxDiff, Math.abs(logits[i]! - ref.logits[i]!));
    expect(maxDiff).toBeLessThan(1e-3);
  });

  it('gives the same logits token by token through the KV cache as for the whole prompt at once', async () => {
    const ids = tokenizer.encode('And God said, Let there be light: and there was light.').ids;
    lm.reset();
    const whole = Float32Array.from(await lm.feed(ids));
    lm.reset();
    let stepped = new Float32Array(0);
    for (const id of ids) stepped = Float32Array.from(await lm.feed([id]));
    let maxDiff = 0;
    for (let i = 0; i < whole.length; i++) maxDiff = Math.max(maxDiff, Math.abs(whole[i]! - stepped[i]!));
    expect(maxDiff).toBeLessThan(1e-4);
  });
});

// The training weights live in the (gitignored) work folder of whoever trained; elsewhere there is nothing to compare.
const WORK = process.env.MAAS_LM_WORK ?? join(HERE, '..', '..', '.maas', 'cache', 'gpt2-mini-train');

// The trainer is PyTorch (Debian's python3-torch); CI does not train, so this runs only where it is installed.
const PYTHON = '/usr/bin/python3';
const hasTorch = spawnSync(PYTHON, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;

describe('the trainer', () => {
  it.skipIf(!hasTorch)('has gradients that agree with finite differences and attention that never sees later tokens', () => {
    const run = spawnSync(PYTHON, [join(HERE, 'train.py'), '--self-test'], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' } });
    expect(run.status, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as { maxGradientError: number; causalLeak: number };
    expect(result.maxGradientError).toBeLessThan(1e-6);
    expect(result.causalLeak).toBe(0);
  }, 60_000);
});

describe('export through the generation service builder', () => {
  it.skipIf(!existsSync(join(WORK, 'weights.bin')))('rebuilds the committed ONNX byte for byte from the training weights', () => {
    const trained = readTrainedWeights(WORK);
    const built = buildDecoderOnnx(trained.config, trained.weights);
    expect(Buffer.from(built).equals(readFileSync(join(MODEL_DIR, 'model.onnx')))).toBe(true);
  });
});
