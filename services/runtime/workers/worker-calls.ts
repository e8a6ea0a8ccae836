// Calls answered by a worker thread, one reply per request, matched by id: the plumbing the model services'
// threads share (an encoder's session, a vision model's sessions). The worker side (serveCalls) answers a first
// "ready" message when it has loaded what it serves, or why it could not; then one reply per call, and a last
// one when asked to close. If the thread dies, the calls it held are UNAVAILABLE (the caller retries) and the
// next call starts a new thread in its place.
import { parentPort, workerData, type Transferable, type Worker } from 'node:worker_threads';
import { UnavailableError } from '../errors.js';
import { notReady, startReadyWorker, type Ready } from './start-worker.js';
import { WorkerHost } from './worker-host.js';

type Call = { op: 'call'; id: number; body: unknown } | { op: 'close' };
type Reply = { id: number; body: unknown } | { id: number; error: string } | { closed: true };

export class WorkerCalls<Info> {
  private readonly pending = new Map<number, { resolve(v: unknown): void; reject(err: Error): void }>();
  private nextId = 0;
  private readonly host: WorkerHost;

  private constructor(
    worker: Worker,
    /** What the worker said when it was ready. */
    readonly info: Info,
    start: () => Promise<{ worker: Worker }>,
    /** Names the thread in errors ("the encoder thread of model x"). */
    private readonly what: string,
  ) {
    this.host = new WorkerHost(worker, start, {
      message: (reply) => {
        const r = reply as Reply & { id: number };
        const p = this.pending.get(r.id);
        if (!p) return;
        this.pending.delete(r.id);
        if ('error' in r) p.reject(new Error(r.error));
        else p.resolve((r as { body: unknown }).body);
      },
      died: (why) => {
        const error = this.unavailable(why);
        for (const p of this.pending.values()) p.reject(error);
        this.pending.clear();
      },
      isClosedReply: (reply) => typeof reply === 'object' && reply !== null && 'closed' in reply,
    });
  }

  /**
   * Starts the worker entry (a module calling serveCalls) and waits for it to be ready; rejects with its reason
   * (a FailedPreconditionError when it threw one) when it cannot be. A worker that dies later fails the calls
   * it held with UNAVAILABLE, and the next call starts a new one from the same entry and data.
   */
  static async start<Info>(entry: URL, data: unknown, what: string): Promise<WorkerCalls<Info>> {
    const start = () => startReadyWorker<Info>(entry, data, what);
    const { worker, value } = await start();
    return new WorkerCalls(worker, value, start, what);
  }

  get usable(): boolean {
    return this.host.usable;
  }

  /** Calls in flight (sent, not answered). */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Sends body (moving the buffers in transfer); resolves with the worker's reply. */
  async call<T>(body: unknown, transfer: Transferable[] = []): Promise<T> {
    if (this.host.isClosed) throw this.unavailable('closed');
    if (!this.host.usable) {
      await this.host.restart().catch((err: unknown) => {
        throw this.unavailable(this.host.isClosed ? 'closed' : `it could not be started again: ${err instanceof Error ? err.message : String(err)}`);
      });
    }
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.host.post({ op: 'call', id, body } satisfies Call, transfer);
    });
  }

  /** Lets the worker finish the calls already sent and release what it holds, then ends the thread. */
  close(): Promise<void> {
    return this.host.close({ op: 'close' } satisfies Call);
  }

  /** For tests: ends the thread as a crash would. */
  kill(): Promise<number> {
    return this.host.kill();
  }

  private unavailable(why: string | undefined): UnavailableError {
    return new UnavailableError(`${this.what} stopped (${why}); retry`, 100);
  }
}

/**
 * The worker side: loads with `open` (its result's `info` goes to the main thread as the ready message), then
 * answers each call with `handle`'s result (and the buffers its `transfer` names), one after another in the
 * order they came; `close` runs when asked, after the calls before it.
 */
export async function serveCalls<Init, Info, Body, Result>(parts: {
  open(init: Init): Promise<{ info: Info; handle(body: Body): Promise<Result> | Result; transfer?(result: Result): Transferable[]; close(): Promise<void> | void }>;
}): Promise<void> {
  const port = parentPort!;
  const init = (workerData as { data: Init }).data;
  let served: Awaited<ReturnType<typeof parts.open>>;
  try {
    served = await parts.open(init);
  } catch (err) {
    port.postMessage(notReady(err));
    process.exit(0);
  }
  port.postMessage({ ready: true, value: served.info } satisfies Ready<Info>);
  // One call at a time, in order: a session runs one batch at once on this thread anyway, and a close must
  // come after the calls sent before it.
  let queue: Promise<void> = Promise.resolve();
  port.on('message', (message: Call) => {
    queue = queue.then(async () => {
      if (message.op === 'close') {
        await served.close();
        port.postMessage({ closed: true } satisfies Reply);
        return;
      }
      try {
        const result = await served.handle(message.body as Body);
        port.postMessage({ id: message.id, body: result } satisfies Reply, served.transfer?.(result) ?? []);
      } catch (err) {
        port.postMessage({ id: message.id, error: err instanceof Error ? err.message : String(err) } satisfies Reply);
      }
    });
  });
}
