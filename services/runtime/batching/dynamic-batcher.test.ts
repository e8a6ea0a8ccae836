import { afterEach, describe, expect, it } from 'vitest';
import { CancelledError, DeadlineExceededError, OverloadedError, UnavailableError } from '../errors.js';
import { DynamicBatcher, lengthBucket, type BatcherOptions } from './dynamic-batcher.js';

// The runner of these tests records every batch it is given and can be held shut, so a test decides when
// batches finish without any timing.
class Runner {
  batches: string[][] = [];
  private gate: Promise<void> | undefined;
  private open: (() => void) | undefined;
  failWith: Error | undefined;

  hold(): void {
    this.gate = new Promise((r) => (this.open = r));
  }
  release(): void {
    this.open?.();
    this.gate = undefined;
  }
  run = async (items: string[]): Promise<string[]> => {
    this.batches.push(items);
    if (this.gate) await this.gate;
    if (this.failWith) throw this.failWith;
    return items.map((i) => i.toUpperCase());
  };
}

let batchers: DynamicBatcher<string, string>[] = [];
afterEach(async () => {
  for (const b of batchers) await b.close();
  batchers = [];
});

function make(runner: Runner, options: Partial<BatcherOptions<string, string>> = {}) {
  const b = new DynamicBatcher<string, string>({
    name: 'test',
    maxBatchSize: 4,
    maxBatchCost: 1000,
    maxQueueDelayMs: 0,
    maxQueueSize: 100,
    run: runner.run,
    ...options,
  });
  batchers.push(b);
  return b;
}

const entry = (item: string, cost = item.length, key?: number) => ({ item, cost, key });
const tick = () => new Promise((r) => setImmediate(r));
async function until(check: () => boolean) {
  for (let i = 0; i < 1000 && !check(); i++) await new Promise((r) => setTimeout(r, 2));
  expect(check()).toBe(true);
}

describe('DynamicBatcher', () => {
  it('answers each submit with its outputs in entry order', async () => {
    const runner = new Runner();
    const b = make(runner);
    const res = await b.submit([entry('a'), entry('bb'), entry('c')]);
    expect(res.outputs).toEqual(['A', 'BB', 'C']);
    expect(res.batches).toBeGreaterThanOrEqual(1);
    expect(b.stats()).toMatchObject({ depth: 0, running: 0, submitted: 3, ran: 3, dropped: 0, rejected: 0 });
  });

  it('joins submits made in the same turn of the event loop into one batch', async () => {
    const runner = new Runner();
    const b = make(runner);
    const all = await Promise.all(['a', 'b', 'c'].map((x) => b.submit([entry(x, 1)])));
    expect(all.map((r) => r.outputs[0])).toEqual(['A', 'B', 'C']);
    expect(runner.batches).toEqual([['a', 'b', 'c']]);
    expect(b.stats().lastBatchSize).toBe(3);
  });

  it('starts a full batch at once when the runner is free, and waits for the turn to end otherwise', async () => {
    const runner = new Runner();
    const b = make(runner, { maxBatchSize: 2 });
    const partial = b.submit([entry('a')]);
    // One entry: queued until this turn of the event loop ends, so others may join.
    expect(b.stats()).toMatchObject({ running: 0, depth: 1 });
    const full = b.submit([entry('b')]);
    // Two: a full batch, started within the submit.
    expect(b.stats()).toMatchObject({ running: 1, depth: 0 });
    await Promise.all([partial, full]);
    expect(runner.batches).toEqual([['a', 'b']]);
  });

  it('caps batches by count', async () => {
    const runner = new Runner();
    const b = make(runner, { maxBatchSize: 2 });
    await b.submit(['a', 'b', 'c', 'd', 'e'].map((x) => entry(x, 1)));
    expect(runner.batches.map((x) => x.length)).toEqual([2, 2, 1]);
  });

  it('caps batches by total cost, counting padding when padded', async () => {
    const summed = new Runner();
    await make(summed, { maxBatchCost: 10 }).submit([entry('a', 6), entry('b', 4), entry('c', 1)]);
    expect(summed.batches).toEqual([['a', 'b'], ['c']]);

    // Padded: every entry costs as much as the longest one in its batch (6 × 2 = 12 > 10).
    const padded = new Runner();
    await make(padded, { maxBatchCost: 10, padded: true }).submit([entry('a', 6), entry('b', 4), entry('c', 1)]);
    expect(padded.batches[0]).toEqual(['a']);
  });

  it('runs an entry costlier than the cap alone instead of starving it', async () => {
    const runner = new Runner();
    const res = await make(runner, { maxBatchCost: 5 }).submit([entry('huge', 50), entry('x', 1)]);
    expect(res.outputs).toEqual(['HUGE', 'X']);
    expect(runner.batches).toEqual([['huge'], ['x']]);
  });

  it('counts an entry of several rows as that many rows: batch size, padded cost, queue limit, drops', async () => {
    const runner = new Runner();
    const b = make(runner, { maxBatchSize: 4, maxBatchCost: 100, padded: true, maxQueueSize: 6 });
    runner.hold();
    const busy = b.submit([entry('busy')]);
    await until(() => b.stats().running === 1);
    // Three rows, one of two: 5 rows do not fit in a batch of 4, so the two-row entry waits for the next batch
    // while the one-row entry behind it joins the first.
    const many = b.submit([{ item: 'abc', cost: 2, rows: 3 }, { item: 'de', cost: 2, rows: 2 }]);
    const one = b.submit([entry('f', 2)]);
    expect(b.stats().depth).toBe(6);
    // The queue holds 6 rows: one more row does not fit.
    await expect(b.submit([entry('g', 1)])).rejects.toBeInstanceOf(OverloadedError);
    runner.release();
    expect((await many).outputs).toEqual(['ABC', 'DE']);
    expect((await one).outputs).toEqual(['F']);
    await busy;
    expect(runner.batches.slice(1)).toEqual([['abc', 'f'], ['de']]);
    expect(b.stats()).toMatchObject({ submitted: 7, ran: 7, depth: 0, lastBatchSize: 2 });

    // Padded cost counts rows: 3 rows × cost 30 = 90 fits in 100; one more row of 30 does not.
    const capped = new Runner();
    await make(capped, { maxBatchSize: 10, maxBatchCost: 100, padded: true }).submit([{ item: 'xyz', cost: 30, rows: 3 }, entry('w', 30)]);
    expect(capped.batches).toEqual([['xyz'], ['w']]);

    // Cancelling drops all of an entry's rows.
    const held = new Runner();
    const c = make(held, { maxBatchSize: 10 });
    held.hold();
    const first = c.submit([entry('first')]);
    await until(() => c.stats().running === 1);
    const ac = new AbortController();
    const dropped = c.submit([{ item: 'gone', cost: 1, rows: 5 }], { signal: ac.signal });
    ac.abort(new CancelledError());
    await expect(dropped).rejects.toBeInstanceOf(CancelledError);
    expect(c.stats()).toMatchObject({ dropped: 5, depth: 0 });
    held.release();
    await first;
  });

  it('groups entries by length key, taking the head key first and then the nearest keys', async () => {
    const runner = new Runner();
    const b = make(runner, { maxBatchSize: 3 });
    runner.hold();
    const first = b.submit([entry('zero', 1, 0)]);
    await until(() => b.stats().running === 1);
    // Queued while the runner is busy: the head has key 8 and two others share it; then the oldest left (key 40)
    // takes the nearest remaining key.
    const rest = b.submit([entry('h8', 1, 8), entry('far', 1, 40), entry('near', 1, 9), entry('s8a', 1, 8), entry('s8b', 1, 8)]);
    runner.release();
    await Promise.all([first, rest]);
    expect(runner.batches[1]).toEqual(['h8', 's8a', 's8b']);
    expect(runner.batches[2]).toEqual(['far', 'near']);
  });

  it('waits up to the maximum queue delay for a batch to fill, and runs at once when it is full', async () => {
    const runner = new Runner();
    const b = make(runner, { maxBatchSize: 3, maxQueueDelayMs: 60_000 });
    const first = b.submit([entry('a', 1)]);
    await tick();
    await tick();
    expect(runner.batches).toEqual([]);
    expect(b.stats().depth).toBe(1);
    const second = b.submit([entry('b', 1), entry('c', 1)]);
    await Promise.all([first, second]);
    expect(runner.batches).toEqual([['a', 'b', 'c']]);
  });

  it('runs a partial batch once the head has waited the maximum queue delay', async () => {
    const runner = new Runner();
    const b = make(runner, { maxBatchSize: 8, maxQueueDelayMs: 5 });
    const res = await b.submit([entry('a', 1)]);
    expect(res.outputs).toEqual(['A']);
    expect(res.queueMs).toBeGreaterThan(0);
  });

  it('drops a cancelled entry before it runs and rejects it with the abort reason', async () => {
    const runner = new Runner();
    const b = make(runner);
    runner.hold();
    const busy = b.submit([entry('busy')]);
    await until(() => b.stats().running === 1);
    const ac = new AbortController();
    const cancelled = b.submit([entry('never'), entry('never2')], { signal: ac.signal });
    const kept = b.submit([entry('kept')]);
    ac.abort(new CancelledError());
    await expect(cancelled).rejects.toBeInstanceOf(CancelledError);
    expect(b.stats()).toMatchObject({ depth: 1, dropped: 2 });
    runner.release();
    await Promise.all([busy, kept]);
    expect(runner.batches.flat()).not.toContain('never');
    expect(runner.batches.flat()).not.toContain('never2');
    expect(b.stats()).toMatchObject({ ran: 2, dropped: 2, depth: 0 });
  });

  it('rejects with DeadlineExceededError when the deadline signal fires while queued', async () => {
    const runner = new Runner();
    const b = make(runner, { maxQueueDelayMs: 60_000 });
    const ac = new AbortController();
    const p = b.submit([entry('late')], { signal: ac.signal });
    ac.abort(new DeadlineExceededError());
    await expect(p).rejects.toBeInstanceOf(DeadlineExceededError);
    expect(b.stats().dropped).toBe(1);
  });

  it('refuses a submit whose signal already aborted without queueing it', async () => {
    const b = make(new Runner());
    const ac = new AbortController();
    ac.abort(new CancelledError());
    await expect(b.submit([entry('x')], { signal: ac.signal })).rejects.toBeInstanceOf(CancelledError);
    expect(b.stats().submitted).toBe(0);
  });

  it('rejects at once with OverloadedError and a retry hint when the queue is full', async () => {
    const runner = new Runner();
    const b = make(runner, { maxQueueSize: 3, maxQueueDelayMs: 60_000, maxBatchSize: 10 });
    const queued = b.submit([entry('a'), entry('b')]);
    const err = await b.submit([entry('c'), entry('d')]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OverloadedError);
    expect((err as OverloadedError).retryAfterMs).toBeGreaterThanOrEqual(1);
    expect(b.stats()).toMatchObject({ rejected: 1, depth: 2 });
    // One more still fits.
    const fits = b.submit([entry('e')]);
    await b.close();
    await expect(queued).rejects.toBeInstanceOf(UnavailableError);
    await expect(fits).rejects.toBeInstanceOf(UnavailableError);
  });

  it('derives the retry hint from the queue depth and recent batch times', async () => {
    const runner = new Runner();
    const b = make(runner, { maxBatchSize: 2 });
    await b.submit(['a', 'b', 'c', 'd'].map((x) => entry(x, 1)));
    const empty = b.retryAfterMs();
    runner.hold();
    const busy = b.submit([entry('x', 1)]);
    await until(() => b.stats().running === 1);
    const deep = b.submit(Array.from({ length: 40 }, (_, i) => entry(`q${i}`, 1)));
    expect(b.stats().depth).toBe(40);
    expect(b.retryAfterMs()).toBeGreaterThanOrEqual(empty);
    runner.release();
    await Promise.all([busy, deep]);
  });

  it('accepts a request larger than the queue when the queue is empty', async () => {
    const b = make(new Runner(), { maxQueueSize: 2 });
    expect((await b.submit(['a', 'b', 'c'].map((x) => entry(x)))).outputs).toEqual(['A', 'B', 'C']);
  });

  it('rejects every request of a failed batch with the error and drops their other entries', async () => {
    const runner = new Runner();
    const b = make(runner, { maxBatchSize: 1 });
    runner.failWith = new Error('model crashed');
    await expect(b.submit([entry('a'), entry('b')])).rejects.toThrow('model crashed');
    expect(runner.batches).toEqual([['a']]);
    expect(b.stats().depth).toBe(0);
    runner.failWith = undefined;
    expect((await b.submit([entry('c')])).outputs).toEqual(['C']);
  });

  it('runs up to `concurrency` batches at once', async () => {
    const runner = new Runner();
    const b = make(runner, { maxBatchSize: 1, concurrency: 2 });
    runner.hold();
    const p = b.submit([entry('a'), entry('b'), entry('c')]);
    await until(() => b.stats().running === 2);
    expect(b.stats().depth).toBe(1);
    runner.release();
    await p;
  });

  it('refuses work after close with UnavailableError', async () => {
    const b = make(new Runner());
    await b.close();
    await expect(b.submit([entry('a')])).rejects.toBeInstanceOf(UnavailableError);
  });
});

describe('lengthBucket', () => {
  it('keeps short lengths exact and groups longer ones within about a quarter', () => {
    expect([1, 5, 8].map(lengthBucket)).toEqual([1, 5, 8]);
    expect([9, 10, 11, 12].map(lengthBucket)).toEqual([10, 10, 12, 12]);
    expect([17, 20, 33, 40, 100, 129].map(lengthBucket)).toEqual([20, 20, 40, 40, 112, 160]);
  });
});
