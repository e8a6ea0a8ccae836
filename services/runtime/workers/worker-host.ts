// One worker thread kept for as long as its owner wants it: started through the ready handshake, replaced by a
// new one (from the same entry and data) when it dies, closed on demand after the work already sent. Owners
// give it what to do with the worker's messages and with a death; WorkerCalls (request and reply) and the
// generation service's decode lanes (a stream of events) are built on it.
import type { Transferable, Worker } from 'node:worker_threads';

export interface WorkerHostParts {
  /** Every message of the current worker but the one that answers a close. */
  message(message: unknown): void;
  /** The current worker died (why); what it held is lost. Not called for the end of a close. */
  died(why: string): void;
  /** Whether a message is the worker's answer to the close message. */
  isClosedReply(message: unknown): boolean;
}

export class WorkerHost {
  /** Why the current worker cannot be used: it died (and may be being replaced), or the host is closed. */
  private stoppedWhy: string | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;
  private onClosed: (() => void) | undefined;
  private restarting: Promise<void> | undefined;

  constructor(
    private worker: Worker,
    private readonly start: () => Promise<{ worker: Worker }>,
    private readonly parts: WorkerHostParts,
  ) {
    this.attach(worker);
  }

  get usable(): boolean {
    return this.stoppedWhy === undefined && !this.closed;
  }

  /** Why it is not usable (undefined when it is). */
  get why(): string | undefined {
    return this.closed ? 'closed' : this.stoppedWhy;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  post(message: unknown, transfer: Transferable[] = []): void {
    this.worker.postMessage(message, transfer);
  }

  /**
   * Starts a new worker in place of a dead one — one, however many ask at once. Rejects (and the host stays
   * down, saying why) when it cannot start, or when the host was closed meanwhile.
   */
  restart(): Promise<void> {
    const why = this.stoppedWhy ?? 'stopped';
    this.stoppedWhy = `${why}; a new worker is starting`;
    this.restarting ??= this.start()
      .then(({ worker }) => {
        if (this.closed) {
          void worker.terminate();
          throw new Error('closed');
        }
        this.worker = worker;
        this.stoppedWhy = undefined;
        this.attach(worker);
      })
      .catch((err: unknown) => {
        if (!this.closed) this.stoppedWhy = `${why}; a new worker could not start: ${err instanceof Error ? err.message : String(err)}`;
        throw err;
      })
      .finally(() => (this.restarting = undefined));
    return this.restarting;
  }

  /** Lets the worker finish what was sent before (closeMessage asks it to, and to release what it holds), then ends it. */
  close(closeMessage: unknown): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      await this.restarting?.catch(() => undefined);
      if (this.stoppedWhy === undefined) {
        const closed = new Promise<void>((resolve) => (this.onClosed = resolve));
        this.worker.postMessage(closeMessage);
        await closed;
      }
      await this.worker.terminate();
    })();
    return this.closing;
  }

  /** For tests: ends the worker as a crash would. */
  kill(): Promise<number> {
    return this.worker.terminate();
  }

  private attach(worker: Worker): void {
    worker.on('message', (message: unknown) => {
      if (this.parts.isClosedReply(message)) return this.onClosed?.();
      this.parts.message(message);
    });
    const stop = (why: string) => {
      // Only the current worker's first sign of death counts ('error' is followed by 'exit').
      if (this.worker !== worker || this.stoppedWhy !== undefined) return;
      this.stoppedWhy = why;
      this.onClosed?.();
      if (!this.closed) this.parts.died(why);
    };
    worker.on('error', (err) => stop(String(err)));
    worker.on('exit', (code) => stop(`worker exited with code ${code}`));
  }
}
