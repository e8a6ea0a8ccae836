// A dynamic batcher shared by the model services (embeddings batches texts, vision batches image crops). One
// loop owns a bounded queue: callers submit entries with a cost (tokens, pixels of width, ...) and a length
// key; the loop forms batches capped by count and by total cost, preferring entries of the head's key so little
// is padded, waits at most maxQueueDelayMs for a batch to fill while the runner is idle, drops entries whose
// caller gave up before they cost compute, and rejects at once with OverloadedError (with a retry hint from the
// queue depth and recent batch times) when the queue is full. It knows nothing of what the entries are: `run`
// turns a batch of items into one output per item.
// An entry stands for one row of the batch, or for several of like cost (`rows`: a run of one request's texts),
// so a request of many inputs queues as a few entries, not one object per input; counts, the queue's limit and
// the batch's size are in rows.
// Batches form once the event loop's current turn ends (so what arrived together batches together), except that
// a full batch starts within the submit that fills it when a runner is free: under load, a burst of calls read
// from one socket would otherwise keep an idle model waiting until the whole burst was handled.
//
// Shaped after TEI's queue (core/src/queue.rs: padded batch cost = longest entry × count, dropped entries
// skipped when the batch is formed) and Triton's dynamic batcher (max queue delay).
import { context, SpanStatusCode, trace, type Attributes, type Context, type Link, type Span } from '@opentelemetry/api';
import { abortReason, MaasError, OverloadedError, UnavailableError } from '../errors.js';
import { counter, histogram, latencyHistogram, observableGauge } from '../telemetry/metrics.js';
import { Attr, tracer } from '../telemetry/tracing.js';

export interface BatcherOptions<I, O> {
  /** Names the batcher in spans (`<name> queue`, `<name> batch`) and in metric attributes. */
  name: string;
  /** Most rows in one batch. An entry of more rows than this still runs, alone. */
  maxBatchSize: number;
  /**
   * Most total cost in one batch: the sum of the rows' costs, or with `padded` the largest cost times the
   * rows (what a padded tensor really holds). An entry costlier than this still runs, alone.
   */
  maxBatchCost: number;
  /** Batch cost counts padding: max(cost) × rows instead of sum(cost). */
  padded?: boolean;
  /**
   * How long the oldest queued entry may wait for its batch to fill while the runner is idle. 0 runs whatever
   * is queued as soon as the runner is free (batches still grow under load, since entries queue during runs).
   */
  maxQueueDelayMs: number;
  /** Most rows waiting (not running). Submitting past it rejects with OverloadedError. */
  maxQueueSize: number;
  /** Batches run at once (default 1). */
  concurrency?: number;
  /** Added to the spans and metric attributes (model name and version, ...). */
  attributes?: Attributes;
  /** Runs one batch: one output per item (entry), in order. Called with the batch span active. */
  run(items: I[], batch: BatchInfo): Promise<O[]>;
}

/** What `run` learns about its batch. */
export interface BatchInfo {
  /** Rows in the batch. */
  size: number;
  /** The batch's cost as counted against maxBatchCost. */
  cost: number;
  /** The largest row cost (the padded length). */
  maxCost: number;
  /** The batch span (already active when run is called). */
  span: Span;
}

/** One unit of work: an item plus what the batcher needs to place it. */
export interface BatchEntry<I> {
  item: I;
  /** Non-negative cost of each of its rows (tokens, width, ...): for several rows, the largest. */
  cost: number;
  /** Rows the item stands for (default 1). */
  rows?: number;
  /** Entries of equal key batch together first (a length bucket; see lengthBucket). Defaults to the cost. */
  key?: number;
}

/** The outcome of one submit: outputs in entry order and where the time went. */
export interface Submitted<O> {
  outputs: O[];
  /** From submit until the first batch holding one of its entries started. */
  queueMs: number;
  /** Sum of the durations of the batches its entries ran in. */
  runMs: number;
  /** Batches its entries ran in. */
  batches: number;
}

export interface SubmitOptions {
  /** Aborting it rejects the submit with the signal's reason and drops its entries that have not run. */
  signal?: AbortSignal;
}

/** Counters and gauges of one batcher, for metrics, spans and tests. */
export interface BatcherStats {
  /** Rows waiting now. */
  depth: number;
  /** Batches running now. */
  running: number;
  /** Rows ever accepted. */
  submitted: number;
  /** Rows that ran. */
  ran: number;
  /** Rows dropped before running because their caller's signal aborted. */
  dropped: number;
  /** Submits refused because the queue was full. */
  rejected: number;
  /** Batches run. */
  batches: number;
  /** Rows of the last batch (0 before the first). */
  lastBatchSize: number;
  /** Moving averages over recent batches (0 before the first). */
  meanBatchSize: number;
  meanBatchMs: number;
}

interface Entry<I, O> {
  item: I;
  cost: number;
  rows: number;
  key: number;
  /** Position in the request's outputs. */
  index: number;
  request: Request<O>;
  seq: number;
  /** Taken into a batch, or dropped: no longer queued. */
  gone: boolean;
}

interface Request<O> {
  outputs: O[];
  remaining: number;
  enqueuedAt: number;
  firstStart: number | undefined;
  runMs: number;
  batches: number;
  settled: boolean;
  resolve(value: Submitted<O>): void;
  reject(reason: unknown): void;
  /** The caller's span context, linked from the batch span. */
  parent: Context;
  queueSpan: Span;
  cleanup(): void;
}

const live = new Set<DynamicBatcher<unknown, unknown>>();
let instruments: ReturnType<typeof createInstruments> | undefined;

function createInstruments() {
  observableGauge('maas_batch_queue_depth', 'rows (inputs, crops) waiting in a dynamic batcher queue', () =>
    [...live].map((b) => ({ value: b.stats().depth, attributes: b.metricAttributes })),
  );
  return {
    batchSize: histogram('maas_batch_size', 'rows (inputs, crops) per batch', [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]),
    batchCost: histogram('maas_batch_cost', 'cost (tokens, padded) per batch', [16, 64, 256, 1024, 4096, 16384, 65536]),
    batchMs: latencyHistogram('maas_batch_duration_ms', 'time to run one batch (model inference), in milliseconds'),
    queueMs: latencyHistogram('maas_batch_queue_ms', 'time a request waited before its first batch started, in milliseconds'),
    dropped: counter('maas_batch_dropped_entries', 'queued rows dropped before running because the caller cancelled or the deadline passed'),
    rejected: counter('maas_batch_rejected_requests', 'requests refused because the queue was full (RESOURCE_EXHAUSTED)'),
  };
}

export class DynamicBatcher<I, O> {
  readonly metricAttributes: Attributes;
  private queue: Entry<I, O>[] = [];
  private depthCount = 0;
  private runningCount = 0;
  private seq = 0;
  private scheduled = false;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = 0;
  private closed = false;
  private readonly idle = new Set<() => void>();
  private readonly counts = { submitted: 0, ran: 0, dropped: 0, rejected: 0, batches: 0, lastBatchSize: 0, meanBatchSize: 0, meanBatchMs: 0 };
  private readonly concurrency: number;
  private readonly metrics = (instruments ??= createInstruments());

  constructor(private readonly options: BatcherOptions<I, O>) {
    if (options.maxBatchSize < 1) throw new Error('maxBatchSize must be at least 1');
    if (options.maxQueueSize < 1) throw new Error('maxQueueSize must be at least 1');
    this.concurrency = Math.max(1, options.concurrency ?? 1);
    this.metricAttributes = { batcher: options.name, ...options.attributes };
    live.add(this as DynamicBatcher<unknown, unknown>);
  }

  /**
   * Queues entries and resolves with one output per entry once every one has run. Rejects at once with
   * OverloadedError when they do not fit in the queue, with the signal's reason when it aborts (dropping the
   * entries not yet run), with UnavailableError once closed, or with run's error.
   */
  submit(entries: BatchEntry<I>[], options: SubmitOptions = {}): Promise<Submitted<O>> {
    const { signal } = options;
    if (this.closed) return Promise.reject(new UnavailableError(`${this.options.name}: the model is being unloaded; retry`, 0));
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    if (entries.length === 0) return Promise.resolve({ outputs: [], queueMs: 0, runMs: 0, batches: 0 });
    let rows = 0;
    for (const e of entries) rows += e.rows ?? 1;
    // A request larger than the whole queue is still accepted into an empty queue, so it can always be served.
    if (this.depthCount > 0 && this.depthCount + rows > this.options.maxQueueSize) {
      this.counts.rejected++;
      this.metrics.rejected.add(1, this.metricAttributes);
      return Promise.reject(new OverloadedError(
        `${this.options.name}: the queue is full (${this.depthCount} waiting, limit ${this.options.maxQueueSize}); retry after the delay given`,
        this.retryAfterMs(),
        { metadata: { queue_depth: String(this.depthCount) } },
      ));
    }
    const parent = context.active();
    const queueSpan = tracer().startSpan(`${this.options.name} queue`, { attributes: { ...this.options.attributes, 'maas.entries': rows } }, parent);
    return new Promise<Submitted<O>>((resolve, reject) => {
      const request: Request<O> = {
        outputs: new Array<O>(entries.length),
        remaining: entries.length,
        enqueuedAt: performance.now(),
        firstStart: undefined,
        runMs: 0,
        batches: 0,
        settled: false,
        resolve,
        reject,
        parent,
        queueSpan,
        cleanup: () => undefined,
      };
      const queued: Entry<I, O>[] = entries.map((e, index) => ({
        item: e.item,
        cost: e.cost,
        rows: e.rows ?? 1,
        key: e.key ?? e.cost,
        index,
        request,
        seq: this.seq++,
        gone: false,
      }));
      if (signal) {
        const onAbort = () => this.fail(request, abortReason(signal), true);
        signal.addEventListener('abort', onAbort, { once: true });
        request.cleanup = () => signal.removeEventListener('abort', onAbort);
      }
      for (const e of queued) this.queue.push(e);
      this.depthCount += rows;
      this.counts.submitted += rows;
      // A full batch waiting and a free runner: run it now rather than after this turn's other I/O.
      if (this.depthCount >= this.options.maxBatchSize && this.runningCount < this.concurrency) this.pump();
      else this.schedule();
    });
  }

  /** Most rows in one batch (for callers that cut their work into entries of several rows). */
  get maxBatchSize(): number {
    return this.options.maxBatchSize;
  }

  /** Most cost in one batch, as counted (padded or summed). */
  get maxBatchCost(): number {
    return this.options.maxBatchCost;
  }

  stats(): BatcherStats {
    return { depth: this.depthCount, running: this.runningCount, ...this.counts };
  }

  /** A hint for callers turned away: time to work through the queue at the recent pace. */
  retryAfterMs(): number {
    const perBatch = this.counts.batches > 0 ? this.counts.meanBatchMs : Math.max(1, this.options.maxQueueDelayMs);
    const size = Math.max(1, this.counts.batches > 0 ? this.counts.meanBatchSize : this.options.maxBatchSize);
    const ms = (Math.ceil(this.depthCount / size) * perBatch) / this.concurrency;
    return Math.min(30_000, Math.max(1, Math.ceil(ms)));
  }

  /** Rejects what is queued with UnavailableError, refuses new work, and waits for running batches. */
  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      live.delete(this as DynamicBatcher<unknown, unknown>);
      if (this.timer) clearTimeout(this.timer);
      const waiting = this.queue.filter((e) => !e.gone);
      const requests = new Set(waiting.map((e) => e.request));
      for (const r of requests) this.fail(r, new UnavailableError(`${this.options.name}: the model was unloaded; retry`, 0), false);
      this.queue = [];
    }
    if (this.runningCount > 0) await new Promise<void>((resolve) => this.idle.add(resolve));
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    // Let every request that arrived in this turn of the event loop join before a batch is formed.
    setImmediate(() => {
      this.scheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    while (!this.closed && this.runningCount < this.concurrency && this.depthCount > 0) {
      this.compact();
      const head = this.queue[0]!;
      const { batch, rows, full } = this.select(head);
      if (!full && this.options.maxQueueDelayMs > 0) {
        const due = head.request.enqueuedAt + this.options.maxQueueDelayMs;
        const wait = due - performance.now();
        if (wait > 0.05) {
          this.wake(wait);
          return;
        }
      }
      for (const e of batch) e.gone = true;
      this.depthCount -= rows;
      void this.launch(batch, rows);
    }
  }

  private wake(ms: number): void {
    const at = performance.now() + ms;
    if (this.timer && this.timerAt <= at) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.pump();
    }, Math.ceil(ms));
  }

  /** Drops entries that are gone from the front (and from everywhere when many are). */
  private compact(): void {
    let i = 0;
    while (i < this.queue.length && this.queue[i]!.gone) i++;
    if (i > 0) this.queue = this.queue.slice(i);
    if (this.queue.length > 2 * this.depthCount + 64) this.queue = this.queue.filter((e) => !e.gone);
  }

  /**
   * The head entry plus others: those of the head's key first (in arrival order), then those of the nearest
   * keys, while the batch stays within rows and cost. `full` when a cap, not a lack of entries, ended it.
   */
  private select(head: Entry<I, O>): { batch: Entry<I, O>[]; rows: number; full: boolean } {
    const { maxBatchSize, maxBatchCost, padded } = this.options;
    const batch = [head];
    let rows = head.rows;
    let sum = head.cost * head.rows;
    let max = head.cost;
    let full = false;
    const tryAdd = (e: Entry<I, O>): void => {
      const nextMax = Math.max(max, e.cost);
      const cost = padded ? nextMax * (rows + e.rows) : sum + e.cost * e.rows;
      if (rows + e.rows > maxBatchSize || cost > maxBatchCost) {
        full = true;
        return;
      }
      batch.push(e);
      rows += e.rows;
      sum += e.cost * e.rows;
      max = nextMax;
    };
    const others: Entry<I, O>[] = [];
    for (let i = 1; i < this.queue.length && rows < maxBatchSize; i++) {
      const e = this.queue[i]!;
      if (e.gone) continue;
      if (e.key === head.key) tryAdd(e);
      else others.push(e);
    }
    if (rows < maxBatchSize && others.length > 0) {
      others.sort((a, b) => Math.abs(a.key - head.key) - Math.abs(b.key - head.key) || a.seq - b.seq);
      for (const e of others) {
        if (rows >= maxBatchSize) break;
        tryAdd(e);
      }
    }
    if (rows >= maxBatchSize) full = true;
    if (padded ? max * rows >= maxBatchCost : sum >= maxBatchCost) full = true;
    return { batch, rows, full };
  }

  private async launch(batch: Entry<I, O>[], rows: number): Promise<void> {
    this.runningCount++;
    const started = performance.now();
    const requests = [...new Set(batch.map((e) => e.request))];
    const maxCost = batch.reduce((m, e) => Math.max(m, e.cost), 0);
    const cost = this.options.padded ? maxCost * rows : batch.reduce((s, e) => s + e.cost * e.rows, 0);
    const links: Link[] = [];
    for (const r of requests) {
      const sc = trace.getSpanContext(r.parent);
      if (sc) links.push({ context: sc });
    }
    // The batch belongs to the trace of its oldest request and links to every request it serves.
    const span = tracer().startSpan(
      `${this.options.name} batch`,
      { links, attributes: { ...this.options.attributes, [Attr.batchSize]: rows, 'maas.batch_cost': cost, 'maas.batch_requests': requests.length } },
      requests[0]!.parent,
    );
    for (const r of requests) {
      if (r.firstStart !== undefined) continue;
      r.firstStart = started;
      const queueMs = started - r.enqueuedAt;
      r.queueSpan.setAttributes({ [Attr.batchSize]: rows, [Attr.queueMs]: queueMs });
      r.queueSpan.addLink({ context: span.spanContext() });
      r.queueSpan.end();
      this.metrics.queueMs.record(queueMs, this.metricAttributes);
    }
    let outputs: O[] | undefined;
    let error: unknown;
    try {
      outputs = await context.with(trace.setSpan(requests[0]!.parent, span), () =>
        this.options.run(
          batch.map((e) => e.item),
          { size: rows, cost, maxCost, span },
        ),
      );
      if (!Array.isArray(outputs) || outputs.length !== batch.length) {
        throw new Error(`${this.options.name}: run returned ${Array.isArray(outputs) ? outputs.length : 'no'} outputs for ${batch.length} items`);
      }
    } catch (err) {
      error = err;
      span.recordException(err instanceof Error ? err : new Error(String(err)));
      span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof MaasError ? err.message : 'batch failed' });
    }
    const ms = performance.now() - started;
    span.end();
    this.record(rows, cost, ms);
    if (outputs) {
      this.counts.ran += rows;
      for (const r of requests) {
        r.runMs += ms;
        r.batches++;
      }
      batch.forEach((e, i) => {
        const r = e.request;
        if (r.settled) return;
        r.outputs[e.index] = outputs[i]!;
        if (--r.remaining === 0) this.settle(r, { outputs: r.outputs, queueMs: r.firstStart! - r.enqueuedAt, runMs: r.runMs, batches: r.batches });
      });
    } else {
      for (const r of requests) this.fail(r, error, false);
    }
    this.runningCount--;
    if (this.runningCount === 0) for (const done of [...this.idle]) (this.idle.delete(done), done());
    this.pump();
  }

  private record(size: number, cost: number, ms: number): void {
    const c = this.counts;
    c.batches++;
    c.lastBatchSize = size;
    const alpha = c.batches === 1 ? 1 : 0.2;
    c.meanBatchSize += alpha * (size - c.meanBatchSize);
    c.meanBatchMs += alpha * (ms - c.meanBatchMs);
    this.metrics.batchSize.record(size, this.metricAttributes);
    this.metrics.batchCost.record(cost, this.metricAttributes);
    this.metrics.batchMs.record(ms, this.metricAttributes);
  }

  /** Rejects a request and takes its entries that have not run out of the queue. */
  private fail(request: Request<O>, reason: unknown, cancelled: boolean): void {
    if (request.settled) return;
    let removed = 0;
    for (const e of this.queue) {
      if (e.request !== request || e.gone) continue;
      e.gone = true;
      removed += e.rows;
    }
    this.depthCount -= removed;
    if (cancelled && removed > 0) {
      this.counts.dropped += removed;
      this.metrics.dropped.add(removed, this.metricAttributes);
    }
    if (request.firstStart === undefined) {
      request.queueSpan.setStatus({ code: SpanStatusCode.ERROR, message: reason instanceof Error ? reason.message : String(reason) });
      request.queueSpan.setAttribute('maas.dropped_entries', removed);
      request.queueSpan.end();
    }
    request.settled = true;
    request.cleanup();
    request.reject(reason);
  }

  private settle(request: Request<O>, value: Submitted<O>): void {
    request.settled = true;
    request.cleanup();
    request.resolve(value);
  }
}

/**
 * A length key that puts lengths within about 25% of each other in one group: exact up to 8, then steps of a
 * quarter of the power of two below (8, 10, 12, 14, 16, 20, 24, 28, 32, 40, ...). Returns the bucket's upper
 * bound, so keys compare by distance too.
 */
export function lengthBucket(length: number): number {
  if (length <= 8) return Math.max(0, Math.ceil(length));
  const step = 2 ** (Math.floor(Math.log2(length)) - 2);
  return Math.ceil(length / step) * step;
}
