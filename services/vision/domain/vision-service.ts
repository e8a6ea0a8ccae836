// The vision service's use cases, free of gRPC: check the options, admit the page (a bounded number are
// decoded and processed at once; past that, RESOURCE_EXHAUSTED with a retry hint), lease the model version
// from the host, decode the image within the limits, run the engine and report where the time went.
import { SpanStatusCode } from '@opentelemetry/api';
import { FailedPreconditionError, InvalidArgumentError, MaasError, OverloadedError, throwIfAborted } from '../../runtime/errors.js';
import type { Logger } from '../../runtime/logger.js';
import type { LoadedInfo } from '../../runtime/models/model-host.js';
import { ModelTask, type LocalVersion, type ModelLease, type ModelSelector } from '../../runtime/models/types.js';
import { counter, latencyHistogram } from '../../runtime/telemetry/metrics.js';
import { annotate, Attr, tracer } from '../../runtime/telemetry/tracing.js';
import type { ClassifierSettings, ScoredLabel } from './classifier-engine.js';
import type { DetectedBox } from './db-postprocess.js';
import type { ImageLimits, ImageOps, RgbImage } from './image.js';
import type { OcrLine, StageTimes } from './ocr-engine.js';
import type { VisionModel } from './vision-model.js';

/** What the service needs from the model host. */
export interface ModelProvider {
  acquire(selector: ModelSelector, signal: AbortSignal): Promise<ModelLease<VisionModel>>;
  list(): LoadedInfo[];
}

export interface VisionSettings {
  limits: ImageLimits;
  /** Detection side when a request does not set one, and the largest a request may ask for. */
  detMaxSide: number;
  detMaxSideLimit: number;
  detectOrientation: boolean;
  minConfidence: number;
  /** Pages decoded and processed at once; more are refused with RESOURCE_EXHAUSTED. */
  maxConcurrentPages: number;
  defaultOcrModel: string;
  defaultClassifier: string;
}

export interface TextOptionsInput {
  detectOrientation?: boolean;
  minConfidence?: number;
  /** 0: the default. */
  maxSideLen?: number;
}

export interface Served {
  name: string;
  version: number;
  alias: string;
  executionProvider: string;
}

export interface Timings {
  queueMs: number;
  inferenceMs: number;
  totalMs: number;
}

export interface RecognizeTextOutput {
  lines: OcrLine[];
  width: number;
  height: number;
  model: Served;
  timings: Timings;
  stages: StageTimes & { decodeMs: number };
}

export interface DetectTextOutput {
  regions: DetectedBox[];
  width: number;
  height: number;
  model: Served;
  timings: Timings;
}

export interface ClassifyOutput {
  labels: ScoredLabel[];
  model: Served;
  timings: Timings;
}

export interface ModelDescription {
  model: Served;
  task: ModelTask;
  aliases: string[];
  memoryBytes: number;
  files: string[];
  classifier?: ClassifierSettings;
  ocr?: { hasOrientationClassifier: boolean; dictionarySize: number; lineHeight: number };
}

export const DEFAULT_TOP_K = 5;
export const MAX_TOP_K = 1000;

export class VisionService {
  private inFlight = 0;
  private meanPageMs = 0;
  private readonly metrics = {
    pages: counter('maas_vision_images', 'images handled by the vision service, by operation and outcome'),
    lines: counter('maas_vision_text_lines', 'text lines recognized, by model'),
    stageMs: latencyHistogram('maas_vision_stage_ms', 'time per vision stage (decode, detection, crop, orientation, recognition, classification), in milliseconds'),
  };

  constructor(
    private readonly deps: { models: ModelProvider; images: ImageOps; settings: VisionSettings; log: Logger },
  ) {}

  async recognizeText(model: ModelSelector, bytes: Uint8Array, options: TextOptionsInput, signal: AbortSignal): Promise<RecognizeTextOutput> {
    const started = performance.now();
    const opts = this.textOptions(options);
    return this.admit('recognize_text', async () =>
      this.withModel(model, this.deps.settings.defaultOcrModel, ModelTask.OCR, signal, async (lease, served) => {
        if (lease.model.kind !== 'ocr') throw new Error('unreachable');
        const { image, decodeMs } = await this.decode(bytes, signal, served);
        const r = await lease.model.engine.recognize(image, opts, signal);
        const attrs = { model: served.name };
        this.metrics.lines.add(r.lines.length, attrs);
        this.recordStages(served.name, { decode: decodeMs, detection: r.stages.detectionMs, crop: r.stages.cropMs, orientation: r.stages.orientationMs, recognition: r.stages.recognitionMs });
        return {
          lines: r.lines,
          width: image.width,
          height: image.height,
          model: served,
          timings: { queueMs: r.queueMs, inferenceMs: r.inferenceMs, totalMs: performance.now() - started },
          stages: { decodeMs, ...r.stages },
        };
      }),
    );
  }

  async detectText(model: ModelSelector, bytes: Uint8Array, options: TextOptionsInput, signal: AbortSignal): Promise<DetectTextOutput> {
    const started = performance.now();
    const { maxSide } = this.textOptions(options);
    return this.admit('detect_text', async () =>
      this.withModel(model, this.deps.settings.defaultOcrModel, ModelTask.OCR, signal, async (lease, served) => {
        if (lease.model.kind !== 'ocr') throw new Error('unreachable');
        const { image, decodeMs } = await this.decode(bytes, signal, served);
        const r = await lease.model.engine.detect(image, { maxSide }, signal);
        this.recordStages(served.name, { decode: decodeMs });
        return {
          regions: r.boxes,
          width: image.width,
          height: image.height,
          model: served,
          timings: { queueMs: r.queueMs, inferenceMs: r.inferenceMs, totalMs: performance.now() - started },
        };
      }),
    );
  }

  async classifyImage(model: ModelSelector, bytes: Uint8Array, topK: number | undefined, signal: AbortSignal): Promise<ClassifyOutput> {
    const started = performance.now();
    const k = topK ?? DEFAULT_TOP_K;
    if (!Number.isInteger(k) || k < 1 || k > MAX_TOP_K) throw InvalidArgumentError.field('top_k', `must be between 1 and ${MAX_TOP_K} (got ${k})`);
    return this.admit('classify_image', async () =>
      this.withModel(model, this.deps.settings.defaultClassifier, ModelTask.IMAGE_CLASSIFICATION, signal, async (lease, served) => {
        if (lease.model.kind !== 'classifier') throw new Error('unreachable');
        const { image, decodeMs } = await this.decode(bytes, signal, served);
        const t = performance.now();
        const r = await lease.model.engine.classify(image, k, signal);
        this.recordStages(served.name, { decode: decodeMs, classification: performance.now() - t });
        return { labels: r.labels, model: served, timings: { queueMs: r.queueMs, inferenceMs: r.inferenceMs, totalMs: performance.now() - started } };
      }),
    );
  }

  /** The loaded versions, described. */
  async listModels(signal: AbortSignal): Promise<ModelDescription[]> {
    const out: ModelDescription[] = [];
    for (const info of this.deps.models.list()) {
      try {
        out.push(await this.describe({ name: info.name, version: info.version }, signal));
      } catch (err) {
        // Unloaded between list() and acquire(): leave it out.
        if (!(err instanceof MaasError)) throw err;
      }
    }
    return out;
  }

  /** One version (loaded now if it was not). An empty name means the default OCR model. */
  async describe(selector: ModelSelector, signal: AbortSignal): Promise<ModelDescription> {
    const lease = await this.deps.models.acquire({ ...selector, name: selector.name || this.deps.settings.defaultOcrModel }, signal);
    try {
      const v = lease.version;
      const info = this.deps.models.list().find((i) => i.name === v.name && i.version === v.version);
      const m = lease.model;
      return {
        model: served(lease),
        task: v.task,
        aliases: info?.aliases ?? [],
        memoryBytes: info?.bytes ?? 0,
        files: v.files.map((f) => f.name),
        ...(m.kind === 'classifier'
          ? { classifier: m.engine.settings }
          : { ocr: { hasOrientationClassifier: m.engine.hasOrientationClassifier, dictionarySize: m.engine.dictionarySize, lineHeight: m.engine.lineHeight } }),
      };
    } finally {
      lease.release();
    }
  }

  private textOptions(o: TextOptionsInput): { maxSide: number; detectOrientation: boolean; minConfidence: number } {
    const s = this.deps.settings;
    const minConfidence = o.minConfidence ?? s.minConfidence;
    if (!(minConfidence >= 0 && minConfidence <= 1)) throw InvalidArgumentError.field('options.min_confidence', `must be between 0 and 1 (got ${minConfidence})`);
    const maxSide = o.maxSideLen || s.detMaxSide;
    if (!Number.isInteger(maxSide) || maxSide < 32 || maxSide > s.detMaxSideLimit) {
      throw InvalidArgumentError.field('options.max_side_len', `must be 0 (the default, ${s.detMaxSide}) or between 32 and ${s.detMaxSideLimit} (got ${maxSide})`);
    }
    return { maxSide, detectOrientation: o.detectOrientation ?? s.detectOrientation, minConfidence };
  }

  /** Runs the work if fewer than maxConcurrentPages are in progress; otherwise RESOURCE_EXHAUSTED. */
  private async admit<T>(operation: string, work: () => Promise<T>): Promise<T> {
    if (this.inFlight >= this.deps.settings.maxConcurrentPages) {
      this.metrics.pages.add(1, { operation, outcome: 'overloaded' });
      const retry = Math.max(10, this.meanPageMs || 100);
      throw new OverloadedError(`the vision service is processing ${this.inFlight} images, its limit; retry after the delay given`, retry, {
        metadata: { in_flight: String(this.inFlight) },
      });
    }
    this.inFlight++;
    const started = performance.now();
    try {
      const result = await work();
      this.metrics.pages.add(1, { operation, outcome: 'ok' });
      const ms = performance.now() - started;
      this.meanPageMs = this.meanPageMs === 0 ? ms : this.meanPageMs + 0.2 * (ms - this.meanPageMs);
      return result;
    } catch (err) {
      this.metrics.pages.add(1, { operation, outcome: err instanceof MaasError ? err.kind : 'internal' });
      throw err;
    } finally {
      this.inFlight--;
    }
  }

  private async decode(bytes: Uint8Array, signal: AbortSignal, model: Served): Promise<{ image: RgbImage; decodeMs: number }> {
    throwIfAborted(signal);
    const started = performance.now();
    const attributes = { [Attr.model]: model.name, [Attr.modelVersion]: model.version, 'maas.image_bytes': bytes.length };
    return tracer().startActiveSpan('image decode', { attributes }, async (span) => {
      try {
        const image = await this.deps.images.decode(bytes, this.deps.settings.limits, 'image');
        span.setAttributes({ 'maas.image_width': image.width, 'maas.image_height': image.height });
        return { image, decodeMs: performance.now() - started };
      } catch (err) {
        span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof MaasError ? err.message : 'decode failed' });
        throw err;
      } finally {
        span.end();
      }
    });
  }

  private async withModel<T>(
    selector: ModelSelector,
    defaultName: string,
    task: ModelTask,
    signal: AbortSignal,
    work: (lease: ModelLease<VisionModel>, served: Served) => Promise<T>,
  ): Promise<T> {
    const name = selector.name || defaultName;
    const lease = await this.deps.models.acquire({ ...selector, name }, signal);
    try {
      if (lease.version.task !== task) {
        const wanted = task === ModelTask.OCR ? 'an OCR' : 'an image classification';
        throw new FailedPreconditionError(`model "${name}" is not ${wanted} model`, [{ type: 'TASK', subject: name, description: `task is ${taskLabel(lease.version)}` }], {
          reason: 'WRONG_TASK',
          metadata: { model: name },
        });
      }
      const s = served(lease);
      annotate({ [Attr.model]: s.name, [Attr.modelVersion]: s.version, [Attr.executionProvider]: s.executionProvider, [Attr.task]: taskLabel(lease.version) });
      return await work(lease, s);
    } finally {
      lease.release();
    }
  }

  private recordStages(model: string, stages: Record<string, number>): void {
    for (const [stage, ms] of Object.entries(stages)) this.metrics.stageMs.record(ms, { model, stage });
  }
}

function served(lease: ModelLease<VisionModel>): Served {
  return { name: lease.version.name, version: lease.version.version, alias: lease.alias, executionProvider: lease.executionProvider };
}

function taskLabel(v: LocalVersion): string {
  return v.task === ModelTask.OCR ? 'ocr' : v.task === ModelTask.IMAGE_CLASSIFICATION ? 'image_classification' : String(v.task);
}
