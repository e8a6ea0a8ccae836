import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FailedPreconditionError, NotFoundError } from '../errors.js';
import { silentLogger } from '../logger.js';
import { DirectorySource } from './directory-source.js';
import { ModelHost } from './model-host.js';
import { ModelTask, type LocalVersion } from './types.js';
import { readFileSync } from 'node:fs';
import { waitFor } from '../testing/wait.js';

// The "model" of these tests is the text of weights.txt: enough to see which version served a request.
let root: string;
let host: ModelHost<string> | undefined;
const events: string[] = [];

function writeModel(name: string, task: string, aliases: Record<string, number>, versions: number[]) {
  mkdirSync(join(root, name), { recursive: true });
  writeFileSync(join(root, name, 'model.json'), JSON.stringify({ task, aliases }));
  for (const v of versions) {
    mkdirSync(join(root, name, String(v)), { recursive: true });
    writeFileSync(join(root, name, String(v), 'weights.txt'), `${name} v${v}`);
  }
}

function makeHost(budget = 1_000_000) {
  root ??= mkdtempSync(join(tmpdir(), 'maas-host-'));
  const source = new DirectorySource(root, 25);
  host = new ModelHost<string>({
    source,
    tasks: [ModelTask.EMBEDDING],
    defaultModel: 'words',
    memoryBudgetBytes: budget,
    log: silentLogger,
    loader: async (v: LocalVersion) => {
      events.push(`load ${v.name}:${v.version}`);
      return { model: readFileSync(join(v.dir, 'weights.txt'), 'utf8'), bytes: 100, executionProvider: 'cpu', close: async () => void events.push(`unload ${v.name}:${v.version}`) };
    },
  });
  return host;
}

const signal = () => new AbortController().signal;

afterEach(async () => {
  await host?.close(100);
  host = undefined;
  events.length = 0;
  if (root) rmSync(root, { recursive: true, force: true });
  root = undefined as unknown as string;
});

describe('ModelHost', () => {
  it('serves the default model through its default alias and loads it once', async () => {
    root = mkdtempSync(join(tmpdir(), 'maas-host-'));
    writeModel('words', 'embedding', { default: 1 }, [1]);
    const h = makeHost();
    const a = await h.acquire({ name: '' }, signal());
    const b = await h.acquire({ name: 'words', alias: 'default' }, signal());
    expect([a.model, b.model, a.version.version, a.alias]).toEqual(['words v1', 'words v1', 1, 'default']);
    expect(a.version.files.map((f) => f.name)).toEqual(['weights.txt']);
    a.release();
    b.release();
    expect(events).toEqual(['load words:1']);
    expect(h.list().map((i) => [i.name, i.version, i.aliases])).toEqual([['words', 1, ['default']]]);
  });

  it('says NOT_FOUND for unknown models, versions and aliases, and FAILED_PRECONDITION for another task', async () => {
    root = mkdtempSync(join(tmpdir(), 'maas-host-'));
    writeModel('words', 'embedding', { default: 1 }, [1]);
    writeModel('chat', 'generation', { default: 1 }, [1]);
    const h = makeHost();
    await expect(h.acquire({ name: 'nope' }, signal())).rejects.toBeInstanceOf(NotFoundError);
    await expect(h.acquire({ name: 'words', version: 9 }, signal())).rejects.toBeInstanceOf(NotFoundError);
    await expect(h.acquire({ name: 'words', alias: 'prod' }, signal())).rejects.toBeInstanceOf(NotFoundError);
    await expect(h.acquire({ name: 'chat' }, signal())).rejects.toBeInstanceOf(FailedPreconditionError);
  });

  it('hot-swaps when an alias moves: the old version serves its requests, then unloads', async () => {
    root = mkdtempSync(join(tmpdir(), 'maas-host-'));
    writeModel('words', 'embedding', { default: 1 }, [1, 2]);
    const h = makeHost();
    const held = await h.acquire({ name: 'words' }, signal());
    writeFileSync(join(root, 'words', 'model.json'), JSON.stringify({ task: 'embedding', aliases: { default: 2 } }));
    // Requests keep succeeding throughout; they switch to v2 once it has loaded.
    const served: string[] = [];
    for (let i = 0; i < 400 && served.at(-1) !== 'words v2'; i++) {
      const l = await h.acquire({ name: 'words' }, signal());
      served.push(l.model);
      l.release();
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(served.at(-1)).toBe('words v2');
    expect(events).toEqual(['load words:1', 'load words:2']);
    expect(held.model).toBe('words v1');
    held.release();
    await waitFor(() => events.includes('unload words:1'));
    expect(h.list().map((i) => i.version)).toEqual([2]);
  });

  it('unloads the least recently used idle version over the memory budget', async () => {
    root = mkdtempSync(join(tmpdir(), 'maas-host-'));
    writeModel('words', 'embedding', { default: 1 }, [1, 2, 3]);
    const h = makeHost(250);
    for (const version of [1, 2, 3]) (await h.acquire({ name: 'words', version }, signal())).release();
    await waitFor(() => events.includes('unload words:1'));
    expect(h.list().map((i) => i.version)).toEqual([2, 3]);
  });

  it('rejects a waiting acquire when its signal aborts', async () => {
    root = mkdtempSync(join(tmpdir(), 'maas-host-'));
    writeModel('words', 'embedding', { default: 1 }, [1]);
    const h = makeHost();
    const ac = new AbortController();
    ac.abort(new Error('gone'));
    await expect(h.acquire({ name: 'words' }, ac.signal)).rejects.toMatchObject({ kind: 'cancelled' });
  });
});

