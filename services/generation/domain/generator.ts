// The service's use cases on plain types: resolve the model a request names (through the model host),
// hold it while the request runs, and generate, tokenize, count or describe. Handlers translate protos to
// these calls and back.
import { abortReason } from '../../runtime/errors.js';
import type { ModelLease, ModelSelector } from '../../runtime/models/types.js';
import type { EngineLimits, GenerationInput, GenerationModel, ModelDescription } from './engine.js';
import type { RawParameters } from './params.js';
import { FinishReason, type EngineStats, type Finish, type GenerationChunk, type TokenLogprob } from './types.js';

export interface LoadedModel {
  name: string;
  version: number;
  aliases: string[];
  bytes: number;
  inUse: number;
  executionProvider: string;
  model: GenerationModel;
}

/** Where models come from: the model host in the service, anything equivalent in tests. */
export interface ModelProvider {
  readonly defaultModel: string;
  acquire(selector: ModelSelector, signal: AbortSignal): Promise<ModelLease<GenerationModel>>;
  loaded(): LoadedModel[];
}

/** The model version that serves a request. */
export interface Served {
  name: string;
  version: number;
  alias: string;
  executionProvider: string;
}

export interface GenerateCall {
  model: ModelSelector;
  input: GenerationInput;
  parameters: RawParameters;
}

export interface GenerationResult {
  text: string;
  tokenIds: number[];
  logprobs: TokenLogprob[];
  finish: Finish;
  served: Served;
}

export interface RunningGeneration {
  served: Served;
  chunks: AsyncIterable<GenerationChunk>;
  /** Returns the model to the host; call once the chunks are consumed or abandoned. */
  release(): void;
}

export interface ModelView {
  served: Served;
  description: ModelDescription;
  aliases: string[];
  bytes: number;
  inUse: number;
  stats: EngineStats;
}

export class Generator {
  constructor(
    private readonly provider: ModelProvider,
    readonly limits: EngineLimits,
  ) {}

  get defaultModel(): string {
    return this.provider.defaultModel;
  }

  /** Validates and queues a request; errors (bad parameters, unknown model, full queue) are thrown here. */
  async start(call: GenerateCall, signal: AbortSignal): Promise<RunningGeneration> {
    const arrivedAt = performance.now();
    const lease = await this.provider.acquire(call.model, signal);
    try {
      const prepared = lease.model.prepare(call.input, call.parameters);
      const chunks = lease.model.generate(prepared, signal, arrivedAt);
      return { served: served(lease), chunks, release: () => lease.release() };
    } catch (err) {
      lease.release();
      throw err;
    }
  }

  /** Runs a request to the end. A cancelled request throws the signal's reason. */
  async generate(call: GenerateCall, signal: AbortSignal): Promise<GenerationResult> {
    const run = await this.start(call, signal);
    try {
      let text = '';
      const tokenIds: number[] = [];
      const logprobs: TokenLogprob[] = [];
      for await (const chunk of run.chunks) {
        text += chunk.text;
        tokenIds.push(...chunk.tokenIds);
        logprobs.push(...chunk.logprobs);
        if (chunk.finish) {
          if (chunk.finish.reason === FinishReason.CANCELLED && signal.aborted) throw abortReason(signal);
          return { text, tokenIds, logprobs, finish: chunk.finish, served: run.served };
        }
      }
      throw abortReason(signal);
    } finally {
      run.release();
    }
  }

  async tokenize(model: ModelSelector, input: GenerationInput, signal: AbortSignal) {
    return this.withModel(model, signal, (m, s) => {
      const text = m.promptText(input);
      return { text, tokens: m.tokenizer.tokenize(text), served: s };
    });
  }

  async countTokens(model: ModelSelector, input: GenerationInput, signal: AbortSignal) {
    return this.withModel(model, signal, (m, s) => {
      const inputTokens = m.tokenizer.encode(m.promptText(input)).length;
      const context = Math.min(m.describe().maxPositions, this.limits.maxKvTokens);
      return { inputTokens, contextLength: context, maxNewTokens: Math.max(0, Math.min(context - inputTokens, this.limits.maxNewTokens)), served: s };
    });
  }

  async describe(model: ModelSelector, signal: AbortSignal): Promise<ModelView> {
    const lease = await this.provider.acquire(model, signal);
    try {
      const entry = this.provider.loaded().find((l) => l.name === lease.version.name && l.version === lease.version.version);
      return {
        served: served(lease),
        description: lease.model.describe(),
        aliases: entry?.aliases ?? [],
        bytes: entry?.bytes ?? 0,
        inUse: Math.max(0, (entry?.inUse ?? 1) - 1),
        stats: lease.model.stats(),
      };
    } finally {
      lease.release();
    }
  }

  list(): ModelView[] {
    return this.provider.loaded().map((l) => ({
      served: { name: l.name, version: l.version, alias: '', executionProvider: l.executionProvider },
      description: l.model.describe(),
      aliases: l.aliases,
      bytes: l.bytes,
      inUse: l.inUse,
      stats: l.model.stats(),
    }));
  }

  private async withModel<T>(model: ModelSelector, signal: AbortSignal, fn: (m: GenerationModel, s: Served) => T): Promise<T> {
    const lease = await this.provider.acquire(model, signal);
    try {
      return fn(lease.model, served(lease));
    } finally {
      lease.release();
    }
  }
}

function served(lease: ModelLease<GenerationModel>): Served {
  return { name: lease.version.name, version: lease.version.version, alias: lease.alias, executionProvider: lease.executionProvider };
}
