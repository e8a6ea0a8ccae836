// Drives a decoder exported the Hugging Face way (optimum / transformers.js layout) on onnxruntime:
//   inputs  input_ids, attention_mask, [position_ids], past_key_values.<i>.key/.value [batch, kv_heads, past, head_dim],
//           [use_cache_branch] (merged exports)
//   outputs logits [batch, seq | 1, vocab], present.<i>.key/.value [batch, kv_heads, past + seq, head_dim]
//
// Each prompt is prefilled alone (its own cache); decode steps run the whole batch at once. The batch's
// past tensors are assembled from the sequences' caches whenever the batch changes (a sequence joined or
// left): rows of different lengths are right-aligned and left-padded with zeros, the attention mask hides
// the padding and position_ids carry each row's true position, so a row computes what it would alone. While
// the batch stays the same, the present tensors of one step are the past tensors of the next, written by
// onnxruntime straight into two alternating sets of buffers that this class owns (no copies on our side).
import * as ort from 'onnxruntime-node';
import type { Logger } from '../../runtime/logger.js';
import { FailedPreconditionError } from '../../runtime/errors.js';
import { createOnnxSession, type SessionSettings } from '../../runtime/models/onnx-session.js';
import type { BatchEntry, Decoder, DecoderShape, SequenceCache } from '../domain/decoder.js';

/** Hints from config.json for what the graph leaves symbolic. */
export interface DecoderConfigHints {
  vocabSize?: number;
  maxPositions?: number;
  kvHeads?: number;
  headDim?: number;
}

class Cache implements SequenceCache {
  length: number;
  /** Row in the decoder's current batch, or -1 when the cache lives in `own`. */
  row = -1;
  /** Per slot (layer * 2 + 0 key / 1 value): [kvHeads, length, headDim]. */
  own: Float32Array[] | undefined;
  released = false;

  constructor(length: number, own: Float32Array[]) {
    this.length = length;
    this.own = own;
  }
}

interface Signature {
  layers: number;
  hasPositionIds: boolean;
  hasCacheBranch: boolean;
  shape: DecoderShape;
}

export class OnnxDecoder implements Decoder {
  readonly shape: DecoderShape;
  private readonly slots: number;
  private readonly pastNames: string[];
  private readonly presentNames: string[];
  /** Two sets of buffers, one per slot each; `current` holds the batch's past. */
  private readonly sets: [ArrayBuffer[], ArrayBuffer[]];
  private current = 0;
  private rows: Cache[] = [];
  /** Past length of the current batch (all rows right-aligned to it). */
  private pastLength = 0;
  private logitsBuffer = new Float32Array(0);
  private maskBuffer = new BigInt64Array(0);
  private closed = false;

  private constructor(
    private readonly session: ort.InferenceSession,
    readonly executionProvider: string,
    private readonly signature: Signature,
  ) {
    this.shape = signature.shape;
    this.slots = signature.layers * 2;
    this.pastNames = [];
    this.presentNames = [];
    for (let i = 0; i < signature.layers; i++) {
      this.pastNames.push(`past_key_values.${i}.key`, `past_key_values.${i}.value`);
      this.presentNames.push(`present.${i}.key`, `present.${i}.value`);
    }
    this.sets = [Array.from({ length: this.slots }, () => new ArrayBuffer(0)), Array.from({ length: this.slots }, () => new ArrayBuffer(0))];
  }

  /** Creates the session and checks its signature; FailedPreconditionError when it cannot be driven. */
  static async create(model: string | Uint8Array, settings: SessionSettings, hints: DecoderConfigHints, log?: Logger): Promise<OnnxDecoder> {
    const { session, executionProvider } = await createOnnxSession(model, settings, log);
    try {
      return new OnnxDecoder(session, executionProvider, readSignature(session, hints));
    } catch (err) {
      await session.release().catch(() => undefined);
      throw err;
    }
  }

  async prefill(tokens: readonly number[]): Promise<{ cache: SequenceCache; logits: Float32Array; offset: number }> {
    this.checkOpen();
    const S = tokens.length;
    const { kvHeads: H, headDim: D } = this.shape;
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(tokens, (t) => BigInt(t)), [1, S]),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(S).fill(1n), [1, S]),
    };
    if (this.signature.hasPositionIds) feeds.position_ids = new ort.Tensor('int64', BigInt64Array.from({ length: S }, (_, i) => BigInt(i)), [1, S]);
    if (this.signature.hasCacheBranch) feeds.use_cache_branch = new ort.Tensor('bool', Uint8Array.of(0), [1]);
    const empty = new Float32Array(0);
    for (const name of this.pastNames) feeds[name] = new ort.Tensor('float32', empty, [1, H, 0, D]);
    const out = await this.session.run(feeds);
    const own = this.presentNames.map((name) => out[name]!.data as Float32Array);
    const logits = out.logits!;
    const rows = logits.dims[1] ?? 1;
    return { cache: new Cache(S, own), logits: logits.data as Float32Array, offset: (rows - 1) * this.shape.vocabSize };
  }

  async decode(batch: readonly BatchEntry[]): Promise<Float32Array> {
    this.checkOpen();
    const B = batch.length;
    const { kvHeads: H, headDim: D, vocabSize: V } = this.shape;
    if (B !== this.rows.length || batch.some((e, i) => e.cache !== this.rows[i])) this.assemble(batch.map((e) => e.cache as Cache));
    const T = this.pastLength;

    const ids = new BigInt64Array(B);
    const positions = new BigInt64Array(B);
    if (this.maskBuffer.length < B * (T + 1)) this.maskBuffer = new BigInt64Array(Math.max(B * (T + 1), this.maskBuffer.length * 2));
    const mask = new BigInt64Array(this.maskBuffer.buffer, 0, B * (T + 1)).fill(0n);
    for (let r = 0; r < B; r++) {
      const c = this.rows[r]!;
      ids[r] = BigInt(batch[r]!.token);
      positions[r] = BigInt(c.length);
      mask.fill(1n, r * (T + 1) + (T - c.length), (r + 1) * (T + 1));
    }
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', ids, [B, 1]),
      attention_mask: new ort.Tensor('int64', mask, [B, T + 1]),
    };
    if (this.signature.hasPositionIds) feeds.position_ids = new ort.Tensor('int64', positions, [B, 1]);
    if (this.signature.hasCacheBranch) feeds.use_cache_branch = new ort.Tensor('bool', Uint8Array.of(T > 0 ? 1 : 0), [1]);
    const past = this.sets[this.current];
    const next = this.sets[1 - this.current];
    const pastSize = B * H * T * D;
    const presentSize = B * H * (T + 1) * D;
    const fetches: Record<string, ort.Tensor> = {};
    const presents: Float32Array[] = [];
    for (let s = 0; s < this.slots; s++) {
      feeds[this.pastNames[s]!] = new ort.Tensor('float32', new Float32Array(past[s]!, 0, pastSize), [B, H, T, D]);
      const buffer = ensure(next, s, presentSize * 4);
      const view = new Float32Array(buffer, 0, presentSize);
      presents.push(view);
      fetches[this.presentNames[s]!] = new ort.Tensor('float32', view, [B, H, T + 1, D]);
    }
    if (this.logitsBuffer.length < B * V) this.logitsBuffer = new Float32Array(B * V);
    const logits = this.logitsBuffer.length === B * V ? this.logitsBuffer : this.logitsBuffer.subarray(0, B * V);
    fetches.logits = new ort.Tensor('float32', logits, [B, 1, V]);

    const out = await this.session.run(feeds, fetches);
    // onnxruntime writes into the buffers given and returns new tensors over the same memory (not the same
    // ArrayBuffer objects, so identity cannot tell). Copy only if the values differ, checked at both ends.
    for (let s = 0; s < this.slots; s++) adopt(out[this.presentNames[s]!]!.data as Float32Array, presents[s]!);
    adopt(out.logits!.data as Float32Array, logits);

    this.current = 1 - this.current;
    this.pastLength = T + 1;
    for (const c of this.rows) c.length++;
    return logits;
  }

  release(cache: SequenceCache): void {
    const c = cache as Cache;
    c.released = true;
    c.own = undefined;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.rows = [];
    await this.session.release();
  }

  /**
   * Lays the given caches out as the batch's past in the free buffer set: row r right-aligned to the longest,
   * zeros on the left. Caches leaving the batch without being released get their own copy first.
   */
  private assemble(caches: Cache[]): void {
    const { kvHeads: H, headDim: D } = this.shape;
    const B = caches.length;
    const T = caches.reduce((m, c) => Math.max(m, c.length), 0);
    const from = this.sets[this.current];
    const to = this.sets[1 - this.current];
    const oldT = this.pastLength;
    const staying = new Set(caches);
    for (const c of this.rows) {
      if (!staying.has(c) && !c.released && c.row >= 0) c.own = this.extract(c, from, oldT);
      if (!staying.has(c)) c.row = -1;
    }
    for (let s = 0; s < this.slots; s++) {
      const dst = new Float32Array(ensure(to, s, B * H * T * D * 4), 0, B * H * T * D);
      const src = new Float32Array(from[s]!, 0, this.rows.length * H * oldT * D);
      for (let r = 0; r < B; r++) {
        const c = caches[r]!;
        const len = c.length;
        for (let h = 0; h < H; h++) {
          const base = ((r * H + h) * T) * D;
          dst.fill(0, base, base + (T - len) * D);
          const at = base + (T - len) * D;
          if (c.row >= 0) {
            const start = ((c.row * H + h) * oldT + (oldT - len)) * D;
            dst.set(src.subarray(start, start + len * D), at);
          } else {
            const own = c.own![s]!;
            dst.set(own.subarray(h * len * D, (h + 1) * len * D), at);
          }
        }
      }
    }
    caches.forEach((c, r) => {
      c.row = r;
      c.own = undefined;
    });
    this.rows = caches;
    this.pastLength = T;
    this.current = 1 - this.current;
  }

  private extract(c: Cache, from: ArrayBuffer[], T: number): Float32Array[] {
    const { kvHeads: H, headDim: D } = this.shape;
    const len = c.length;
    return from.map((buffer) => {
      const src = new Float32Array(buffer, 0, this.rows.length * H * T * D);
      const own = new Float32Array(H * len * D);
      for (let h = 0; h < H; h++) {
        const start = ((c.row * H + h) * T + (T - len)) * D;
        own.set(src.subarray(start, start + len * D), h * len * D);
      }
      return own;
    });
  }

  private checkOpen(): void {
    if (this.closed) throw new Error('the decoder is closed');
  }
}

function adopt(returned: Float32Array, given: Float32Array): void {
  const n = given.length;
  if (n === 0) return;
  if (!Object.is(returned[0], given[0]) || !Object.is(returned[n - 1], given[n - 1])) given.set(returned);
}

function ensure(set: ArrayBuffer[], slot: number, bytes: number): ArrayBuffer {
  if (set[slot]!.byteLength < bytes) set[slot] = new ArrayBuffer(Math.max(bytes, Math.ceil(set[slot]!.byteLength * 1.5)));
  return set[slot]!;
}

type Meta = ort.InferenceSession.ValueMetadata & { type?: string; shape?: readonly (number | string)[] };

/** Reads and checks the Hugging Face decoder signature. */
export function readSignature(session: ort.InferenceSession, hints: DecoderConfigHints): Signature {
  const inputs = new Map(session.inputNames.map((n, i) => [n, session.inputMetadata[i] as Meta]));
  const outputs = new Map(session.outputNames.map((n, i) => [n, session.outputMetadata[i] as Meta]));
  const problems: { type: string; subject: string; description: string }[] = [];
  const need = (map: Map<string, Meta>, kind: string, name: string, type: string) => {
    const m = map.get(name);
    if (!m) problems.push({ type: 'SIGNATURE', subject: name, description: `the ${kind} ${name} is missing` });
    else if (m.isTensor && m.type !== undefined && m.type !== type) problems.push({ type: 'SIGNATURE', subject: name, description: `the ${kind} ${name} is ${m.type}, expected ${type}` });
  };
  need(inputs, 'input', 'input_ids', 'int64');
  need(inputs, 'input', 'attention_mask', 'int64');
  need(outputs, 'output', 'logits', 'float32');
  let layers = 0;
  while (inputs.has(`past_key_values.${layers}.key`)) layers++;
  if (layers === 0) problems.push({ type: 'SIGNATURE', subject: 'past_key_values.0.key', description: 'the model has no key/value cache inputs (past_key_values.<i>.key/value)' });
  for (let i = 0; i < layers; i++) {
    need(inputs, 'input', `past_key_values.${i}.key`, 'float32');
    need(inputs, 'input', `past_key_values.${i}.value`, 'float32');
    need(outputs, 'output', `present.${i}.key`, 'float32');
    need(outputs, 'output', `present.${i}.value`, 'float32');
  }
  const known = new Set(['input_ids', 'attention_mask', 'position_ids', 'use_cache_branch']);
  for (const name of inputs.keys()) {
    if (!known.has(name) && !/^past_key_values\.\d+\.(key|value)$/.test(name)) problems.push({ type: 'SIGNATURE', subject: name, description: `the input ${name} is not one this service knows how to feed` });
  }
  const pastShape = inputs.get('past_key_values.0.key')?.shape ?? [];
  const kvHeads = typeof pastShape[1] === 'number' ? pastShape[1] : hints.kvHeads;
  const headDim = typeof pastShape[3] === 'number' ? pastShape[3] : hints.headDim;
  const logitsShape = outputs.get('logits')?.shape ?? [];
  const vocabSize = typeof logitsShape[2] === 'number' ? logitsShape[2] : hints.vocabSize;
  if (!kvHeads || !headDim) problems.push({ type: 'CONFIG', subject: 'config.json', description: 'key/value heads and head size are neither in the graph nor in config.json' });
  if (!vocabSize) problems.push({ type: 'CONFIG', subject: 'config.json', description: 'the vocabulary size is neither in the graph nor in config.json' });
  if (problems.length > 0) {
    throw new FailedPreconditionError(`the model is not a decoder this service can drive: ${problems.map((p) => p.description).join('; ')}`, problems, { reason: 'UNSUPPORTED_MODEL' });
  }
  return {
    layers,
    hasPositionIds: inputs.has('position_ids'),
    hasCacheBranch: inputs.has('use_cache_branch'),
    shape: { vocabSize: vocabSize!, maxPositions: hints.maxPositions ?? 2048, layers, kvHeads: kvHeads!, headDim: headDim! },
  };
}
