// The hand-off between the batch loop (producer) and one request's handler (consumer). The loop never
// waits on a slow reader: chunks the reader has not taken yet are merged into one, so memory stays bounded
// by the text of one sequence and a reader that catches up gets everything in order.

export interface Mergeable<T> {
  merge(into: T, next: T): T;
  /** True for the last chunk (nothing is merged into it). */
  isFinal(chunk: T): boolean;
}

export class ChunkQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private error: unknown;
  private ended = false;
  private wake: (() => void) | undefined;

  constructor(private readonly policy: Mergeable<T>) {}

  push(chunk: T): void {
    if (this.ended) return;
    const last = this.items[this.items.length - 1];
    if (last !== undefined && !this.policy.isFinal(last)) this.items[this.items.length - 1] = this.policy.merge(last, chunk);
    else this.items.push(chunk);
    if (this.policy.isFinal(chunk)) this.ended = true;
    this.notify();
  }

  /** Ends the stream with an error (after the chunks already queued). */
  fail(error: unknown): void {
    if (this.ended) return;
    this.error = error;
    this.ended = true;
    this.notify();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      if (this.items.length > 0) {
        const item = this.items.shift()!;
        yield item;
        if (this.policy.isFinal(item)) return;
        continue;
      }
      if (this.ended) {
        if (this.error !== undefined) throw this.error;
        return;
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }
}
