// Builds a running embeddings service from its configuration: the model source (a local model folder or the
// registry), the model host with this service's loader, the engine and the gRPC server. main.ts runs it as a
// process; tests build it in process the same way.
import { sessionSettings } from '../runtime/config.js';
import type { Logger } from '../runtime/logger.js';
import { ModelHost } from '../runtime/models/model-host.js';
import { ModelTask, type ModelSource } from '../runtime/models/types.js';
import { modelSourceFromConfig } from '../runtime/models/source-from-config.js';
import { MeshServer } from '../runtime/server.js';
import { createEmbeddingBackend, hostProvider } from './backends/loader.js';
import type { EmbeddingsConfig } from './config.js';
import { Embedder } from './domain/embedder.js';
import type { EmbeddingModel } from './domain/model.js';
import { embeddingService } from './server.js';

export interface EmbeddingsService {
  server: MeshServer;
  embedder: Embedder;
  host: ModelHost<EmbeddingModel>;
  /** Unloads the models and stops following the source (after the server has stopped). */
  close(): Promise<void>;
}

export async function createEmbeddingsService(config: EmbeddingsConfig, log: Logger, options: { source?: ModelSource } = {}): Promise<EmbeddingsService> {
  const source = options.source ?? modelSourceFromConfig(config, log, 'MAAS_EMBEDDINGS_MODEL_DIR');
  const backend = createEmbeddingBackend({
    session: sessionSettings(config),
    encoderThread: config.encoderThread,
    batching: {
      maxBatchSize: config.maxBatchSize,
      maxBatchTokens: config.maxBatchTokens,
      maxQueueDelayMs: config.maxQueueDelayMs,
      maxQueueSize: config.maxQueueSize,
      concurrency: config.batchConcurrency,
    },
    log,
  });
  const host = new ModelHost<EmbeddingModel>({
    source,
    loader: backend.loader,
    tasks: [ModelTask.EMBEDDING],
    defaultModel: config.defaultModel,
    memoryBudgetBytes: config.memoryBudgetMb * 1024 * 1024,
    log,
  });
  const embedder = new Embedder(hostProvider(host, backend), { maxInputsPerRequest: config.maxInputsPerRequest, maxInputChars: config.maxInputChars });
  if (config.preloadDefault) {
    try {
      const info = await host.preload({ name: config.defaultModel });
      log.info({ model: info.name, version: info.version, executionProvider: info.executionProvider }, 'default model loaded');
    } catch (err) {
      // Serve anyway: requests for other models work, and the default loads on its first request once it exists.
      log.warn({ err: String(err), model: config.defaultModel }, 'could not preload the default model; it loads on first use');
    }
  }
  const server = new MeshServer({
    component: 'embeddings',
    settings: config,
    log,
    services: [embeddingService({ embedder, streamWindow: config.streamWindow, log })],
  });
  return {
    server,
    embedder,
    host,
    async close() {
      await host.close();
      await source.close();
    },
  };
}
