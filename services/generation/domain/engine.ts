// One loaded generation model: its tokenizer, its decoder and the batch loop that serves it. Requests come
// in as a prompt or chat messages plus sampling parameters; they are checked (INVALID_ARGUMENT naming the
// field), tokenized, and queued; output comes back as chunks.
import { InvalidArgumentError } from '../../runtime/errors.js';
import type { Logger } from '../../runtime/logger.js';
import type { DecoderShape } from './decoder.js';
import type { Lane } from './lane.js';
import { checkParameters, type ParameterLimits, type RawParameters, type SamplingParameters } from './params.js';
import { Scheduler, type EngineMetrics } from './scheduler.js';
import type { ChatMessage, TextTokenizer } from './tokenizer.js';
import type { EngineStats, GenerationChunk } from './types.js';

export interface EngineLimits extends ParameterLimits {
  maxBatchSize: number;
  maxKvTokens: number;
  maxQueue: number;
  /** Longest prompt (or rendered chat) in characters, checked before tokenizing. */
  maxPromptChars: number;
  maxMessages: number;
}

export interface GenerationInput {
  /** Plain text to continue. */
  prompt?: string;
  /** Chat messages, rendered with the model's chat template. */
  messages?: ChatMessage[];
}

/** What GetModelInfo tells about a version. */
export interface ModelDescription {
  vocabSize: number;
  maxPositions: number;
  layers: number;
  kvHeads: number;
  headDim: number;
  eosTokenIds: number[];
  hasChatTemplate: boolean;
  /** Free-form provenance from config.json (e.g. maas_weights: synthetic). */
  notes: Record<string, string>;
}

export interface PreparedRequest {
  promptTokens: number[];
  params: SamplingParameters;
}

const ROLE = /^[a-z][a-z0-9_-]{0,31}$/;

export class GenerationModel {
  private readonly scheduler: Scheduler;

  /** lanes: one or more lanes of the same model (see Scheduler). */
  constructor(
    private readonly lanes: readonly Lane[],
    readonly tokenizer: TextTokenizer,
    private readonly limits: EngineLimits,
    private readonly labels: { model: string; version: number; log: Logger; metrics?: EngineMetrics; notes?: Record<string, string> },
  ) {
    this.scheduler = new Scheduler(lanes, tokenizer, {
      maxBatchSize: limits.maxBatchSize,
      maxKvTokens: limits.maxKvTokens,
      maxQueue: limits.maxQueue,
      model: labels.model,
      version: labels.version,
      log: labels.log,
      metrics: labels.metrics,
    });
  }

  /** The model's shape (every lane's is the same). */
  private get shape(): DecoderShape {
    return this.lanes[0]!.shape;
  }

  describe(): ModelDescription {
    const s = this.shape;
    return {
      vocabSize: s.vocabSize,
      maxPositions: s.maxPositions,
      layers: s.layers,
      kvHeads: s.kvHeads,
      headDim: s.headDim,
      eosTokenIds: [...this.tokenizer.eosIds],
      hasChatTemplate: this.tokenizer.hasChatTemplate,
      notes: this.labels.notes ?? {},
    };
  }

  stats(): EngineStats {
    return this.scheduler.stats();
  }

  /** The text the model will read: the prompt, or the messages rendered with the chat template. */
  promptText(input: GenerationInput): string {
    const hasPrompt = input.prompt !== undefined && input.prompt !== '';
    const messages = input.messages ?? [];
    if (hasPrompt && messages.length > 0) throw InvalidArgumentError.field('messages', 'set either prompt or messages, not both');
    if (messages.length > 0) {
      if (messages.length > this.limits.maxMessages) throw InvalidArgumentError.field('messages', `at most ${this.limits.maxMessages} messages (got ${messages.length})`);
      messages.forEach((m, i) => {
        if (!ROLE.test(m.role)) throw InvalidArgumentError.field(`messages[${i}].role`, `must be a lowercase name such as system, user or assistant (got "${m.role}")`);
      });
      const chars = messages.reduce((n, m) => n + m.content.length, 0);
      if (chars > this.limits.maxPromptChars) throw InvalidArgumentError.field('messages', `the messages hold ${chars} characters; at most ${this.limits.maxPromptChars}`);
      return this.tokenizer.renderChat(messages.map((m) => ({ role: m.role, content: m.content })));
    }
    if (!hasPrompt) throw InvalidArgumentError.field('prompt', 'must not be empty (set prompt or messages)');
    if (input.prompt!.length > this.limits.maxPromptChars) throw InvalidArgumentError.field('prompt', `is ${input.prompt!.length} characters; at most ${this.limits.maxPromptChars}`);
    return input.prompt!;
  }

  /** Checks and tokenizes a request, and fits max_new_tokens to the context and the cache budget. */
  prepare(input: GenerationInput, raw: RawParameters): PreparedRequest {
    const text = this.promptText(input);
    const promptTokens = this.tokenizer.encode(text);
    const field = input.messages && input.messages.length > 0 ? 'messages' : 'prompt';
    if (promptTokens.length === 0) throw InvalidArgumentError.field(field, 'has no tokens');
    const room = Math.min(this.shape.maxPositions, this.limits.maxKvTokens);
    if (promptTokens.length >= room) {
      throw InvalidArgumentError.field(field, `is ${promptTokens.length} tokens; the model holds at most ${room} tokens of prompt and output together`);
    }
    const params = checkParameters(raw, this.limits, this.shape.vocabSize);
    if (raw.maxNewTokens === undefined) params.maxNewTokens = Math.min(params.maxNewTokens, room - promptTokens.length);
    else if (promptTokens.length + params.maxNewTokens > room) {
      throw InvalidArgumentError.field(
        'parameters.max_new_tokens',
        `the prompt is ${promptTokens.length} tokens, so at most ${room - promptTokens.length} new tokens fit the ${room} this model holds (got ${params.maxNewTokens})`,
      );
    }
    return { promptTokens, params };
  }

  /** Queues a prepared request; iterate the result for its chunks. OverloadedError when the queue is full. */
  generate(prepared: PreparedRequest, signal: AbortSignal, arrivedAt?: number): AsyncIterable<GenerationChunk> {
    return this.scheduler.submit({ promptTokens: prepared.promptTokens, params: prepared.params, signal, arrivedAt });
  }

  async close(): Promise<void> {
    await this.scheduler.close();
    await Promise.all(this.lanes.map((l) => l.close()));
  }
}
