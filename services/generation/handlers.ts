// Thin: proto messages to the generator's plain types and back, the call's signal passed on.
import type { ModelRef, ServedModel } from '../../gen/maas/common/v1/model.js';
import {
  FinishReason as ProtoFinishReason,
  type ChatMessage as ProtoChatMessage,
  type GenerateResponse,
  type GenerateStreamResponse,
  type GenerationParameters,
  type GenerationServiceService,
  type ModelInfo,
  type TokenLogprob as ProtoTokenLogprob,
} from '../../gen/maas/generation/v1/generation.js';
import type { ModelSelector } from '../runtime/models/types.js';
import type { CallContext, Handlers } from '../runtime/server.js';
import { Attr, annotate } from '../runtime/telemetry/tracing.js';
import type { EngineLimits, GenerationInput } from './domain/engine.js';
import type { Generator, ModelView, Served } from './domain/generator.js';
import type { RawParameters } from './domain/params.js';
import { FinishReason, type Finish, type GenerationChunk, type TokenLogprob } from './domain/types.js';

export interface HandlerDeps {
  generator: Generator;
}

export function createGenerationHandlers({ generator }: HandlerDeps): Handlers<typeof GenerationServiceService> {
  return {
    async generate(req, ctx): Promise<GenerateResponse> {
      const r = await generator.generate({ model: selector(req.model), input: input(req.prompt, req.messages), parameters: parameters(req.parameters) }, ctx.signal);
      annotateFinish(ctx, r.served, r.finish);
      return {
        text: r.text,
        tokenIds: r.tokenIds,
        logprobs: r.logprobs.map(toLogprob),
        finishReason: FINISH[r.finish.reason],
        stopSequence: r.finish.stopSequence ?? '',
        usage: usage(r.finish),
        timings: r.finish.timings,
        model: servedModel(r.served),
        seed: Number(r.finish.seed),
      };
    },

    async *generateStream(req, ctx: CallContext): AsyncIterable<GenerateStreamResponse> {
      const run = await generator.start({ model: selector(req.model), input: input(req.prompt, req.messages), parameters: parameters(req.parameters) }, ctx.signal);
      annotate({ [Attr.model]: run.served.name, [Attr.modelVersion]: run.served.version }, ctx.span);
      try {
        let first = true;
        for await (const chunk of run.chunks) {
          yield toStreamResponse(chunk, first || chunk.finish ? run.served : undefined);
          first = false;
          if (chunk.finish) annotateFinish(ctx, run.served, chunk.finish);
        }
      } finally {
        run.release();
      }
    },

    async tokenize(req, ctx) {
      const r = await generator.tokenize(selector(req.model), input(req.text, req.messages), ctx.signal);
      return { tokens: r.tokens, text: r.text, model: servedModel(r.served) };
    },

    async countTokens(req, ctx) {
      const r = await generator.countTokens(selector(req.model), input(req.prompt, req.messages), ctx.signal);
      return { inputTokens: r.inputTokens, contextLength: r.contextLength, maxNewTokens: r.maxNewTokens, model: servedModel(r.served) };
    },

    listModels: () => ({ models: generator.list().map((v) => toModelInfo(v, generator.limits)), defaultModel: generator.defaultModel }),

    async getModelInfo(req, ctx) {
      return { info: toModelInfo(await generator.describe(selector(req.model), ctx.signal), generator.limits) };
    },
  };
}

const FINISH: Record<FinishReason, ProtoFinishReason> = {
  [FinishReason.LENGTH]: ProtoFinishReason.FINISH_REASON_LENGTH,
  [FinishReason.STOP]: ProtoFinishReason.FINISH_REASON_STOP,
  [FinishReason.EOS]: ProtoFinishReason.FINISH_REASON_EOS,
  [FinishReason.CANCELLED]: ProtoFinishReason.FINISH_REASON_CANCELLED,
};

function selector(ref: ModelRef | undefined): ModelSelector {
  return { name: ref?.name ?? '', version: ref?.version || undefined, alias: ref?.alias || undefined };
}

function input(prompt: string, messages: ProtoChatMessage[]): GenerationInput {
  return { prompt: prompt === '' ? undefined : prompt, messages: messages.map((m) => ({ role: m.role, content: m.content })) };
}

function parameters(p: GenerationParameters | undefined): RawParameters {
  if (!p) return {};
  return {
    maxNewTokens: p.maxNewTokens,
    temperature: p.temperature,
    topK: p.topK,
    topP: p.topP,
    repetitionPenalty: p.repetitionPenalty,
    presencePenalty: p.presencePenalty,
    frequencyPenalty: p.frequencyPenalty,
    seed: p.seed,
    stop: p.stop,
    logprobs: p.logprobs,
    ignoreEos: p.ignoreEos,
  };
}

function servedModel(s: Served): ServedModel {
  return { name: s.name, version: s.version, alias: s.alias, executionProvider: s.executionProvider };
}

function usage(f: Finish) {
  return { inputTokens: f.usage.inputTokens, outputTokens: f.usage.outputTokens, totalTokens: f.usage.inputTokens + f.usage.outputTokens };
}

function toLogprob(l: TokenLogprob): ProtoTokenLogprob {
  return { tokenId: l.tokenId, token: l.text, logprob: l.logprob, top: l.top.map((t) => ({ tokenId: t.tokenId, token: t.text, logprob: t.logprob })) };
}

function toStreamResponse(chunk: GenerationChunk, served: Served | undefined): GenerateStreamResponse {
  const f = chunk.finish;
  return {
    text: chunk.text,
    tokenIds: chunk.tokenIds,
    logprobs: chunk.logprobs.map(toLogprob),
    finishReason: f ? FINISH[f.reason] : ProtoFinishReason.FINISH_REASON_UNSPECIFIED,
    stopSequence: f?.stopSequence ?? '',
    usage: f ? usage(f) : undefined,
    timings: f?.timings,
    model: served ? servedModel(served) : undefined,
    seed: f ? Number(f.seed) : 0,
  };
}

function annotateFinish(ctx: CallContext, s: Served, f: Finish): void {
  annotate(
    {
      [Attr.model]: s.name,
      [Attr.modelVersion]: s.version,
      [Attr.executionProvider]: s.executionProvider,
      [Attr.inputTokens]: f.usage.inputTokens,
      [Attr.outputTokens]: f.usage.outputTokens,
      [Attr.queueMs]: Math.round(f.timings.queueMs * 100) / 100,
      'maas.finish_reason': f.reason,
    },
    ctx.span,
  );
}

function toModelInfo(v: ModelView, limits: EngineLimits): ModelInfo {
  const d = v.description;
  return {
    model: servedModel(v.served),
    contextLength: d.maxPositions,
    vocabSize: d.vocabSize,
    eosTokenIds: d.eosTokenIds,
    hasChatTemplate: d.hasChatTemplate,
    layers: d.layers,
    kvHeads: d.kvHeads,
    headDim: d.headDim,
    aliases: v.aliases,
    memoryBytes: v.bytes,
    inUse: v.inUse,
    running: v.stats.running,
    waiting: v.stats.waiting,
    limits: {
      maxNewTokens: limits.maxNewTokens,
      defaultMaxNewTokens: limits.defaultMaxNewTokens,
      maxBatchSize: limits.maxBatchSize,
      maxKvTokens: limits.maxKvTokens,
      maxQueue: limits.maxQueue,
      maxStopSequences: limits.maxStopSequences,
      maxLogprobs: limits.maxLogprobs,
    },
    notes: d.notes,
  };
}
