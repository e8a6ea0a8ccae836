// The OCR pipeline of one loaded model version (PaddleOCR's TextSystem): detection, line crops, orientation
// classification, recognition and reading order. Each model of the version sits behind its own dynamic
// batcher, so pages of different requests share detection batches (same input size) and their lines share
// orientation and recognition batches, grouped by width so little is padded.
import { SpanStatusCode, type Span } from '@opentelemetry/api';
import { DynamicBatcher, lengthBucket, type Submitted } from '../../runtime/batching/dynamic-batcher.js';
import { MaasError, throwIfAborted } from '../../runtime/errors.js';
import { Attr, tracer } from '../../runtime/telemetry/tracing.js';
import { ctcDecode, type Decoded } from './ctc.js';
import { boxesFromProbabilityMap, type DetectedBox } from './db-postprocess.js';
import type { Quad } from './geometry.js';
import type { ImageOps, RgbImage } from './image.js';
import { cropLine, resampleWidth, rotateLine180, type LineImage } from './line-crop.js';
import type { OcrBatching, OcrModelSettings } from './ocr-config.js';
import { readingOrder } from './reading-order.js';
import { normalizer, writePlanar, type Normalizer } from './tensors.js';

/** A model behind onnxruntime: one float32 input, its first output back. */
export interface TensorRunner {
  /** Runs the model on one input; `data` is the runner's from then on (it may move it to another thread). */
  run(data: Float32Array, dims: number[]): Promise<{ data: Float32Array; dims: readonly number[] }>;
}

export interface OcrEngineParts {
  /** Registry name and version, for spans and metrics. */
  name: string;
  version: number;
  detector: TensorRunner;
  /** The orientation classifier, when the version has one. */
  classifier?: TensorRunner;
  recognizer: TensorRunner;
  /** Class i + 1 of the recognizer is dictionary[i]. */
  dictionary: string[];
  settings: OcrModelSettings;
  batching: OcrBatching;
  images: ImageOps;
}

export interface DetectOptions {
  /** The longest side the image is scaled down to for detection. */
  maxSide: number;
}

export interface RecognizeOptions extends DetectOptions {
  detectOrientation: boolean;
  minConfidence: number;
}

export interface OcrLine {
  text: string;
  confidence: number;
  /** In reading order of the text: its top-left, top-right, bottom-right, bottom-left. */
  quad: Quad;
  detectionScore: number;
  rotation: 0 | 180;
}

export interface StageTimes {
  detectionMs: number;
  cropMs: number;
  orientationMs: number;
  recognitionMs: number;
}

export interface WorkTimes {
  /** Time spent waiting in the batch queues. */
  queueMs: number;
  /** Time of the model runs the request took part in. */
  inferenceMs: number;
}

export interface DetectResult extends WorkTimes {
  boxes: DetectedBox[];
}

export interface RecognizeResult extends WorkTimes {
  lines: OcrLine[];
  stages: StageTimes;
}

interface DetItem {
  image: RgbImage;
}

interface ClsOutput {
  /** Probability that the line is upside down. */
  p180: number;
}

export class OcrEngine {
  private readonly det: DynamicBatcher<DetItem, Float32Array>;
  private readonly cls: DynamicBatcher<LineImage, ClsOutput> | undefined;
  private readonly rec: DynamicBatcher<LineImage, Decoded>;
  private readonly detNorm: Normalizer;
  private readonly clsNorm: Normalizer;
  private readonly recNorm: Normalizer;
  private readonly attributes: Record<string, string | number>;

  constructor(private readonly parts: OcrEngineParts) {
    const { batching: b, settings: s } = parts;
    this.attributes = { [Attr.model]: parts.name, [Attr.modelVersion]: parts.version };
    this.detNorm = normalizer(s.detection.normalization);
    this.clsNorm = normalizer(s.orientation.normalization);
    this.recNorm = normalizer(s.recognition.normalization);
    this.det = new DynamicBatcher<DetItem, Float32Array>({
      name: 'ocr detection',
      maxBatchSize: b.detMaxBatch,
      maxBatchCost: Number.MAX_SAFE_INTEGER,
      maxQueueDelayMs: b.maxQueueDelayMs,
      maxQueueSize: b.maxQueuedPages,
      concurrency: b.runConcurrency,
      attributes: this.attributes,
      run: (items) => this.runDetection(items),
    });
    if (parts.classifier) {
      this.cls = new DynamicBatcher<LineImage, ClsOutput>({
        name: 'ocr orientation',
        maxBatchSize: b.clsMaxBatch,
        maxBatchCost: Number.MAX_SAFE_INTEGER,
        maxQueueDelayMs: b.maxQueueDelayMs,
        maxQueueSize: b.maxQueuedLines,
        concurrency: b.runConcurrency,
        attributes: this.attributes,
        run: (items) => this.runOrientation(items),
      });
    }
    this.rec = new DynamicBatcher<LineImage, Decoded>({
      name: 'ocr recognition',
      maxBatchSize: b.recMaxBatch,
      maxBatchCost: Math.max(b.recMaxBatchWidth, s.recognition.minWidth),
      padded: true,
      maxQueueDelayMs: b.maxQueueDelayMs,
      maxQueueSize: b.maxQueuedLines,
      concurrency: b.runConcurrency,
      attributes: this.attributes,
      run: (items) => this.runRecognition(items),
    });
  }

  get hasOrientationClassifier(): boolean {
    return this.parts.classifier !== undefined;
  }

  get dictionarySize(): number {
    return this.parts.dictionary.length;
  }

  get lineHeight(): number {
    return this.parts.settings.recognition.lineHeight;
  }

  /** Text regions of the image, in reading order. */
  async detect(image: RgbImage, options: DetectOptions, signal: AbortSignal): Promise<DetectResult> {
    const times = { queueMs: 0, inferenceMs: 0 };
    const boxes = await this.stage('ocr detection', signal, () => this.detectBoxes(image, options, signal, times));
    const order = readingOrder(boxes.map((b) => b.quad));
    return { boxes: order.map((i) => boxes[i]), ...times };
  }

  /** Finds, straightens, orients and reads the text lines of the image. */
  async recognize(image: RgbImage, options: RecognizeOptions, signal: AbortSignal): Promise<RecognizeResult> {
    const times = { queueMs: 0, inferenceMs: 0 };
    const stages: StageTimes = { detectionMs: 0, cropMs: 0, orientationMs: 0, recognitionMs: 0 };
    let t = performance.now();
    const boxes = await this.stage('ocr detection', signal, () => this.detectBoxes(image, options, signal, times));
    stages.detectionMs = lap();

    const { lineHeight, minWidth, cropMargin } = this.parts.settings.recognition;
    const crops = await this.stage('ocr crop', signal, async (span) => {
      span.setAttribute('maas.lines', boxes.length);
      return boxes.map((b) => {
        const crop = cropLine(image, b.quad, lineHeight, this.parts.batching.recMaxLineWidth, cropMargin);
        // The detected box is reported (not the widened crop), in the order the crop reads it.
        const q = b.quad;
        return { image: crop.image, quad: (crop.turned ? [q[1], q[2], q[3], q[0]] : q) as Quad };
      });
    });
    stages.cropMs = lap();

    const rotations: (0 | 180)[] = crops.map(() => 0);
    if (options.detectOrientation && this.cls && crops.length > 0) {
      const { width, height, threshold } = this.parts.settings.orientation;
      const outputs = await this.stage('ocr orientation', signal, async () => {
        // PaddleOCR's cls input: the line at the classifier's height, squeezed to at most its width.
        const inputs = crops.map((c, i) =>
          height === lineHeight ? resampleWidth(c.image, Math.min(width, c.image.width)) : cropLine(image, boxes[i].quad, height, width, cropMargin).image,
        );
        return this.account(await this.cls!.submit(inputs.map((item) => ({ item, cost: 1, key: 1 })), { signal }), times);
      });
      // P(180) per line. A page is rarely mixed: when the line-width-weighted vote says the page is upside
      // down, lines leaning that way (P >= 0.5) turn too, not only those above the threshold.
      const p180 = outputs.map((o) => o.p180);
      const weights = crops.map((c) => c.image.width);
      const vote = p180.reduce((s, p, i) => s + p * weights[i], 0) / weights.reduce((a, b) => a + b, 0);
      const cut = vote >= 0.5 ? 0.5 : threshold;
      p180.forEach((p, i) => {
        if (p >= cut) {
          const c = crops[i];
          crops[i] = { image: rotateLine180(c.image), quad: [c.quad[2], c.quad[3], c.quad[0], c.quad[1]] };
          rotations[i] = 180;
        }
      });
      stages.orientationMs = lap();
    }

    const decoded = await this.stage('ocr recognition', signal, async (span) => {
      span.setAttribute('maas.lines', crops.length);
      const entries = crops.map((c) => {
        const cost = Math.max(minWidth, c.image.width);
        return { item: c.image, cost, key: lengthBucket(cost) };
      });
      return this.account(await this.rec.submit(entries, { signal }), times);
    });
    stages.recognitionMs = lap();

    const lines: OcrLine[] = [];
    decoded.forEach((d, i) => {
      if (d.text.length === 0 || d.confidence < options.minConfidence) return;
      lines.push({ text: d.text, confidence: d.confidence, quad: crops[i].quad, detectionScore: boxes[i].score, rotation: rotations[i] });
    });
    // The quads are in reading order of their text (turned lines included), so the page reads in its own direction.
    const order = readingOrder(lines.map((l) => l.quad));
    return { lines: order.map((i) => lines[i]), stages, ...times };

    function lap(): number {
      const now = performance.now();
      const ms = now - t;
      t = now;
      return ms;
    }
  }

  /** Rejects what is queued and waits for running batches. */
  async close(): Promise<void> {
    await Promise.all([this.det.close(), this.cls?.close(), this.rec.close()]);
  }

  private async detectBoxes(image: RgbImage, options: DetectOptions, signal: AbortSignal, times: WorkTimes): Promise<DetectedBox[]> {
    const { multiple, db } = this.parts.settings.detection;
    const size = detectionSize(image.width, image.height, options.maxSide, multiple);
    const resized = await this.parts.images.resize(image, size.width, size.height, 'fill');
    throwIfAborted(signal);
    const [prob] = this.account(await this.det.submit([{ item: { image: resized }, cost: 1, key: size.height * 100_000 + size.width }], { signal }), times);
    return boxesFromProbabilityMap(prob, size, image, db);
  }

  private account<O>(submitted: Submitted<O>, times: WorkTimes): O[] {
    times.queueMs += submitted.queueMs;
    times.inferenceMs += submitted.runMs;
    return submitted.outputs;
  }

  private async stage<T>(name: string, signal: AbortSignal, work: (span: Span) => Promise<T>): Promise<T> {
    throwIfAborted(signal);
    return tracer().startActiveSpan(name, { attributes: this.attributes }, async (span) => {
      try {
        return await work(span);
      } catch (err) {
        span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof MaasError ? err.message : 'failed' });
        throw err;
      } finally {
        span.end();
      }
    });
  }

  /**
   * Runs pages of equal input size as one tensor. A batch the batcher formed may hold several sizes (it
   * prefers equal ones); each size is its own run, and those runs go in parallel rather than one after another.
   */
  private async runDetection(items: DetItem[]): Promise<Float32Array[]> {
    const out = new Array<Float32Array>(items.length);
    const groups = new Map<string, number[]>();
    items.forEach((it, i) => {
      const key = `${it.image.width}x${it.image.height}`;
      groups.set(key, [...(groups.get(key) ?? []), i]);
    });
    await Promise.all(
      [...groups.values()].map(async (indices) => {
        const { width, height } = items[indices[0]].image;
        const tensor = new Float32Array(indices.length * 3 * height * width);
        indices.forEach((idx, k) => writePlanar(items[idx].image, this.detNorm, tensor, k, height, width));
        const result = await this.parts.detector.run(tensor, [indices.length, 3, height, width]);
        const plane = height * width;
        indices.forEach((idx, k) => (out[idx] = result.data.subarray(k * plane, (k + 1) * plane)));
      }),
    );
    return out;
  }

  private async runOrientation(items: LineImage[]): Promise<ClsOutput[]> {
    const { width, height, labels } = this.parts.settings.orientation;
    const tensor = new Float32Array(items.length * 3 * height * width);
    items.forEach((img, k) => writePlanar(img, this.clsNorm, tensor, k, height, width));
    const result = await this.parts.classifier!.run(tensor, [items.length, 3, height, width]);
    const classes = result.dims[1];
    const flipped = labels.indexOf('180');
    return items.map((_, k) => ({ p180: flipped < 0 || flipped >= classes ? 0 : result.data[k * classes + flipped] }));
  }

  private async runRecognition(items: LineImage[]): Promise<Decoded[]> {
    const { lineHeight, minWidth } = this.parts.settings.recognition;
    const width = Math.max(minWidth, ...items.map((i) => i.width));
    // Padding is 0 after normalization, as PaddleOCR pads its batches.
    const tensor = new Float32Array(items.length * 3 * lineHeight * width);
    items.forEach((img, k) => writePlanar(img, this.recNorm, tensor, k, lineHeight, width));
    const result = await this.parts.recognizer.run(tensor, [items.length, 3, lineHeight, width]);
    return items.map((_, k) => ctcDecode(result.data, result.dims, k, this.parts.dictionary));
  }
}

/**
 * PaddleOCR's DetResizeForTest (limit_type `max`): scale down so the longer side is at most maxSide (never up),
 * then round each side to the nearest multiple (at least one multiple).
 */
export function detectionSize(width: number, height: number, maxSide: number, multiple: number): { width: number; height: number } {
  const ratio = Math.max(width, height) > maxSide ? maxSide / Math.max(width, height) : 1;
  const round = (v: number) => Math.max(multiple, Math.round(Math.floor(v * ratio) / multiple) * multiple);
  return { width: round(width), height: round(height) };
}
