// The default generation model, gpt2-mini: the GPT-2 architecture and real GPT-2 tokenizer, small enough
// that a decode step takes a few milliseconds on one CPU core, with SYNTHETIC weights (seeded random, as
// GPT-2 is initialized before training). It exercises the whole serving path — KV cache, batching, sampling,
// streaming — but writes gibberish until a trained checkpoint replaces the weights (issue 11).
// Built once into <cacheDir>/gpt2-mini/<hash>/ and reused while the build parameters are unchanged.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Gpt2Config } from './decoder-onnx.js';
import { GPT2_EOS_ID } from './gpt2-tokenizer.js';
import { FILES_LIST, writeDecoderFolder } from './model-folder.js';
import { syntheticWeights } from './synthetic-weights.js';

export const GPT2_MINI_NAME = 'gpt2-mini';

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

/** Builds (or reuses) gpt2-mini under <cacheDir>/gpt2-mini/<hash of the build inputs>/. */
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
