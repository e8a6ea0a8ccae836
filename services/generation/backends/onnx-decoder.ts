// Drives a decoder exported the Hugging Face way (optimum / transformers.js layout) on onnxruntime:
//   inputs  input_ids, attention_mask, [position_ids], past_key_values.<i>.key/.value [batch, kv_heads, past, head_dim],
//           [use_cache_branch] (merged exports)
//   outputs logits [batch, seq | 1, vocab], present.<i>.key/.value [batch, kv_heads, past + seq, head_dim]
//
// Each prompt is prefilled alone (its own cache); decode steps run the whole batch at once. The batch's cache
// lives in buffers this class owns, one per layer's key and value, laid out [rows, kv_heads, capacity,
// head_dim]: row r holds its tokens at positions 0..length-1 and zeros after them, which the attention mask
// hides; position_ids carry each row's true position, so a row computes what it would alone. The graph
// appends the step's token after the capacity; its key and value are then written into the row at `length`,
// in place. They are read from the graph's new-entry tensors where `present` is a plain Concat (see
// decode-graph.ts: onnxruntime-node copies every output it returns, and the whole present cache was most of
// a batched step), else from the last position of `present`. The buffers are laid out again only when the
// batch changes (a sequence joined or left) or the longest row reaches the capacity.
import { readFile } from 'node:fs/promises';
import * as ort from 'onnxruntime-node';
import type { Logger } from '../../runtime/logger.js';
import { FailedPreconditionError } from '../../runtime/errors.js';
import { createOnnxSession, type SessionSettings } from '../../runtime/models/onnx-session.js';
import type { DecoderGraphMode } from '../config.js';
import type { BatchEntry, Decoder, DecoderShape, SequenceCache } from '../domain/decoder.js';
import { prepareDecodeGraph } from './decode-graph.js';

/** Hints from config.json for what the graph leaves symbolic. */
export interface DecoderConfigHints {
  vocabSize?: number;
  maxPositions?: number;
  kvHeads?: number;
  headDim?: number;
}

/**
 * How far the graph is amended where it allows (decode-graph.ts): 'split-attention' (the default) also rewrites
 * attention to read the past and the new entries apart; 'new-entries' only adds the new entries to the outputs;
 * 'as-exported' runs the graph unchanged. The modes are listed once, with the setting that chooses them.
 */
export type { DecoderGraphMode } from '../config.js';

export interface DecoderOptions {
  graph?: DecoderGraphMode;
}

/** Positions the batch's capacity grows by, so that it is laid out again once every this many steps. */
const CAPACITY_STEP = 32;

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
  /**
   * How far the graph was amended: the mode asked for, or less where the graph did not allow it. From
   * 'new-entries' on, a step fetches only the new keys and values, else the whole present cache.
   */
  readonly graph: DecoderGraphMode;
  private readonly slots: number;
  private readonly pastNames: string[];
  private readonly presentNames: string[];
  /** Per slot, the output a step reads its new key or value from. */
  private readonly stepOutputs: string[];
  /** Two sets of buffers, one per slot each; `current` holds the batch, the other is laid out into. */
  private readonly sets: [ArrayBuffer[], ArrayBuffer[]];
  private current = 0;
  private rows: Cache[] = [];
  /** Positions per row in the batch's buffers. */
  private capacity = 0;
  private logitsBuffer = new Float32Array(0);
  private maskBuffer = new BigInt64Array(0);
  private closed = false;

  private constructor(
    private readonly session: ort.InferenceSession,
    readonly executionProvider: string,
    private readonly signature: Signature,
    newEntries: ReadonlyMap<string, string>,
    splitAttention: boolean,
  ) {
    this.shape = signature.shape;
    this.slots = signature.layers * 2;
    this.pastNames = [];
    this.presentNames = [];
    for (let i = 0; i < signature.layers; i++) {
      this.pastNames.push(`past_key_values.${i}.key`, `past_key_values.${i}.value`);
      this.presentNames.push(`present.${i}.key`, `present.${i}.value`);
    }
    const readsNewEntries = this.presentNames.every((name) => newEntries.has(name));
    this.graph = splitAttention ? 'split-attention' : readsNewEntries ? 'new-entries' : 'as-exported';
    this.stepOutputs = readsNewEntries ? this.presentNames.map((name) => newEntries.get(name)!) : this.presentNames;
    this.sets = [Array.from({ length: this.slots }, () => new ArrayBuffer(0)), Array.from({ length: this.slots }, () => new ArrayBuffer(0))];
  }

  /** Creates the session and checks its signature; FailedPreconditionError when it cannot be driven. */
  static async create(model: string | Uint8Array, settings: SessionSettings, hints: DecoderConfigHints, log?: Logger, options: DecoderOptions = {}): Promise<OnnxDecoder> {
    const mode = options.graph ?? 'split-attention';
    const prepared = mode === 'as-exported' ? undefined : prepareDecodeGraph(typeof model === 'string' ? new Uint8Array(await readFile(model)) : model, { splitAttention: mode === 'split-attention' });
    const newEntries = prepared?.newEntries ?? new Map<string, string>();
    const { session, executionProvider } = await createOnnxSession(prepared?.model ?? model, settings, log);
    try {
      return new OnnxDecoder(session, executionProvider, readSignature(session, hints, newEntries), newEntries, prepared?.splitAttention ?? false);
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
    // With an empty past, a step's new entries are the whole cache.
    const fetches: Record<string, null> = { logits: null };
    for (const name of this.stepOutputs) fetches[name] = null;
    const out = await this.session.run(feeds, fetches);
    const own = this.stepOutputs.map((name) => out[name]!.data as Float32Array);
    const logits = out.logits!;
    const rows = logits.dims[1] ?? 1;
    return { cache: new Cache(S, own), logits: logits.data as Float32Array, offset: (rows - 1) * this.shape.vocabSize };
  }

  async decode(batch: readonly BatchEntry[]): Promise<Float32Array> {
    this.checkOpen();
    const B = batch.length;
    const { kvHeads: H, headDim: D, vocabSize: V, maxPositions } = this.shape;
    let longest = 0;
    for (const e of batch) longest = Math.max(longest, e.cache.length);
    if (longest >= maxPositions) throw new Error(`a sequence of ${longest} tokens is at the model's limit of ${maxPositions} positions`);
    if (B !== this.rows.length || batch.some((e, i) => e.cache !== this.rows[i]) || this.capacity < Math.min(longest + 1, maxPositions - 1)) {
      this.assemble(batch.map((e) => e.cache as Cache), longest);
    }
    const C = this.capacity;

    const ids = new BigInt64Array(B);
    const positions = new BigInt64Array(B);
    if (this.maskBuffer.length < B * (C + 1)) this.maskBuffer = new BigInt64Array(Math.max(B * (C + 1), this.maskBuffer.length * 2));
    const mask = new BigInt64Array(this.maskBuffer.buffer, 0, B * (C + 1)).fill(0n);
    for (let r = 0; r < B; r++) {
      const c = this.rows[r]!;
      ids[r] = BigInt(batch[r]!.token);
      positions[r] = BigInt(c.length);
      mask.fill(1n, r * (C + 1), r * (C + 1) + c.length);
      mask[r * (C + 1) + C] = 1n;
    }
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', ids, [B, 1]),
      attention_mask: new ort.Tensor('int64', mask, [B, C + 1]),
    };
    if (this.signature.hasPositionIds) feeds.position_ids = new ort.Tensor('int64', positions, [B, 1]);
    if (this.signature.hasCacheBranch) feeds.use_cache_branch = new ort.Tensor('bool', Uint8Array.of(1), [1]);
    const set = this.sets[this.current];
    const size = B * H * C * D;
    for (let s = 0; s < this.slots; s++) feeds[this.pastNames[s]!] = new ort.Tensor('float32', new Float32Array(set[s]!, 0, size), [B, H, C, D]);
    if (this.logitsBuffer.length < B * V) this.logitsBuffer = new Float32Array(B * V);
    const logits = this.logitsBuffer.length === B * V ? this.logitsBuffer : this.logitsBuffer.subarray(0, B * V);
    const fetches: Record<string, ort.Tensor | null> = { logits: new ort.Tensor('float32', logits, [B, 1, V]) };
    for (const name of this.stepOutputs) fetches[name] = null;

    const out = await this.session.run(feeds, fetches);
    // onnxruntime writes into the buffer given and returns a new tensor over the same memory (not the same
    // ArrayBuffer object, so identity cannot tell). Copy only if the values differ, checked at both ends.
    adopt(out.logits!.data as Float32Array, logits);

    // The new entries: [B, H, 1, D] from the graph's tensors, or position C of present [B, H, C + 1, D].
    const present = this.graph === 'as-exported';
    const stride = present ? C + 1 : 1;
    const at = present ? C : 0;
    for (let s = 0; s < this.slots; s++) {
      const src = out[this.stepOutputs[s]!]!.data as Float32Array;
      const dst = new Float32Array(set[s]!, 0, size);
      for (let r = 0; r < B; r++) {
        const length = this.rows[r]!.length;
        // Only a row at the model's last position has no room, and it cannot take another token.
        if (length >= C) continue;
        for (let h = 0; h < H; h++) {
          const from = ((r * H + h) * stride + at) * D;
          dst.set(src.subarray(from, from + D), ((r * H + h) * C + length) * D);
        }
      }
    }
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
   * Lays the given caches out as the batch in the free buffer set, each row from position 0, zeros after,
   * with room for the longest to grow. Caches leaving the batch without being released get their own copy first.
   */
  private assemble(caches: Cache[], longest: number): void {
    const { kvHeads: H, headDim: D, maxPositions } = this.shape;
    const B = caches.length;
    const C = Math.min(maxPositions - 1, Math.ceil((longest + 1) / CAPACITY_STEP) * CAPACITY_STEP);
    const from = this.sets[this.current];
    const to = this.sets[1 - this.current];
    const oldC = this.capacity;
    const staying = new Set(caches);
    for (const c of this.rows) {
      if (staying.has(c)) continue;
      if (!c.released && c.row >= 0) c.own = this.extract(c, from, oldC);
      c.row = -1;
    }
    for (let s = 0; s < this.slots; s++) {
      const dst = new Float32Array(ensure(to, s, B * H * C * D * 4), 0, B * H * C * D);
      const src = new Float32Array(from[s]!, 0, this.rows.length * H * oldC * D);
      for (let r = 0; r < B; r++) {
        const c = caches[r]!;
        const len = c.length;
        for (let h = 0; h < H; h++) {
          const base = (r * H + h) * C * D;
          if (c.row >= 0) {
            const start = (c.row * H + h) * oldC * D;
            dst.set(src.subarray(start, start + len * D), base);
          } else {
            dst.set(c.own![s]!.subarray(h * len * D, (h + 1) * len * D), base);
          }
          dst.fill(0, base + len * D, base + C * D);
        }
      }
    }
    caches.forEach((c, r) => {
      c.row = r;
      c.own = undefined;
    });
    this.rows = caches;
    this.capacity = C;
    this.current = 1 - this.current;
  }

  private extract(c: Cache, from: ArrayBuffer[], C: number): Float32Array[] {
    const { kvHeads: H, headDim: D } = this.shape;
    const len = Math.min(c.length, C);
    return from.map((buffer) => {
      const src = new Float32Array(buffer, 0, this.rows.length * H * C * D);
      const own = new Float32Array(H * c.length * D);
      for (let h = 0; h < H; h++) {
        const start = (c.row * H + h) * C * D;
        own.set(src.subarray(start, start + len * D), h * c.length * D);
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

/** Reads and checks the Hugging Face decoder signature (a present output may be replaced by its new entries). */
export function readSignature(session: ort.InferenceSession, hints: DecoderConfigHints, newEntries: ReadonlyMap<string, string> = new Map()): Signature {
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
    for (const present of [`present.${i}.key`, `present.${i}.value`]) if (!newEntries.has(present)) need(outputs, 'output', present, 'float32');
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
