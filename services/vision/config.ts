// The vision service's configuration: the common server settings, where models come from, onnxruntime
// threads and providers, image limits, OCR defaults, and batching and queue bounds.
import { z } from 'zod';
import { bool, list, modelServiceSettings, nonNegativeInt, positiveInt, serverSettings, setting, type ConfigOf } from '../runtime/config.js';

const MiB = 1024 * 1024;

const fraction = () => z.coerce.number().min(0).max(1);

export const spec = {
  ...serverSettings({ port: 50055, metricsPort: 9464 }),
  ...modelServiceSettings('vision'),
  defaultOcrModel: setting('MAAS_VISION_DEFAULT_OCR_MODEL', z.string().min(1), 'ppocr-v4', 'OCR model used when a request names none'),
  defaultClassifier: setting('MAAS_VISION_DEFAULT_CLASSIFIER', z.string().min(1), 'color-classifier', 'image classifier used when a request names none'),
  preload: setting('MAAS_VISION_PRELOAD', list(), 'ppocr-v4,color-classifier', 'models (alias default) loaded at start; a failure is logged, not fatal'),
  maxImageBytes: setting('MAAS_VISION_MAX_IMAGE_BYTES', positiveInt(), String(12 * MiB), 'largest encoded image accepted, in bytes (keep below MAAS_MAX_RECEIVE_MESSAGE_BYTES)'),
  maxImagePixels: setting('MAAS_VISION_MAX_IMAGE_PIXELS', positiveInt(), String(40_000_000), 'largest width x height accepted, checked from the header before decoding'),
  detMaxSide: setting('MAAS_VISION_DET_MAX_SIDE', z.coerce.number().int().min(32), '960', 'longest image side for text detection when a request sets none (images are scaled down to it)'),
  detMaxSideLimit: setting('MAAS_VISION_DET_MAX_SIDE_LIMIT', z.coerce.number().int().min(32), '4096', 'largest max_side_len a request may ask for'),
  detectOrientation: setting('MAAS_VISION_DETECT_ORIENTATION', bool(), 'true', 'classify line orientation (0/180 degrees) when a request does not say'),
  minConfidence: setting('MAAS_VISION_MIN_CONFIDENCE', fraction(), '0.5', 'lines read with a lower confidence are dropped when a request does not say'),
  maxConcurrentPages: setting('MAAS_VISION_MAX_CONCURRENT_PAGES', positiveInt(), '16', 'images decoded and processed at once; more are refused with RESOURCE_EXHAUSTED'),
  streamWindow: setting('MAAS_VISION_STREAM_WINDOW', positiveInt(), '4', 'pages of one RecognizeTextStream processed at once'),
  runConcurrency: setting(
    'MAAS_VISION_RUN_CONCURRENCY',
    positiveInt(),
    '2',
    'batches of one model (detection, orientation, recognition) in flight at once, each run on MAAS_VISION_INTRA_OP_THREADS threads; they run side by side on MAAS_VISION_SESSION_THREADS sessions',
  ),
  sessionThreads: setting(
    'MAAS_VISION_SESSION_THREADS',
    nonNegativeInt(),
    '2',
    'worker threads per model file, each with an onnxruntime session of its own (weights and working memory once per thread): batches of one model run side by side on them and never stop the event loop (0: one session on the event loop, where a run blocks every call while it lasts and batches take turns)',
  ),
  detMaxBatch: setting('MAAS_VISION_DET_MAX_BATCH', positiveInt(), '2', 'pages detected in one batch (pages of equal input size share one run)'),
  clsMaxBatch: setting('MAAS_VISION_CLS_MAX_BATCH', positiveInt(), '32', 'lines classified (orientation) in one batch'),
  recMaxBatch: setting('MAAS_VISION_REC_MAX_BATCH', positiveInt(), '8', 'lines recognized in one batch'),
  recMaxBatchWidth: setting(
    'MAAS_VISION_REC_MAX_BATCH_WIDTH',
    positiveInt(),
    '1600',
    'most padded line width (pixels, summed over the batch) in one recognition batch; small batches run in parallel',
  ),
  recMaxLineWidth: setting('MAAS_VISION_REC_MAX_LINE_WIDTH', positiveInt(), '3200', 'widest line image given to the recognizer (longer lines are squeezed)'),
  classifyMaxBatch: setting('MAAS_VISION_CLASSIFY_MAX_BATCH', positiveInt(), '32', 'images classified in one batch'),
  maxQueueDelayMs: setting('MAAS_VISION_MAX_QUEUE_DELAY_MS', nonNegativeInt(), '0', 'how long a queued entry may wait for its batch to fill while the model is idle (0: run at once)'),
  maxQueuedPages: setting('MAAS_VISION_MAX_QUEUED_PAGES', positiveInt(), '64', 'most pages waiting for detection or classification'),
  maxQueuedLines: setting('MAAS_VISION_MAX_QUEUED_LINES', positiveInt(), '4096', 'most lines waiting for orientation or recognition'),
};

export type VisionConfig = ConfigOf<typeof spec>;
