// Embeddings throughput, measured side by side in one run on the default model (GloVe 100d, sentences of 8 to
// 12 words), clients in their own process:
//   (a) the embeddings service, called directly over gRPC;
//   (b) the in-process onnxruntime ceiling, no RPC: tokenize, build the tensors and session.run, one batch after
//       another on one thread, at the best batch size (same session settings as the service: one intra-op
//       thread). session.run alone on ready tensors is reported too, for reference;
//   (c) the peer a Node engineer would write instead: a plain grpc-js server calling the @huggingface/transformers
//       feature-extraction pipeline once per request on the same model files.
// Sentences per second at 1, 8 and 64 concurrent clients with 1 and 32 inputs per request. (a) and (c) run at
// the same time and take turns cell by cell (best of two rounds each), so a busy moment of a shared machine hits
// both alike. Then the ratios against the issue's goals: (a) ≥ 1.5× (c) at 64 clients with 1 input per request;
// (a) with 32 inputs per request ≥ 50% of (b).
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { launch, ROOT, type Launched } from '../cli/launch.js';
import { GLOVE_MODEL } from '../services/embeddings/defaults/build-glove.js';
import { TextTokenizer } from '../services/embeddings/domain/tokenizer.js';
import { sentences, type CellReport, type LoadPlan } from '../services/embeddings/testing/load.js';
import { createModelFolder } from '../services/embeddings/testing/model-folder.js';
import type { BenchResult } from './types.js';

const CLIENTS = [1, 8, 64];
const INPUTS = [1, 32];
const ROUNDS = 2;
const WARMUP_MS = 400;
const MEASURE_MS = 2000;

export default async function bench(): Promise<BenchResult[]> {
  const folder = await createModelFolder({ bert: false });
  const peerRoot = mkdtempSync(join(tmpdir(), 'maas-embeddings-peer-'));
  const processes: Launched[] = [];
  try {
    // The same files, laid out the way transformers.js looks for them (<root>/<name>/onnx/model.onnx).
    mkdirSync(join(peerRoot, GLOVE_MODEL, 'onnx'), { recursive: true });
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) symlinkSync(join(folder.gloveDir, f), join(peerRoot, GLOVE_MODEL, f));
    symlinkSync(join(folder.gloveDir, 'model.onnx'), join(peerRoot, GLOVE_MODEL, 'onnx', 'model.onnx'));

    // (b) first, while nothing else of this bench runs.
    const ceiling = await onnxCeiling(folder.gloveDir);

    const service = launch('embeddings', 'services/embeddings/main.ts', {
      env: {
        MAAS_PORT: '0',
        MAAS_METRICS_ENABLED: 'false',
        // info: launch() learns the port from the "serving" line.
        MAAS_LOG_LEVEL: 'info',
        MAAS_EMBEDDINGS_MODEL_DIR: folder.root,
        OTEL_SDK_DISABLED: 'true',
      },
    });
    processes.push(service);
    const peer = launch('peer', 'services/embeddings/testing/peer-server.ts', { env: { OTEL_SDK_DISABLED: 'true', PEER_MODEL_ROOT: peerRoot, PEER_MODEL: GLOVE_MODEL } });
    processes.push(peer);
    const [servicePort, peerPort] = await Promise.all([service.port, peer.port]);
    const reports = await load({
      targets: [
        { label: 'a', address: `127.0.0.1:${servicePort}`, model: '' },
        { label: 'c', address: `127.0.0.1:${peerPort}`, model: GLOVE_MODEL },
      ],
      cells: CLIENTS.flatMap((clients) => INPUTS.map((inputs) => ({ clients, inputs }))),
      rounds: ROUNDS,
      warmupMs: WARMUP_MS,
      measureMs: MEASURE_MS,
    });

    const results: BenchResult[] = [];
    const cellName = (clients: number, inputs: number) => `${clients} client${clients > 1 ? 's' : ''}, ${inputs} input${inputs > 1 ? 's' : ''}/request`;
    const get = (target: string, clients: number, inputs: number) => reports.find((r) => r.target === target && r.clients === clients && r.inputs === inputs)!;
    const row = (label: string, r: CellReport) => ({
      group: 'embeddings',
      name: `${label}, ${cellName(r.clients, r.inputs)}`,
      value: r.sentencesPerSecond,
      unit: 'sentences/s',
      note: `p50 ${r.p50Ms.toFixed(2)} ms${r.failures ? `, ${r.failures} failed` : ''}`,
    });
    for (const clients of CLIENTS) for (const inputs of INPUTS) results.push(row('(a) service', get('a', clients, inputs)));
    for (const [size, rate] of ceiling.full) results.push({ group: 'embeddings', name: `(b) in process: tokenize + onnxruntime, batch ${size}`, value: rate, unit: 'sentences/s' });
    for (const [size, rate] of ceiling.runOnly) results.push({ group: 'embeddings', name: `    onnxruntime session.run alone, batch ${size}`, value: rate, unit: 'sentences/s', note: 'reference' });
    for (const clients of CLIENTS) for (const inputs of INPUTS) results.push(row('(c) peer: grpc-js + transformers.js', get('c', clients, inputs)));
    for (const clients of CLIENTS) {
      for (const inputs of INPUTS) {
        results.push({
          group: 'embeddings',
          name: `(a)/(c), ${cellName(clients, inputs)}`,
          value: get('a', clients, inputs).sentencesPerSecond / get('c', clients, inputs).sentencesPerSecond,
          unit: 'x',
          note: clients === 64 && inputs === 1 ? 'goal ≥ 1.5x' : undefined,
        });
      }
    }
    for (const clients of CLIENTS) {
      results.push({
        group: 'embeddings',
        name: `(a)/(b at batch ${ceiling.bestSize}), ${cellName(clients, 32)}`,
        value: get('a', clients, 32).sentencesPerSecond / ceiling.best,
        unit: 'x',
        note: 'goal ≥ 0.5x',
      });
    }
    return results;
  } finally {
    for (const p of processes) await p.stop('SIGTERM', 10_000);
    folder.remove();
    rmSync(peerRoot, { recursive: true, force: true });
  }
}

/** Runs the client side in its own process and returns its report. */
function load(plan: LoadPlan): Promise<CellReport[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'services/embeddings/testing/load.ts', JSON.stringify(plan)], {
      cwd: ROOT,
      env: { ...process.env, OTEL_SDK_DISABLED: 'true' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) => {
      if (code !== 0) reject(new Error(`load client exited with code ${code}`));
      else resolve(JSON.parse(out.trim().split('\n').pop()!) as CellReport[]);
    });
  });
}

/**
 * In process, one batch after another: tokenize + tensors + session.run per batch size (the ceiling the issue
 * means), and session.run alone on prebuilt tensors (for reference).
 */
async function onnxCeiling(dir: string) {
  const tokenizer = new TextTokenizer(JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as object, {}, 512);
  const pool = sentences(4096);
  const session = await ort.InferenceSession.create(join(dir, 'model.onnx'), { intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
  const feedsOf = (texts: string[]) => {
    const rows = texts.map((s) => tokenizer.encode(s, { truncate: true, side: 'right' }).ids);
    const width = Math.max(1, ...rows.map((r) => r.length));
    const ids = new BigInt64Array(rows.length * width);
    const mask = new BigInt64Array(rows.length * width);
    rows.forEach((r, i) => r.forEach((id, t) => ((ids[i * width + t] = BigInt(id)), (mask[i * width + t] = 1n))));
    return { input_ids: new ort.Tensor('int64', ids, [rows.length, width]), attention_mask: new ort.Tensor('int64', mask, [rows.length, width]) };
  };
  const rate = async (size: number, ms: number, step: (n: number) => Promise<unknown>) => {
    let n = 0;
    const started = performance.now();
    while (performance.now() - started < ms) await step(n++);
    return (n * size) / ((performance.now() - started) / 1000);
  };
  const full: [number, number][] = [];
  const runOnly: [number, number][] = [];
  try {
    for (const size of [1, 8, 32, 64]) {
      const batch = (n: number) => Array.from({ length: size }, (_, i) => pool[(n * size + i) % pool.length]!);
      const step = async (n: number) => {
        const out = await session.run(feedsOf(batch(n)), ['sentence_embedding']);
        return (out.sentence_embedding!.data as Float32Array).length;
      };
      await rate(size, 200, step);
      full.push([size, await rate(size, 1200, step)]);
      const ready = Array.from({ length: 32 }, (_, n) => feedsOf(batch(n)));
      runOnly.push([size, await rate(size, 800, (n) => session.run(ready[n % ready.length]!, ['sentence_embedding']))]);
    }
  } finally {
    await session.release();
  }
  const [bestSize, best] = full.reduce((m, x) => (x[1] > m[1] ? x : m));
  return { full, runOnly, best, bestSize };
}
