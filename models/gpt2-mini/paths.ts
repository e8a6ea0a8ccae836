// Where the pipeline reads and writes: settings beside this file, the committed model in ./model/, the
// intermediate files (corpus dump, token ids, checkpoints) in the gitignored work folder.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(HERE, '..', '..');
/** The committed model version folder (model.onnx, config.json, tokenizer.json, tokenizer_config.json, …). */
export const MODEL_DIR = join(HERE, 'model');
/** Intermediate files; override with MAAS_LM_WORK. */
export const WORK_DIR = process.env.MAAS_LM_WORK ?? join(REPO, '.maas', 'cache', 'gpt2-mini-train');

export interface Settings {
  corpus: { debianPackage: string; command: string[]; heldOutEveryNthChapter: number; heldOutOffset: number };
  tokenizer: { vocabSize: number };
  model: { n_layer: number; n_head: number; n_embd: number; n_positions: number };
  train: Record<string, number>;
}

export function readSettings(path = process.env.MAAS_LM_SETTINGS ?? join(HERE, 'settings.json')): Settings {
  return JSON.parse(readFileSync(path, 'utf8')) as Settings;
}

/** True when the module at `url` is the script node was started with. */
export function isMain(url: string): boolean {
  return process.argv[1] !== undefined && url === pathToFileURL(resolve(process.argv[1])).href;
}
