// What an OCR model version says about itself (its `ocr.json`, every field optional) and what the service
// configures about batching. Defaults are PaddleOCR's PP-OCRv4 inference settings.
import { z } from 'zod';
import { DEFAULT_DB_OPTIONS, type DbOptions } from './db-postprocess.js';
import type { Normalization } from './tensors.js';

const triple = z.tuple([z.number(), z.number(), z.number()]);
const normalization = z.object({
  scale: z.number().positive().default(1 / 255),
  mean: triple,
  std: triple.refine((s) => s.every((v) => v > 0), 'std values must be positive'),
  channel_order: z.enum(['RGB', 'BGR']).default('BGR'),
});

/** The schema of `ocr.json` in an OCR model version. */
export const ocrJsonSchema = z
  .object({
    detection: z
      .object({
        file: z.string().default('det.onnx'),
        normalization: normalization.default({ scale: 1 / 255, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], channel_order: 'BGR' }),
        /** Inputs are resized to multiples of this. */
        multiple: z.number().int().positive().default(32),
        threshold: z.number().min(0).max(1).default(DEFAULT_DB_OPTIONS.threshold),
        box_threshold: z.number().min(0).max(1).default(DEFAULT_DB_OPTIONS.boxThreshold),
        unclip_ratio: z.number().positive().default(DEFAULT_DB_OPTIONS.unclipRatio),
        max_candidates: z.number().int().positive().default(DEFAULT_DB_OPTIONS.maxCandidates),
        min_size: z.number().positive().default(DEFAULT_DB_OPTIONS.minSize),
      })
      .prefault({}),
    recognition: z
      .object({
        file: z.string().default('rec.onnx'),
        keys: z.string().default('keys.txt'),
        normalization: normalization.default({ scale: 1 / 255, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], channel_order: 'BGR' }),
        line_height: z.number().int().positive().default(48),
        /** Batches are padded to at least this width (the width the model was trained at). */
        min_width: z.number().int().positive().default(320),
        /** Line crops extend this fraction of the line's height beyond the detected box on every side. */
        crop_margin: z.number().min(0).max(1).default(0.1),
      })
      .prefault({}),
    orientation: z
      .object({
        file: z.string().default('cls.onnx'),
        normalization: normalization.default({ scale: 1 / 255, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], channel_order: 'BGR' }),
        height: z.number().int().positive().default(48),
        width: z.number().int().positive().default(192),
        /**
         * Output labels in order (softmax outputs). A line is turned when P(`180`) reaches `threshold`, or 0.5
         * when the page as a whole votes upside down.
         */
        labels: z.array(z.string()).default(['0', '180']),
        threshold: z.number().min(0).max(1).default(0.9),
      })
      .prefault({}),
  })
  .strict();

export type OcrJson = z.infer<typeof ocrJsonSchema>;

/** The model-side settings the engine runs with. */
export interface OcrModelSettings {
  detection: { normalization: Normalization; multiple: number; db: DbOptions };
  recognition: { normalization: Normalization; lineHeight: number; minWidth: number; cropMargin: number };
  orientation: { normalization: Normalization; height: number; width: number; labels: string[]; threshold: number };
}

export function modelSettings(json: OcrJson): OcrModelSettings {
  const norm = (n: z.infer<typeof normalization>): Normalization => ({ scale: n.scale, mean: n.mean, std: n.std, channelOrder: n.channel_order });
  const d = json.detection;
  const r = json.recognition;
  const o = json.orientation;
  return {
    detection: {
      normalization: norm(d.normalization),
      multiple: d.multiple,
      db: { threshold: d.threshold, boxThreshold: d.box_threshold, unclipRatio: d.unclip_ratio, maxCandidates: d.max_candidates, minSize: d.min_size },
    },
    recognition: { normalization: norm(r.normalization), lineHeight: r.line_height, minWidth: r.min_width, cropMargin: r.crop_margin },
    orientation: { normalization: norm(o.normalization), height: o.height, width: o.width, labels: o.labels, threshold: o.threshold },
  };
}

/** Service-side batching settings (from the service configuration). */
export interface OcrBatching {
  /** Pages detected in one batch (same input size only). */
  detMaxBatch: number;
  /** Lines classified in one batch. */
  clsMaxBatch: number;
  /** Lines recognized in one batch. */
  recMaxBatch: number;
  /** Most padded width (pixels, summed over the batch) in one recognition batch. */
  recMaxBatchWidth: number;
  /** Widest line image fed to the recognizer; longer lines are squeezed. */
  recMaxLineWidth: number;
  /** Batches of one model that may run at once (parallel onnxruntime runs on the same session). */
  runConcurrency: number;
  /** How long a queued entry may wait for its batch to fill while the model is idle. */
  maxQueueDelayMs: number;
  /** Most pages waiting for detection. */
  maxQueuedPages: number;
  /** Most lines waiting for orientation or recognition. */
  maxQueuedLines: number;
}
