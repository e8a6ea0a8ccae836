// A local model folder (the directory source's layout) holding the embeddings service's real models, for
// tests and the bench: the default GloVe model (built once into the shared cache and linked in), BERT-style
// encoders for each pooling, and a model of another task.
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../../../cli/launch.js';
import { buildBertStyle } from '../defaults/build-bert-style.js';
import { buildGlove } from '../defaults/build-glove.js';

export interface ModelFolder {
  root: string;
  /** The built GloVe model's folder (in the shared cache). */
  gloveDir: string;
  /** Points a model's aliases at versions (written atomically, as the directory source polls the file). */
  setAliases(model: string, aliases: Record<string, number>): void;
  remove(): void;
}

/** The mesh's shared cache of built default models (MAAS_CACHE_DIR, default <project>/.maas/cache). */
export function sharedCacheDir(): string {
  return process.env.MAAS_CACHE_DIR || join(ROOT, '.maas', 'cache');
}

export async function createModelFolder(options: { bert?: boolean } = {}): Promise<ModelFolder> {
  const root = mkdtempSync(join(tmpdir(), 'maas-embeddings-'));
  const setAliases = (model: string, aliases: Record<string, number>, task = 'embedding') => {
    mkdirSync(join(root, model), { recursive: true });
    const tmp = join(root, model, `.model.json.${process.pid}`);
    writeFileSync(tmp, JSON.stringify({ task, aliases }));
    renameSync(tmp, join(root, model, 'model.json'));
  };
  const glove = await buildGlove(sharedCacheDir());
  setAliases('glove-100d', { default: 1 });
  symlinkSync(glove.dir, join(root, 'glove-100d', '1'), 'dir');
  if (options.bert ?? true) {
    for (const pooling of ['cls', 'mean', 'last_token'] as const) {
      const name = `bert-${pooling.replace('_', '-')}`;
      await buildBertStyle(join(root, name, '1'), { pooling });
      setAliases(name, { default: 1 });
    }
    // Two versions with different weights, for hot swaps.
    await buildBertStyle(join(root, 'swap', '1'), { pooling: 'mean', seed: 1 });
    await buildBertStyle(join(root, 'swap', '2'), { pooling: 'mean', seed: 2 });
    setAliases('swap', { default: 1 });
  }
  // A model of another task: the service must refuse it.
  setAliases('ocr-lines', { default: 1 }, 'ocr');
  mkdirSync(join(root, 'ocr-lines', '1'), { recursive: true });
  writeFileSync(join(root, 'ocr-lines', '1', 'labels.txt'), 'a\nb\n');
  return {
    root,
    gloveDir: glove.dir,
    setAliases: (model, aliases) => setAliases(model, aliases),
    remove: () => rmSync(root, { recursive: true, force: true }),
  };
}
