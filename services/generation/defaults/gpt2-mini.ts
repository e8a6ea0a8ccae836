// Two GPT-2-architecture decoders of the same shape (4 layers, 4 heads, 128 wide):
//   - the DEFAULT gpt2-mini, trained by the project (models/gpt2-mini, docs/training.md): 4,096-token byte-level
//     BPE, 256 positions, committed in models/gpt2-mini/model/ and pushed as is;
//   - a SYNTHETIC twin with the real GPT-2 tokenizer (50,257 tokens), 1,024 positions and seeded random weights,
//     built here: tests that need GPT-2's own token ids or long contexts, and the benchmark's position-500
//     measurement, use it. It writes gibberish by design.
// The synthetic build goes once into <cacheDir>/gpt2-mini/<hash>/ and is reused while its parameters are unchanged.
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Gpt2Config } from './decoder-onnx.js';
import { GPT2_EOS_ID } from './gpt2-tokenizer.js';
import { FILES_LIST, writeDecoderFolder } from './model-folder.js';
import { syntheticWeights } from './synthetic-weights.js';

export const GPT2_MINI_NAME = 'gpt2-mini';

/** The trained default's committed files (model.onnx, config.json, tokenizer.json, ...). */
export const TRAINED_GPT2_MINI_DIR = fileURLToPath(new URL('../../../models/gpt2-mini/model/', import.meta.url));

/** The trained default's files, by name. */
export function trainedGpt2MiniFiles(): string[] {
  return readdirSync(TRAINED_GPT2_MINI_DIR).filter((f) => !f.startsWith('.')).sort();
}

export const GPT2_MINI_CONFIG: Gpt2Config = {
  model_type: 'gpt2',
  n_layer: 4,
  n_head: 4,
  n_embd: 128,
  vocab_size: 50257,
  n_positions: 1024,
  bos_token_id: GPT2_EOS_ID,
  eos_token_id: GPT2_EOS_ID,
  layer_norm_epsilon: 1e-5,
};

export const GPT2_MINI_SEED = 20_240_611;
/** Bump when the builder's output changes, so caches are rebuilt. */
const BUILD_REVISION = 1;

export interface BuiltModel {
  /** Folder holding the version's files. */
  dir: string;
  files: string[];
  /** True when this call built it (false: taken from the cache). */
  built: boolean;
}

/** Builds (or reuses) the synthetic twin under <cacheDir>/gpt2-mini/<hash of the build inputs>/. */
export async function buildGpt2Mini(cacheDir: string, config: Gpt2Config = GPT2_MINI_CONFIG, seed = GPT2_MINI_SEED): Promise<BuiltModel> {
  return buildCached(join(cacheDir, GPT2_MINI_NAME), { config, seed, revision: BUILD_REVISION }, (dir) =>
    writeDecoderFolder(dir, config, syntheticWeights(config, seed), {
      replace: false,
      extraConfig: { maas_weights: 'synthetic', maas_seed: seed, maas_note: 'seeded random weights; generates gibberish until trained (issue 11)' },
    }),
  );
}

/**
 * Runs `build` into <root>/<hash of params>/ unless a finished folder is there already (builds write to a
 * temporary folder renamed into place, the file list last, so a folder with its list is complete).
 */
export async function buildCached(root: string, params: unknown, build: (dir: string) => Promise<string[]>): Promise<BuiltModel> {
  const key = createHash('sha256').update(JSON.stringify(params)).digest('hex').slice(0, 16);
  const dir = join(root, key);
  if (existsSync(join(dir, FILES_LIST))) return { dir, files: await listed(dir), built: false };
  await mkdir(root, { recursive: true });
  const files = await build(dir);
  return { dir, files, built: true };
}

async function listed(dir: string): Promise<string[]> {
  return JSON.parse(await readFile(join(dir, FILES_LIST), 'utf8')) as string[];
}
