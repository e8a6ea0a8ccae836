// Calls answered by a worker thread, one reply per request, matched by id: the plumbing the model services'
// threads share (an encoder's session, a vision model's sessions). The worker side (serveCalls) answers a first
// "ready" message when it has loaded what it serves, or why it could not; then one reply per call, and a last
// one when asked to close. If the thread dies, the calls it held are UNAVAILABLE (the caller retries) and the
// next call starts a new thread in its place.
import { parentPort, workerData, type Transferable, type Worker } from 'node:worker_threads';
import { FailedPreconditionError, UnavailableError } from '../errors.js';
import { startWorker } from './start-worker.js';

/** A worker's first message: what it loaded, or why it could not. */
export type Ready<T> = { ready: true; value: T } | { ready: false; error: string; violations?: FailedPreconditionError['violations']; reason?: string };

/**
 * Starts a worker entry and waits for its first message (a Ready). Rejects with the worker's reason — a
 * FailedPreconditionError when it threw one — or when it dies first; the thread is then ended.
 */
export async function startReadyWorker<T>(entry: URL, data: unknown, what: string): Promise<{ worker: Worker; value: T }> {
  const worker = startWorker(entry, data);
  let onMessage!: (r: Ready<T>) => void;
  let onError!: (err: Error) => void;
  let onExit!: (code: number) => void;
  const ready = await new Promise<Ready<T>>((resolve, reject) => {
    onMessage = resolve;
    onError = reject;
    onExit = (code) => reject(new Error(`${what} exited with code ${code} before it was ready`));
    worker.once('message', onMessage).once('error', onError).once('exit', onExit);
  }).finally(() => worker.off('message', onMessage).off('error', onError).off('exit', onExit));
  if (!ready.ready) {
    await worker.terminate();
    if (ready.violations) throw new FailedPreconditionError(ready.error, ready.violations, { reason: ready.reason });
    throw new Error(ready.error);
  }
  return { worker, value: ready.value };
}

/** The Ready a worker posts when what it loads threw. */
export function notReady(err: unknown): Ready<never> {
  const ready: Ready<never> = { ready: false, error: err instanceof Error ? err.message : String(err) };
  if (err instanceof FailedPreconditionError) Object.assign(ready, { violations: err.violations, reason: err.reason });
  return ready;
}
type Call = { op: 'call'; id: number; body: unknown } | { op: 'close' };
type Reply = { id: number; body: unknown } | { id: number; error: string } | { closed: true };

export class WorkerCalls<Info> {
  private readonly pending = new Map<number, { resolve(v: unknown): void; reject(err: Error): void }>();
  private nextId = 0;
  /** Why the current worker can no longer be used (it died), until a new one replaces it. */
  private stopped: string | undefined;
  /** Set once close() is called: no new worker after that. */
  private closed = false;
  private closing: Promise<void> | undefined;
  private onClosed: (() => void) | undefined;
  private restarting: Promise<void> | undefined;

  private constructor(
    private worker: Worker,
    /** What the worker said when it was ready. */
    readonly info: Info,
    private readonly start: () => Promise<{ worker: Worker; value: Info }>,
    /** Names the thread in errors ("the encoder thread of model x"). */
    private readonly what: string,
  ) {
    this.attach(worker);
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
    return this.stopped === undefined && !this.closed;
  }

  /** Calls in flight (sent, not answered). */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Sends body (moving the buffers in transfer); resolves with the worker's reply. */
  async call<T>(body: unknown, transfer: Transferable[] = []): Promise<T> {
    if (this.closed) throw this.unavailable('closed');
    if (this.stopped) await this.restart();
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ op: 'call', id, body } satisfies Call, transfer);
    });
  }

  /** Lets the worker finish the calls already sent and release what it holds, then ends the thread. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      await this.restarting?.catch(() => undefined);
      if (!this.stopped) {
        const closed = new Promise<void>((resolve) => (this.onClosed = resolve));
        this.worker.postMessage({ op: 'close' } satisfies Call);
        await closed;
      }
      await this.worker.terminate();
    })();
    return this.closing;
  }

  /** For tests: ends the thread as a crash would. */
  kill(): Promise<number> {
    return this.worker.terminate();
  }

  private attach(worker: Worker): void {
    worker.on('message', (reply: Reply) => {
      if ('closed' in reply) return this.onClosed?.();
      const p = this.pending.get(reply.id);
      if (!p) return;
      this.pending.delete(reply.id);
      if ('error' in reply) p.reject(new Error(reply.error));
      else p.resolve(reply.body);
    });
    const stop = (why: string) => {
      if (this.worker !== worker || this.stopped) return;
      this.stopped = why;
      this.onClosed?.();
      const error = this.unavailable(why);
      for (const p of this.pending.values()) p.reject(error);
      this.pending.clear();
    };
    worker.on('error', (err) => stop(String(err)));
    worker.on('exit', (code) => stop(`worker exited with code ${code}`));
  }

  /** Replaces a dead worker (once, however many calls wait for it); UNAVAILABLE when the new one cannot start. */
  private restart(): Promise<void> {
    this.restarting ??= this.start()
      .then(({ worker }) => {
        if (this.closed) {
          void worker.terminate();
          throw this.unavailable('closed');
        }
        this.worker = worker;
        this.stopped = undefined;
        this.attach(worker);
      })
      .catch((err: unknown) => {
        throw err instanceof UnavailableError ? err : this.unavailable(`it could not be started again: ${err instanceof Error ? err.message : String(err)}`);
      })
      .finally(() => (this.restarting = undefined));
    return this.restarting;
  }

  private unavailable(why: string | undefined = this.stopped): UnavailableError {
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
