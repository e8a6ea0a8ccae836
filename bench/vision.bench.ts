// Vision OCR throughput, measured side by side in one run on the same pages and the same PP-OCRv4 model files:
//   (a) the vision service over gRPC, its client in its own process, with 1 and 4 clients in flight;
//   (b) the peer, @gutenye/ocr-node called directly in this process (no RPC at all), one page at a time and
//       with 4 pages in flight.
// Cells take turns (a1, b1, a4, b4, twice; best of the two rounds), so a busy moment of the shared machine hits
// both alike. Goals from the issue: (a) ≥ 0.9× (b) with one client, and (a) above (b) with 4 clients (against
// the peer's better figure). The character error rate of both on the same pages is reported too.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Ocr from '@gutenye/ocr-node';
import { launch, ROOT, type Launched } from '../cli/launch.js';
import { RecognizeTextRequest, VisionServiceClient } from '../gen/maas/vision/v1/vision.js';
import { createClient, unary } from '../services/runtime/client.js';
import { writeDefaultRepository } from '../services/vision/defaults/model-repository.js';
import { ocrModelsAssets } from '../services/vision/defaults/ppocr.js';
import type { LoadPlan, LoadReport } from '../services/vision/testing/load-client.js';
import { renderPages, type NamedPage } from '../test/fixtures/vision/pages.js';
import { levenshtein } from '../test/fixtures/vision/score.js';
import type { BenchResult } from './types.js';

const ROUNDS = 2;
const WARMUP_MS = 1000;
const MEASURE_MS = 5000;

interface PeerLine {
  text: string;
}
interface PeerOcr {
  detect(path: string): Promise<PeerLine[]>;
}

export default async function bench(): Promise<BenchResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'maas-vision-bench-'));
  let service: Launched | undefined;
  try {
    const pages = await renderPages();
    const paths = pages.map((p, i) => {
      const path = join(dir, `page-${i}.${p.name.includes('jpeg') ? 'jpg' : p.name.includes('webp') ? 'webp' : 'png'}`);
      writeFileSync(path, p.bytes);
      return path;
    });
    await writeDefaultRepository(join(dir, 'models'), join(ROOT, '.maas', 'cache'));

    const assets = ocrModelsAssets();
    const peer = (await Ocr.create({
      models: {
        detectionPath: join(assets, 'ch_PP-OCRv4_det_infer.onnx'),
        recognitionPath: join(assets, 'ch_PP-OCRv4_rec_infer.onnx'),
        dictionaryPath: join(assets, 'ppocr_keys_v1.txt'),
      },
    })) as PeerOcr;

    service = launch('vision', 'services/vision/main.ts', {
      env: { MAAS_PORT: '0', MAAS_METRICS_ENABLED: 'false', MAAS_LOG_LEVEL: 'info', MAAS_VISION_MODEL_DIR: join(dir, 'models'), OTEL_SDK_DISABLED: 'true' },
    });
    const address = `127.0.0.1:${await service.port}`;

    const quality = { service: await serviceCer(address, pages), peer: await peerCer(peer, pages, paths) };

    const best: Record<string, LoadReport> = {};
    const keep = (key: string, r: LoadReport) => {
      if (!best[key] || r.pagesPerSecond > best[key].pagesPerSecond) best[key] = r;
    };
    for (let round = 0; round < ROUNDS; round++) {
      for (const clients of [1, 4]) {
        keep(`a${clients}`, await clientProcess({ address, pages: paths, concurrency: clients, warmupMs: WARMUP_MS, durationMs: MEASURE_MS }));
        keep(`b${clients}`, await peerLoad(peer, paths, clients));
      }
    }

    const row = (name: string, r: LoadReport): BenchResult => ({
      group: 'vision',
      name,
      value: r.pagesPerSecond,
      unit: 'pages/s',
      note: `p50 ${r.p50Ms.toFixed(0)} ms/page${r.errors ? `, ${r.errors} errors` : ''}`,
    });
    const peerBest4 = Math.max(best.b1.pagesPerSecond, best.b4.pagesPerSecond);
    return [
      row('(a) service, 1 client', best.a1),
      row('(a) service, 4 clients', best.a4),
      row('(b) peer @gutenye/ocr-node in process, 1 at a time', best.b1),
      row('(b) peer @gutenye/ocr-node in process, 4 in flight', best.b4),
      { group: 'vision', name: '(a)/(b), 1 client', value: best.a1.pagesPerSecond / best.b1.pagesPerSecond, unit: 'x', note: 'goal ≥ 0.9x' },
      { group: 'vision', name: '(a) 4 clients / best (b)', value: best.a4.pagesPerSecond / peerBest4, unit: 'x', note: 'goal > 1x' },
      { group: 'vision', name: `(a) service character error rate, ${pages.length} pages`, value: quality.service, unit: 'CER', note: 'test pages; goal ≤ 0.02' },
      { group: 'vision', name: `(b) peer character error rate, ${pages.length} pages`, value: quality.peer, unit: 'CER' },
    ];
  } finally {
    await service?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs the load client in its own process and returns its report. */
function clientProcess(plan: LoadPlan): Promise<LoadReport> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'services/vision/testing/load-client.ts', JSON.stringify(plan)], {
      cwd: ROOT,
      env: { ...process.env, OTEL_SDK_DISABLED: 'true' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`vision load client exited with code ${code}`));
      else resolve(JSON.parse(out.trim().split('\n').pop()!) as LoadReport);
    });
  });
}

/** The peer in this process: `concurrency` loops calling detect() on the page files. */
async function peerLoad(peer: PeerOcr, paths: string[], concurrency: number): Promise<LoadReport> {
  let next = 0;
  const loop = async (until: number, latencies: number[] | undefined) => {
    let pages = 0;
    while (performance.now() < until) {
      const started = performance.now();
      await peer.detect(paths[next++ % paths.length]);
      latencies?.push(performance.now() - started);
      pages++;
    }
    return pages;
  };
  const warmUntil = performance.now() + WARMUP_MS;
  await Promise.all(Array.from({ length: concurrency }, () => loop(warmUntil, undefined)));
  const latencies: number[] = [];
  const started = performance.now();
  const counts = await Promise.all(Array.from({ length: concurrency }, () => loop(started + MEASURE_MS, latencies)));
  const ms = performance.now() - started;
  const pages = counts.reduce((a, b) => a + b, 0);
  latencies.sort((a, b) => a - b);
  return { pages, ms, pagesPerSecond: (pages * 1000) / ms, errors: 0, p50Ms: latencies[Math.floor(latencies.length / 2)] ?? 0 };
}

async function serviceCer(address: string, pages: NamedPage[]): Promise<number> {
  const client = createClient(VisionServiceClient, address);
  try {
    const got = [];
    for (const p of pages) {
      const res = await unary(client.recognizeText.bind(client), RecognizeTextRequest.fromPartial({ image: p.bytes }));
      got.push(res.lines.map((l) => ({ text: l.text })));
    }
    return cer(pages, got);
  } finally {
    client.close();
  }
}

async function peerCer(peer: PeerOcr, pages: NamedPage[], paths: string[]): Promise<number> {
  const got = [];
  for (const path of paths) {
    const lines = await peer.detect(path);
    got.push(lines.map((l) => ({ text: l.text })));
  }
  return cer(pages, got);
}

/**
 * Character error rate of the page texts in reading order (lines joined by newlines), so it does not depend
 * on where a reader puts its boxes: the peer's boxes are offset (it letterboxes the image for detection and
 * scales the boxes back as if it had stretched it), its text is not.
 */
function cer(pages: NamedPage[], got: { text: string }[][]): number {
  let errors = 0;
  let chars = 0;
  pages.forEach((p, i) => {
    const expected = p.lines.map((l) => l.text).join('\n');
    errors += levenshtein(expected, got[i].map((l) => l.text).join('\n'));
    chars += expected.length;
  });
  return errors / chars;
}
