// The generation service as its own process, fed by a real registry: the default gpt2-mini pushed by the
// component's prepareDefaults, and the hand-built bigram model pushed like any trained model, so the whole
// path (registry → download → load → batch → stream) runs. Cancellation is checked from the outside, on the
// service's Prometheus metrics.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FinishReason, GenerationServiceClient, type GenerateRequest, type GenerationParameters } from '../gen/maas/generation/v1/generation.js';
import { launch, type Launched } from '../cli/launch.js';
import { createClient, serverStream, unary, waitForReady } from '../services/runtime/client.js';
import { silentLogger } from '../services/runtime/logger.js';
import { ModelTask } from '../services/runtime/models/types.js';
import { prepareDefaults } from '../services/generation/component.js';
import { buildBigram, CHINESE_TOKENS, lettersAfter, sharedCacheDir } from '../services/generation/testing/model-folder.js';
import { pushVersion } from '../services/registry/client/push.js';
import { launchRegistry, type RegistryProcess } from './registry-process.js';
import { listServices } from './support/reflection.js';
import { waitFor } from '../services/runtime/testing/wait.js';

let dir: string;
let registry: RegistryProcess;
let proc: Launched;
let client: GenerationServiceClient;
let address: string;
let metricsPort: number;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'maas-generation-'));
  registry = await launchRegistry({ MAAS_REGISTRY_DATA_DIR: join(dir, 'registry') });
  await prepareDefaults({ registryAddress: registry.address, dataDir: dir, cacheDir: sharedCacheDir(), log: silentLogger });
  const bigram = await buildBigram();
  await pushVersion(registry.address, {
    model: 'bigram',
    task: ModelTask.GENERATION,
    files: bigram.files.map((name) => ({ name, path: join(bigram.dir, name) })),
    aliases: ['default'],
  });
  let resolveMetrics: (port: number) => void;
  const metricsKnown = new Promise<number>((r) => (resolveMetrics = r));
  proc = launch('generation', 'services/generation/main.ts', {
    env: {
      MAAS_PORT: '0',
      MAAS_METRICS_PORT: '0',
      MAAS_REGISTRY_ADDRESS: registry.address,
      MAAS_GENERATION_CACHE_DIR: join(dir, 'generation'),
    },
    onLine: (line) => {
      if (!line.includes('metrics on')) return;
      try {
        resolveMetrics((JSON.parse(line) as { port: number }).port);
      } catch {
        /* not JSON */
      }
    },
  });
  address = `127.0.0.1:${await proc.port}`;
  metricsPort = await metricsKnown;
  client = createClient(GenerationServiceClient, address);
  await waitForReady(client, 10_000);
});

afterAll(async () => {
  client?.close();
  await proc?.stop();
  await registry?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const request = (model: string, prompt: string, parameters: Partial<GenerationParameters> = {}): GenerateRequest => ({
  model: { name: model },
  prompt,
  messages: [],
  parameters: { stop: [], ignoreEos: false, ...parameters },
});

async function metric(name: string, model: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(`model="${model}"`));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('generation service process', () => {
  it('serves health, reflection and the trained default gpt2-mini from the registry', async () => {
    expect(await listServices(address)).toEqual(expect.arrayContaining(['grpc.health.v1.Health', 'maas.generation.v1.GenerationService']));
    const { info } = await unary(client.getModelInfo.bind(client), { model: { name: '' } });
    expect(info?.model).toMatchObject({ name: 'gpt2-mini', version: 1, alias: 'default', executionProvider: 'cpu' });
    expect(info?.notes.maas_weights).toBe('trained');
    expect(info?.contextLength).toBe(256);
    const r = await unary(client.generate.bind(client), request('', 'And God said', { temperature: 0, maxNewTokens: 8, ignoreEos: true }));
    expect(r.usage?.inputTokens).toBeGreaterThan(0);
    expect(r.usage?.outputTokens).toBe(8);
    expect(r.finishReason).toBe(FinishReason.FINISH_REASON_LENGTH);
    // Trained weights: the continuation is made of English words (the corpus is the King James Bible).
    const words = (await unary(client.generate.bind(client), request('', 'And the LORD said unto Moses,', { temperature: 0, maxNewTokens: 24, ignoreEos: true }))).text.match(/[A-Za-z]+/g) ?? [];
    expect(words.length).toBeGreaterThan(5);
    expect(words.filter((w) => /^(the|and|of|unto|LORD|I|thee|thou|shall|that|he|them|my|Israel|God|to|in|is|be|will|ye)$/i.test(w)).length).toBeGreaterThan(2);
  });

  it('generates exactly the text a hand-built model pushed to the registry implies', async () => {
    const r = await unary(client.generate.bind(client), request('bigram', 'a', { temperature: 0, maxNewTokens: 26 }));
    expect(r.text).toBe(lettersAfter('a', 26));
    const stopped = await unary(client.generate.bind(client), request('bigram', 'k', { temperature: 0, maxNewTokens: 26, stop: ['opq'] }));
    expect(stopped).toMatchObject({ text: 'lmn', finishReason: FinishReason.FINISH_REASON_STOP });
    const chunks = [];
    for await (const c of serverStream(client.generateStream.bind(client), request('bigram', '你', { temperature: 0, maxNewTokens: 6 }))) chunks.push(c);
    expect(chunks.map((c) => c.text).join('')).toBe('好世界');
    expect(chunks.flatMap((c) => c.tokenIds)).toEqual(CHINESE_TOKENS.slice(2));
    for (const c of chunks) expect(c.text).not.toContain('\uFFFD');
  });

  it('shows a cancelled stream leaving the batch in its metrics while another goes on', async () => {
    // The context holds 256 positions: 240 new tokens keep both streams decoding for a while.
    const long = request('gpt2-mini', 'Tell me a long story', { maxNewTokens: 240, ignoreEos: true, seed: 3 });
    const other = new AbortController();
    let otherChunks = 0;
    const otherDone = (async () => {
      try {
        for await (const _ of serverStream(client.generateStream.bind(client), long, { signal: other.signal })) otherChunks++;
      } catch {
        /* cancelled below */
      }
    })();
    await waitFor(async () => otherChunks > 0, 30_000);
    const cancelled = new AbortController();
    let seen = 0;
    await expect(
      (async () => {
        for await (const _ of serverStream(client.generateStream.bind(client), long, { signal: cancelled.signal })) if (++seen === 3) cancelled.abort();
      })(),
    ).rejects.toMatchObject({ code: grpc.status.CANCELLED });
    await waitFor(async () => (await metric('maas_generation_sequences_running', 'gpt2-mini')) === 1, 30_000);
    const at = otherChunks;
    await waitFor(async () => otherChunks > at + 2, 30_000);
    other.abort();
    await otherDone;
    await waitFor(async () => (await metric('maas_generation_sequences_running', 'gpt2-mini')) === 0, 30_000);
    expect(await metric('maas_generation_requests_total', 'gpt2-mini')).toBeGreaterThanOrEqual(1);
  });
});
