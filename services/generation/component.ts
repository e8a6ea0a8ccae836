// How `maas up` runs the generation service: its entry, ports, environment, default model and table line.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ComponentSpec, PrepareContext } from '../../cli/component.js';
import { GenerationServiceClient } from '../../gen/maas/generation/v1/generation.js';
import { createClient, unary } from '../runtime/client.js';
import { ModelTask } from '../runtime/models/types.js';
import { ensureDefaultModel } from '../registry/client/push.js';
import { spec } from './config.js';
import { GPT2_MINI_NAME, TRAINED_GPT2_MINI_DIR, trainedGpt2MiniFiles } from './defaults/gpt2-mini.js';

/** Pushes the trained gpt2-mini (committed in models/gpt2-mini/model/) as `gpt2-mini`, alias `default`, unless the registry has it. */
export async function prepareDefaults(ctx: PrepareContext): Promise<void> {
  const started = performance.now();
  const c = JSON.parse(readFileSync(join(TRAINED_GPT2_MINI_DIR, 'config.json'), 'utf8')) as Record<string, number>;
  const result = await ensureDefaultModel(ctx.registryAddress, {
    model: GPT2_MINI_NAME,
    task: ModelTask.GENERATION,
    alias: 'default',
    description:
      `GPT-2 architecture (${c.n_layer} layers, ${c.n_head} heads, ${c.n_embd} wide, ${c.n_positions} positions, ${c.vocab_size}-token BPE) ` +
      'trained by the project on the King James Bible (public domain); see docs/training.md.',
    sourceUri: 'repo:models/gpt2-mini (train.py, settings.json)',
    tags: { family: 'gpt2', weights: 'trained', corpus: 'bible-kjv', built_by: 'models/gpt2-mini' },
    files: async () => trainedGpt2MiniFiles().map((name) => ({ name, path: join(TRAINED_GPT2_MINI_DIR, name) })),
  });
  ctx.log.info(
    { model: GPT2_MINI_NAME, version: result.version, pushed: result.pushed, ms: Math.round(performance.now() - started) },
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
