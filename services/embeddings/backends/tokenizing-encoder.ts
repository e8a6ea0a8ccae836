// Texts to the vectors their requests asked for, where the model runs (on the version's encoder thread, or on
// the event loop): a batch's texts are tokenized here, each cut to the model's maximum length from the end its
// row names, run through the OnnxEncoder, and each pooled vector shaped as its row asks (first N dimensions,
// unit length). The batcher forms batches from estimated lengths (texts are not tokenized before they queue,
// which kept the event loop busy), so a batch whose padded tokens would exceed the cap runs here in more than
// one piece: no onnxruntime run ever holds more than maxBatchTokens.
import type { SessionLog, SessionSettings } from '../../runtime/models/onnx-session.js';
import type { TextRow } from '../domain/model.js';
import type { TextTokenizer } from '../domain/tokenizer.js';
import { shape } from '../domain/vectors.js';
import { openOnnxEncoder, type EncoderOptions, type EncoderRow, type OnnxEncoder } from './onnx-encoder.js';

/** What an opened encoder is, wherever it runs. */
export interface EncoderFacts {
  dimensions: number;
  output: string;
  pooledByModel: boolean;
  executionProvider: string;
}

/** A batch's answer, in flat arrays that cross between threads as they are. */
export interface EncodedBatch {
  /**
   * Row after row, `dimensions` values each: the row's vector is the first of them (as many as its shape
   * keeps), shaped.
   */
  values: Float32Array;
  /** Per row r: at r the tokens it ran with (after truncation), at rows + r its tokens before truncation. */
  counts: Int32Array;
  /** Epoch milliseconds when tokenizing began (comparable across threads). */
  startedAt: number;
  tokenizeMs: number;
  runMs: number;
  /** Padded sequence length of the widest run. */
  width: number;
  /** onnxruntime runs the batch took (more than one when it was over the token cap). */
  runs: number;
}

/** Epoch milliseconds: a worker thread's performance clock has an origin of its own. */
const now = () => performance.timeOrigin + performance.now();

export class TokenizingEncoder {
  constructor(
    private readonly tokenizer: TextTokenizer,
    private readonly encoder: OnnxEncoder,
    readonly dimensions: number,
    /** Most padded tokens (longest row × rows) in one onnxruntime run. */
    private readonly maxBatchTokens: number,
  ) {}

  async run(rows: readonly TextRow[]): Promise<EncodedBatch> {
    const startedAt = now();
    const n = rows.length;
    const counts = new Int32Array(2 * n);
    const encoded: EncoderRow[] = new Array(n);
    for (let r = 0; r < n; r++) {
      const e = this.tokenizer.encode(rows[r]!.text, { truncate: true, side: rows[r]!.shape.side });
      encoded[r] = e;
      counts[r] = e.ids.length;
      counts[n + r] = e.fullLength;
    }
    const ran = now();
    const values = new Float32Array(n * this.dimensions);
    let width = 0;
    let runs = 0;
    for (const [start, end] of pieces(counts.subarray(0, n), this.maxBatchTokens)) {
      const vectors = await this.encoder.run(start === 0 && end === n ? encoded : encoded.slice(start, end));
      for (let r = start; r < end; r++) {
        const at = r * this.dimensions;
        values.set(vectors[r - start]!, at);
        const { dimensions, normalize } = rows[r]!.shape;
        shape(values.subarray(at, at + this.dimensions), dimensions || this.dimensions, normalize);
        if (counts[r]! > width) width = counts[r]!;
      }
      runs++;
    }
    return { values, counts, startedAt, tokenizeMs: ran - startedAt, runMs: now() - ran, width, runs };
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
