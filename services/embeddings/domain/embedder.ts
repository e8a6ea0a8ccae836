// The embeddings engine: checks a request against the per-request limits, leases the model version it names
// from the model host, queues every input in the version's dynamic batcher (TEI style: inputs are batched one
// by one, so a request's inputs can share batches with other requests'; texts queue with estimated token costs
// and are tokenized where the model runs, off the event loop), refuses over-long inputs when truncation is off,
// and answers the vectors as the request shaped them (dimensions, normalization: done where the model runs).
// No gRPC here.
import { lengthBucket } from '../../runtime/batching/dynamic-batcher.js';
import { InvalidArgumentError } from '../../runtime/errors.js';
import type { ModelLease, ModelSelector } from '../../runtime/models/types.js';
import { counter } from '../../runtime/telemetry/metrics.js';
import { annotate, Attr } from '../../runtime/telemetry/tracing.js';
import type { EmbeddingModel, EmbeddingModelInfo, LoadedEmbeddingModel, ModelProvider } from './model.js';
import type { TokenView, TruncationSide } from './tokenizer.js';

export interface EmbedderLimits {
  /** Most texts in one request. */
  maxInputsPerRequest: number;
  /** Most characters (UTF-16 code units) in one text. */
  maxInputChars: number;
}

export interface EmbedParams {
  model: ModelSelector;
  inputs: string[];
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

export interface EmbeddingResult {
  values: Float32Array;
  index: number;
  tokens: number;
  truncated: boolean;
}

export interface EmbedResult {
  embeddings: EmbeddingResult[];
  dimensions: number;
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
      const { tokenizer } = model;
      const rowShape = { side: params.side, dimensions: dims, normalize: params.normalize };
      const submitted = await model.batcher.submit(
        params.inputs.map((text) => {
          const cost = tokenizer.estimate(text);
          return { item: { text, shape: rowShape }, cost, key: lengthBucket(cost) };
        }),
        { signal },
      );
      let inputTokens = 0;
      const embeddings = submitted.outputs.map((out, index) => {
        const truncated = out.fullLength > out.tokens;
        if (truncated && !params.truncate) {
          throw InvalidArgumentError.field(
            `inputs[${index}]`,
            `has ${out.fullLength} tokens; model "${model.name}" reads at most ${model.info.maxLength} (set truncate to cut it)`,
          );
        }
        inputTokens += out.tokens;
        return { values: out.values, index, tokens: out.tokens, truncated };
      });
      const attrs = { model: served.name, version: String(served.version) };
      this.metrics.inputs.add(embeddings.length, attrs);
      this.metrics.tokens.add(inputTokens, attrs);
      annotate({ [Attr.inputTokens]: inputTokens, [Attr.queueMs]: submitted.queueMs });
      return {
        embeddings,
        dimensions: dims,
        inputTokens,
        served,
        timings: { queueMs: submitted.queueMs, inferenceMs: submitted.runMs, totalMs: performance.now() - started },
      };
    });
  }

  async tokenize(params: TokenizeParams, signal: AbortSignal): Promise<{ inputs: { tokens: TokenView[]; truncated: boolean }[]; served: Served }> {
    this.checkInputs(params.inputs, false);
    return this.withModel(params.model, signal, async (model, served) => ({
      inputs: params.inputs.map((text) => model.tokenizer.view(text, { truncate: params.truncate, side: params.side, addSpecialTokens: params.addSpecialTokens })),
      served,
    }));
  }

  async countTokens(selector: ModelSelector, inputs: string[], signal: AbortSignal): Promise<{ counts: number[]; maxLength: number; served: Served }> {
    this.checkInputs(inputs, false);
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

  private checkInputs(inputs: string[], forEmbedding: boolean): void {
    if (inputs.length === 0) throw InvalidArgumentError.field('inputs', 'must hold at least one text');
    if (inputs.length > this.limits.maxInputsPerRequest) {
      throw InvalidArgumentError.field('inputs', `holds ${inputs.length} texts; at most ${this.limits.maxInputsPerRequest} are allowed per request`);
    }
    inputs.forEach((text, i) => {
      if (forEmbedding && text.trim().length === 0) throw InvalidArgumentError.field(`inputs[${i}]`, 'must not be empty or only whitespace');
      if (text.length > this.limits.maxInputChars) {
        throw InvalidArgumentError.field(`inputs[${i}]`, `has ${text.length} characters; at most ${this.limits.maxInputChars} are allowed`);
      }
    });
  }
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
