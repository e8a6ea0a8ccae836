// `maas models …` against a real registry: push a folder, list, show, alias, pull, remove, and the error
// lines a person sees.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { modelsCommand, parseRef } from '../cli/models.js';
import { startRegistry, type Harness } from './registry-harness.js';
import { tinyOnnx } from './support/registry-fixtures.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function run(args: string[], address = h!.address, token?: string) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await modelsCommand(args, { registryAddress: address, token, out: (t) => out.push(t), err: (t) => err.push(t), progress: false });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('maas models', () => {
  it('pushes a folder, lists, shows, moves an alias, pulls and removes', async () => {
    h = await startRegistry('');
    const src = join(h.dataDir, 'src');
    await mkdir(join(src, 'det'), { recursive: true });
    await writeFile(join(src, 'det', 'model.onnx'), tinyOnnx());
    await writeFile(join(src, 'labels.txt'), 'cat\ndog\n');

    const pushed = await run(['push', 'tiny', '--task', 'ocr', src, '--alias', 'default', '--source', 'runs://1', '--tag', 'team=vision']);
    expect(pushed).toMatchObject({ code: 0, err: '' });
    expect(pushed.out).toContain('pushed tiny:1 (2 files');
    expect(pushed.out).toContain('@default → 1');
    expect((await run(['push', 'tiny', '--task', 'ocr', `weights.bin=${join(src, 'labels.txt')}`, '--parent', '1'])).out).toContain('pushed tiny:2');

    const ls = await run(['ls']);
    expect(ls.code).toBe(0);
    expect(ls.out).toMatch(/tiny\s+ocr\s+2\s+default→1/);
    const show = await run(['show', 'tiny']);
    expect(show.out).toContain('det/model.onnx, labels.txt');
    expect(show.out).toContain('runs://1');

    expect((await run(['alias', 'tiny', 'default', '2'])).out).toContain('tiny@default → 2');
    const pulled = await run(['pull', 'tiny@default', join(h.dataDir, 'out')]);
    expect(pulled.out).toContain('pulled tiny:2');
    expect(await readFile(join(h.dataDir, 'out', 'weights.bin'), 'utf8')).toBe('cat\ndog\n');
    expect((await run(['pull', 'tiny:1', join(h.dataDir, 'out1')])).code).toBe(0);
    expect((await readFile(join(h.dataDir, 'out1', 'det', 'model.onnx'))).equals(tinyOnnx())).toBe(true);

    const held = await run(['rm', 'tiny:2']);
    expect(held.code).toBe(1);
    expect(held.err).toContain('FAILED_PRECONDITION');
    expect((await run(['rm', 'tiny:1'])).out).toContain('deleted tiny:1');
    expect((await run(['rm', 'tiny'])).err).toContain('FAILED_PRECONDITION');
    expect((await run(['rm', 'tiny', '--force'])).out).toContain('deleted model tiny');
    expect((await run(['ls'])).out).toBe('no models');
  });

  it('prints the registry\'s error, usage problems, and a hint when the registry is not there', async () => {
    h = await startRegistry('', { MAAS_REGISTRY_ADMIN_TOKEN: 'tok' });
    const missing = await run(['show', 'nope']);
    expect(missing).toMatchObject({ code: 1 });
    expect(missing.err).toContain('NOT_FOUND: model "nope" was not found');
    const denied = await run(['alias', 'nope', 'prod', '1']);
    expect(denied.err).toContain('UNAUTHENTICATED');
    expect(denied.err).toContain('MAAS_REGISTRY_ADMIN_TOKEN');
    const bad = await run(['push', 'Bad', '--task', 'ocr', join(h.dataDir)], h.address, 'tok');
    expect(bad.code).toBe(1);
    expect(bad.err).toContain('INVALID_ARGUMENT');
    expect((await run(['push', 'x', join(h.dataDir)])).code).toBe(2);
    expect((await run(['frobnicate'])).code).toBe(2);
    const down = await run(['ls'], '127.0.0.1:1');
    expect(down.code).toBe(1);
    expect(down.err).toContain('UNAVAILABLE');
    expect(down.err).toContain('is the registry running at 127.0.0.1:1');
  });

  it('reads references as name, name:version and name@alias', () => {
    expect(parseRef('m')).toEqual({ name: 'm' });
    expect(parseRef('m:3')).toEqual({ name: 'm', version: 3 });
    expect(parseRef('m@prod')).toEqual({ name: 'm', alias: 'prod' });
  });
});
