// Overload figures through the gateway, measured: the mesh (registry, embeddings, generation, gateway; each its
// own process on 127.0.0.1) with small queues, each model service driven for 5 s at several times its capacity
// by closed-loop callers in this process. Reported per service: answers and refusals per second, their median
// latencies, how much the refusing process's RSS grew, and the idle median after the load as a ratio of before.
// Vision is left out here (one page takes about a second on this machine; its figures are in docs/resilience.md).
import { EmbeddingServiceClient, EmbedRequest } from '../gen/maas/embeddings/v1/embeddings.js';
import { GenerationServiceClient } from '../gen/maas/generation/v1/generation.js';
import { createClient, unary } from '../services/runtime/client.js';
import { sentences } from '../services/embeddings/testing/load.js';
import { drive, median, sequentialLatencies, timed, type Outcome } from '../test/support/resilience/load.js';
import { MiB, rssOf, sampleMemory } from '../test/support/resilience/memory.js';
import { startTestMesh } from '../test/support/resilience/mesh.js';
import type { BenchResult } from './types.js';

const LOAD_MS = 5000;

export default async function bench(): Promise<BenchResult[]> {
  const mesh = await startTestMesh(
    {
      MAAS_EMBEDDINGS_MAX_QUEUE_INPUTS: '64',
      MAAS_EMBEDDINGS_MAX_BATCH_SIZE: '16',
      MAAS_GENERATION_MAX_BATCH_SIZE: '2',
      MAAS_GENERATION_MAX_QUEUE: '2',
    },
    ['registry', 'embeddings', 'generation', 'gateway'],
  );
  const results: BenchResult[] = [];
  const e = createClient(EmbeddingServiceClient, mesh.grpc.gateway!);
  const g = createClient(GenerationServiceClient, mesh.grpc.gateway!);
  try {
    const inputs = sentences(32, 3);
    const plans: { service: 'embeddings' | 'generation'; workers: number; call: () => Promise<Outcome> }[] = [
      {
        service: 'embeddings',
        workers: 24,
        call: () => timed(async () => void (await unary(e.embed.bind(e), EmbedRequest.fromPartial({ inputs, truncate: true }), { deadline: Date.now() + 30_000 }))),
      },
      {
        service: 'generation',
        workers: 12,
        call: () =>
          timed(async () => void (await unary(g.generate.bind(g), { prompt: 'In the beginning', messages: [], parameters: { maxNewTokens: 24, temperature: 0, stop: [], ignoreEos: true } } as never, { deadline: Date.now() + 60_000 }))),
      },
    ];
    for (const plan of plans) {
      const pid = mesh.pid[plan.service]!;
      await sequentialLatencies(8, plan.call); // warm-up: first calls load models and JIT the paths
      const idle = median(await sequentialLatencies(12, plan.call));
      const before = rssOf(pid);
      const sampler = sampleMemory([pid]);
      const report = await drive({ workers: plan.workers, durationMs: LOAD_MS, maxRequests: 10_000, call: plan.call });
      sampler.stop();
      await new Promise((r) => setTimeout(r, 500));
      const after = median(await sequentialLatencies(12, plan.call));
      const seconds = LOAD_MS / 1000;
      const group = 'resilience';
      const name = (what: string) => `${plan.service} overload (${plan.workers} callers via gateway): ${what}`;
      const failed = report.sent - (report.byKind.OK ?? 0) - (report.byKind.RESOURCE_EXHAUSTED ?? 0);
      results.push(
        { group, name: name('answered'), value: Math.round((report.byKind.OK ?? 0) / seconds), unit: 'req/s' },
        { group, name: name('refused with RESOURCE_EXHAUSTED'), value: Math.round((report.byKind.RESOURCE_EXHAUSTED ?? 0) / seconds), unit: 'req/s' },
        { group, name: name('failed otherwise'), value: failed, unit: 'requests', note: 'goal 0' },
        { group, name: name('answered, median'), value: Math.round(median(report.okMs)), unit: 'ms' },
        { group, name: name('refused, median'), value: Math.round(median(report.rejectedMs)), unit: 'ms', note: 'below the answered median' },
        { group, name: name('RSS growth'), value: Math.round((sampler.peak(pid) - before) / MiB), unit: 'MiB' },
        { group, name: name('idle median after / before'), value: Number((after / idle).toFixed(2)), unit: 'x', note: 'about 1 once the load stops' },
      );
    }
  } finally {
    e.close();
    g.close();
    await mesh.stop();
  }
  return results;
}
