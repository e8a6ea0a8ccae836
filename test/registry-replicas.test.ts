// Two registry processes on one PostgreSQL (and one shared artifact folder, as a volume would be) behave as
// one registry: a watcher on each sees every change of both in the same order, and concurrent uploads get
// distinct version numbers.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Task } from '../gen/maas/common/v1/model.js';
import { WatchEventType as T, type WatchModelsResponse } from '../gen/maas/registry/v1/registry.js';
import { serverStream, unary } from '../services/runtime/client.js';
import { downloadFile } from '../services/registry/client/download.js';
import { pushVersion } from '../services/registry/client/push.js';
import { launchRegistry, type RegistryProcess } from './registry-process.js';
import { startPostgres, type TestPostgres } from './support/postgres.js';
import { sha256, tinyOnnx } from './support/registry-fixtures.js';
import { waitFor } from '../services/runtime/testing/wait.js';

let pg: TestPostgres | undefined;
let dir: string;
const replicas: RegistryProcess[] = [];
const watchers: AbortController[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'maas-registry-replicas-'));
  pg = await startPostgres();
});
afterAll(async () => {
  for (const w of watchers) w.abort();
  for (const r of replicas.splice(0)) await r.stop();
  await pg?.stop();
  await rm(dir, { recursive: true, force: true });
});

function watch(r: RegistryProcess): WatchModelsResponse[] {
  const events: WatchModelsResponse[] = [];
  const stop = new AbortController();
  watchers.push(stop);
  void (async () => {
    for await (const e of serverStream(r.client.watchModels.bind(r.client), { afterRevision: 0, models: [] }, { signal: stop.signal })) events.push(e);
  })().catch(() => undefined);
  return events;
}

describe('two registry replicas on one PostgreSQL', () => {
  it('share versions, aliases and one ordered change stream, without lost updates', async () => {
    const url = await pg!.createDatabase('replicas');
    const env = { MAAS_REGISTRY_DATABASE_URL: url, MAAS_REGISTRY_DATA_DIR: join(dir, 'volume') };
    const [a, b] = await Promise.all([launchRegistry(env), launchRegistry(env)]);
    replicas.push(a!, b!);
    const seenA = watch(a!);
    const seenB = watch(b!);
    await waitFor(() => seenA.length === 1 && seenB.length === 1, 30_000);
    expect(seenA[0]!.type).toBe(T.WATCH_EVENT_TYPE_SNAPSHOT_END);

    const files = [];
    for (let i = 0; i < 12; i++) {
      const path = join(dir, `w${i}.onnx`);
      await writeFile(path, tinyOnnx({ bias: i }));
      files.push(path);
    }
    // Written on A, then aliased on B, then moved on A after a version pushed on B.
    await pushVersion(a!.address, { model: 'm', task: Task.TASK_EMBEDDING, files: [{ name: 'model.onnx', path: files[0]! }], aliases: ['default'] });
    await unary(b!.client.setAlias.bind(b!.client), { model: 'm', alias: 'canary', version: 1 });
    await pushVersion(b!.address, { model: 'm', task: Task.TASK_EMBEDDING, files: [{ name: 'model.onnx', path: files[1]! }] });
    await unary(a!.client.setAlias.bind(a!.client), { model: 'm', alias: 'default', version: 2 });
    expect((await unary(b!.client.resolveModel.bind(b!.client), { ref: { name: 'm' } })).version!.version).toBe(2);

    // Ten uploads at once, half to each replica: ten distinct numbers, 3 to 12.
    const pushed = await Promise.all(
      files.slice(2).map((path, i) => pushVersion((i % 2 === 0 ? a! : b!).address, { model: 'm', task: Task.TASK_EMBEDDING, files: [{ name: 'model.onnx', path }] })),
    );
    expect(pushed.map((p) => p.version).sort((x, y) => x - y)).toEqual([3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    expect((await unary(b!.client.getModel.bind(b!.client), { name: 'm' })).model!.latestVersion).toBe(12);

    // Both watchers saw the same changes, in the same strictly increasing order.
    const expected = 1 + 1 + 1 + 1 + 1 + 1 + 10; // snapshot end, v1, default→1, canary→1, v2, default→2, v3..v12
    await waitFor(() => seenA.length === expected && seenB.length === expected, 30_000);
    const shape = (e: WatchModelsResponse) => [e.revision, e.type, e.model, e.version, e.alias];
    expect(seenB.slice(1).map(shape)).toEqual(seenA.slice(1).map(shape));
    const changes = seenA.slice(1);
    for (let i = 1; i < changes.length; i++) expect(changes[i]!.revision).toBe(changes[i - 1]!.revision + 1);
    expect(changes.slice(0, 5).map((e) => [e.type, e.version, e.alias])).toEqual([
      [T.WATCH_EVENT_TYPE_VERSION_CREATED, 1, ''],
      [T.WATCH_EVENT_TYPE_ALIAS_SET, 1, 'default'],
      [T.WATCH_EVENT_TYPE_ALIAS_SET, 1, 'canary'],
      [T.WATCH_EVENT_TYPE_VERSION_CREATED, 2, ''],
      [T.WATCH_EVENT_TYPE_ALIAS_SET, 2, 'default'],
    ]);
    expect(changes.slice(5).map((e) => e.version).sort((x, y) => x - y)).toEqual([3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);

    // What one replica stored, the other serves.
    const dest = join(dir, 'out', 'model.onnx');
    const got = await downloadFile(b!.address, { model: 'm', version: 1, file: 'model.onnx', dest });
    expect(got.sha256).toBe(sha256(tinyOnnx({ bias: 0 })));
  });
});

