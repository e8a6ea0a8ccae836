// The vision service as its own process, serving the default models from a local model repository: OCR on
// pages the test renders (fonts, sizes, several lines, noise, 180 degrees, EXIF orientation), the colour
// classifier against known answers, and every kind of bad input.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync, crc32 } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HealthClient, HealthCheckResponse_ServingStatus as Serving } from '../gen/grpc/health/v1/health.js';
import { Task } from '../gen/maas/common/v1/model.js';
import {
  ClassifyImageRequest,
  DetectTextRequest,
  GetModelInfoRequest,
  RecognizeTextRequest,
  VisionServiceClient,
  type RecognizeTextStreamRequest,
  type RecognizeTextStreamResponse,
} from '../gen/maas/vision/v1/vision.js';
import { launch, ROOT, type Launched } from '../cli/launch.js';
import { createClient, unary } from '../services/runtime/client.js';
import { decodeStatus } from '../services/runtime/grpc-status.js';
import { COLORS, GAIN } from '../services/vision/defaults/color-classifier.js';
import { writeDefaultRepository } from '../services/vision/defaults/model-repository.js';
import { PAGE_SPECS, renderPages, type NamedPage } from './fixtures/vision/pages.js';
import { renderPage, requireFonts } from './fixtures/vision/render.js';
import { levenshtein, owners, scorePage } from './fixtures/vision/score.js';
import { listServices } from './support/reflection.js';

const MAX_IMAGE_BYTES = 4 * 1024 * 1024;

let dir: string;
let proc: Launched;
let address: string;
let vision: VisionServiceClient;
let pages: NamedPage[];
const output: string[] = [];

beforeAll(async () => {
  requireFonts();
  dir = await mkdtemp(join(tmpdir(), 'maas-vision-'));
  await writeDefaultRepository(join(dir, 'models'), join(ROOT, '.maas', 'cache'));
  proc = launch('vision', 'services/vision/main.ts', {
    // A stream window wider than the default, so that the stream test has many pages in flight at once.
    env: { MAAS_PORT: '0', MAAS_METRICS_PORT: '0', MAAS_VISION_MODEL_DIR: join(dir, 'models'), MAAS_VISION_MAX_IMAGE_BYTES: String(MAX_IMAGE_BYTES), MAAS_VISION_STREAM_WINDOW: '12' },
    onLine: (line) => output.push(line),
  });
  [pages] = await Promise.all([renderPages(), proc.port]);
  address = `127.0.0.1:${await proc.port}`;
  vision = createClient(VisionServiceClient, address);
});

afterAll(async () => {
  vision?.close();
  await proc?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const recognize = (image: Buffer, extra: Parameters<typeof RecognizeTextRequest.fromPartial>[0] = {}) =>
  unary(vision.recognizeText.bind(vision), RecognizeTextRequest.fromPartial({ ...extra, image }));
const detect = (image: Buffer) => unary(vision.detectText.bind(vision), DetectTextRequest.fromPartial({ image }));
const classify = (image: Buffer, extra: Parameters<typeof ClassifyImageRequest.fromPartial>[0] = {}) =>
  unary(vision.classifyImage.bind(vision), ClassifyImageRequest.fromPartial({ ...extra, image }));

async function failure(call: Promise<unknown>) {
  const err = await call.then(
    () => undefined,
    (e: grpc.ServiceError) => e,
  );
  expect(err, 'the call should have failed').toBeDefined();
  return decodeStatus(err!);
}

describe('vision service: OCR', () => {
  it.each(Object.keys(PAGE_SPECS))('reads the %s page with a character error rate of at most 0.02, every line found where it was drawn', async (name) => {
    const page = pages.find((p) => p.name === name)!;
    const res = await recognize(page.bytes);
    const score = scorePage(
      page.lines,
      res.lines.map((l) => ({ text: l.text, points: l.box!.points })),
    );
    expect(score.lines.map((l) => l.got)).toHaveLength(page.lines.length);
    expect(score.allFound, JSON.stringify(score.lines)).toBe(true);
    expect(score.cer, JSON.stringify(score.lines)).toBeLessThanOrEqual(0.02);
    expect(score.minIou, JSON.stringify(score.lines)).toBeGreaterThanOrEqual(0.5);
    expect(score.strays).toEqual([]);
    expect(res.imageWidth).toBe(page.width);
    expect(res.imageHeight).toBe(page.height);
    expect(res.model).toMatchObject({ name: 'ppocr-v4', version: 1, alias: 'default', executionProvider: 'cpu' });
    expect(res.timings!.totalMs).toBeGreaterThan(0);
    expect(res.timings!.inferenceMs).toBeGreaterThan(0);
  });

  it('reads all pages together with a character error rate of at most 2%', async () => {
    const results = await Promise.all(pages.map((p) => recognize(p.bytes)));
    let errors = 0;
    let chars = 0;
    results.forEach((res, i) => {
      const score = scorePage(pages[i].lines, res.lines.map((l) => ({ text: l.text, points: l.box!.points })));
      const n = pages[i].lines.reduce((s, l) => s + l.text.length, 0);
      errors += score.cer * n;
      chars += n;
    });
    expect(errors / chars).toBeLessThanOrEqual(0.02);
  });

  it('returns lines in reading order, and reads an upside-down page as turned by 180 degrees', async () => {
    for (const name of ['sans-plain', 'upside-down-noisy']) {
      const page = pages.find((p) => p.name === name)!;
      const res = await recognize(page.bytes);
      expect(owners(page.lines, res.lines.map((l) => ({ text: l.text, points: l.box!.points })))).toEqual(page.lines.map((_, i) => i));
      const turned = name === 'upside-down-noisy';
      expect(res.lines.every((l) => l.rotationDegrees === (turned ? 180 : 0))).toBe(true);
      // The first point is the text's own top-left: bottom-right of the box in the image when upside down.
      for (const l of res.lines) {
        const [p0, , p2] = l.box!.points;
        expect(turned ? p0.x > p2.x && p0.y > p2.y : p0.x < p2.x && p0.y < p2.y).toBe(true);
      }
    }
  });

  it.each([12, -20, 90, 270])('reads a page turned by %i degrees, straightening its lines, in its own reading order', async (angle) => {
    const page = await renderPage({
      width: 700,
      height: 200,
      background: 'noise',
      seed: angle + 400,
      lines: [
        { text: 'Tilted text is read straight', font: 'DejaVu Sans', size: 30, left: 60, top: 50 },
        { text: 'and in order: line 2 of 2', font: 'DejaVu Serif', size: 28, left: 60, top: 115 },
      ],
    });
    const turned = await sharp(page.bytes).rotate(angle, { background: '#ebebeb' }).png().toBuffer();
    const res = await recognize(turned);
    const texts = res.lines.map((l) => l.text);
    expect(texts).toHaveLength(2);
    const errors = page.lines.reduce((s, l, i) => s + levenshtein(l.text, texts[i] ?? ''), 0);
    expect(errors / page.lines.reduce((s, l) => s + l.text.length, 0)).toBeLessThanOrEqual(0.02);
  });

  it('does not turn lines when orientation detection is off', async () => {
    const page = pages.find((p) => p.name === 'upside-down-noisy')!;
    const res = await recognize(page.bytes, { options: { detectOrientation: false } });
    expect(res.lines.every((l) => l.rotationDegrees === 0)).toBe(true);
    expect(res.stages!.orientationMs).toBe(0);
  });

  it('honours EXIF orientation: a sideways-stored photo is read upright, in upright coordinates', async () => {
    const page = pages.find((p) => p.name === 'sans-plain')!;
    // Stored turned 90 degrees counter-clockwise; orientation 6 tells viewers to turn it clockwise.
    const stored = await sharp(page.bytes).rotate(270).withMetadata({ orientation: 6 }).jpeg({ quality: 92 }).toBuffer();
    const meta = await sharp(stored).metadata();
    expect([meta.width, meta.height, meta.orientation]).toEqual([page.height, page.width, 6]);
    const res = await recognize(stored);
    expect([res.imageWidth, res.imageHeight]).toEqual([page.width, page.height]);
    const score = scorePage(page.lines, res.lines.map((l) => ({ text: l.text, points: l.box!.points })));
    expect(score.allFound).toBe(true);
    expect(score.cer).toBeLessThanOrEqual(0.02);
  });

  it('detects text boxes where the lines were drawn, without reading them', async () => {
    const page = pages.find((p) => p.name === 'serif-noisy')!;
    const res = await detect(page.bytes);
    expect(res.regions).toHaveLength(page.lines.length);
    res.regions.forEach((r, i) => {
      const xs = r.box!.points.map((p) => p.x);
      const ys = r.box!.points.map((p) => p.y);
      const cx = (Math.min(...xs) + Math.max(...xs)) / 2;
      const cy = (Math.min(...ys) + Math.max(...ys)) / 2;
      const b = page.lines[i].box;
      expect(cx).toBeGreaterThan(b.left);
      expect(cx).toBeLessThan(b.right);
      expect(cy).toBeGreaterThan(b.top);
      expect(cy).toBeLessThan(b.bottom);
      expect(r.score).toBeGreaterThan(0.6);
    });
  });

  it('scales large pages down for detection and reports boxes in the original coordinates', async () => {
    const page = pages.find((p) => p.name === 'large-scaled-down')!;
    const small = await recognize(page.bytes, { options: { maxSideLen: 640 } });
    const score = scorePage(page.lines, small.lines.map((l) => ({ text: l.text, points: l.box!.points })));
    expect(score.allFound).toBe(true);
    expect(score.minIou).toBeGreaterThanOrEqual(0.5);
  });

  it('answers each page of a stream in order, with a failed page carrying its own status', async () => {
    const requests: RecognizeTextStreamRequest[] = [
      ...pages.slice(0, 3).map((p) => ({ pageId: p.name, image: p.bytes, options: undefined, model: undefined })),
      { pageId: 'broken', image: Buffer.from('not an image'), options: undefined, model: undefined },
      ...pages.slice(3).map((p) => ({ pageId: p.name, image: p.bytes, options: undefined, model: undefined })),
    ];
    const call = vision.recognizeTextStream();
    const got: RecognizeTextStreamResponse[] = [];
    const done = new Promise<void>((resolve, reject) => {
      call.on('data', (m: RecognizeTextStreamResponse) => got.push(m));
      call.on('end', resolve);
      call.on('error', reject);
    });
    // Twice over, so that a full window of pages is in flight.
    for (const r of [...requests, ...requests]) call.write(r);
    call.end();
    await done;
    expect(got.map((g) => g.pageId)).toEqual([...requests, ...requests].map((r) => r.pageId));
    // Each page in flight listens for the call's cancellation on a signal of its own; on the call's one signal
    // they passed Node's "possible EventTarget memory leak" warning at 11.
    expect(output.filter((l) => l.includes('MaxListenersExceededWarning'))).toEqual([]);
    expect(got.map((g) => g.index)).toEqual([...requests, ...requests].map((_, i) => i));
    const broken = got.find((g) => g.pageId === 'broken')!;
    expect(broken.result).toBeUndefined();
    expect(broken.error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    for (const g of got.filter((x) => x.pageId !== 'broken')) {
      const page = pages.find((p) => p.name === g.pageId)!;
      const score = scorePage(page.lines, g.result!.lines.map((l) => ({ text: l.text, points: l.box!.points })));
      expect(score.allFound).toBe(true);
      expect(score.cer).toBeLessThanOrEqual(0.02);
    }
  });

  it('stops a call whose deadline passes with DEADLINE_EXCEEDED', async () => {
    const page = pages.find((p) => p.name === 'large-scaled-down')!;
    const status = await failure(unary(vision.recognizeText.bind(vision), RecognizeTextRequest.fromPartial({ image: page.bytes }), { deadline: Date.now() + 5 }));
    expect(status.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    // The service goes on serving.
    expect((await recognize(pages[0].bytes)).lines.length).toBe(pages[0].lines.length);
  });
});

describe('vision service: classification', () => {
  /** The model's exact answer for a uniform colour: softmax of -GAIN x squared distance. */
  function expectedScores(rgb: number[]): number[] {
    const logits = COLORS.map((c) => -GAIN * c.rgb.reduce((s, v, i) => s + (v - rgb[i]) ** 2, 0));
    const max = Math.max(...logits);
    const exps = logits.map((l) => Math.exp(l - max));
    const sum = exps.reduce((a, b) => a + b, 0);
    return exps.map((e) => e / sum);
  }

  it.each([
    ['red', [200, 30, 40], 300, 170, 'png'],
    ['blue', [20, 40, 210], 64, 64, 'jpeg'],
    ['yellow', [230, 220, 30], 17, 401, 'webp'],
    ['gray', [128, 125, 131], 1000, 20, 'png'],
    ['orange', [250, 130, 10], 500, 500, 'png'],
  ] as const)('names %s for a uniform image through resize and normalization', async (label, rgb, width, height, format) => {
    const img = sharp({ create: { width, height, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } });
    const bytes = await (format === 'jpeg' ? img.jpeg({ quality: 100 }) : format === 'webp' ? img.webp({ lossless: true }) : img.png()).toBuffer();
    const res = await classify(bytes, { topK: 3 });
    expect(res.labels).toHaveLength(3);
    expect(res.labels[0].label).toBe(label);
    expect(res.model).toMatchObject({ name: 'color-classifier', version: 1 });
    // The scores are what the graph gives for this exact colour: preprocessing lost nothing.
    const expected = expectedScores(rgb.map((v) => v / 255));
    for (const l of res.labels) expect(l.score).toBeCloseTo(expected[l.index], format === 'jpeg' ? 2 : 3);
  });

  it('averages what the resize keeps: 80% green and 20% red is green with the mixed colour score', async () => {
    const green = await sharp({ create: { width: 400, height: 90, channels: 3, background: '#00ff00' } }).png().toBuffer();
    const bytes = await sharp({ create: { width: 500, height: 90, channels: 3, background: '#ff0000' } }).composite([{ input: green, left: 0, top: 0 }]).png().toBuffer();
    const res = await classify(bytes);
    expect(res.labels).toHaveLength(5);
    expect(res.labels[0].label).toBe('green');
    expect(res.labels[0].score).toBeCloseTo(expectedScores([0.2, 0.8, 0])[1], 1);
  });

  it('returns every label when top_k exceeds their number', async () => {
    const bytes = await sharp({ create: { width: 10, height: 10, channels: 3, background: '#000000' } }).png().toBuffer();
    const res = await classify(bytes, { topK: 1000 });
    expect(res.labels.map((l) => l.label).sort()).toEqual(COLORS.map((c) => c.label).sort());
    expect(res.labels[0].label).toBe('black');
  });
});

describe('vision service: bad input', () => {
  const badImages: [string, () => Promise<Buffer>][] = [
    ['empty bytes', async () => Buffer.alloc(0)],
    ['a truncated PNG', async () => {
      const png = (await renderPage({ width: 300, height: 80, lines: [{ text: 'cut short', font: 'DejaVu Sans', size: 24, left: 10, top: 10 }] })).bytes;
      return png.subarray(0, Math.floor(png.length * 0.6));
    }],
    ['a text file', async () => Buffer.from('name,value\nwidth,100\n')],
    ['a header declaring 100000x100000 pixels', async () => pngWithHeader(100_000, 100_000)],
    ['a zero-width image', async () => pngWithHeader(0, 10)],
    ['a zero-sized image', async () => pngWithHeader(0, 0)],
    ['bytes over the size limit', async () => Buffer.concat([await pngWithHeader(100, 100), Buffer.alloc(MAX_IMAGE_BYTES)])],
    ['a GIF (unsupported format)', async () => sharp({ create: { width: 8, height: 8, channels: 3, background: '#fff' } }).gif().toBuffer()],
  ];

  it.each(badImages)('rejects %s with INVALID_ARGUMENT on the image field, for OCR and classification', async (_name, make) => {
    const image = await make();
    for (const call of [() => recognize(image), () => detect(image), () => classify(image)]) {
      const status = await failure(call());
      expect(status.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(status.badRequest?.fieldViolations[0]?.field).toBe('image');
    }
  });

  it('says that a decompression bomb is over the pixel limit, from its header', async () => {
    const status = await failure(recognize(await pngWithHeader(100_000, 100_000)));
    expect(status.message).toMatch(/100000x100000 = 10000000000 pixels, over the limit/);
    expect(status.errorInfo?.reason).toBe('IMAGE_TOO_LARGE');
  });

  it.each([0, 1_000_000])('rejects top_k %i with INVALID_ARGUMENT', async (topK) => {
    const image = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#fff' } }).png().toBuffer();
    const status = await failure(classify(image, { topK }));
    expect(status.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(status.badRequest?.fieldViolations[0]?.field).toBe('top_k');
  });

  it.each([
    [{ minConfidence: 1.5 }, 'options.min_confidence'],
    [{ maxSideLen: 16 }, 'options.max_side_len'],
    [{ maxSideLen: 100_000 }, 'options.max_side_len'],
  ])('rejects options %j with INVALID_ARGUMENT', async (options, field) => {
    const status = await failure(recognize(pages[0].bytes, { options }));
    expect(status.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(status.badRequest?.fieldViolations[0]?.field).toBe(field);
  });

  it('answers NOT_FOUND for an unknown model and FAILED_PRECONDITION for a model of the other task', async () => {
    const image = pages[0].bytes;
    const missing = await failure(recognize(image, { model: { name: 'no-such-model' } }));
    expect(missing.code).toBe(grpc.status.NOT_FOUND);
    const wrong = await failure(classify(image, { model: { name: 'ppocr-v4' } }));
    expect(wrong.code).toBe(grpc.status.FAILED_PRECONDITION);
    const wrong2 = await failure(recognize(image, { model: { name: 'color-classifier' } }));
    expect(wrong2.code).toBe(grpc.status.FAILED_PRECONDITION);
    const badName = await failure(recognize(image, { model: { name: 'Bad Name!' } }));
    expect(badName.code).toBe(grpc.status.INVALID_ARGUMENT);
  });
});

describe('vision service: models and health', () => {
  it('describes its loaded models: OCR parts, classifier labels and preprocessing', async () => {
    const { models } = await unary(vision.listModels.bind(vision), {});
    expect(models.map((m) => m.model!.name).sort()).toEqual(['color-classifier', 'ppocr-v4']);
    const ocr = models.find((m) => m.model!.name === 'ppocr-v4')!;
    expect(ocr.task).toBe(Task.TASK_OCR);
    expect(ocr.ocr).toEqual({ hasOrientationClassifier: true, dictionarySize: 6624, lineHeight: 48 });
    expect(ocr.files.sort()).toEqual(['cls.onnx', 'det.onnx', 'keys.txt', 'ocr.json', 'rec.onnx']);
    const { info } = await unary(vision.getModelInfo.bind(vision), GetModelInfoRequest.fromPartial({ model: { name: 'color-classifier', alias: 'default' } }));
    expect(info!.task).toBe(Task.TASK_IMAGE_CLASSIFICATION);
    expect(info!.labels).toEqual(COLORS.map((c) => c.label));
    expect(info!.preprocessing).toMatchObject({ height: 64, width: 64, resize: 'fill', channelOrder: 'RGB', layout: 'NCHW' });
    expect(info!.preprocessing!.mean[0]).toBeCloseTo(0.485, 5);
    expect(info!.aliases).toContain('default');
    const missing = await failure(unary(vision.getModelInfo.bind(vision), GetModelInfoRequest.fromPartial({ model: { name: 'nope' } })));
    expect(missing.code).toBe(grpc.status.NOT_FOUND);
  });

  it('reports SERVING and lists its service through reflection', async () => {
    const health = createClient(HealthClient, address);
    try {
      expect((await unary(health.check.bind(health), { service: 'maas.vision.v1.VisionService' })).status).toBe(Serving.SERVING);
    } finally {
      health.close();
    }
    expect(await listServices(address)).toContain('maas.vision.v1.VisionService');
  });
});

/** A PNG whose header declares width x height, with a tiny (wrong) body: what a decompression bomb looks like. */
async function pngWithHeader(width: number, height: number): Promise<Buffer> {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body) >>> 0);
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.alloc(64))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

