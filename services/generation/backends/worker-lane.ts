// A lane on a worker thread: a LaneLoop (domain/lane.ts) over an OnnxDecoder with a session of its own, run
// in a worker (lane-worker.ts). When a model has several lanes, each is one of these: their steps run side by
// side on several CPU cores (onnxruntime's own intra-op threads do not pay off for a small model's many small
// operators, but whole sub-batches side by side do), and each lane samples and starts its next step without
// waiting for the main thread, which stays free for the callers' streams. Caches live in the worker.
import type { Worker } from 'node:worker_threads';
import { FailedPreconditionError, UnavailableError } from '../../runtime/errors.js';
import type { SessionSettings } from '../../runtime/models/onnx-session.js';
import { startReadyWorker } from '../../runtime/workers/start-worker.js';
import { WorkerHost } from '../../runtime/workers/worker-host.js';
import type { DecoderShape } from '../domain/decoder.js';
import type { Lane, LaneEvent, LaneJoin, LaneOptions } from '../domain/lane.js';
import type { DecoderConfigHints, DecoderGraphMode } from './onnx-decoder.js';

/** What the worker is started with. */
export interface LaneInit {
  model: string;
  /** How the decoder graph is amended (OnnxDecoder's `graph` option). */
  graph?: DecoderGraphMode;
  settings: SessionSettings;
  hints: DecoderConfigHints;
  options: LaneOptions;
  /** Added to the thread's niceness, so that the main thread goes first when both want a core. */
  niceness: number;
}

/** Messages to the worker. */
export type LaneMessage = { op: 'join'; sequence: LaneJoin } | { op: 'leave'; id: number } | { op: 'close' };

/** What the worker says when its lane is ready. */
export interface LaneReady {
  shape: DecoderShape;
  executionProvider: string;
  /** How far the decoder could amend its graph (see OnnxDecoder.graph). */
  graph: DecoderGraphMode;
  /** Why the thread's niceness could not be raised, if it could not. */
  nicenessRefused?: string;
}

/** Messages from the worker after it is ready. */
export type LaneReply = LaneEvent | { kind: 'closed' };

export class WorkerLane implements Lane {
  private sink: (event: LaneEvent) => void = () => undefined;
  /** Sequences joined and not reported gone: the ones to fail if the worker dies. */
  private readonly members = new Set<number>();
  private readonly host: WorkerHost;

  /**
   * When the worker dies, the sequences it held fail with UNAVAILABLE (their callers retry) and a new worker is
   * started in its place at once; the lane is not usable (the scheduler places sequences on the others) until
   * the new one is ready, or for good if it cannot start.
   */
  private constructor(
    worker: Worker,
    init: LaneInit,
    readonly shape: DecoderShape,
    readonly executionProvider: string,
    /** How far the lane's decoder could amend its graph. */
    readonly graph: DecoderGraphMode,
    /** Why the thread's niceness could not be raised, if it could not. */
    readonly nicenessRefused: string | undefined,
  ) {
    this.host = new WorkerHost(worker, () => WorkerLane.start(init), {
      message: (event) => {
        this.track(event as LaneEvent);
        this.sink(event as LaneEvent);
      },
      died: () => {
        const ids = [...this.members];
        this.members.clear();
        if (ids.length > 0) this.sink({ kind: 'failed', ids, error: this.unavailable() });
        this.host.restart().catch(() => undefined);
      },
      isClosedReply: (event) => (event as LaneReply).kind === 'closed',
    });
  }

  get usable(): boolean {
    return this.host.usable;
  }

  /** Starts the worker and its session; rejects with the worker's reason when the model cannot be loaded. */
  static async create(init: LaneInit): Promise<WorkerLane> {
    const { worker, value } = await WorkerLane.start(init);
    return new WorkerLane(worker, init, value.shape, value.executionProvider, value.graph, value.nicenessRefused);
  }

  private static start(init: LaneInit) {
    return startReadyWorker<LaneReady>(new URL('./lane-worker.js', import.meta.url), init, 'the decode lane worker').catch((err: unknown) => {
      throw err instanceof FailedPreconditionError ? err : new Error(`decode lane: ${(err as Error).message}`);
    });
  }

  listen(sink: (event: LaneEvent) => void): void {
    this.sink = sink;
  }

  join(sequence: LaneJoin): void {
    if (!this.host.usable) {
      // Reported on a later turn, as a working lane would.
      queueMicrotask(() => this.sink({ kind: 'failed', ids: [sequence.id], error: this.unavailable() }));
      return;
    }
    this.members.add(sequence.id);
    this.post({ op: 'join', sequence });
  }

  leave(id: number): void {
    if (this.host.usable) this.post({ op: 'leave', id });
  }

  close(): Promise<void> {
    return this.host.close({ op: 'close' } satisfies LaneMessage);
  }

  /** For tests: ends the worker as a crash would. */
  kill(): Promise<number> {
    return this.host.kill();
  }

  private post(message: LaneMessage): void {
    this.host.post(message);
  }

  /** Keeps `members` to the sequences the worker still holds. */
  private track(event: LaneEvent): void {
    switch (event.kind) {
      case 'prefill':
        if (event.sampled.finish !== undefined) this.members.delete(event.sampled.id);
        break;
      case 'step':
        for (const s of event.sampled) if (s.finish !== undefined) this.members.delete(s.id);
        break;
      case 'left':
        this.members.delete(event.id);
        break;
      case 'failed':
        for (const id of event.ids) this.members.delete(id);
        break;
    }
  }

  private unavailable(): UnavailableError {
    return new UnavailableError(`a decode lane of this model stopped (${this.host.why}); retry`, 100);
  }
}
