// Continuous batching for one loaded model, on the main thread. Requests wait in one bounded queue; a sequence
// is admitted while the batch has room (by count and by reserved key/value tokens) and placed on the lane
// holding the fewest sequences, where it stays. Lanes (domain/lane.ts) prefill, step and sample on their own;
// this side turns each sampled token into text, matches stop strings, streams chunks to the caller, keeps
// the timings, metrics and spans, and asks a lane to drop a sequence that a stop string ended or whose caller
// went away. A sequence holds its place in the batch until its lane reports it gone; then the next waiting
// one is admitted.
//
// Cancellation: a request's AbortSignal ends its stream at once (finish reason cancelled) and asks its lane
// to drop it, which happens before the lane's next step. The waiting queue is bounded: a full queue rejects
// at once with OverloadedError and a retry hint taken from the batch's progress.
import { context, trace, type Context, type Span } from '@opentelemetry/api';
import { abortReason, OverloadedError, UnavailableError } from '../../runtime/errors.js';
import type { Logger } from '../../runtime/logger.js';
import { Attr, tracer } from '../../runtime/telemetry/tracing.js';
import { ChunkQueue, type Mergeable } from './chunk-queue.js';
import type { DecoderShape } from './decoder.js';
import type { Lane, LaneEvent, SampledToken } from './lane.js';
import type { SamplingParameters } from './params.js';
import { StopMatcher } from './stop-matcher.js';
import type { TextStream } from './text-stream.js';
import { FinishReason, type EngineStats, type GenerationChunk, type TokenLogprob } from './types.js';

export interface SchedulerOptions {
  /** Sequences decoded together in one step. */
  maxBatchSize: number;
  /** Key/value cache tokens the running sequences may reserve together (prompt + max_new_tokens each). */
  maxKvTokens: number;
  /** Requests that may wait for a place in the batch; more are rejected with OverloadedError. */
  maxQueue: number;
  /** Span and log labels. */
  model: string;
  version: number;
  log: Logger;
  metrics?: EngineMetrics;
}

/** What the scheduler reports; main.ts binds it to OpenTelemetry instruments. */
export interface EngineMetrics {
  queueTime(ms: number): void;
  timeToFirstToken(ms: number): void;
  interTokenLatency(ms: number): void;
  step(ms: number, batchSize: number): void;
  prefill(ms: number, tokens: number): void;
  outputTokens(n: number): void;
  finished(reason: FinishReason, tokensPerSecond: number | undefined): void;
  rejected(): void;
}

/** What the tokenizer contributes per sequence. */
export interface TokenText {
  textStream(): TextStream;
  tokenText(id: number): string;
}

export interface SequenceRequest {
  promptTokens: number[];
  params: SamplingParameters;
  signal: AbortSignal;
  /** performance.now() when the request arrived (timings start there). */
  arrivedAt?: number;
}

const merge: Mergeable<GenerationChunk> = {
  merge: (a, b) => ({ text: a.text + b.text, tokenIds: a.tokenIds.concat(b.tokenIds), logprobs: a.logprobs.concat(b.logprobs), finish: b.finish }),
  isFinal: (c) => c.finish !== undefined,
};

class Sequence {
  /** The lane it was placed on, or -1 while it waits. */
  lane = -1;
  generated = 0;
  stepsRun = 0;
  admittedAt = 0;
  firstTokenAt = 0;
  lastTokenAt = 0;
  inferenceMs = 0;
  /** Its stream has ended (the lane may still hold its row until it reports it gone). */
  done = false;
  cancelled = false;
  readonly text: TextStream;
  readonly stop: StopMatcher;
  readonly out = new ChunkQueue<GenerationChunk>(merge);
  readonly reserve: number;
  readonly parent: Context;
  queueSpan: Span | undefined;
  decodeSpan: Span | undefined;
  maxBatch = 0;
  lastBatch = 0;
  batchSum = 0;
  onAbort: (() => void) | undefined;

  constructor(
    readonly id: number,
    readonly request: SequenceRequest,
    readonly arrivedAt: number,
    tokens: TokenText,
  ) {
    this.text = tokens.textStream();
    this.stop = new StopMatcher(request.params.stop);
    this.reserve = request.promptTokens.length + request.params.maxNewTokens;
    this.parent = context.active();
  }
}

/** This side's view of a lane: the sequences on it (until it reports them gone) and its step times. */
class LaneSlot {
  readonly members = new Map<number, Sequence>();
  steps = 0;
  stepMsAverage = 0;
  constructor(readonly lane: Lane) {}
}

export class Scheduler {
  private readonly waiting: Sequence[] = [];
  private readonly slots: LaneSlot[];
  private nextId = 1;
  private kvReserved = 0;
  private largestBatch = 0;
  private mostLanesInStep = 0;
  private cancelledCount = 0;
  private maxStepsAfterCancel = 0;
  private closed = false;
  private readonly shape: DecoderShape;

  /** Sequences in the batch: every lane's, from admission until the lane reports them gone. */
  private get running(): number {
    let n = 0;
    for (const slot of this.slots) n += slot.members.size;
    return n;
  }

  /** lanes: the model's lanes, all of the same model; a sequence alone runs on the first. */
  constructor(
    lanes: readonly Lane[],
    private readonly tokens: TokenText,
    private readonly options: SchedulerOptions,
  ) {
    if (lanes.length === 0) throw new Error('a scheduler needs at least one lane');
    this.shape = lanes[0]!.shape;
    this.slots = lanes.map((lane, i) => {
      const slot = new LaneSlot(lane);
      lane.listen((event) => this.onLaneEvent(i, event));
      return slot;
    });
  }

  stats(): EngineStats {
    return {
      running: this.running,
      waiting: this.waiting.length,
      steps: this.slots.reduce((n, s) => n + s.steps, 0),
      largestBatch: this.largestBatch,
      kvTokensReserved: this.kvReserved,
      cancelled: this.cancelledCount,
      maxStepsAfterCancel: this.maxStepsAfterCancel,
      lanes: this.slots.length,
      mostLanesInStep: this.mostLanesInStep,
    };
  }

  /**
   * Queues a sequence and returns its chunks. Throws OverloadedError when the queue is full. The request's
   * prompt plus max_new_tokens must fit maxKvTokens (the engine checks that before).
   */
  submit(request: SequenceRequest): AsyncIterable<GenerationChunk> {
    if (this.closed) throw new UnavailableError('the model is being unloaded; retry', 100);
    if (request.signal.aborted) throw abortReason(request.signal);
    if (this.waiting.length >= this.options.maxQueue) {
      this.options.metrics?.rejected();
      throw new OverloadedError(
        `the generation queue of model "${this.options.model}" is full (${this.options.maxQueue} waiting, ${this.running} running); retry later`,
        this.retryHintMs(),
        { metadata: { model: this.options.model, waiting: String(this.waiting.length), running: String(this.running) } },
      );
    }
    const seq = new Sequence(this.nextId++, request, request.arrivedAt ?? performance.now(), this.tokens);
    seq.queueSpan = tracer().startSpan('generation.queue', { attributes: { [Attr.model]: this.options.model, [Attr.modelVersion]: this.options.version, 'maas.queue_depth': this.waiting.length } }, seq.parent);
    seq.onAbort = () => {
      if (seq.done) return;
      const i = this.waiting.indexOf(seq);
      if (i >= 0) this.waiting.splice(i, 1);
      this.end(seq, FinishReason.CANCELLED);
    };
    request.signal.addEventListener('abort', seq.onAbort, { once: true });
    this.waiting.push(seq);
    this.admit();
    return seq.out;
  }

  /** Stops admitting: waiting and running sequences end with UnavailableError (the lanes are closed after). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const err = new UnavailableError('the model was unloaded while the request ran; retry', 100);
    for (const seq of [...this.waiting, ...this.slots.flatMap((s) => [...s.members.values()])]) this.fail(seq, err);
    this.waiting.length = 0;
  }

  /** Moves waiting sequences into the batch while it has room, each onto the quietest lane. */
  private admit(): void {
    while (this.waiting.length > 0 && !this.closed) {
      if (this.running >= this.options.maxBatchSize) return;
      const seq = this.waiting[0]!;
      if (this.running > 0 && this.kvReserved + seq.reserve > this.options.maxKvTokens) return;
      this.waiting.shift();
      const index = this.quietestLane();
      const slot = this.slots[index]!;
      seq.lane = index;
      // From here until its lane lets it go, it holds a place in the batch and `reserve` tokens of the budget.
      slot.members.set(seq.id, seq);
      this.kvReserved += seq.reserve;
      seq.admittedAt = performance.now();
      this.options.metrics?.queueTime(seq.admittedAt - seq.arrivedAt);
      seq.queueSpan?.end();
      slot.lane.join({ id: seq.id, promptTokens: seq.request.promptTokens, params: seq.request.params });
    }
  }

  /** The usable lane holding the fewest sequences (the first of equals, so one sequence alone runs on the first). */
  private quietestLane(): number {
    let best = -1;
    for (let i = 0; i < this.slots.length; i++) {
      const slot = this.slots[i]!;
      if (slot.lane.usable === false) continue;
      if (best < 0 || slot.members.size < this.slots[best]!.members.size) best = i;
    }
    // No lane usable: the first takes it, and fails it with its reason.
    return Math.max(0, best);
  }

  private onLaneEvent(index: number, event: LaneEvent): void {
    const slot = this.slots[index]!;
    switch (event.kind) {
      case 'prefill': {
        const seq = slot.members.get(event.sampled.id);
        if (!seq) return;
        seq.inferenceMs += event.ms;
        this.options.metrics?.prefill(event.ms, seq.request.promptTokens.length);
        if (!seq.done) {
          const now = Date.now();
          const attributes = { [Attr.model]: this.options.model, [Attr.modelVersion]: this.options.version };
          tracer()
            .startSpan('generation.prefill', { startTime: now - event.ms, attributes: { ...attributes, [Attr.inputTokens]: seq.request.promptTokens.length } }, seq.parent)
            .end(now);
          seq.decodeSpan = tracer().startSpan('generation.decode', { attributes }, seq.parent);
        }
        this.accept(slot, seq, event.sampled);
        return;
      }
      case 'step': {
        slot.steps++;
        slot.stepMsAverage = slot.stepMsAverage === 0 ? event.ms : slot.stepMsAverage * 0.9 + event.ms * 0.1;
        this.options.metrics?.step(event.ms, event.rows);
        const batch = this.running;
        if (batch > this.largestBatch) this.largestBatch = batch;
        let stepping = 0;
        for (const s of this.slots) if (s.members.size > 0) stepping++;
        if (stepping > this.mostLanesInStep) this.mostLanesInStep = stepping;
        for (const sampled of event.sampled) {
          const seq = slot.members.get(sampled.id);
          if (!seq) continue;
          seq.inferenceMs += event.ms;
          seq.stepsRun++;
          seq.batchSum += batch;
          if (batch > seq.maxBatch) seq.maxBatch = batch;
          if (batch !== seq.lastBatch && !seq.done) {
            // One event per change of the batch around this sequence, not one per step.
            seq.decodeSpan?.addEvent('maas.batch', { [Attr.batchSize]: batch, 'maas.decode_step': seq.stepsRun });
            seq.lastBatch = batch;
          }
          this.accept(slot, seq, sampled);
        }
        return;
      }
      case 'left': {
        const seq = slot.members.get(event.id);
        if (seq?.cancelled) this.maxStepsAfterCancel = Math.max(this.maxStepsAfterCancel, event.stepsAfter);
        if (seq) this.gone(slot, seq);
        return;
      }
      case 'failed': {
        this.options.log.error({ err: event.error, model: this.options.model, lane: index, sequences: event.ids.length }, 'decoding failed');
        for (const id of event.ids) {
          const seq = slot.members.get(id);
          if (!seq) continue;
          this.fail(seq, event.error);
          this.gone(slot, seq);
        }
        return;
      }
    }
  }

  /** A sampled token of `seq`: text, stop strings, the chunk; ends the sequence when it is done. */
  private accept(slot: LaneSlot, seq: Sequence, sampled: SampledToken): void {
    if (seq.done) {
      // Its stream already ended (cancelled, or a stop string matched a step ago): the token is not wanted.
      if (sampled.finish !== undefined) this.gone(slot, seq);
      return;
    }
    const token = sampled.token;
    const now = performance.now();
    if (seq.generated === 0) {
      seq.firstTokenAt = now;
      this.options.metrics?.timeToFirstToken(now - seq.arrivedAt);
      seq.decodeSpan?.addEvent('first_token');
    } else this.options.metrics?.interTokenLatency(now - seq.lastTokenAt);
    seq.lastTokenAt = now;
    seq.generated++;
    this.options.metrics?.outputTokens(1);

    let logprobs: TokenLogprob[] = [];
    if (sampled.logprob !== undefined) {
      const ids = sampled.topIds ?? [];
      const top = ids.map((id, j) => ({ tokenId: id, text: this.tokens.tokenText(id), logprob: sampled.topLogprobs![j]! }));
      logprobs = [{ tokenId: token, text: this.tokens.tokenText(token), logprob: sampled.logprob, top }];
    }

    let reason: FinishReason | undefined;
    let text = '';
    if (sampled.finish === FinishReason.EOS) reason = FinishReason.EOS;
    else {
      text = seq.stop.push(seq.text.push(token));
      reason = seq.stop.matched !== undefined ? FinishReason.STOP : sampled.finish;
    }
    if (reason === undefined) {
      seq.out.push({ text, tokenIds: [token], logprobs });
      return;
    }
    if (reason !== FinishReason.STOP) text += seq.stop.push(seq.text.flush()) + seq.stop.flush();
    // The lane has let go of a sequence it ended itself; one a stop string ended, end() asks it to drop.
    if (sampled.finish !== undefined) this.gone(slot, seq);
    this.end(seq, reason, { text, tokenIds: [token], logprobs });
  }

  /**
   * Ends a sequence's stream: final chunk, spans closed. A lane still holding its row is asked to drop it;
   * its place in the batch frees when the lane reports it gone.
   */
  private end(seq: Sequence, reason: FinishReason, last: { text: string; tokenIds: number[]; logprobs: TokenLogprob[] } = { text: '', tokenIds: [], logprobs: [] }): void {
    if (seq.done) return;
    seq.done = true;
    this.closeSpans(seq);
    const now = performance.now();
    if (reason === FinishReason.CANCELLED) {
      this.cancelledCount++;
      seq.cancelled = true;
    }
    const decodeMs = seq.lastTokenAt - seq.firstTokenAt;
    const tps = seq.generated > 1 && decodeMs > 0 ? ((seq.generated - 1) * 1000) / decodeMs : undefined;
    this.options.metrics?.finished(reason, tps);
    const usage = { inputTokens: seq.request.promptTokens.length, outputTokens: seq.generated };
    if (seq.decodeSpan) {
      seq.decodeSpan.setAttributes({
        'maas.decode_steps': seq.stepsRun,
        [Attr.batchSize]: seq.maxBatch,
        'maas.batch_size_mean': seq.stepsRun > 0 ? seq.batchSum / seq.stepsRun : 0,
        [Attr.outputTokens]: seq.generated,
        'maas.finish_reason': reason,
      });
      seq.decodeSpan.end();
    }
    seq.out.push({
      ...last,
      finish: {
        reason,
        usage,
        stopSequence: seq.stop.matched,
        seed: seq.request.params.seed,
        steps: seq.stepsRun,
        timings: {
          queueMs: (seq.admittedAt || now) - seq.arrivedAt,
          inferenceMs: seq.inferenceMs,
          timeToFirstTokenMs: seq.firstTokenAt ? seq.firstTokenAt - seq.arrivedAt : 0,
          totalMs: now - seq.arrivedAt,
        },
      },
    });
    if (seq.lane >= 0 && this.slots[seq.lane]!.members.has(seq.id)) this.slots[seq.lane]!.lane.leave(seq.id);
  }

  private fail(seq: Sequence, err: unknown): void {
    if (seq.done) return;
    seq.done = true;
    this.closeSpans(seq);
    seq.decodeSpan?.end();
    seq.out.fail(err);
  }

  private closeSpans(seq: Sequence): void {
    seq.queueSpan?.end();
    if (seq.onAbort) seq.request.signal.removeEventListener('abort', seq.onAbort);
  }

  /** The lane no longer holds the sequence: its place in the batch and its key/value budget are free. */
  private gone(slot: LaneSlot, seq: Sequence): void {
    if (!slot.members.delete(seq.id)) return;
    this.kvReserved -= seq.reserve;
    this.admit();
  }

  /** How long until a place in the batch is likely to free up. */
  private retryHintMs(): number {
    const step = Math.max(...this.slots.map((s) => s.stepMsAverage)) || 20;
    let soonest = Infinity;
    for (const slot of this.slots) for (const s of slot.members.values()) soonest = Math.min(soonest, s.request.params.maxNewTokens - s.generated);
    const estimate = Number.isFinite(soonest) ? soonest * step : step * 10;
    return Math.min(30_000, Math.max(50, estimate));
  }
}

/** The span of the active context (handlers annotate it). */
export function activeSpan(): Span | undefined {
  return trace.getActiveSpan();
}
