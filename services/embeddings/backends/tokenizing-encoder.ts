// Texts to the vectors their requests asked for, where the model runs (on the version's encoder thread, or on
// the event loop): a batch's texts arrive packed (TextBatch: their UTF-8 in one buffer and one small buffer of
// numbers, both moved to a thread, not copied), are decoded and tokenized here, each cut to the model's maximum
// length from the end its row names, run through the OnnxEncoder, and each pooled vector shaped as its row asks
// (first N dimensions, unit length).
// The batcher forms batches from estimated lengths (texts are not tokenized before they queue, which kept the
// event loop busy), so a batch whose padded tokens would exceed the cap runs here in more than one piece: no
// onnxruntime run ever holds more than maxBatchTokens.
import { Buffer } from 'node:buffer';
import type { SessionLog, SessionSettings } from '../../runtime/models/onnx-session.js';
import type { BatchVectors, TextRange } from '../domain/model.js';
import type { TextTokenizer } from '../domain/tokenizer.js';
import { normalizeRange } from '../domain/vectors.js';
import { openOnnxEncoder, type EncoderOptions, type EncoderRow, type OnnxEncoder } from './onnx-encoder.js';

/** What an opened encoder is, wherever it runs. */
export interface EncoderFacts {
  dimensions: number;
  output: string;
  pooledByModel: boolean;
  executionProvider: string;
}

/**
 * A batch as it crosses: its texts' UTF-8 in one buffer (as requests brought them: a request's run of inputs is
 * one copy, with the few bytes between its texts left in), and per row four numbers in one buffer: where its
 * text starts and ends in the bytes (rows × 2, in pairs), the dimensions it keeps (0: all), and flags (1: cut
 * from the left, 2: normalize).
 */
export interface TextBatch {
  bytes: Uint8Array;
  rows: Int32Array;
}

const LEFT = 1;
const NORMALIZE = 2;
const FROM_LEFT = { truncate: true, side: 'left' } as const;
const FROM_RIGHT = { truncate: true, side: 'right' } as const;

/** The inputs of a batch's ranges, in order, packed. */
export function packTexts(ranges: readonly TextRange[]): TextBatch {
  let n = 0;
  let size = 0;
  for (const r of ranges) {
    n += r.end - r.start;
    size += r.texts.utf8Size(r.start, r.end);
  }
  const meta = new Int32Array(4 * n);
  // An ArrayBuffer of its own (not a piece of Buffer's shared pool): it is moved to the thread.
  const bytes = new Uint8Array(size);
  let row = 0;
  let at = 0;
  for (const { texts, start, end, shape } of ranges) {
    at = texts.writeUtf8(start, end, bytes, at, meta, 2 * row);
    const flags = (shape.side === 'left' ? LEFT : 0) | (shape.normalize ? NORMALIZE : 0);
    for (let i = start; i < end; i++, row++) {
      meta[2 * n + row] = shape.dimensions;
      meta[3 * n + row] = flags;
    }
  }
  return { bytes, rows: meta };
}

/** A batch's answer (BatchVectors), in flat arrays that cross between threads as they are, and its times. */
export interface EncodedBatch extends BatchVectors {
  /** When tokenizing began, in milliseconds of the monotonic clock every thread shares (see monotonicMs). */
  startedAt: number;
  tokenizeMs: number;
  runMs: number;
  /** Padded sequence length of the widest run. */
  width: number;
  /** onnxruntime runs the batch took (more than one when it was over the token cap). */
  runs: number;
}

/**
 * Milliseconds of the monotonic clock (process.hrtime), which every thread of the process reads alike. Not
 * `performance.timeOrigin + performance.now()`: each thread fixes its own origin against the wall clock when it
 * starts, so two threads' epoch times differ by however much the wall clock was adjusted in between (measured:
 * 5 ms on this machine, enough to put a thread's span before its parent's start).
 */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}


export class TokenizingEncoder {
  constructor(
    private readonly tokenizer: TextTokenizer,
    private readonly encoder: OnnxEncoder,
    readonly dimensions: number,
    /** Most padded tokens (longest row × rows) in one onnxruntime run. */
    private readonly maxBatchTokens: number,
  ) {}

  async run({ bytes, rows: meta }: TextBatch): Promise<EncodedBatch> {
    const startedAt = monotonicMs();
    const n = meta.length / 4;
    const utf8 = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const counts = new Int32Array(2 * n);
    const encoded: EncoderRow[] = new Array(n);
    for (let r = 0; r < n; r++) {
      // What is not UTF-8 reads as U+FFFD, as protobuf's own decoding of the request would have read it.
      const text = utf8.toString('utf8', meta[2 * r], meta[2 * r + 1]);
      const e = this.tokenizer.encode(text, meta[3 * n + r]! & LEFT ? FROM_LEFT : FROM_RIGHT);
      encoded[r] = e;
      counts[r] = e.ids.length;
      counts[n + r] = e.fullLength;
    }
    const ran = monotonicMs();
    const values = new Float32Array(n * this.dimensions);
    let runs = 0;
    for (const [start, end] of pieces(counts.subarray(0, n), this.maxBatchTokens)) {
      await this.encoder.runInto(start === 0 && end === n ? encoded : encoded.slice(start, end), values, start);
      runs++;
    }
    // Each row shaped as asked: its first `dimensions` values (the rest are left, unread), at unit length.
    let width = 0;
    for (let r = 0; r < n; r++) {
      const at = r * this.dimensions;
      if (meta[3 * n + r]! & NORMALIZE) normalizeRange(values, at, at + (meta[2 * n + r]! || this.dimensions));
      if (counts[r]! > width) width = counts[r]!;
    }
    return { values, counts, startedAt, tokenizeMs: ran - startedAt, runMs: monotonicMs() - ran, width, runs };
  }
}

/**
 * Opens the model file's session (openOnnxEncoder) on the calling thread, with the tokenizer in front of it:
 * what the encoder thread serves, and what the event loop runs when there is no thread.
 */
export async function openTokenizingEncoder(
  tokenizer: TextTokenizer,
  init: { file: string; settings: SessionSettings; options: EncoderOptions; maxBatchTokens: number },
  log?: SessionLog,
): Promise<EncoderFacts & { encoding: TokenizingEncoder; release(): Promise<void> }> {
  const { encoder, executionProvider, dimensions, release } = await openOnnxEncoder(init.file, init.settings, init.options, log);
  const encoding = new TokenizingEncoder(tokenizer, encoder, dimensions, init.maxBatchTokens);
  return { encoding, dimensions, output: encoder.output, pooledByModel: encoder.pooledByModel, executionProvider, release };
}

/** Consecutive [start, end) ranges of rows whose padded size (longest × count) stays within cap. */
export function pieces(lengths: ArrayLike<number>, cap: number): [number, number][] {
  const out: [number, number][] = [];
  let start = 0;
  let widest = 0;
  for (let r = 0; r < lengths.length; r++) {
    const w = Math.max(widest, lengths[r]!);
    if (r > start && w * (r - start + 1) > cap) {
      out.push([start, r]);
      start = r;
      widest = lengths[r]!;
    } else widest = w;
  }
  if (lengths.length > start) out.push([start, lengths.length]);
  return out;
}
