// Writes a decoder model version folder in the Hugging Face layout the generation service loads:
// model.onnx, config.json, generation_config.json, tokenizer.json, tokenizer_config.json.
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { buildDecoderOnnx, type Gpt2Config, type Gpt2Weights } from './decoder-onnx.js';
import { gpt2TokenizerConfig, gpt2TokenizerJson } from './gpt2-tokenizer.js';

export interface FolderOptions {
  /** tokenizer_config.json's chat_template; null writes none (the service then uses its plain default). */
  chatTemplate?: string | null;
  /** Extra fields for config.json (provenance such as `maas_weights: "synthetic"`). */
  extraConfig?: Record<string, unknown>;
  /** Replace an existing folder (default); false keeps one that another process finished first. */
  replace?: boolean;
}

/** Written last into a finished folder: the version's file names. */
export const FILES_LIST = '.files.json';

/** Writes the folder atomically (a temporary sibling renamed into place). Returns the file names. */
export async function writeDecoderFolder(dir: string, config: Gpt2Config, weights: Gpt2Weights, options: FolderOptions = {}): Promise<string[]> {
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  const files: Record<string, string | Uint8Array> = {
    'model.onnx': buildDecoderOnnx(config, weights),
    'config.json': json({ architectures: ['GPT2LMHeadModel'], activation_function: 'gelu_new', ...config, ...options.extraConfig }),
    'generation_config.json': json({ bos_token_id: config.bos_token_id, eos_token_id: config.eos_token_id }),
    'tokenizer.json': json(await gpt2TokenizerJson()),
    'tokenizer_config.json': json(gpt2TokenizerConfig(config.n_positions, options.chatTemplate === null ? undefined : options.chatTemplate)),
  };
  for (const [name, data] of Object.entries(files)) await writeFile(join(tmp, name), data);
  await writeFile(join(tmp, FILES_LIST), JSON.stringify(Object.keys(files)));
  if (options.replace ?? true) await rm(dir, { recursive: true, force: true });
  try {
    await rename(tmp, dir);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    if (!existsSync(join(dir, FILES_LIST))) throw err;
  }
  return Object.keys(files);
}

function json(v: unknown): string {
  return `${JSON.stringify(v, null, 1)}\n`;
}
