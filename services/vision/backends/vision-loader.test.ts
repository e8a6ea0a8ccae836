// The loader on model folders, as the model host calls it: the real PP-OCRv4 files, colour classifiers built in
// several input layouts, and versions the engine cannot drive.
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderPage, requireFonts } from '../../../test/fixtures/vision/render.js';
import { FailedPreconditionError } from '../../runtime/errors.js';
import { silentLogger } from '../../runtime/logger.js';
import { ModelTask, type LocalVersion } from '../../runtime/models/types.js';
import { buildColorClassifier, colorClassifierJson, COLORS, DEFAULT_COLOR_CLASSIFIER, type ColorClassifierOptions } from '../defaults/color-classifier.js';
import { writeRepositoryModel } from '../defaults/model-repository.js';
import { ppocrFiles } from '../defaults/ppocr.js';
import type { VisionModel } from '../domain/vision-model.js';
import { decodeImage, sharpImageOps } from './sharp-images.js';
import { visionLoader } from './vision-loader.js';

const loaderWith = (sessionThreads: number) =>
  visionLoader({
    session: { executionProviders: ['cpu'], intraOpThreads: 1, interOpThreads: 1 },
    sessionThreads,
    ocrBatching: { detMaxBatch: 2, clsMaxBatch: 16, recMaxBatch: 8, recMaxBatchWidth: 1600, recMaxLineWidth: 3200, runConcurrency: 2, maxQueueDelayMs: 0, maxQueuedPages: 8, maxQueuedLines: 256 },
    classifierBatching: { maxBatch: 8, runConcurrency: 1, maxQueueDelayMs: 0, maxQueued: 16 },
    images: sharpImageOps(),
    log: silentLogger,
  });
// One worker thread per model file: the service's default path (the domain tests run on the event loop).
const loader = loaderWith(1);
const signal = new AbortController().signal;
let root: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'maas-vision-loader-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function version(dir: string, name: string, task: ModelTask): Promise<LocalVersion> {
  const files = await Promise.all((await readdir(dir)).map(async (f) => ({ name: f, size: (await stat(join(dir, f))).size, sha256: '' })));
  return { name, version: 1, task, dir, files, signatures: {}, tags: {} };
}

async function classifierFolder(name: string, options: ColorClassifierOptions, json: object = colorClassifierJson(options), labels = COLORS.map((c) => c.label)) {
  const dir = join(root, name);
  await writeRepositoryModel(root, name, 'image_classification', []);
  await writeFile(join(dir, '1', 'model.onnx'), buildColorClassifier(options));
  await writeFile(join(dir, '1', 'classifier.json'), JSON.stringify(json));
  await writeFile(join(dir, '1', 'labels.txt'), labels.join('\n'));
  return version(join(dir, '1'), name, ModelTask.IMAGE_CLASSIFICATION);
}

async function failure(p: Promise<unknown>): Promise<FailedPreconditionError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(FailedPreconditionError);
  return err as FailedPreconditionError;
}

describe('vision loader', () => {
  it('loads PP-OCRv4 from a folder and reads a rendered line', async () => {
    requireFonts();
    await writeRepositoryModel(root, 'ppocr-v4', 'ocr', await ppocrFiles(join(process.cwd(), '.maas', 'cache')));
    const loaded = await loader(await version(join(root, 'ppocr-v4', '1'), 'ppocr-v4', ModelTask.OCR), signal);
    try {
      expect(loaded.executionProvider).toBe('cpu');
      expect(loaded.bytes).toBeGreaterThan(10_000_000);
      const model = loaded.model as Extract<VisionModel, { kind: 'ocr' }>;
      expect(model.engine.hasOrientationClassifier).toBe(true);
      expect(model.engine.dictionarySize).toBe(6624);
      const page = await renderPage({ width: 640, height: 90, lines: [{ text: 'Hello World 2024, gRPC mesh!', font: 'DejaVu Sans', size: 30, left: 20, top: 20 }] });
      const image = await decodeImage(page.bytes, { maxBytes: 1e7, maxPixels: 1e7 }, 'image');
      const r = await model.engine.recognize(image, { maxSide: 960, detectOrientation: true, minConfidence: 0.5 }, signal);
      expect(r.lines.map((l) => l.text)).toEqual(['Hello World 2024, gRPC mesh!']);
      expect(r.inferenceMs).toBeGreaterThan(0);
    } finally {
      await loaded.close();
    }
  });

  it.each([
    ['nchw-rgb', DEFAULT_COLOR_CLASSIFIER],
    ['nhwc-bgr', { ...DEFAULT_COLOR_CLASSIFIER, layout: 'NHWC', channelOrder: 'BGR', height: 32, width: 48, mean: [0.5, 0.4, 0.3], std: [0.2, 0.25, 0.3] }],
  ] as [string, ColorClassifierOptions][])('drives a %s classifier as its classifier.json describes', async (name, options) => {
    const loaded = await loader(await classifierFolder(`colors-${name}`, options), signal);
    try {
      const model = loaded.model as Extract<VisionModel, { kind: 'classifier' }>;
      for (const [label, rgb] of [
        ['magenta', { r: 240, g: 20, b: 230 }],
        ['cyan', { r: 10, g: 230, b: 240 }],
        ['red', { r: 250, g: 10, b: 5 }],
      ] as const) {
        const image = await decodeImage(await sharp({ create: { width: 90, height: 30, channels: 3, background: rgb } }).png().toBuffer(), { maxBytes: 1e7, maxPixels: 1e7 }, 'image');
        const r = await model.engine.classify(image, 2, signal);
        expect(r.labels[0].label).toBe(label);
        expect(r.labels).toHaveLength(2);
      }
    } finally {
      await loaded.close();
    }
  });

  it("counts a version's files once per session thread in the memory it reports", async () => {
    const v = await classifierFolder('colors-bytes', DEFAULT_COLOR_CLASSIFIER);
    const modelBytes = v.files.find((f) => f.name === 'model.onnx')!.size;
    for (const threads of [1, 2]) {
      const loaded = await loaderWith(threads)(v, signal);
      try {
        expect(loaded.bytes).toBe(modelBytes * threads);
      } finally {
        await loaded.close();
      }
    }
  });

  it('refuses a classifier whose classifier.json does not match the model or is invalid', async () => {
    const wrongSize = await classifierFolder('colors-wrong-size', DEFAULT_COLOR_CLASSIFIER, { ...colorClassifierJson(), input: { ...(colorClassifierJson() as { input: object }).input, height: 32 } });
    expect((await failure(loader(wrongSize, signal))).reason).toBe('INPUT_MISMATCH');
    const fewLabels = await classifierFolder('colors-few-labels', DEFAULT_COLOR_CLASSIFIER, colorClassifierJson(), ['red', 'green']);
    expect((await failure(loader(fewLabels, signal))).reason).toBe('LABELS_MISMATCH');
    const invalid = await classifierFolder('colors-invalid', DEFAULT_COLOR_CLASSIFIER, { input: { height: 64 } });
    expect((await failure(loader(invalid, signal))).reason).toBe('MODEL_CONFIG_INVALID');
  });

  it('refuses an OCR version that lacks a file, and an unloadable ONNX file', async () => {
    const dir = join(root, 'ocr-incomplete', '1');
    await writeRepositoryModel(root, 'ocr-incomplete', 'ocr', []);
    await writeFile(join(dir, 'det.onnx'), 'not onnx');
    await writeFile(join(dir, 'keys.txt'), 'a\nb');
    expect((await failure(loader(await version(dir, 'ocr-incomplete', ModelTask.OCR), signal))).reason).toBe('MODEL_FILES_MISSING');
    await writeFile(join(dir, 'rec.onnx'), 'not onnx either');
    expect((await failure(loader(await version(dir, 'ocr-incomplete', ModelTask.OCR), signal))).reason).toBe('MODEL_UNLOADABLE');
  });
});
