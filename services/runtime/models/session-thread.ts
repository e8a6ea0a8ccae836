// onnxruntime sessions on worker threads, behind the same few members of InferenceSession the services use.
// onnxruntime-node runs session.run synchronously on the thread that calls it: on the event loop a run stops
// everything else the process does (new calls, answers, health checks, cancellations) for as long as it
// takes — 100+ ms for a text detector on a page — and two "concurrent" runs take turns. Here each thread
// holds a session of its own; a run goes to the thread with the fewest runs waiting, so runs use as many cores
// as there are threads and the event loop stays free. Tensors cross as copies, which cost far less than the
// run, unless the caller hands its inputs over (then their buffers move); outputs come back as copies.
import * as ort from 'onnxruntime-node';
import { startAll } from '../workers/start-worker.js';
import { WorkerCalls } from '../workers/worker-calls.js';
import { createOnnxSession, replayWarnings, type SessionLog, type SessionSettings, type SessionWarning } from './onnx-session.js';

/** The members of ort.InferenceSession the services use, on the event loop or on threads. */
export interface SessionLike {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly inputMetadata: readonly ort.InferenceSession.ValueMetadata[];
  readonly outputMetadata: readonly ort.InferenceSession.ValueMetadata[];
  /**
   * handOver: the caller will not touch the feeds' data again, so a session on a thread may move their buffers
   * there instead of copying them (the arrays are then empty on this side).
   */
  run(feeds: Record<string, ort.Tensor>, fetches: readonly string[], handOver?: boolean): Promise<Record<string, ort.Tensor>>;
  release(): Promise<void>;
}

/** A session on the calling thread as a SessionLike. */
function onLoop(session: ort.InferenceSession): SessionLike {
  return {
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    inputMetadata: session.inputMetadata,
    outputMetadata: session.outputMetadata,
    run: (feeds, fetches) => session.run(feeds, fetches),
    release: () => session.release(),
  };
}

/** What the worker is started with. */
export interface SessionThreadInit {
  model: string | Uint8Array;
  settings: SessionSettings;
}

/** What a worker says when its session is ready. */
export interface SessionThreadInfo {
  inputNames: string[];
  outputNames: string[];
  inputMetadata: ort.InferenceSession.ValueMetadata[];
  outputMetadata: ort.InferenceSession.ValueMetadata[];
  executionProvider: string;
  /** What creating the session warned about (providers that failed, the fallback), for the main thread's log. */
  warnings: SessionWarning[];
}

/** A tensor as it crosses between threads. */
export interface PlainTensor {
  type: ort.Tensor.Type;
  data: ort.Tensor.DataType;
  dims: readonly number[];
}

export interface RunCall {
  feeds: Record<string, PlainTensor>;
  fetches: readonly string[];
}

export class ThreadSession implements SessionLike {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly inputMetadata: readonly ort.InferenceSession.ValueMetadata[];
  readonly outputMetadata: readonly ort.InferenceSession.ValueMetadata[];
  readonly executionProvider: string;

  private constructor(private readonly threads: WorkerCalls<SessionThreadInfo>[]) {
    const info = threads[0]!.info;
    this.inputNames = info.inputNames;
    this.outputNames = info.outputNames;
    this.inputMetadata = info.inputMetadata;
    this.outputMetadata = info.outputMetadata;
    this.executionProvider = info.executionProvider;
  }

  /**
   * Starts `threads` workers, each loading the model with the providers in order (falling back as
   * createOnnxSession does; the fallback is logged here). Rejects with the first worker's reason.
   */
  static async create(model: string | Uint8Array, settings: SessionSettings, threads: number, log?: SessionLog): Promise<ThreadSession> {
    const started = await startAll(Math.max(1, threads), () =>
      WorkerCalls.start<SessionThreadInfo>(new URL('./session-worker.js', import.meta.url), { model, settings } satisfies SessionThreadInit, 'an onnxruntime session thread'),
    );
    // Every thread tried the same providers; one thread's warnings say it.
    replayWarnings(started[0]!.info.warnings, log);
    return new ThreadSession(started);
  }

  /** Runs on the thread with the fewest runs in flight. */
  async run(feeds: Record<string, ort.Tensor>, fetches: readonly string[], handOver = false): Promise<Record<string, ort.Tensor>> {
    let thread = this.threads[0]!;
    for (const t of this.threads) if (t.usable && (t.inFlight < thread.inFlight || !thread.usable)) thread = t;
    const plain: Record<string, PlainTensor> = {};
    const transfer: ArrayBuffer[] = [];
    for (const [name, t] of Object.entries(feeds)) {
      plain[name] = { type: t.type, data: t.data, dims: t.dims };
      // Only a buffer the array spans whole is moved: moving a larger one would take its other users' data too.
      const data = t.data as ArrayBufferView;
      if (handOver && ArrayBuffer.isView(data) && data.byteOffset === 0 && data.byteLength === data.buffer.byteLength && data.buffer instanceof ArrayBuffer) transfer.push(data.buffer);
    }
    const out = await thread.call<Record<string, PlainTensor>>({ feeds: plain, fetches } satisfies RunCall, transfer);
    const tensors: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(out)) tensors[name] = new ort.Tensor(t.type, t.data as never, t.dims);
    return tensors;
  }

  async release(): Promise<void> {
    await Promise.all(this.threads.map((t) => t.close()));
  }
}

/**
 * A session on the calling thread (threads 0: runs block the event loop while they last) or on `threads`
 * worker threads, a session each.
 */
export async function openSession(model: string | Uint8Array, settings: SessionSettings, threads: number, log?: SessionLog): Promise<{ session: SessionLike; executionProvider: string }> {
  if (threads <= 0) {
    const { session, executionProvider } = await createOnnxSession(model, settings, log);
    return { session: onLoop(session), executionProvider };
  }
  const session = await ThreadSession.create(model, settings, threads, log);
  return { session, executionProvider: session.executionProvider };
}
