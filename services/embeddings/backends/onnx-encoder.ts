// Runs batches through an encoder exported the Hugging Face way: inputs `input_ids`, `attention_mask` and,
// BERT-style, `token_type_ids` ([batch, sequence], int64 or int32, right-padded here); output
// `sentence_embedding` ([batch, hidden], pooled by the graph) or `last_hidden_state` ([batch, sequence,
// hidden], pooled here: mean, CLS or last token).
import { endianness } from 'node:os';
import * as ort from 'onnxruntime-node';
import { FailedPreconditionError } from '../../runtime/errors.js';
import { createOnnxSession, type SessionLog, type SessionSettings } from '../../runtime/models/onnx-session.js';
import { poolRow, type Pooling } from '../domain/vectors.js';

const POOLED_OUTPUTS = ['sentence_embedding', 'sentence_embeddings', 'pooler_output_normalized'];
const TOKEN_OUTPUTS = ['last_hidden_state', 'token_embeddings'];
const KNOWN_INPUTS = new Set(['input_ids', 'attention_mask', 'token_type_ids']);

export interface EncoderOptions {
  name: string;
  version: number;
  pooling: Pooling;
  padId: number;
}

type IdArray = BigInt64Array | Int32Array;

/** What a batch row needs to carry: its token ids (an Encoded). */
export interface EncoderRow {
  ids: ArrayLike<number>;
  /** Aligned with ids; missing entries (as in an empty array) are 0. */
  typeIds: ArrayLike<number>;
}

export class OnnxEncoder {
  /** The output read: pooled by the graph, or per token (pooled here). */
  readonly output: string;
  readonly pooledByModel: boolean;
  private readonly types = new Map<string, 'int64' | 'int32'>();

  constructor(
    private readonly session: ort.InferenceSession,
    private readonly options: EncoderOptions,
  ) {
    const inputs = session.inputNames;
    if (!inputs.includes('input_ids')) {
      throw new FailedPreconditionError(`model "${options.name}" version ${options.version} has no input_ids input (inputs: ${inputs.join(', ')})`);
    }
    const unknown = inputs.filter((n) => !KNOWN_INPUTS.has(n));
    if (unknown.length > 0) {
      throw new FailedPreconditionError(
        `model "${options.name}" version ${options.version} needs inputs this service cannot feed: ${unknown.join(', ')} (it feeds input_ids, attention_mask, token_type_ids)`,
      );
    }
    session.inputMetadata.forEach((m, i) => {
      const type = m.isTensor ? String(m.type) : 'non-tensor';
      if (type !== 'int64' && type !== 'int32') {
        throw new FailedPreconditionError(`model "${options.name}" version ${options.version}: input ${inputs[i]} is ${type}, not int64 or int32`);
      }
      this.types.set(inputs[i]!, type);
    });
    const outputs = session.outputNames;
    const pooled = POOLED_OUTPUTS.find((o) => outputs.includes(o));
    const tokens = TOKEN_OUTPUTS.find((o) => outputs.includes(o));
    if (!pooled && !tokens) {
      throw new FailedPreconditionError(
        `model "${options.name}" version ${options.version} has neither a sentence_embedding nor a last_hidden_state output (outputs: ${outputs.join(', ')})`,
      );
    }
    this.output = (pooled ?? tokens)!;
    this.pooledByModel = pooled !== undefined;
  }

  /** One vector per encoded input (pooled, not normalized by this service): views of one buffer, one per input. */
  async run(batch: readonly EncoderRow[]): Promise<Float32Array[]> {
    const tensor = await this.infer(batch);
    const hidden = tensor.dims[tensor.dims.length - 1]!;
    // One buffer per batch, a view per row: small typed arrays of their own would each be a separate
    // allocation outside the heap, which the garbage collector pays for.
    const pooled = new Float32Array(batch.length * hidden);
    this.pool(tensor, batch, pooled, 0);
    const out: Float32Array[] = new Array(batch.length);
    for (let r = 0; r < batch.length; r++) out[r] = pooled.subarray(r * hidden, (r + 1) * hidden);
    return out;
  }

  /**
   * As run, but writes the vectors into `into` (zeros there), row after row from row `first`, the model's
   * dimensions apart: no view per input, and one copy for a graph that pools.
   */
  async runInto(batch: readonly EncoderRow[], into: Float32Array, first: number): Promise<void> {
    this.pool(await this.infer(batch), batch, into, first);
  }

  private async infer(batch: readonly EncoderRow[]): Promise<ort.Tensor> {
    const rows = batch.length;
    const width = widest(batch);
    const feeds: Record<string, ort.Tensor> = {};
    const dims = [rows, width];
    for (const [name, type] of this.types) {
      const data: IdArray = type === 'int64' ? new BigInt64Array(rows * width) : new Int32Array(rows * width);
      fill(data, batch, width, name, this.options.padId);
      feeds[name] = new ort.Tensor(type, data, dims);
    }
    const result = await this.session.run(feeds, [this.output]);
    return result[this.output]!;
  }

  /** Pools (or, pooled by the graph, copies) the output's rows into `into` from row `first`; frees the output. */
  private pool(tensor: ort.Tensor, batch: readonly EncoderRow[], into: Float32Array, first: number): void {
    const values = tensor.data as Float32Array;
    if (this.pooledByModel) {
      const hidden = tensor.dims[1]!;
      into.set(values.subarray(0, batch.length * hidden), first * hidden);
    } else {
      const [, sequence, hidden] = tensor.dims as number[];
      for (let r = 0; r < batch.length; r++) {
        const at = (first + r) * hidden!;
        poolRow(values, r, sequence!, hidden!, batch[r]!.ids.length, this.options.pooling, into.subarray(at, at + hidden!));
      }
    }
    tensor.dispose();
  }

  /** Runs one short input to learn the output width (and to fail at load, not at the first request). */
  async probe(): Promise<number> {
    const [v] = await this.run([{ ids: [this.options.padId], typeIds: [0] }]);
    return v!.length;
  }
}

/** An encoder ready to run, and what opening it found. */
export interface OpenedEncoder {
  encoder: OnnxEncoder;
  executionProvider: string;
  /** Width of its vectors, learned by running one input. */
  dimensions: number;
  /** The graph reads token_type_ids. */
  readsTypeIds: boolean;
  release(): Promise<void>;
}

/**
 * Opens a model file as an encoder, wherever it is to run: a session with the providers in order, the graph
 * checked, one input run (so that a broken model fails its load, not a request). Releases the session when
 * any of that fails.
 */
export async function openOnnxEncoder(file: string, settings: SessionSettings, options: EncoderOptions, log?: SessionLog): Promise<OpenedEncoder> {
  const { session, executionProvider } = await createOnnxSession(file, settings, log);
  try {
    const encoder = new OnnxEncoder(session, options);
    const dimensions = await encoder.probe();
    return { encoder, executionProvider, dimensions, readsTypeIds: session.inputNames.includes('token_type_ids'), release: () => session.release() };
  } catch (err) {
    await session.release().catch(() => undefined);
    throw err;
  }
}

/**
 * Token ids, masks and type ids are small non-negative numbers, so in a zero-filled int64 tensor only the low
 * 32-bit word of each element needs writing: an Int32Array over the same memory writes it with plain numbers,
 * no BigInt per token. The low word is the first of the pair on little-endian hosts, the second on big-endian.
 */
const LOW_WORD = endianness() === 'LE' ? 0 : 1;

function widest(batch: readonly EncoderRow[]): number {
  let width = 1;
  for (const e of batch) if (e.ids.length > width) width = e.ids.length;
  return width;
}

function fill(data: IdArray, batch: readonly EncoderRow[], width: number, input: string, padId: number): void {
  const big = data instanceof BigInt64Array;
  const out = big ? new Int32Array(data.buffer, data.byteOffset, data.length * 2) : data;
  const stride = big ? 2 : 1;
  const first = big ? LOW_WORD : 0;
  const kind = input === 'input_ids' ? 0 : input === 'attention_mask' ? 1 : 2;
  for (let r = 0; r < batch.length; r++) {
    const e = batch[r]!;
    const n = e.ids.length;
    // Element t of row r is at (r * width + t) * stride + first.
    const row = r * width * stride + first;
    if (kind === 0) {
      for (let t = 0; t < n; t++) out[row + t * stride] = e.ids[t]!;
      if (padId !== 0) for (let t = n; t < width; t++) out[row + t * stride] = padId;
    } else if (kind === 1) {
      for (let t = 0; t < n; t++) out[row + t * stride] = 1;
    } else {
      for (let t = 0; t < n; t++) out[row + t * stride] = e.typeIds[t] ?? 0;
    }
  }
}
