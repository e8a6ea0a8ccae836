// Continuous batching for one loaded model: one loop owns the waiting queue and the running batch.
// Each turn it drops cancelled sequences, admits waiting ones while the batch has room (by count and by
// reserved key/value tokens) — prefilling each alone — then runs one decode step for the whole batch and
// samples every row. Finished sequences leave at once; new ones join at the next step boundary.
//
// Lanes: the model may have several decoders (one on the main thread, the others on worker threads, each
// with its own session). A sequence is placed on the lane with the fewest running sequences when it is
// admitted and stays there; a step runs every lane's rows at the same time, so a batch uses several cores.
//
// Cancellation: a request's AbortSignal marks its sequence; the loop removes it before the next step (a step
// already running finishes, its row is discarded). The waiting queue is bounded: a full queue rejects at once
// with OverloadedError and a retry hint taken from the batch's progress.
import { context, trace, type Context, type Span } from '@opentelemetry/api';
import { abortReason, OverloadedError, UnavailableError } from '../../runtime/errors.js';
import type { Logger } from '../../runtime/logger.js';
import { Attr, tracer } from '../../runtime/telemetry/tracing.js';
import { ChunkQueue, type Mergeable } from './chunk-queue.js';
import type { Decoder, DecoderShape, SequenceCache } from './decoder.js';
import type { SamplingParameters } from './params.js';
import { Prng } from './prng.js';
import { needsPenalties, PenaltyState, Sampler } from './sampler.js';
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
  /** Largest top-n for log probabilities (sizes the sampler's buffers). */
  maxLogprobs: number;
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
  eosIds: ReadonlySet<number>;
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
  cache: SequenceCache | undefined;
  /** The decoder (lane) holding its cache. */
  lane = 0;
  lastToken = 0;
  generated = 0;
  stepsRun = 0;
  admittedAt = 0;
  firstTokenAt = 0;
  lastTokenAt = 0;
  inferenceMs = 0;
  cancelledAtStep = -1;
  done = false;
  /** Holds `reserve` tokens of the key/value budget (from admission until it ends). */
  reserved = false;
  readonly rng: Prng;
  readonly penalties: PenaltyState | undefined;
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
    readonly request: SequenceRequest,
    readonly arrivedAt: number,
    tokens: TokenText,
    vocabSize: number,
  ) {
    const p = request.params;
    this.rng = new Prng(p.seed);
    this.penalties = needsPenalties(p) ? new PenaltyState(vocabSize, request.promptTokens.length + p.maxNewTokens) : undefined;
    this.penalties?.addPrompt(request.promptTokens);
    this.text = tokens.textStream();
    this.stop = new StopMatcher(p.stop);
    this.reserve = request.promptTokens.length + p.maxNewTokens;
    this.parent = context.active();
  }
}

export class Scheduler {
  private readonly waiting: Sequence[] = [];
  private running: Sequence[] = [];
  private readonly sampler: Sampler;
  private kvReserved = 0;
  private steps = 0;
  private largestBatch = 0;
  private mostLanesInStep = 0;
  private stepMsAverage = 0;
  private cancelledCount = 0;
  private maxStepsAfterCancel = 0;
  private wake: (() => void) | undefined;
  private closed = false;
  private readonly loopDone: Promise<void>;
  private readonly shape: DecoderShape;

  /** decoders: the lanes, all of the same model (the first on this thread, for one sequence alone). */
  constructor(
    private readonly decoders: readonly Decoder[],
    private readonly tokens: TokenText,
    private readonly options: SchedulerOptions,
  ) {
    if (decoders.length === 0) throw new Error('a scheduler needs at least one decoder');
    this.shape = decoders[0]!.shape;
    this.sampler = new Sampler(this.shape.vocabSize, options.maxLogprobs);
    this.loopDone = this.loop().catch((err) => options.log.error({ err }, 'generation loop stopped'));
  }

  stats(): EngineStats {
    return {
      running: this.running.length,
      waiting: this.waiting.length,
      steps: this.steps,
      largestBatch: this.largestBatch,
      kvTokensReserved: this.kvReserved,
      cancelled: this.cancelledCount,
      maxStepsAfterCancel: this.maxStepsAfterCancel,
      lanes: this.decoders.length,
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
        `the generation queue of model "${this.options.model}" is full (${this.options.maxQueue} waiting, ${this.running.length} running); retry later`,
        this.retryHintMs(),
        { metadata: { model: this.options.model, waiting: String(this.waiting.length), running: String(this.running.length) } },
      );
    }
    const seq = new Sequence(request, request.arrivedAt ?? performance.now(), this.tokens, this.shape.vocabSize);
    seq.queueSpan = tracer().startSpan('generation.queue', { attributes: { [Attr.model]: this.options.model, [Attr.modelVersion]: this.options.version, 'maas.queue_depth': this.waiting.length } }, seq.parent);
    seq.onAbort = () => {
      if (seq.done) return;
      const i = this.waiting.indexOf(seq);
      if (i >= 0) {
        // Still waiting: leave the queue now.
        this.waiting.splice(i, 1);
        this.end(seq, FinishReason.CANCELLED);
      } else if (seq.cancelledAtStep < 0) seq.cancelledAtStep = this.steps;
      this.notify();
    };
    request.signal.addEventListener('abort', seq.onAbort, { once: true });
    this.waiting.push(seq);
    this.notify();
    return seq.out;
  }

  /** Stops the loop: waiting and running sequences end with UnavailableError. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.notify();
    await this.loopDone;
    const err = new UnavailableError('the model was unloaded while the request ran; retry', 100);
    for (const seq of [...this.waiting, ...this.running]) this.fail(seq, err);
    this.waiting.length = 0;
    this.running = [];
  }

  private async loop(): Promise<void> {
    while (!this.closed) {
      this.dropCancelled();
      await this.admit();
      this.dropCancelled();
      if (this.running.length > 0) await this.step();
      else if (this.waiting.length === 0) await new Promise<void>((resolve) => (this.wake = resolve));
      // Let the event loop deliver chunks, cancellations and new requests between steps.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private dropCancelled(): void {
    if (!this.running.some((s) => s.request.signal.aborted)) return;
    this.running = this.running.filter((s) => {
      if (!s.request.signal.aborted) return true;
      this.end(s, FinishReason.CANCELLED);
      return false;
    });
  }

  private async admit(): Promise<void> {
    while (this.waiting.length > 0 && this.running.length < this.options.maxBatchSize && !this.closed) {
      const seq = this.waiting[0]!;
      if (this.running.length > 0 && this.kvReserved + seq.reserve > this.options.maxKvTokens) return;
      this.waiting.shift();
      seq.lane = this.quietestLane();
      this.kvReserved += seq.reserve;
      seq.reserved = true;
      seq.admittedAt = performance.now();
      this.options.metrics?.queueTime(seq.admittedAt - seq.arrivedAt);
      seq.queueSpan?.end();
      const span = tracer().startSpan(
        'generation.prefill',
        { attributes: { [Attr.model]: this.options.model, [Attr.modelVersion]: this.options.version, [Attr.inputTokens]: seq.request.promptTokens.length } },
        seq.parent,
      );
      let result;
      try {
        result = await this.decoders[seq.lane]!.prefill(seq.request.promptTokens);
      } catch (err) {
        span.recordException(err as Error);
        span.end();
        this.options.log.error({ err, model: this.options.model }, 'prefill failed');
        this.fail(seq, err);
        continue;
      }
      const ms = performance.now() - seq.admittedAt;
      span.end();
      seq.cache = result.cache;
      seq.inferenceMs += ms;
      this.options.metrics?.prefill(ms, seq.request.promptTokens.length);
      if (seq.request.signal.aborted) {
        this.end(seq, FinishReason.CANCELLED);
        continue;
      }
      seq.decodeSpan = tracer().startSpan('generation.decode', { attributes: { [Attr.model]: this.options.model, [Attr.modelVersion]: this.options.version } }, seq.parent);
      this.sampler.chosenLogprob = 0;
      if (!this.accept(seq, result.logits, result.offset)) this.running.push(seq);
    }
  }

  /**
   * The usable lane with the fewest running sequences (the first of equals, so one sequence alone runs on this
   * thread). Lane 0 runs on this thread and is always taken as usable.
   */
  private quietestLane(): number {
    if (this.decoders.length === 1) return 0;
    const counts = new Array<number>(this.decoders.length).fill(0);
    for (const s of this.running) counts[s.lane]!++;
    let best = 0;
    for (let l = 1; l < counts.length; l++) if (this.decoders[l]!.usable !== false && counts[l]! < counts[best]!) best = l;
    return best;
  }

  private async step(): Promise<void> {
    const batch = this.running;
    const lanes: Sequence[][] = this.decoders.map(() => []);
    for (const s of batch) lanes[s.lane]!.push(s);
    const started = performance.now();
    const still: Sequence[] = [];
    // All lanes start before any runs (onnxruntime-node runs this thread's lane on a later turn, and the
    // worker lanes as soon as their message arrives), and each lane's rows are sampled and emitted as soon as
    // that lane's step is done, so this thread's work on one lane overlaps the other lanes' steps.
    const steps: Promise<void>[] = [];
    for (let l = 0; l < lanes.length; l++) {
      const rows = lanes[l]!;
      if (rows.length === 0) continue;
      steps.push(
        this.decoders[l]!.decode(rows.map((s) => ({ cache: s.cache!, token: s.lastToken }))).then(
          (logits) => this.acceptRows(rows, logits, performance.now() - started, batch.length, still),
          (err: unknown) => {
            this.options.log.error({ err, model: this.options.model, batch: rows.length, lane: l }, 'decode step failed');
            for (const s of rows) this.fail(s, err);
          },
        ),
      );
    }
    await Promise.all(steps);
    if (steps.length > this.mostLanesInStep) this.mostLanesInStep = steps.length;
    const ms = performance.now() - started;
    this.steps++;
    if (batch.length > this.largestBatch) this.largestBatch = batch.length;
    this.stepMsAverage = this.stepMsAverage === 0 ? ms : this.stepMsAverage * 0.9 + ms * 0.1;
    this.options.metrics?.step(ms, batch.length);
    this.running = still;
  }

  /** Samples and emits one lane's rows after a step of `ms`; the ones still going go to `still`. */
  private acceptRows(rows: Sequence[], logits: Float32Array, ms: number, batchSize: number, still: Sequence[]): void {
    const V = this.shape.vocabSize;
    for (let r = 0; r < rows.length; r++) {
      const seq = rows[r]!;
      seq.inferenceMs += ms;
      seq.stepsRun++;
      seq.batchSum += batchSize;
      if (batchSize > seq.maxBatch) seq.maxBatch = batchSize;
      if (batchSize !== seq.lastBatch) {
        // One event per change of the batch around this sequence, not one per step.
        seq.decodeSpan?.addEvent('maas.batch', { [Attr.batchSize]: batchSize, 'maas.decode_step': seq.stepsRun });
        seq.lastBatch = batchSize;
      }
      if (seq.request.signal.aborted) {
        this.end(seq, FinishReason.CANCELLED);
        continue;
      }
      if (!this.accept(seq, logits, r * V)) still.push(seq);
    }
  }

  /** Samples the next token of `seq` from a row of logits and emits it. Returns true when the sequence ended. */
  private accept(seq: Sequence, logits: Float32Array, offset: number): boolean {
    const p = seq.request.params;
    const token = this.sampler.next(logits, offset, p, seq.rng, seq.penalties);
    const now = performance.now();
    if (seq.generated === 0) {
      seq.firstTokenAt = now;
      this.options.metrics?.timeToFirstToken(now - seq.arrivedAt);
      seq.decodeSpan?.addEvent('first_token');
    } else this.options.metrics?.interTokenLatency(now - seq.lastTokenAt);
    seq.lastTokenAt = now;
    seq.generated++;
    seq.lastToken = token;
    seq.penalties?.addOutput(token);
    this.options.metrics?.outputTokens(1);

    let logprobs: TokenLogprob[] = [];
    if (p.logprobs !== undefined) {
      const top = [];
      for (let j = 0; j < this.sampler.topCount; j++) {
        const id = this.sampler.topIds[j]!;
        top.push({ tokenId: id, text: this.tokens.tokenText(id), logprob: this.sampler.topLogprobs[j]! });
      }
      logprobs = [{ tokenId: token, text: this.tokens.tokenText(token), logprob: this.sampler.chosenLogprob, top }];
    }

    let reason: FinishReason | undefined;
    let text = '';
    if (!p.ignoreEos && this.tokens.eosIds.has(token)) reason = FinishReason.EOS;
    else {
      text = seq.stop.push(seq.text.push(token));
      if (seq.stop.matched !== undefined) reason = FinishReason.STOP;
    }
    if (reason === undefined && (seq.generated >= p.maxNewTokens || seq.cache!.length >= this.shape.maxPositions)) reason = FinishReason.LENGTH;
    if (reason === undefined) {
      seq.out.push({ text, tokenIds: [token], logprobs });
      return false;
    }
    if (reason !== FinishReason.STOP) text += seq.stop.push(seq.text.flush()) + seq.stop.flush();
    this.end(seq, reason, { text, tokenIds: [token], logprobs });
    return true;
  }

  /** Ends a sequence: final chunk, cache and reservation freed, spans closed. */
  private end(seq: Sequence, reason: FinishReason, last: { text: string; tokenIds: number[]; logprobs: TokenLogprob[] } = { text: '', tokenIds: [], logprobs: [] }): void {
    if (seq.done) return;
    seq.done = true;
    this.releaseSequence(seq);
    const now = performance.now();
    if (reason === FinishReason.CANCELLED && seq.cancelledAtStep >= 0) {
      this.cancelledCount++;
      this.maxStepsAfterCancel = Math.max(this.maxStepsAfterCancel, this.steps - seq.cancelledAtStep);
    } else if (reason === FinishReason.CANCELLED) this.cancelledCount++;
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
  }

  private fail(seq: Sequence, err: unknown): void {
    if (seq.done) return;
    seq.done = true;
    this.releaseSequence(seq);
    seq.decodeSpan?.end();
    seq.out.fail(err);
  }

  private releaseSequence(seq: Sequence): void {
    seq.queueSpan?.end();
    if (seq.onAbort) seq.request.signal.removeEventListener('abort', seq.onAbort);
    if (seq.cache) this.decoders[seq.lane]!.release(seq.cache);
    if (seq.reserved) {
      seq.reserved = false;
      this.kvReserved -= seq.reserve;
    }
  }

  /** How long until a place in the batch is likely to free up. */
  private retryHintMs(): number {
    const step = this.stepMsAverage || 20;
    let soonest = Infinity;
    for (const s of this.running) soonest = Math.min(soonest, s.request.params.maxNewTokens - s.generated);
    const estimate = Number.isFinite(soonest) ? soonest * step : step * 10;
    return Math.min(30_000, Math.max(50, estimate));
  }
}

/** The span of the active context (handlers annotate it). */
export function activeSpan(): Span | undefined {
  return trace.getActiveSpan();
}
