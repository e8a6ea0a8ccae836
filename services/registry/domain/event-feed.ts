// One per registry process: follows the events table (woken by this process's own commits, by PostgreSQL
// NOTIFY from other replicas, and by a slow poll as a safety net) and keeps the newest events in memory, so
// any number of watch streams cost one query per change instead of one per stream.
import type { Logger } from '../../runtime/logger.js';
import type { MetadataStore } from './store.js';
import type { RegistryEvent } from './types.js';

export interface EventFeedOptions {
  pollIntervalMs: number;
  /** Newest events kept in memory. */
  bufferSize: number;
  log: Logger;
}

export class EventFeed {
  private known = 0;
  private buffer: RegistryEvent[] = [];
  private readonly waiters = new Set<() => void>();
  private polling: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private stopListening: (() => Promise<void>) | undefined;
  private closed = false;

  constructor(
    private readonly store: MetadataStore,
    private readonly options: EventFeedOptions,
  ) {}

  async start(): Promise<void> {
    this.known = await this.store.read((tx) => tx.revision());
    this.stopListening = await this.store.onRemoteChange(() => this.poke());
    this.timer = setInterval(() => this.poke(), this.options.pollIntervalMs);
    this.timer.unref();
  }

  /** The newest revision this process has seen. */
  get revision(): number {
    return this.known;
  }

  /** Something may have been committed: look for new events (coalesced with a poll already running). */
  poke(): void {
    if (this.closed) return;
    if (this.polling) {
      this.again = true;
      return;
    }
    this.polling = this.poll()
      .catch((err: unknown) => this.options.log.warn({ err }, 'could not read registry events; retrying on the next poll'))
      .finally(() => {
        this.polling = undefined;
        if (this.again) {
          this.again = false;
          this.poke();
        }
      });
  }

  /** Waits until a poll that started after this call has finished (tests, and writers that want read-your-writes). */
  async settle(): Promise<void> {
    this.poke();
    while (this.polling) await this.polling;
  }

  private async poll(): Promise<void> {
    for (;;) {
      const events = await this.store.read((tx) => tx.eventsAfter(this.known, 500));
      if (events.length === 0) break;
      // A gap means events were pruned before this process saw them: the buffer restarts after the gap.
      if (events[0]!.revision !== this.known + 1) this.buffer = [];
      this.buffer.push(...events);
      if (this.buffer.length > this.options.bufferSize) this.buffer.splice(0, this.buffer.length - this.options.bufferSize);
      this.known = events[events.length - 1]!.revision;
      if (events.length < 500) break;
    }
    for (const w of [...this.waiters]) w();
  }

  /** Events after `after`, oldest first (from memory when it covers them, else from the store). */
  async read(after: number, limit: number): Promise<RegistryEvent[]> {
    const first = this.buffer[0];
    if (first && after >= first.revision - 1 && after <= this.known) {
      const start = after - first.revision + 1;
      return this.buffer.slice(start, start + limit);
    }
    return this.store.read((tx) => tx.eventsAfter(after, limit));
  }

  /** Resolves once an event after `revision` is known, or when the signal aborts. */
  waitBeyond(revision: number, signal: AbortSignal): Promise<void> {
    if (this.known > revision || signal.aborted || this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        if (this.known <= revision && !signal.aborted && !this.closed) return;
        this.waiters.delete(done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.waiters.add(done);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    for (const w of [...this.waiters]) w();
    this.waiters.clear();
    await this.stopListening?.();
    while (this.polling) await this.polling;
  }
}
