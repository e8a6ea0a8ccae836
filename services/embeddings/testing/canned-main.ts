// For the bench: the embeddings service's own server, handlers and response encoding with the engine replaced
// by a canned answer — every input gets the same unit vector of the default model's width (100), nothing is
// tokenized, batched or run. What it serves per second is what the gRPC path alone allows on this machine,
// so the bench can show how much of the gap between the service and the in-process ceiling is the model work.
//   node --import tsx services/embeddings/testing/canned-main.ts   (MAAS_PORT, as any component)
import { serverSettings } from '../../runtime/config.js';
import { runComponent } from '../../runtime/process.js';
import { MeshServer } from '../../runtime/server.js';
import type { Embedder, EmbedParams, EmbedResult } from '../domain/embedder.js';
import { embeddingService } from '../server.js';

const WIDTH = 100;
const MAX_INPUTS = 512;
// Every input's vector, back to back, as a batch's vectors lie: one unit vector of varied values (as a model's
// are, so that callers turning it into text — the gateway's HTTP API — pay what they would for a real one).
const unit = Float32Array.from({ length: WIDTH }, (_, i) => Math.sin(i * 12.9898 + 1) * 0.3);
const norm = Math.hypot(...unit);
const block = new Float32Array(MAX_INPUTS * WIDTH);
for (let i = 0; i < MAX_INPUTS; i++) for (let d = 0; d < WIDTH; d++) block[i * WIDTH + d] = unit[d]! / norm;

const canned = {
  defaultModel: 'canned',
  async embed(params: EmbedParams): Promise<EmbedResult> {
    const count = Math.min(params.inputs.length, MAX_INPUTS);
    return {
      vectors: { dimensions: WIDTH, stride: WIDTH, blocks: [{ values: block, first: 0, count }], tokens: new Int32Array(count).fill(12), truncated: new Uint8Array(count) },
      inputTokens: 12 * count,
      served: { name: 'canned', version: 1, alias: 'default', executionProvider: 'none' },
      timings: { queueMs: 0, inferenceMs: 0, totalMs: 0 },
    };
  },
};

await runComponent({
  component: 'embeddings-canned',
  spec: serverSettings({ port: 0, metricsPort: 0 }),
  start: async (config, log) => ({
    server: new MeshServer({
      component: 'embeddings-canned',
      settings: config,
      log,
      // Only embed is ever called by the bench; the other RPCs would fail on the missing methods.
      services: [embeddingService({ embedder: canned as unknown as Embedder, streamWindow: 32, log })],
    }),
  }),
});
