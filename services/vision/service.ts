// Builds the vision component from its configuration: the model source (registry or local folder), the
// model host with the vision loader, the domain service and the gRPC server. main.ts runs it; tests build
// it in process with their own configuration.
import { sessionSettings } from '../runtime/config.js';
import { modelSourceFromConfig } from '../runtime/models/source-from-config.js';
import type { Logger } from '../runtime/logger.js';
import { ModelHost } from '../runtime/models/model-host.js';
import { ModelTask, type ModelSource } from '../runtime/models/types.js';
import type { Running } from '../runtime/process.js';
import { sharpImageOps } from './backends/sharp-images.js';
import { visionLoader } from './backends/vision-loader.js';
import type { VisionConfig } from './config.js';
import type { VisionModel } from './domain/vision-model.js';
import { VisionService } from './domain/vision-service.js';
import { createVisionServer } from './server.js';

export interface VisionComponent extends Running {
  host: ModelHost<VisionModel>;
  service: VisionService;
  close(): Promise<void>;
}

export async function createVisionComponent(config: VisionConfig, log: Logger): Promise<VisionComponent> {
  const source = modelSource(config, log);
  const images = sharpImageOps();
  const host = new ModelHost<VisionModel>({
    source,
    loader: visionLoader({
      session: sessionSettings(config),
      sessionThreads: config.sessionThreads,
      ocrBatching: {
        detMaxBatch: config.detMaxBatch,
        clsMaxBatch: config.clsMaxBatch,
        recMaxBatch: config.recMaxBatch,
        recMaxBatchWidth: config.recMaxBatchWidth,
        recMaxLineWidth: config.recMaxLineWidth,
        runConcurrency: config.runConcurrency,
        maxQueueDelayMs: config.maxQueueDelayMs,
        maxQueuedPages: config.maxQueuedPages,
        maxQueuedLines: config.maxQueuedLines,
      },
      classifierBatching: { maxBatch: config.classifyMaxBatch, maxQueueDelayMs: config.maxQueueDelayMs, maxQueued: config.maxQueuedPages, runConcurrency: config.runConcurrency },
      images,
      log,
    }),
    tasks: [ModelTask.OCR, ModelTask.IMAGE_CLASSIFICATION],
    defaultModel: config.defaultOcrModel,
    memoryBudgetBytes: config.memoryBudgetMb * 1024 * 1024,
    log,
  });
  const service = new VisionService({
    models: host,
    images,
    settings: {
      limits: { maxBytes: config.maxImageBytes, maxPixels: config.maxImagePixels },
      detMaxSide: config.detMaxSide,
      detMaxSideLimit: Math.max(config.detMaxSideLimit, config.detMaxSide),
      detectOrientation: config.detectOrientation,
      minConfidence: config.minConfidence,
      maxConcurrentPages: config.maxConcurrentPages,
      defaultOcrModel: config.defaultOcrModel,
      defaultClassifier: config.defaultClassifier,
    },
    log,
  });
  // Load the default models before serving, so the first requests do not wait for them.
  await Promise.all(
    config.preload.map((name) =>
      host.preload({ name }).catch((err: unknown) => log.warn({ model: name, err: String(err) }, 'could not preload a model; it will be loaded on first use')),
    ),
  );
  const server = createVisionServer({ settings: config, log, service, streamWindow: config.streamWindow });
  return {
    server,
    host,
    service,
    close: async () => {
      await host.close();
      await source.close();
    },
  };
}

function modelSource(config: VisionConfig, log: Logger): ModelSource {
  return modelSourceFromConfig(config, log, 'MAAS_VISION_MODEL_DIR');
}
