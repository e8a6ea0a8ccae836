// The use cases on the real model host (a local model repository with the default models): admission,
// cancellation, task checks and defaults.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderPage, requireFonts } from '../../../test/fixtures/vision/render.js';
import { CancelledError, DeadlineExceededError, FailedPreconditionError, InvalidArgumentError, OverloadedError } from '../../runtime/errors.js';
import { silentLogger } from '../../runtime/logger.js';
import { DirectorySource } from '../../runtime/models/directory-source.js';
import { ModelHost } from '../../runtime/models/model-host.js';
import { ModelTask } from '../../runtime/models/types.js';
import { sharpImageOps } from '../backends/sharp-images.js';
import { visionLoader } from '../backends/vision-loader.js';
import { writeDefaultRepository } from '../defaults/model-repository.js';
import type { VisionModel } from './vision-model.js';
import { VisionService, type VisionSettings } from './vision-service.js';

let root: string;
let host: ModelHost<VisionModel>;
let page: Buffer;
const images = sharpImageOps();
const settings: VisionSettings = {
  limits: { maxBytes: 1e7, maxPixels: 1e7 },
  detMaxSide: 960,
  detMaxSideLimit: 2048,
  detectOrientation: true,
  minConfidence: 0.5,
  maxConcurrentPages: 2,
  defaultOcrModel: 'ppocr-v4',
  defaultClassifier: 'color-classifier',
};
const service = () => new VisionService({ models: host, images, settings, log: silentLogger });
const live = () => new AbortController().signal;

beforeAll(async () => {
  requireFonts();
  root = await mkdtemp(join(tmpdir(), 'maas-vision-service-'));
  await writeDefaultRepository(root, join(process.cwd(), '.maas', 'cache'));
  host = new ModelHost<VisionModel>({
    source: new DirectorySource(root),
    loader: visionLoader({
      session: { executionProviders: ['cpu'], intraOpThreads: 1, interOpThreads: 1 },
      sessionThreads: 0,
      ocrBatching: { detMaxBatch: 2, clsMaxBatch: 16, recMaxBatch: 8, recMaxBatchWidth: 1600, recMaxLineWidth: 3200, runConcurrency: 2, maxQueueDelayMs: 0, maxQueuedPages: 8, maxQueuedLines: 256 },
      classifierBatching: { maxBatch: 8, runConcurrency: 1, maxQueueDelayMs: 0, maxQueued: 16 },
      images,
      log: silentLogger,
    }),
    tasks: [ModelTask.OCR, ModelTask.IMAGE_CLASSIFICATION],
    defaultModel: 'ppocr-v4',
    memoryBudgetBytes: 1e9,
    log: silentLogger,
  });
  page = (await renderPage({ width: 500, height: 80, lines: [{ text: 'Admission control', font: 'DejaVu Sans', size: 28, left: 20, top: 20 }] })).bytes;
});

afterAll(async () => {
  await host?.close();
  await rm(root, { recursive: true, force: true });
});

describe('vision service', () => {
  it('uses the default OCR model and reports what ran', async () => {
    const r = await service().recognizeText({ name: '' }, page, {}, live());
    expect(r.lines.map((l) => l.text)).toEqual(['Admission control']);
    expect(r.model).toMatchObject({ name: 'ppocr-v4', version: 1, alias: 'default', executionProvider: 'cpu' });
    expect(r.stages.decodeMs).toBeGreaterThan(0);
    expect(r.timings.totalMs).toBeGreaterThanOrEqual(r.timings.inferenceMs);
  });

  it('refuses pages beyond the concurrency limit at once, with a retry hint', async () => {
    const s = service();
    const calls = Array.from({ length: 5 }, () =>
      s.recognizeText({ name: '' }, page, {}, live()).then(
        () => 'ok',
        (e: unknown) => e,
      ),
    );
    const outcomes = await Promise.all(calls);
    expect(outcomes.filter((o) => o === 'ok')).toHaveLength(2);
    const refused = outcomes.filter((o) => o instanceof OverloadedError) as OverloadedError[];
    expect(refused).toHaveLength(3);
    expect(refused[0].retryAfterMs).toBeGreaterThan(0);
    // Once they finish, new pages are admitted again.
    await expect(s.recognizeText({ name: '' }, page, {}, live())).resolves.toBeDefined();
  });

  it('stops a cancelled request with CANCELLED and one past its deadline with DEADLINE_EXCEEDED', async () => {
    const ac = new AbortController();
    const call = service().recognizeText({ name: '' }, page, {}, ac.signal);
    ac.abort();
    await expect(call).rejects.toBeInstanceOf(CancelledError);
    await expect(service().recognizeText({ name: '' }, page, {}, AbortSignal.timeout(0))).rejects.toBeInstanceOf(DeadlineExceededError);
  });

  it('checks the task of the named model and the classification options', async () => {
    const red = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#f00' } }).png().toBuffer();
    await expect(service().classifyImage({ name: 'ppocr-v4' }, red, 1, live())).rejects.toBeInstanceOf(FailedPreconditionError);
    await expect(service().recognizeText({ name: 'color-classifier' }, red, {}, live())).rejects.toBeInstanceOf(FailedPreconditionError);
    await expect(service().classifyImage({ name: '' }, red, 0, live())).rejects.toBeInstanceOf(InvalidArgumentError);
    const r = await service().classifyImage({ name: '' }, red, undefined, live());
    expect(r.labels).toHaveLength(5);
    expect(r.labels[0].label).toBe('red');
    expect(r.model.name).toBe('color-classifier');
  });

  it('describes loaded models', async () => {
    const models = await service().listModels(live());
    expect(models.map((m) => m.model.name).sort()).toEqual(['color-classifier', 'ppocr-v4']);
    const ocr = await service().describe({ name: '' }, live());
    expect(ocr.ocr).toEqual({ hasOrientationClassifier: true, dictionarySize: 6624, lineHeight: 48 });
  });
});
