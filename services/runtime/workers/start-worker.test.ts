import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { startAll, withoutPreloads } from './start-worker.js';

describe('startReadyWorker', () => {
  it('starts workers in a process run with V8 flags, which a worker refuses', () => {
    const startWorker = fileURLToPath(new URL('./start-worker.ts', import.meta.url));
    const entry = new URL('../../../test/fixtures/echo-worker.js', import.meta.url).href;
    const script = `const { startReadyWorker } = await import(${JSON.stringify(startWorker)});
      const { worker, value } = await startReadyWorker(new URL(${JSON.stringify(entry)}), {}, 'the test worker');
      console.log(JSON.stringify(value)); await worker.terminate();`;
    const dir = mkdtempSync(join(tmpdir(), 'maas-start-worker-'));
    try {
      writeFileSync(join(dir, 'main.mts'), script);
      const out = execFileSync(process.execPath, ['--max-old-space-size=512', '--max-semi-space-size=16', '--import', 'tsx', join(dir, 'main.mts')], { encoding: 'utf8' });
      expect(JSON.parse(out)).toHaveProperty('threadId');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('withoutPreloads', () => {
  it('drops --import and --require preloads in both spellings and keeps the other flags', () => {
    expect(withoutPreloads(['--import', 'tsx', '--max-old-space-size=512', '--import=./a.ts', '-r', 'x', '--require', 'y', '--require=z', '--enable-source-maps'])).toEqual([
      '--max-old-space-size=512',
      '--enable-source-maps',
    ]);
  });
});

describe('startAll', () => {
  it('answers all that started, or closes the ones that did and throws the first failure', async () => {
    const closed: number[] = [];
    const make = (fail: Set<number>) => {
      let n = 0;
      return async () => {
        const i = n++;
        await new Promise((r) => setTimeout(r, 5 * (3 - i)));
        if (fail.has(i)) throw new Error(`start ${i} failed`);
        return { i, close: async () => void closed.push(i) };
      };
    };
    expect((await startAll(3, make(new Set()))).map((x) => x.i)).toEqual([0, 1, 2]);
    expect(closed).toEqual([]);
    await expect(startAll(3, make(new Set([1, 2])))).rejects.toThrow('start 1 failed');
    expect(closed).toEqual([0]);
  });
});
