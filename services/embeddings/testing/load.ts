// Load generation for the embeddings bench: a deterministic pool of ordinary English sentences, and a closed
// loop of concurrent Embed calls against any server speaking maas.embeddings.v1.EmbeddingService (the service
// itself or the bench's peer). Run as its own process so clients never share the server's CPU time slices:
//   node --import tsx services/embeddings/testing/load.ts '<json LoadPlan>'   → prints a JSON LoadReport
import { pathToFileURL } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { EmbeddingServiceClient, EmbedRequest } from '../../../gen/maas/embeddings/v1/embeddings.js';
import { unary } from '../../runtime/client.js';

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

export interface LoadPlan {
  targets: LoadTarget[];
  cells: { clients: number; inputs: number }[];
  /** Each cell is measured this many times per target, targets taking turns (A B A B), and the best kept. */
  rounds: number;
  warmupMs: number;
  measureMs: number;
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

/**
 * Runs every cell against every target, taking turns so that a slow moment of a shared machine hits all
 * targets alike, and keeps each target's best round per cell.
 */
export async function runLoad(plan: LoadPlan): Promise<CellReport[]> {
  const pool = sentences(4096);
  const clients = new Map<string, EmbeddingServiceClient>();
  for (const t of plan.targets) {
    const client = new EmbeddingServiceClient(t.address, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
    await new Promise<void>((resolve, reject) => client.waitForReady(Date.now() + 30_000, (err) => (err ? reject(err) : resolve())));
    clients.set(t.label, client);
  }
  const best = new Map<string, CellReport>();
  let cursor = 0;
  try {
    for (const cell of plan.cells) {
      for (let round = 0; round < plan.rounds; round++) {
        for (const target of plan.targets) {
          const report = await measure(clients.get(target.label)!, target, cell, () => pool[cursor++ % pool.length]!, plan);
          const key = `${target.label}/${cell.clients}/${cell.inputs}`;
          const previous = best.get(key);
          if (!previous || report.sentencesPerSecond > previous.sentencesPerSecond) best.set(key, report);
        }
      }
    }
  } finally {
    for (const c of clients.values()) c.close();
  }
  return [...best.values()];
}

async function measure(
  client: EmbeddingServiceClient,
  target: LoadTarget,
  cell: { clients: number; inputs: number },
  nextSentence: () => string,
  plan: LoadPlan,
): Promise<CellReport> {
  let measuring = false;
  let stop = false;
  let done = 0;
  let requests = 0;
  let failures = 0;
  const latencies: number[] = [];
  const worker = async () => {
    while (!stop) {
      const inputs = Array.from({ length: cell.inputs }, nextSentence);
      const started = performance.now();
      try {
        await unary(client.embed.bind(client), EmbedRequest.fromPartial({ model: { name: target.model }, inputs }));
        if (measuring && !stop) {
          done += inputs.length;
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

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const plan = JSON.parse(process.argv[2] ?? '{}') as LoadPlan;
  const reports = await runLoad(plan);
  process.stdout.write(`${JSON.stringify(reports)}\n`);
  process.exit(0);
}
