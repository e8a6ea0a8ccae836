// An encoder on a worker thread: the same OnnxEncoder, with its own onnxruntime session, in a worker
// (encoder-thread.ts). onnxruntime-node runs session.run synchronously on the calling thread, so on the event
// loop every batch would stop the service's gRPC work for as long as it runs — health checks, new requests,
// cancellations, answers — and the service would use one core. On a thread of its own the batch runs while
// the event loop decodes, tokenizes and answers, and the batcher's next batch is ready when it ends.
// A batch crosses as one Int32Array of token ids, its vectors come back as one Float32Array, both moved, not
// copied.
import type { Worker } from 'node:worker_threads';
import { FailedPreconditionError, UnavailableError } from '../../runtime/errors.js';
import type { SessionSettings } from '../../runtime/models/onnx-session.js';
import { startWorker } from '../../runtime/workers/start-worker.js';
import type { EncoderOptions, EncoderRow } from './onnx-encoder.js';

/** What the worker is started with. */
export interface EncoderInit {
  file: string;
  settings: SessionSettings;
  options: Omit<EncoderOptions, 'executionProvider'>;
}

/** The worker's first message. */
export type EncoderReady =
  | { ready: true; dimensions: number; output: string; pooledByModel: boolean; executionProvider: string; typed: boolean }
  | { ready: false; error: string; violations?: FailedPreconditionError['violations']; reason?: string };

/**
 * A batch as it crosses, in one buffer: `rows` row ends, then every row's ids one after another, then (when the
 * model reads token_type_ids) the type ids laid out like the ids.
 */
export interface PackedBatch {
  rows: number;
  typed: boolean;
  data: Int32Array;
}

export type EncoderRequest = ({ op: 'run'; id: number } & PackedBatch) | { op: 'close' };

export type EncoderReply = { id: number; values: Float32Array } | { id: number; error: string } | { id: -1; closed: true };

export function packBatch(batch: readonly EncoderRow[], typed: boolean): PackedBatch {
  const rows = batch.length;
  let total = 0;
  for (const row of batch) total += row.ids.length;
  const data = new Int32Array(rows + (typed ? 2 : 1) * total);
  let at = rows;
  for (let r = 0; r < rows; r++) {
    const { ids, typeIds } = batch[r]!;
    const n = ids.length;
    for (let t = 0; t < n; t++) data[at + t] = ids[t]!;
    if (typed) for (let t = 0; t < n; t++) data[total + at + t] = typeIds[t] ?? 0;
    at += n;
    data[r] = at - rows;
  }
  return { rows, typed, data };
}

const NO_TYPES: readonly number[] = [];

export function unpackBatch({ rows, typed, data }: PackedBatch): EncoderRow[] {
  const total = rows === 0 ? 0 : data[rows - 1]!;
  const ids = data.subarray(rows, rows + total);
  const types = typed ? data.subarray(rows + total) : undefined;
  const out: EncoderRow[] = new Array(rows);
  let start = 0;
  for (let r = 0; r < rows; r++) {
    const end = data[r]!;
    out[r] = { ids: ids.subarray(start, end), typeIds: types ? types.subarray(start, end) : NO_TYPES };
    start = end;
  }
  return out;
}

export class ThreadEncoder {
  private readonly pending = new Map<number, { resolve(v: Float32Array[]): void; reject(err: Error): void }>();
  private nextId = 0;
  private stopped: string | undefined;
  private closing: Promise<void> | undefined;
  private onClosed: (() => void) | undefined;

  private constructor(
    private readonly worker: Worker,
    readonly dimensions: number,
    readonly output: string,
    readonly pooledByModel: boolean,
    readonly executionProvider: string,
    /** The model reads token_type_ids, so they cross too. */
    private readonly typed: boolean,
  ) {
    worker.on('message', (reply: EncoderReply) => {
      if ('closed' in reply) return this.onClosed?.();
      const p = this.pending.get(reply.id);
      if (!p) return;
      this.pending.delete(reply.id);
      if ('error' in reply) return p.reject(new Error(reply.error));
      const { values } = reply;
      const rows = values.length / dimensions;
      const out: Float32Array[] = new Array(rows);
      for (let r = 0; r < rows; r++) out[r] = values.subarray(r * dimensions, (r + 1) * dimensions);
      p.resolve(out);
    });
    const stop = (why: string) => {
      this.stopped ??= why;
      this.onClosed?.();
      const error = new UnavailableError(`the encoder thread of this model stopped (${why}); retry`, 100);
      for (const p of this.pending.values()) p.reject(error);
      this.pending.clear();
    };
    worker.on('error', (err) => stop(String(err)));
    worker.on('exit', (code) => stop(`worker exited with code ${code}`));
  }

  /** Starts the worker and loads the model there; rejects with the worker's reason when it cannot. */
  static async create(init: EncoderInit): Promise<ThreadEncoder> {
    const worker = startWorker(new URL('./encoder-thread.js', import.meta.url), init);
    let onMessage!: (r: EncoderReady) => void;
    let onError!: (err: Error) => void;
    let onExit!: (code: number) => void;
    const ready = await new Promise<EncoderReady>((resolve, reject) => {
      onMessage = resolve;
      onError = reject;
      onExit = (code) => reject(new Error(`encoder worker exited with code ${code} before it was ready`));
      worker.once('message', onMessage).once('error', onError).once('exit', onExit);
    }).finally(() => worker.off('message', onMessage).off('error', onError).off('exit', onExit));
    if (!ready.ready) {
      await worker.terminate();
      if (ready.violations) throw new FailedPreconditionError(ready.error, ready.violations, { reason: ready.reason });
      throw new Error(ready.error);
    }
    return new ThreadEncoder(worker, ready.dimensions, ready.output, ready.pooledByModel, ready.executionProvider, ready.typed);
  }

  /** One pooled vector per row, as OnnxEncoder.run answers (views of one buffer). */
  run(batch: readonly EncoderRow[]): Promise<Float32Array[]> {
    if (this.stopped) return Promise.reject(new UnavailableError(`the encoder thread of this model stopped (${this.stopped}); retry`, 100));
    const id = this.nextId++;
    const packed = packBatch(batch, this.typed);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ op: 'run', id, ...packed } satisfies EncoderRequest, [packed.data.buffer as ArrayBuffer]);
    });
  }

  /** Releases the session (after the batches already posted) and ends the thread. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (!this.stopped) {
        const closed = new Promise<void>((resolve) => (this.onClosed = resolve));
        this.worker.postMessage({ op: 'close' } satisfies EncoderRequest);
        await closed;
      }
      this.stopped ??= 'closed';
      await this.worker.terminate();
    })();
    return this.closing;
  }
}
