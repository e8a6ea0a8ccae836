// Builds a running generation service from its configuration: the model source (a local model folder or the
// registry), the model host with this service's loader, the generator and the gRPC server. main.ts runs it as
// a process; tests build it in process the same way.
import { sessionSettings } from '../runtime/config.js';
import type { Logger } from '../runtime/logger.js';
import { ModelHost } from '../runtime/models/model-host.js';
import { ModelTask, type Loaded, type LocalVersion, type ModelSource } from '../runtime/models/types.js';
import { modelSourceFromConfig } from '../runtime/models/source-from-config.js';
import { MeshServer } from '../runtime/server.js';
import { createGenerationLoader } from './backends/model-loader.js';
import { engineLimits, type GenerationConfig } from './config.js';
import type { GenerationModel } from './domain/engine.js';
import { Generator, type ModelProvider } from './domain/generator.js';
import { GenerationMetrics } from './metrics.js';
import { generationService } from './server.js';

export interface GenerationService {
  server: MeshServer;
  generator: Generator;
  host: ModelHost<GenerationModel>;
  /** Unloads the models and stops following the source (after the server has stopped). */
  close(): Promise<void>;
}

export async function createGenerationService(config: GenerationConfig, log: Logger, options: { source?: ModelSource } = {}): Promise<GenerationService> {
  const source = options.source ?? modelSourceFromConfig(config, log, 'MAAS_GENERATION_MODEL_DIR');
  const limits = engineLimits(config);
  const metrics = new GenerationMetrics();
  const baseLoader = createGenerationLoader({
    session: sessionSettings(config),
    decodeLanes: config.decodeLanes,
    decodeGraph: config.decodeGraph,
    laneNiceness: config.laneNiceness,
    limits,
    log,
    metrics: (model, version) => metrics.forModel(model, version),
  });
  // The loaded engines by name:version, so ListModels can show their batch state.
  const engines = new Map<string, GenerationModel>();
  const loader = async (version: LocalVersion, signal: AbortSignal): Promise<Loaded<GenerationModel>> => {
    const loaded = await baseLoader(version, signal);
    const key = `${version.name}:${version.version}`;
    engines.set(key, loaded.model);
    const untrack = metrics.track(version.name, version.version, () => loaded.model.stats());
    return {
      ...loaded,
      close: async () => {
        untrack();
        if (engines.get(key) === loaded.model) engines.delete(key);
        await loaded.close();
      },
    };
  };
  const host = new ModelHost<GenerationModel>({
    source,
    loader,
    tasks: [ModelTask.GENERATION],
    defaultModel: config.defaultModel,
    memoryBudgetBytes: config.memoryBudgetMb * 1024 * 1024,
    log,
  });
  const provider: ModelProvider = {
    get defaultModel() {
      return host.defaultModel;
    },
    acquire: (selector, signal) => host.acquire(selector, signal),
    loaded: () =>
      host.list().flatMap((info) => {
        const model = engines.get(`${info.name}:${info.version}`);
        return model ? [{ name: info.name, version: info.version, aliases: info.aliases, bytes: info.bytes, inUse: info.inUse, executionProvider: info.executionProvider, model }] : [];
      }),
  };
  const generator = new Generator(provider, limits);
  if (config.preloadDefault) {
    try {
      const info = await host.preload({ name: config.defaultModel });
      log.info({ model: info.name, version: info.version, executionProvider: info.executionProvider }, 'default model loaded');
    } catch (err) {
      // Serve anyway: requests for other models work, and the default loads on its first request once it exists.
      log.warn({ err: String(err), model: config.defaultModel }, 'could not preload the default model; it loads on first use');
    }
  }
  const server = new MeshServer({ component: 'generation', settings: config, log, services: [generationService({ generator })] });
  return {
    server,
    generator,
    host,
    async close() {
      await host.close();
      await source.close();
    },
  };
}
