import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FailedPreconditionError, UnavailableError } from '../errors.js';
import { WorkerCalls } from './worker-calls.js';

const ENTRY = new URL('../../../test/fixtures/echo-worker.js', import.meta.url);
type Answer = { body: unknown; threadId: number };

const dirs: string[] = [];
const open: WorkerCalls<{ threadId: number }>[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((c) => c.close()));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function start() {
  const dir = mkdtempSync(join(tmpdir(), 'maas-worker-calls-'));
  dirs.push(dir);
  const marker = join(dir, 'refuse');
  const calls = await WorkerCalls.start<{ threadId: number }>(ENTRY, { refuseWhile: marker }, 'the test worker');
  open.push(calls);
  return { calls, marker };
}

describe('WorkerCalls', () => {
  it('answers each call with its own reply, many at once', async () => {
    const { calls } = await start();
    const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => calls.call<Answer>({ i })));
    expect(answers.map((a) => a.body)).toEqual(Array.from({ length: 50 }, (_, i) => ({ i })));
    expect(new Set(answers.map((a) => a.threadId))).toEqual(new Set([calls.info.threadId]));
  });

  it('rejects at start with the worker’s FailedPrecondition, details and all', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'maas-worker-calls-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'refuse'), '');
    const err = await WorkerCalls.start(ENTRY, { refuseWhile: join(dir, 'refuse') }, 'the test worker').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FailedPreconditionError);
    expect((err as FailedPreconditionError).violations).toEqual([{ type: 'TEST', subject: join(dir, 'refuse'), description: 'the marker file exists' }]);
  });

  it('fails the calls a dead thread held with UNAVAILABLE and starts one new thread for the calls after', async () => {
    const { calls } = await start();
    const first = calls.info.threadId;
    await calls.kill();
    expect(calls.usable).toBe(false);
    const answers = await Promise.all([calls.call<Answer>('a'), calls.call<Answer>('b'), calls.call<Answer>('c')]);
    expect(answers.map((a) => a.body)).toEqual(['a', 'b', 'c']);
    expect(new Set(answers.map((a) => a.threadId)).size).toBe(1);
    expect(answers[0]!.threadId).not.toBe(first);
    expect(calls.usable).toBe(true);
  });

  it('answers UNAVAILABLE, saying why, when a new thread cannot start; and works again once it can', async () => {
    const { calls, marker } = await start();
    await calls.kill();
    writeFileSync(marker, '');
    const err = await calls.call('x').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toMatch(/could not be started again: refused to start/);
    rmSync(marker);
    await expect(calls.call<Answer>('y')).resolves.toMatchObject({ body: 'y' });
  });

  it('refuses calls once closed, without starting a thread', async () => {
    const { calls } = await start();
    await calls.close();
    await expect(calls.call('x')).rejects.toBeInstanceOf(UnavailableError);
    expect(calls.usable).toBe(false);
  });
});
