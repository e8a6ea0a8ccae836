// Load generation for the embeddings bench: a deterministic pool of ordinary English sentences, and closed
// loops of concurrent Embed calls against any server speaking maas.embeddings.v1.EmbeddingService (the service
// itself or the bench's peer). The clients run in processes of their own (startLoadWorkers), so they never
// share the servers' event loops; the bench splits each cell's clients over several of them, since one Node
// client process tops out before a good server does.
import { spawn, type ChildProcess } from 'node:child_process';
import { setPriority } from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { EmbedRequest } from '../../../gen/maas/embeddings/v1/embeddings.js';
import { H2GrpcClient } from '../../runtime/testing/h2-client.js';
import { grpcFrame } from '../../runtime/unary-stream.js';

const WORDS = (
  'the a of to and in is was for on that with as by at from his her it an be are were this which have has had ' +
  'people city team game market company government school music family water house night morning world year week ' +
  'day time system report price prices oil bank river park station train car road street doctor patient child ' +
  'children man woman friend dog cat bird tree garden food dinner lunch coffee book story film song phone email ' +
  'password account computer program data study result question answer problem plan meeting office work job ' +
  'played won lost bought sold opened closed found made gave took saw said told asked wrote read built started ' +
  'finished moved changed increased fell rose arrived left returned announced reported expected continued ' +
  'new old big small large early late good bad high low long short fast slow happy quiet heavy local national ' +
  'public private strong young final first last next several many few most other same different important'
).split(' ');

/** `count` sentences of 8 to 12 words (about 10 tokens each), the same on every run. */
export function sentences(count: number, seed = 42): string[] {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return Array.from({ length: count }, () => {
    const n = 8 + Math.floor(next() * 5);
    const words = Array.from({ length: n }, () => WORDS[Math.floor(next() * WORDS.length)]!);
    words[0] = words[0]!.charAt(0).toUpperCase() + words[0]!.slice(1);
    return `${words.join(' ')}.`;
  });
}

export interface LoadTarget {
  label: string;
  address: string;
  /** Model name to ask for ('' for the server's default). */
  model: string;
}

export interface CellReport {
  target: string;
  clients: number;
  inputs: number;
  sentencesPerSecond: number;
  requests: number;
  failures: number;
  /** Median latency of one call, in milliseconds. */
  p50Ms: number;
}

/** Processes that run load on request; each measure() splits the clients over all of them. */
export interface LoadWorkers {
  measure(target: LoadTarget, cell: { clients: number; inputs: number }, warmupMs: number, measureMs: number): Promise<CellReport>;
  close(): void;
}

export function startLoadWorkers(count: number, cwd: string): LoadWorkers {
  const children = Array.from({ length: count }, (_, i) =>
    spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), 'worker', String(i)], {
      cwd,
      env: { ...process.env, OTEL_SDK_DISABLED: 'true' },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    }),
  );
  const ask = (child: ChildProcess, message: WorkerRequest) =>
    new Promise<CellReport>((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`load worker exited (code ${code})`));
      child.once('exit', onExit);
      child.once('message', (report) => {
        child.off('exit', onExit);
        resolve(report as CellReport);
      });
      child.send(message);
    });
  return {
    async measure(target, cell, warmupMs, measureMs) {
      const shares = children.map((_, i) => Math.floor(cell.clients / count) + (i < cell.clients % count ? 1 : 0));
      const reports = await Promise.all(
        children.flatMap((child, i) => (shares[i]! > 0 ? [ask(child, { target, cell: { clients: shares[i]!, inputs: cell.inputs }, warmupMs, measureMs })] : [])),
      );
      return {
        target: target.label,
        clients: cell.clients,
        inputs: cell.inputs,
        sentencesPerSecond: reports.reduce((s, r) => s + r.sentencesPerSecond, 0),
        requests: reports.reduce((s, r) => s + r.requests, 0),
        failures: reports.reduce((s, r) => s + r.failures, 0),
        // The median of the workers' medians: close enough for a table.
        p50Ms: reports.map((r) => r.p50Ms).sort((a, b) => a - b)[Math.floor(reports.length / 2)] ?? 0,
      };
    },
    close() {
      for (const c of children) c.kill();
    },
  };
}

interface WorkerRequest {
  target: LoadTarget;
  cell: { clients: number; inputs: number };
  warmupMs: number;
  measureMs: number;
}

/** gRPC length-prefixed frames of Embed requests, each with `inputs` sentences, cycling through the pool. */
function encodeRequests(model: string, inputs: number, pool: string[], offset: number, count = 512): Buffer[] {
  return Array.from({ length: count }, (_, i) => {
    const texts = Array.from({ length: inputs }, (_, j) => pool[(offset + i * inputs + j) % pool.length]!);
    return grpcFrame(EmbedRequest.encode(EmbedRequest.fromPartial({ model: { name: model }, inputs: texts })).finish());
  });
}

const EMBED_PATH = '/maas.embeddings.v1.EmbeddingService/Embed';

async function measure(
  client: H2GrpcClient,
  target: LoadTarget,
  cell: { clients: number; inputs: number },
  frames: Buffer[],
  plan: { warmupMs: number; measureMs: number },
): Promise<CellReport> {
  let measuring = false;
  let stop = false;
  let done = 0;
  let requests = 0;
  let failures = 0;
  let next = 0;
  const latencies: number[] = [];
  const worker = async () => {
    while (!stop) {
      const frame = frames[next++ % frames.length]!;
      const started = performance.now();
      try {
        await client.call(EMBED_PATH, frame);
        if (measuring && !stop) {
          done += cell.inputs;
          requests++;
          latencies.push(performance.now() - started);
        }
      } catch {
        if (measuring) failures++;
      }
    }
  };
  const workers = Array.from({ length: cell.clients }, worker);
  await new Promise((r) => setTimeout(r, plan.warmupMs));
  measuring = true;
  const started = performance.now();
  await new Promise((r) => setTimeout(r, plan.measureMs));
  const elapsed = (performance.now() - started) / 1000;
  stop = true;
  await Promise.all(workers);
  latencies.sort((x, y) => x - y);
  return {
    target: target.label,
    clients: cell.clients,
    inputs: cell.inputs,
    sentencesPerSecond: done / elapsed,
    requests,
    failures,
    p50Ms: latencies[Math.floor(latencies.length / 2)] ?? 0,
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href && process.argv[2] === 'worker') {
  // The clients yield the cores to the servers they measure: on a machine of two cores they share them, and a
  // client thread that takes a core the server's event loop was waiting for measures itself (seen here: the
  // service's event loop runnable but waiting for a core ~20% of the time while the machine was ~25% idle).
  // Clients on other machines, as in production, take nothing from the server; the in-process ceiling (b) has
  // no clients at all. Every server measured gets the same clients.
  setPriority(19);
  const pool = sentences(4096);
  // Workers start at different places in the pool, so they do not send the same sentences at once.
  const offset = Number(process.argv[3] ?? 0) * 1024;
  const clients = new Map<string, H2GrpcClient>();
  const frames = new Map<string, Buffer[]>();
  process.on('message', (message: WorkerRequest) => {
    void (async () => {
      const { target, cell } = message;
      let client = clients.get(target.address);
      if (!client) clients.set(target.address, (client = new H2GrpcClient(target.address)));
      const key = `${target.model}/${cell.inputs}`;
      let f = frames.get(key);
      if (!f) frames.set(key, (f = encodeRequests(target.model, cell.inputs, pool, offset)));
      process.send!(await measure(client, target, cell, f, message));
    })();
  });
  process.on('disconnect', () => {
    for (const c of clients.values()) c.close();
    process.exit(0);
  });
}
