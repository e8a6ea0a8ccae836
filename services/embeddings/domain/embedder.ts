// The embeddings engine: checks a request against the per-request limits, leases the model version it names
// from the model host, queues its inputs in the version's dynamic batcher (as TEI does, inputs rather than
// requests are batched, so a request's inputs can share batches with other requests'; they queue as a few runs
// of consecutive inputs of like length, not one entry each, with estimated token costs, and are decoded from the
// UTF-8 they arrived in and tokenized where the model runs, off the event loop), refuses over-long inputs when
// truncation is off, and answers the vectors as the request shaped them (dimensions, normalization: done where
// the model runs). No gRPC here.
import { lengthBucket, type BatchEntry } from '../../runtime/batching/dynamic-batcher.js';
import { InvalidArgumentError } from '../../runtime/errors.js';
import type { ModelLease, ModelSelector } from '../../runtime/models/types.js';
import { counter } from '../../runtime/telemetry/metrics.js';
import { annotate, Attr } from '../../runtime/telemetry/tracing.js';
import type { EmbeddingModel, EmbeddingModelInfo, LoadedEmbeddingModel, ModelProvider, RowShape, TextRange } from './model.js';
import { Texts } from './texts.js';
import type { TextTokenizer, TokenView, TruncationSide } from './tokenizer.js';
import type { VectorBlock, Vectors } from './vectors.js';

export interface EmbedderLimits {
  /** Most texts in one request. */
  maxInputsPerRequest: number;
  /** Most characters (UTF-16 code units) in one text. */
  maxInputChars: number;
}

export interface EmbedParams {
  model: ModelSelector;
  inputs: Texts;
  normalize: boolean;
  truncate: boolean;
  side: TruncationSide;
  /** 0: all of the model's dimensions. */
  dimensions: number;
}

export interface Served {
  name: string;
  version: number;
  /** The alias the request named (empty when it named a version). */
  alias: string;
  executionProvider: string;
}

export interface EmbedResult {
  vectors: Vectors;
  inputTokens: number;
  served: Served;
  timings: { queueMs: number; inferenceMs: number; totalMs: number };
}

export interface TokenizeParams {
  model: ModelSelector;
  inputs: string[];
  addSpecialTokens: boolean;
  truncate: boolean;
  side: TruncationSide;
}

export interface ModelDescription {
  served: Served;
  info: EmbeddingModelInfo;
  aliases: string[];
  bytes: number;
  inUse: number;
}

export class Embedder {
  private readonly metrics = {
    inputs: counter('maas_embeddings_inputs', 'texts embedded, by model and version'),
    tokens: counter('maas_embeddings_input_tokens', 'tokens embedded (after truncation), by model and version'),
  };

  constructor(
    private readonly models: ModelProvider,
    private readonly limits: EmbedderLimits,
  ) {}

  get defaultModel(): string {
    return this.models.defaultModel;
  }

  async embed(params: EmbedParams, signal: AbortSignal): Promise<EmbedResult> {
    const started = performance.now();
    this.checkInputs(params.inputs, true);
    if (params.dimensions < 0 || !Number.isInteger(params.dimensions)) throw InvalidArgumentError.field('dimensions', 'must be a positive whole number');
    return this.withModel(params.model, signal, async (model, served) => {
      const dims = params.dimensions || model.info.dimensions;
      if (dims > model.info.dimensions) {
        throw InvalidArgumentError.field('dimensions', `is ${dims}; model "${served.name}" has ${model.info.dimensions} dimensions`);
      }
      const { tokenizer, batcher } = model;
      const shape: RowShape = { side: params.side, dimensions: dims, normalize: params.normalize };
      const { inputs } = params;
      const entries = textRanges(inputs, shape, tokenizer, Math.min(MAX_RANGE_INPUTS, batcher.maxBatchSize), batcher.maxBatchCost);
      const submitted = await batcher.submit(entries, { signal });
      const tokens = new Int32Array(inputs.length);
      const truncated = new Uint8Array(inputs.length);
      const blocks: VectorBlock[] = new Array(entries.length);
      let inputTokens = 0;
      for (let k = 0; k < entries.length; k++) {
        const { start, end } = entries[k]!.item;
        const { batch, row } = submitted.outputs[k]!;
        const rows = batch.counts.length / 2;
        for (let index = start, r = row; index < end; index++, r++) {
          const used = batch.counts[r]!;
          const fullLength = batch.counts[rows + r]!;
          if (fullLength > used) {
            if (!params.truncate) {
              throw InvalidArgumentError.field(
                `inputs[${index}]`,
                `has ${fullLength} tokens; model "${model.name}" reads at most ${model.info.maxLength} (set truncate to cut it)`,
              );
            }
            truncated[index] = 1;
          }
          tokens[index] = used;
          inputTokens += used;
        }
        blocks[k] = { values: batch.values, first: row, count: end - start };
      }
      const vectors: Vectors = { dimensions: dims, stride: model.info.dimensions, blocks, tokens, truncated };
      const attrs = { model: served.name, version: String(served.version) };
      this.metrics.inputs.add(inputs.length, attrs);
      this.metrics.tokens.add(inputTokens, attrs);
      annotate({ [Attr.inputTokens]: inputTokens, [Attr.queueMs]: submitted.queueMs });
      return {
        vectors,
        inputTokens,
        served,
        timings: { queueMs: submitted.queueMs, inferenceMs: submitted.runMs, totalMs: performance.now() - started },
      };
    });
  }

  async tokenize(params: TokenizeParams, signal: AbortSignal): Promise<{ inputs: { tokens: TokenView[]; truncated: boolean }[]; served: Served }> {
    this.checkInputs(Texts.of(params.inputs), false);
    return this.withModel(params.model, signal, async (model, served) => ({
      inputs: params.inputs.map((text) => model.tokenizer.view(text, { truncate: params.truncate, side: params.side, addSpecialTokens: params.addSpecialTokens })),
      served,
    }));
  }

  async countTokens(selector: ModelSelector, inputs: string[], signal: AbortSignal): Promise<{ counts: number[]; maxLength: number; served: Served }> {
    this.checkInputs(Texts.of(inputs), false);
    return this.withModel(selector, signal, async (model, served) => ({
      counts: inputs.map((text) => model.tokenizer.count(text)),
      maxLength: model.info.maxLength,
      served,
    }));
  }

  /** Describes a version, loading it if needed. */
  async describe(selector: ModelSelector, signal: AbortSignal): Promise<ModelDescription> {
    return this.withModel(selector, signal, async (model, served) => {
      const loaded = this.models.loaded().find((l) => l.model.name === model.name && l.model.version === model.version);
      return describeLoaded(loaded ?? { model, aliases: [], bytes: 0, inUse: 1 }, served.alias);
    });
  }

  /** The versions loaded now. */
  list(): ModelDescription[] {
    return this.models.loaded().map((l) => describeLoaded(l, ''));
  }

  private async withModel<T>(selector: ModelSelector, signal: AbortSignal, work: (model: EmbeddingModel, served: Served) => Promise<T>): Promise<T> {
    const lease: ModelLease<EmbeddingModel> = await this.models.acquire(selector, signal);
    try {
      const served = { name: lease.version.name, version: lease.version.version, alias: lease.alias, executionProvider: lease.executionProvider };
      annotate({ [Attr.model]: served.name, [Attr.modelVersion]: served.version, [Attr.executionProvider]: served.executionProvider });
      return await work(lease.model, served);
    } finally {
      lease.release();
    }
  }

  private checkInputs(inputs: Texts, forEmbedding: boolean): void {
    if (inputs.length === 0) throw InvalidArgumentError.field('inputs', 'must hold at least one text');
    if (inputs.length > this.limits.maxInputsPerRequest) {
      throw InvalidArgumentError.field('inputs', `holds ${inputs.length} texts; at most ${this.limits.maxInputsPerRequest} are allowed per request`);
    }
    const max = this.limits.maxInputChars;
    for (let i = 0; i < inputs.length; i++) {
      if (forEmbedding && inputs.isBlank(i)) throw InvalidArgumentError.field(`inputs[${i}]`, 'must not be empty or only whitespace');
      // size is at least the length; the text is decoded only when its bytes are over the limit.
      if (inputs.size(i) > max) {
        const chars = inputs.text(i).length;
        if (chars > max) throw InvalidArgumentError.field(`inputs[${i}]`, `has ${chars} characters; at most ${max} are allowed`);
      }
    }
  }
}

/** Most inputs of one request in one batcher entry. */
const MAX_RANGE_INPUTS = 64;

/**
 * Cuts a request's inputs into runs of consecutive inputs, one batcher entry each, that cost the batcher what
 * they would cost one by one, near enough: a run ends before an input that would make its longest estimate more
 * than twice its shortest plus 8 tokens (it is padded to its longest in the batcher's count), at maxInputs
 * inputs, or before its padded cost (longest × inputs) would pass maxCost. Each run's cost is its longest
 * input's estimate, and its key that cost's length bucket. Requests of sentences of like length make one run per
 * 64 inputs.
 */
export function textRanges(
  texts: Texts,
  shape: RowShape,
  tokenizer: Pick<TextTokenizer, 'estimate'>,
  maxInputs: number,
  maxCost: number,
): BatchEntry<TextRange>[] {
  const out: BatchEntry<TextRange>[] = [];
  let start = 0;
  let shortest = 0;
  let longest = 0;
  for (let i = 0; i < texts.length; i++) {
    const c = tokenizer.estimate(texts.size(i));
    const lo = i === start ? c : Math.min(shortest, c);
    const hi = i === start ? c : Math.max(longest, c);
    if (i > start && (hi > 2 * lo + 8 || i - start >= maxInputs || hi * (i - start + 1) > maxCost)) {
      out.push(rangeEntry(texts, start, i, shape, longest));
      start = i;
      shortest = longest = c;
    } else {
      shortest = lo;
      longest = hi;
    }
  }
  if (texts.length > start) out.push(rangeEntry(texts, start, texts.length, shape, longest));
  return out;
}

function rangeEntry(texts: Texts, start: number, end: number, shape: RowShape, cost: number): BatchEntry<TextRange> {
  return { item: { texts, start, end, shape }, cost, rows: end - start, key: lengthBucket(cost) };
}

function describeLoaded(l: LoadedEmbeddingModel, alias: string): ModelDescription {
  return {
    served: { name: l.model.name, version: l.model.version, alias, executionProvider: l.model.executionProvider },
    info: l.model.info,
    aliases: l.aliases,
    bytes: l.bytes,
    inUse: l.inUse,
  };
}
