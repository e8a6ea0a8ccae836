// An encoder on a worker thread: the same OnnxEncoder, with its own onnxruntime session, in a worker
// (encoder-thread.ts). onnxruntime-node runs session.run synchronously on the calling thread, so on the event
// loop every batch would stop the service's gRPC work for as long as it runs — health checks, new requests,
// cancellations, answers — and the service would use one core. On a thread of its own the batch runs while
// the event loop decodes, tokenizes and answers, and the batcher's next batch is ready when it ends.
// A batch crosses as one Int32Array of token ids, its vectors come back as one Float32Array, both moved, not
// copied.
import { replayWarnings, type SessionLog, type SessionSettings, type SessionWarning } from '../../runtime/models/onnx-session.js';
import { WorkerCalls } from '../../runtime/workers/worker-calls.js';
import type { EncoderOptions, EncoderRow } from './onnx-encoder.js';

/** What the worker is started with. */
export interface EncoderInit {
  file: string;
  settings: SessionSettings;
  options: EncoderOptions;
}

/** What the worker says when its encoder is ready. */
export interface EncoderInfo {
  dimensions: number;
  output: string;
  pooledByModel: boolean;
  executionProvider: string;
  /** The model reads token_type_ids, so they cross too. */
  typed: boolean;
  /** What creating the session warned about (providers that failed, the fallback), for the main thread's log. */
  warnings: SessionWarning[];
}

/**
 * A batch as it crosses, in one buffer: `rows` row ends, then every row's ids one after another, then (when the
 * model reads token_type_ids) the type ids laid out like the ids.
 */
export interface PackedBatch {
  rows: number;
  typed: boolean;
  data: Int32Array;
}

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
  readonly dimensions: number;
  readonly output: string;
  readonly pooledByModel: boolean;
  readonly executionProvider: string;

  private constructor(private readonly thread: WorkerCalls<EncoderInfo>) {
    ({ dimensions: this.dimensions, output: this.output, pooledByModel: this.pooledByModel, executionProvider: this.executionProvider } = thread.info);
  }

  /**
   * Starts the worker and loads the model there (what that warned about goes to log); rejects with the worker's
   * reason when it cannot.
   */
  static async create(init: EncoderInit, log?: SessionLog): Promise<ThreadEncoder> {
    const what = `the encoder thread of model "${init.options.name}" version ${init.options.version}`;
    const thread = await WorkerCalls.start<EncoderInfo>(new URL('./encoder-thread.js', import.meta.url), init, what);
    replayWarnings(thread.info.warnings, log);
    return new ThreadEncoder(thread);
  }

  /** One pooled vector per row, as OnnxEncoder.run answers (views of one buffer). */
  async run(batch: readonly EncoderRow[]): Promise<Float32Array[]> {
    const packed = packBatch(batch, this.thread.info.typed);
    const values = await this.thread.call<Float32Array>(packed, [packed.data.buffer as ArrayBuffer]);
    const rows = values.length / this.dimensions;
    const out: Float32Array[] = new Array(rows);
    for (let r = 0; r < rows; r++) out[r] = values.subarray(r * this.dimensions, (r + 1) * this.dimensions);
    return out;
  }

  /** Releases the session (after the batches already sent) and ends the thread. */
  close(): Promise<void> {
    return this.thread.close();
  }

  /** For tests: ends the thread as a crash would. */
  kill(): Promise<number> {
    return this.thread.kill();
  }
}
