// A decode lane on a worker thread: the Decoder interface over an OnnxDecoder that runs in a worker
// (decoder-worker.ts) with a session of its own. The scheduler steps every lane's rows at once, so with one
// lane on the main thread and others here, a batch's steps use several CPU cores: onnxruntime's own
// intra-op threads do not pay off for a small model's many small operators, but whole sub-batches side by
// side do. Caches live in the worker; the main thread holds their numbers and lengths.
import type { Worker } from 'node:worker_threads';
import { UnavailableError } from '../../runtime/errors.js';
import type { SessionSettings } from '../../runtime/models/onnx-session.js';
import { startWorker } from '../../runtime/workers/start-worker.js';
import type { BatchEntry, Decoder, DecoderShape, SequenceCache } from '../domain/decoder.js';
import type { DecoderConfigHints } from './onnx-decoder.js';

/** What the worker is started with. */
export interface LaneInit {
  model: string;
  settings: SessionSettings;
  hints: DecoderConfigHints;
}

/** A call to the worker; its reply carries the same seq. */
type LaneCall = { op: 'prefill'; tokens: number[] } | { op: 'decode'; ids: number[]; tokens: number[] } | { op: 'close' };
export type LaneRequest = LaneCall & { seq: number };
/** Every message the worker takes: calls, and releases, which have no reply. */
export type LaneMessage = LaneRequest | { op: 'release'; id: number };

export interface LaneReply {
  seq: number;
  /** The cache made by a prefill. */
  id?: number;
  /** A new, larger logits buffer (the old one is no longer written). */
  shared?: SharedArrayBuffer;
  error?: string;
}

type Ready = { ready: true; shape: DecoderShape; executionProvider: string } | { ready: false; error: string };

class RemoteCache implements SequenceCache {
  released = false;
  constructor(
    readonly id: number,
    public length: number,
  ) {}
}

export class WorkerDecoder implements Decoder {
  private readonly pending = new Map<number, { resolve(r: LaneReply): void; reject(e: unknown): void }>();
  private nextSeq = 1;
  private logits: Float32Array = new Float32Array(0);
  /** Why the lane can no longer be used (worker gone or closed). */
  private stopped: string | undefined;

  private constructor(
    private readonly worker: Worker,
    readonly shape: DecoderShape,
    readonly executionProvider: string,
  ) {
    worker.on('message', (r: LaneReply) => {
      const p = this.pending.get(r.seq);
      if (!p) return;
      this.pending.delete(r.seq);
      if (r.shared) this.logits = new Float32Array(r.shared);
      if (r.error !== undefined) p.reject(new Error(r.error));
      else p.resolve(r);
    });
    const stop = (why: string) => {
      this.stopped ??= why;
      for (const p of this.pending.values()) p.reject(new UnavailableError(`a decode lane of this model stopped (${why}); retry`, 100));
      this.pending.clear();
    };
    worker.on('error', (err) => stop(String(err)));
    worker.on('exit', (code) => stop(`worker exited with code ${code}`));
  }

  get usable(): boolean {
    return this.stopped === undefined;
  }

  /** Starts the worker and its session; rejects with the worker's reason when the model cannot be loaded. */
  static async create(init: LaneInit): Promise<WorkerDecoder> {
    const worker = startWorker(new URL('./decoder-worker.js', import.meta.url), init);
    let onMessage!: (r: Ready) => void;
    let onError!: (err: Error) => void;
    let onExit!: (code: number) => void;
    const ready = await new Promise<Ready>((resolve, reject) => {
      onMessage = resolve;
      onError = reject;
      onExit = (code) => reject(new Error(`decode lane worker exited with code ${code} before it was ready`));
      worker.once('message', onMessage).once('error', onError).once('exit', onExit);
    }).finally(() => worker.off('message', onMessage).off('error', onError).off('exit', onExit));
    if (!ready.ready) {
      await worker.terminate();
      throw new Error(`decode lane: ${ready.error}`);
    }
    return new WorkerDecoder(worker, ready.shape, ready.executionProvider);
  }

  async prefill(tokens: readonly number[]): Promise<{ cache: SequenceCache; logits: Float32Array; offset: number }> {
    const r = await this.call({ op: 'prefill', tokens: [...tokens] });
    return { cache: new RemoteCache(r.id!, tokens.length), logits: this.logits.subarray(0, this.shape.vocabSize), offset: 0 };
  }

  async decode(batch: readonly BatchEntry[]): Promise<Float32Array> {
    const caches = batch.map((e) => e.cache as RemoteCache);
    await this.call({ op: 'decode', ids: caches.map((c) => c.id), tokens: batch.map((e) => e.token) });
    for (const c of caches) c.length++;
    return this.logits.subarray(0, batch.length * this.shape.vocabSize);
  }

  release(cache: SequenceCache): void {
    const c = cache as RemoteCache;
    if (c.released || this.stopped) return;
    c.released = true;
    this.worker.postMessage({ op: 'release', id: c.id } satisfies LaneMessage);
  }

  async close(): Promise<void> {
    if (this.stopped) return;
    try {
      await this.call({ op: 'close' });
    } finally {
      this.stopped = 'closed';
      await this.worker.terminate();
    }
  }

  private call(request: LaneCall): Promise<LaneReply> {
    if (this.stopped) return Promise.reject(new UnavailableError(`a decode lane of this model stopped (${this.stopped}); retry`, 100));
    const seq = this.nextSeq++;
    return new Promise<LaneReply>((resolve, reject) => {
      this.pending.set(seq, { resolve, reject });
      this.worker.postMessage({ ...request, seq } satisfies LaneRequest);
    });
  }
}
