// A lane: one decoder and the loop that drives it. The loop prefills the sequences placed on it (each alone),
// steps its rows together, samples every row's next token with the request's own parameters and generator,
// and ends a row at its end-of-sequence token or its length limit. It reports what it did as events; the
// scheduler (on the main thread) turns tokens into text, matches stop strings, streams chunks, and asks the
// lane to drop a row when a stop string matched or the caller went away.
//
// The loop runs where its decoder is: on the main thread for a model with one lane, on a worker thread
// (backends/worker-lane.ts) for each of several lanes. On a worker it goes from step to step without a
// round trip to the main thread: the scheduler's work on the tokens (text, stop strings, streaming) overlaps
// the next step instead of delaying it. Sequences join and leave at step boundaries; a row the scheduler
// drops leaves before the lane's next step (the step already running when it asked finishes, its token
// discarded).
import type { BatchEntry, Decoder, DecoderShape, SequenceCache } from './decoder.js';
import type { SamplingParameters } from './params.js';
import { Prng } from './prng.js';
import { needsPenalties, PenaltyState, Sampler } from './sampler.js';
import { FinishReason } from './types.js';

/** A sequence placed on a lane. */
export interface LaneJoin {
  id: number;
  promptTokens: number[];
  params: SamplingParameters;
}

/** One sampled token of one sequence. */
export interface SampledToken {
  id: number;
  token: number;
  /** With log probabilities asked for: the chosen token's, and the most likely alternatives (ids, logprobs). */
  logprob?: number;
  topIds?: number[];
  topLogprobs?: number[];
  /** Set when the lane ended the sequence with this token (it holds no row for it any more). */
  finish?: FinishReason.EOS | FinishReason.LENGTH;
}

export type LaneEvent =
  /** A sequence was prefilled (in `ms`) and its first token sampled. */
  | { kind: 'prefill'; ms: number; sampled: SampledToken }
  /** A decode step of `rows` rows took `ms`; the tokens of the rows still wanted. */
  | { kind: 'step'; ms: number; rows: number; sampled: SampledToken[] }
  /** A sequence asked to leave has left, after running `stepsAfter` steps (0 or 1) past the request. */
  | { kind: 'left'; id: number; stepsAfter: number }
  /** The decoder failed these sequences (a failed step or prefill); the lane holds no row for them. */
  | { kind: 'failed'; ids: number[]; error: Error };

/** What the scheduler drives: a LaneLoop on this thread, or one on a worker thread. */
export interface Lane {
  readonly shape: DecoderShape;
  /** False once the lane can no longer run anything (its worker thread died). Absent means always usable. */
  readonly usable?: boolean;
  /** Where events go (the scheduler sets it once, before the first join). */
  listen(sink: (event: LaneEvent) => void): void;
  join(sequence: LaneJoin): void;
  /** Drops a sequence (a 'left' event follows, unless the lane already ended or failed it). */
  leave(id: number): void;
  /** Stops the loop (a step running finishes), frees every cache and the decoder. */
  close(): Promise<void>;
}

export interface LaneOptions {
  eosIds: readonly number[];
  /** Largest top-n for log probabilities (sizes the sampler's buffers). */
  maxLogprobs: number;
  /**
   * Takes the joins and leaves sent while a step ran (a worker thread reads its pending messages), so they
   * count at this step boundary rather than after the next step.
   */
  poll?: () => void;
}

class Row {
  cache: SequenceCache | undefined;
  lastToken = 0;
  generated = 0;
  /** The lane's completed steps when the scheduler asked the row to leave, or -1. */
  leaveAt = -1;
  readonly rng: Prng;
  readonly penalties: PenaltyState | undefined;

  constructor(
    readonly join: LaneJoin,
    vocabSize: number,
  ) {
    const p = join.params;
    this.rng = new Prng(p.seed);
    this.penalties = needsPenalties(p) ? new PenaltyState(vocabSize, join.promptTokens.length + p.maxNewTokens) : undefined;
    this.penalties?.addPrompt(join.promptTokens);
  }
}

export class LaneLoop implements Lane {
  readonly shape: DecoderShape;
  private readonly sampler: Sampler;
  private readonly eos: ReadonlySet<number>;
  private rows: Row[] = [];
  private joining: Row[] = [];
  private readonly byId = new Map<number, Row>();
  private steps = 0;
  private sink: (event: LaneEvent) => void = () => undefined;
  private wake: (() => void) | undefined;
  private closed = false;
  private readonly done: Promise<void>;

  constructor(
    private readonly decoder: Decoder,
    private readonly options: LaneOptions,
  ) {
    this.shape = decoder.shape;
    this.sampler = new Sampler(this.shape.vocabSize, options.maxLogprobs);
    this.eos = new Set(options.eosIds);
    // On a later turn: the loop's first boundary calls `poll`, whose handlers may use this lane by name.
    this.done = Promise.resolve().then(() => this.loop());
  }

  listen(sink: (event: LaneEvent) => void): void {
    this.sink = sink;
  }

  join(sequence: LaneJoin): void {
    const row = new Row(sequence, this.shape.vocabSize);
    this.byId.set(sequence.id, row);
    this.joining.push(row);
    this.notify();
  }

  leave(id: number): void {
    const row = this.byId.get(id);
    if (!row || row.leaveAt >= 0) return;
    row.leaveAt = this.steps;
    this.notify();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.notify();
    await this.done;
    for (const row of this.byId.values()) this.free(row);
    this.byId.clear();
    this.rows = this.joining = [];
    await this.decoder.close();
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private async loop(): Promise<void> {
    while (!this.closed) {
      // At a step boundary: joins and leaves sent during the step are taken, rows asked to leave go,
      // joining rows are prefilled and join.
      this.options.poll?.();
      if (this.closed) break;
      this.applyLeaves();
      await this.prefill();
      this.applyLeaves();
      if (this.closed) break;
      if (this.rows.length > 0) await this.step();
      else if (this.joining.length === 0 && !this.closed) await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  /** One decode step of every row, then each row's next token sampled and reported. */
  private async step(): Promise<void> {
    const rows = this.rows;
    const started = performance.now();
    let logits: Float32Array;
    try {
      logits = await this.decoder.decode(rows.map((r): BatchEntry => ({ cache: r.cache!, token: r.lastToken })));
    } catch (err) {
      for (const row of rows) this.drop(row);
      this.rows = [];
      this.sink({ kind: 'failed', ids: rows.map((r) => r.join.id), error: asError(err) });
      return;
    }
    const ms = performance.now() - started;
    this.steps++;
    const sampled: SampledToken[] = [];
    const V = this.shape.vocabSize;
    let ended = false;
    for (let r = 0; r < rows.length; r++) {
      const row = rows[r]!;
      // A row asked to leave during the step: its token is not wanted.
      if (row.leaveAt >= 0) continue;
      const s = this.sample(row, logits, r * V);
      sampled.push(s);
      if (s.finish !== undefined) ended = true;
    }
    if (ended) this.rows = this.rows.filter((row) => row.cache !== undefined);
    this.sink({ kind: 'step', ms, rows: rows.length, sampled });
  }

  /** Prefills the joining rows, each alone, and samples their first tokens. */
  private async prefill(): Promise<void> {
    while (this.joining.length > 0 && !this.closed) {
      const row = this.joining.shift()!;
      if (row.leaveAt >= 0) {
        this.drop(row);
        this.sink({ kind: 'left', id: row.join.id, stepsAfter: 0 });
        continue;
      }
      const started = performance.now();
      let result;
      try {
        result = await this.decoder.prefill(row.join.promptTokens);
      } catch (err) {
        this.drop(row);
        this.sink({ kind: 'failed', ids: [row.join.id], error: asError(err) });
        continue;
      }
      row.cache = result.cache;
      const ms = performance.now() - started;
      if (row.leaveAt >= 0) {
        // Asked to leave during its prefill: applyLeaves reports it.
        this.rows.push(row);
        continue;
      }
      const sampled = this.sample(row, result.logits, result.offset);
      if (sampled.finish === undefined) this.rows.push(row);
      this.sink({ kind: 'prefill', ms, sampled });
    }
  }

  /** Samples a row's next token; ends the row (frees its cache) at end of sequence or its length limit. */
  private sample(row: Row, logits: Float32Array, offset: number): SampledToken {
    const p = row.join.params;
    const token = this.sampler.next(logits, offset, p, row.rng, row.penalties);
    row.generated++;
    row.lastToken = token;
    row.penalties?.addOutput(token);
    const sampled: SampledToken = { id: row.join.id, token };
    if (p.logprobs !== undefined) {
      sampled.logprob = this.sampler.chosenLogprob;
      sampled.topIds = Array.from(this.sampler.topIds.subarray(0, this.sampler.topCount));
      sampled.topLogprobs = Array.from(this.sampler.topLogprobs.subarray(0, this.sampler.topCount));
    }
    if (!p.ignoreEos && this.eos.has(token)) sampled.finish = FinishReason.EOS;
    else if (row.generated >= p.maxNewTokens || row.cache!.length >= this.shape.maxPositions) sampled.finish = FinishReason.LENGTH;
    if (sampled.finish !== undefined) this.drop(row);
    return sampled;
  }

  /** Removes the rows asked to leave, and reports them. */
  private applyLeaves(): void {
    if (!this.rows.some((row) => row.leaveAt >= 0)) return;
    const left: Row[] = [];
    this.rows = this.rows.filter((row) => {
      if (row.leaveAt < 0) return true;
      left.push(row);
      return false;
    });
    for (const row of left) {
      this.drop(row);
      this.sink({ kind: 'left', id: row.join.id, stepsAfter: this.steps - row.leaveAt });
    }
  }

  /** Forgets a row and frees its cache. */
  private drop(row: Row): void {
    this.byId.delete(row.join.id);
    this.free(row);
  }

  private free(row: Row): void {
    if (row.cache) this.decoder.release(row.cache);
    row.cache = undefined;
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
