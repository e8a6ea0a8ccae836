// A local model folder (the directory source's layout) with the generation service's test models, for
// tests and the bench. Models are built once into the shared cache (keyed by their build inputs) and linked in:
//   bigram       hand-built: "0"→"1"→…→"9"→EOS, "a"→"b"→…→"z"→"a", and the tokens of 你好世界 in a cycle
//   tiny         GPT-2 architecture with seeded random weights (2 layers, 32 wide), for cache and batch checks
//   gpt2-mini    the default model (optional: it takes a few seconds to build the first time)
//   adder        a generation-task model whose graph is not a decoder (FAILED_PRECONDITION)
//   ocr-lines    a model of another task (FAILED_PRECONDITION)
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../../../cli/launch.js';
import { bigramModel } from '../defaults/bigram-model.js';
import type { Gpt2Config } from '../defaults/decoder-onnx.js';
import { gpt2TokenizerConfig, gpt2TokenizerJson } from '../defaults/gpt2-tokenizer.js';
import { buildCached, buildGpt2Mini } from '../defaults/gpt2-mini.js';
import { writeDecoderFolder } from '../defaults/model-folder.js';
import { GraphBuilder, DataType } from '../defaults/onnx-graph.js';
import { syntheticWeights } from '../defaults/synthetic-weights.js';

export const EOS = 50256;
/** GPT-2 ids of "0".."9" and "a".."z". */
export const DIGIT = (d: number) => 15 + d;
export const LETTER = (c: string) => 64 + (c.charCodeAt(0) - 97);
/** 你好世界 in GPT-2 tokens: every character but the last spans two byte-level tokens. */
export const CHINESE_TEXT = '你好世界';
export const CHINESE_TOKENS = [19526, 254, 25001, 121, 10310, 244, 45911, 234];

/** The bigram model's successor table. */
export function bigramTable(): Map<number, number> {
  const next = new Map<number, number>();
  for (let d = 0; d < 9; d++) next.set(DIGIT(d), DIGIT(d + 1));
  next.set(DIGIT(9), EOS);
  for (let c = 0; c < 26; c++) next.set(64 + c, 64 + ((c + 1) % 26));
  CHINESE_TOKENS.forEach((t, i) => next.set(t, CHINESE_TOKENS[(i + 1) % CHINESE_TOKENS.length]!));
  return next;
}

/** What the bigram model writes greedily after a prompt ending in letter `from`: the alphabet onward, cycling. */
export function lettersAfter(from: string, count: number): string {
  let out = '';
  for (let i = 1; i <= count; i++) out += String.fromCharCode(97 + ((from.charCodeAt(0) - 97 + i) % 26));
  return out;
}

export const TINY_CONFIG: Gpt2Config = {
  model_type: 'gpt2',
  n_layer: 2,
  n_head: 2,
  n_embd: 32,
  vocab_size: 50257,
  n_positions: 1024,
  bos_token_id: EOS,
  eos_token_id: EOS,
  layer_norm_epsilon: 1e-5,
};

export interface GenerationModelFolder {
  root: string;
  /** Folders of the built versions, by model name. */
  dirs: Record<string, string>;
  setAliases(model: string, aliases: Record<string, number>, task?: string): void;
  remove(): void;
}

/** The mesh's shared cache of built models (MAAS_CACHE_DIR, default <project>/.maas/cache). */
export function sharedCacheDir(): string {
  return process.env.MAAS_CACHE_DIR || join(ROOT, '.maas', 'cache');
}

export async function buildBigram(cacheDir = sharedCacheDir()) {
  const spec = { next: bigramTable() };
  return buildCached(join(cacheDir, 'generation-test', 'bigram'), { table: [...spec.next], revision: 1 }, (dir) => {
    const { config, weights } = bigramModel(spec);
    return writeDecoderFolder(dir, config, weights, { replace: false });
  });
}

export async function buildTiny(cacheDir = sharedCacheDir(), config: Gpt2Config = TINY_CONFIG, seed = 1) {
  return buildCached(join(cacheDir, 'generation-test', 'tiny'), { config, seed, revision: 1 }, (dir) =>
    writeDecoderFolder(dir, config, syntheticWeights(config, seed), { replace: false, extraConfig: { maas_weights: 'synthetic' } }),
  );
}

export async function createGenerationModelFolder(options: { gpt2Mini?: boolean } = {}): Promise<GenerationModelFolder> {
  const root = mkdtempSync(join(tmpdir(), 'maas-generation-'));
  const setAliases = (model: string, aliases: Record<string, number>, task = 'generation') => {
    mkdirSync(join(root, model), { recursive: true });
    const tmp = join(root, model, `.model.json.${process.pid}`);
    writeFileSync(tmp, JSON.stringify({ task, aliases }));
    renameSync(tmp, join(root, model, 'model.json'));
  };
  const dirs: Record<string, string> = {};
  const link = (name: string, dir: string) => {
    setAliases(name, { default: 1 });
    symlinkSync(dir, join(root, name, '1'), 'dir');
    dirs[name] = dir;
  };
  link('bigram', (await buildBigram()).dir);
  link('tiny', (await buildTiny()).dir);
  if (options.gpt2Mini) link('gpt2-mini', (await buildGpt2Mini(sharedCacheDir())).dir);

  // A generation model whose graph is y = x + 1: not a decoder this service can drive.
  setAliases('adder', { default: 1 });
  mkdirSync(join(root, 'adder', '1'), { recursive: true });
  const g = new GraphBuilder('adder');
  g.input('x', DataType.FLOAT, ['batch', 4]);
  g.output('y', DataType.FLOAT, ['batch', 4]);
  g.op1('Add', ['x', g.float('one', [4], new Float32Array(4).fill(1))], {}, 'y');
  writeFileSync(join(root, 'adder', '1', 'model.onnx'), g.serialize(17));
  writeFileSync(join(root, 'adder', '1', 'tokenizer.json'), JSON.stringify(await gpt2TokenizerJson()));
  writeFileSync(join(root, 'adder', '1', 'tokenizer_config.json'), JSON.stringify(gpt2TokenizerConfig(64)));

  // A model of another task.
  setAliases('ocr-lines', { default: 1 }, 'ocr');
  mkdirSync(join(root, 'ocr-lines', '1'), { recursive: true });
  writeFileSync(join(root, 'ocr-lines', '1', 'labels.txt'), 'a\nb\n');

  return { root, dirs, setAliases, remove: () => rmSync(root, { recursive: true, force: true }) };
}
