// Image classification with any ONNX classifier whose version describes its input: the image is fitted to
// the input size, scaled, normalized with the model's mean and std, put in its channel order and layout, and
// batched with other requests' images; the output row becomes labels with scores (softmax of logits unless
// the model already outputs probabilities).
import { SpanStatusCode } from '@opentelemetry/api';
import { z } from 'zod';
import { DynamicBatcher } from '../../runtime/batching/dynamic-batcher.js';
import { MaasError } from '../../runtime/errors.js';
import { Attr, tracer } from '../../runtime/telemetry/tracing.js';
import type { ImageOps, ResizeFit, RgbImage } from './image.js';
import type { TensorRunner } from './ocr-engine.js';
import { normalizer, writeInterleaved, writePlanar, type Normalization, type Normalizer } from './tensors.js';

const triple = z.tuple([z.number(), z.number(), z.number()]);

/** The schema of `classifier.json` in an image-classification model version. */
export const classifierJsonSchema = z
  .object({
    /** The ONNX file. */
    file: z.string().default('model.onnx'),
    /** Labels in output order, or a file with one label per line. */
    labels: z.array(z.string()).optional(),
    labels_file: z.string().default('labels.txt'),
    input: z
      .object({
        height: z.number().int().positive(),
        width: z.number().int().positive(),
        resize: z.enum(['fill', 'cover', 'contain']).default('fill'),
        layout: z.enum(['NCHW', 'NHWC']).default('NCHW'),
        channel_order: z.enum(['RGB', 'BGR']).default('RGB'),
        scale: z.number().positive().default(1 / 255),
        mean: triple.default([0, 0, 0]),
        std: triple.refine((s) => s.every((v) => v > 0), 'std values must be positive').default([1, 1, 1]),
      })
      .strict(),
    /** What the first output holds. */
    output: z.enum(['logits', 'probabilities']).default('logits'),
  })
  .strict();

export type ClassifierJson = z.infer<typeof classifierJsonSchema>;

export interface ClassifierSettings {
  height: number;
  width: number;
  resize: ResizeFit;
  layout: 'NCHW' | 'NHWC';
  normalization: Normalization;
  labels: string[];
  outputIsProbability: boolean;
}

export interface ClassifierBatching {
  maxBatch: number;
  /** Batches run at once. */
  runConcurrency: number;
  maxQueueDelayMs: number;
  maxQueued: number;
}

export interface ClassifierParts {
  name: string;
  version: number;
  runner: TensorRunner;
  settings: ClassifierSettings;
  batching: ClassifierBatching;
  images: ImageOps;
}

export interface ScoredLabel {
  label: string;
  index: number;
  score: number;
}

export interface ClassifyResult {
  labels: ScoredLabel[];
  queueMs: number;
  inferenceMs: number;
}

export class ClassifierEngine {
  private readonly batcher: DynamicBatcher<RgbImage, Float32Array>;
  private readonly norm: Normalizer;
  private readonly attributes: Record<string, string | number>;

  constructor(private readonly parts: ClassifierParts) {
    this.norm = normalizer(parts.settings.normalization);
    this.attributes = { [Attr.model]: parts.name, [Attr.modelVersion]: parts.version };
    this.batcher = new DynamicBatcher<RgbImage, Float32Array>({
      name: 'image classification',
      maxBatchSize: parts.batching.maxBatch,
      maxBatchCost: Number.MAX_SAFE_INTEGER,
      maxQueueDelayMs: parts.batching.maxQueueDelayMs,
      maxQueueSize: parts.batching.maxQueued,
      concurrency: parts.batching.runConcurrency,
      attributes: this.attributes,
      run: (items) => this.run(items),
    });
  }

  get settings(): ClassifierSettings {
    return this.parts.settings;
  }

  /** The topK labels, best first (all of them when topK exceeds their number). */
  async classify(image: RgbImage, topK: number, signal: AbortSignal): Promise<ClassifyResult> {
    const s = this.parts.settings;
    return tracer().startActiveSpan('classify image', { attributes: this.attributes }, async (span) => {
      try {
        const resized = await this.parts.images.resize(image, s.width, s.height, s.resize);
        const submitted = await this.batcher.submit([{ item: resized, cost: 1, key: 1 }], { signal });
        const scores = s.outputIsProbability ? submitted.outputs[0] : softmax(submitted.outputs[0]);
        const labels = [...scores]
          .map((score, index) => ({ label: s.labels[index] ?? String(index), index, score }))
          .sort((a, b) => b.score - a.score)
          .slice(0, topK);
        return { labels, queueMs: submitted.queueMs, inferenceMs: submitted.runMs };
      } catch (err) {
        span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof MaasError ? err.message : 'failed' });
        throw err;
      } finally {
        span.end();
      }
    });
  }

  async close(): Promise<void> {
    await this.batcher.close();
  }

  private async run(items: RgbImage[]): Promise<Float32Array[]> {
    const { height, width, layout } = this.parts.settings;
    const tensor = new Float32Array(items.length * 3 * height * width);
    const write = layout === 'NCHW' ? writePlanar : writeInterleaved;
    items.forEach((img, k) => write(img, this.norm, tensor, k, height, width));
    const dims = layout === 'NCHW' ? [items.length, 3, height, width] : [items.length, height, width, 3];
    const result = await this.parts.runner.run(tensor, dims);
    const classes = result.data.length / items.length;
    return items.map((_, k) => result.data.slice(k * classes, (k + 1) * classes));
  }
}

export function softmax(logits: Float32Array): Float32Array {
  let max = -Infinity;
  for (const v of logits) if (v > max) max = v;
  const out = new Float32Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += out[i] = Math.exp(logits[i] - max);
  for (let i = 0; i < out.length; i++) out[i] /= sum;
  return out;
}
