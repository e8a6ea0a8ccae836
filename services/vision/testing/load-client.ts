// The benchmark's client, run as its own process so the service's CPU is not shared with the caller's event
// loop: `node --import tsx services/vision/testing/load-client.ts '<plan json>'`. It keeps `concurrency` calls of
// RecognizeText in flight (one channel each), cycling through the pages, and prints one JSON report.
import { readFileSync } from 'node:fs';
import { RecognizeTextRequest, VisionServiceClient } from '../../../gen/maas/vision/v1/vision.js';
import { createClient, unary, waitForReady } from '../../runtime/client.js';

export interface LoadPlan {
  address: string;
  /** Image files, read once. */
  pages: string[];
  concurrency: number;
  warmupMs: number;
  durationMs: number;
}

export interface LoadReport {
  pages: number;
  ms: number;
  pagesPerSecond: number;
  errors: number;
  /** Median latency per page, in milliseconds. */
  p50Ms: number;
}

export async function runLoad(plan: LoadPlan): Promise<LoadReport> {
  const images = plan.pages.map((p) => readFileSync(p));
  const clients = Array.from({ length: plan.concurrency }, () => createClient(VisionServiceClient, plan.address));
  try {
    await Promise.all(clients.map((c) => waitForReady(c, 30_000)));
    let next = 0;
    const run = async (until: number, record: boolean, stats: { pages: number; errors: number; latencies: number[] }, client: VisionServiceClient) => {
      while (performance.now() < until) {
        const image = images[next++ % images.length];
        const started = performance.now();
        try {
          await unary(client.recognizeText.bind(client), RecognizeTextRequest.fromPartial({ image }));
          if (record) {
            stats.pages++;
            stats.latencies.push(performance.now() - started);
          }
        } catch {
          stats.errors++;
        }
      }
    };
    const warm = { pages: 0, errors: 0, latencies: [] as number[] };
    const warmUntil = performance.now() + plan.warmupMs;
    await Promise.all(clients.map((c) => run(warmUntil, false, warm, c)));
    const stats = { pages: 0, errors: 0, latencies: [] as number[] };
    const started = performance.now();
    await Promise.all(clients.map((c) => run(started + plan.durationMs, true, stats, c)));
    const ms = performance.now() - started;
    stats.latencies.sort((a, b) => a - b);
    return { pages: stats.pages, ms, pagesPerSecond: (stats.pages * 1000) / ms, errors: stats.errors, p50Ms: stats.latencies[Math.floor(stats.latencies.length / 2)] ?? 0 };
  } finally {
    for (const c of clients) c.close();
  }
}

if (process.argv[1]?.endsWith('load-client.ts') && process.argv[2]) {
  const report = await runLoad(JSON.parse(process.argv[2]) as LoadPlan);
  process.stdout.write(`${JSON.stringify(report)}\n`);
}
