// A local model repository with the vision service's default models, for running the service without a
// registry (MAAS_VISION_MODEL_DIR) and for tests and benchmarks.
import { existsSync } from 'node:fs';
import { copyFile, link, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { colorClassifierFiles } from './color-classifier.js';
import { PPOCR_MODEL, ppocrFiles } from './ppocr.js';

export const COLOR_CLASSIFIER_MODEL = 'color-classifier';

/**
 * Lays a version out in a local model repository (the model host's directory source):
 * <root>/<model>/model.json with alias `default` → 1, and <root>/<model>/1/<files> (hard links, or copies
 * across file systems).
 */
export async function writeRepositoryModel(root: string, model: string, task: 'ocr' | 'image_classification', files: { name: string; path: string }[]): Promise<void> {
  const dir = join(root, model, '1');
  await mkdir(dir, { recursive: true });
  for (const f of files) {
    const target = join(dir, f.name);
    if (existsSync(target)) continue;
    await link(f.path, target).catch(() => copyFile(f.path, target));
  }
  await writeFile(join(root, model, 'model.json'), `${JSON.stringify({ task, aliases: { default: 1 } })}\n`);
}

/** Writes ppocr-v4 and color-classifier (version 1, alias default) under root; built files are cached in cacheDir. */
export async function writeDefaultRepository(root: string, cacheDir: string): Promise<void> {
  await writeRepositoryModel(root, PPOCR_MODEL, 'ocr', await ppocrFiles(cacheDir));
  await writeRepositoryModel(root, COLOR_CLASSIFIER_MODEL, 'image_classification', await colorClassifierFiles(cacheDir));
}
