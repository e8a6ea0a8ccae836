// Thin: proto messages to the engine's plain types and back, the call's signal passed on. EmbedStream keeps a
// bounded window of requests in flight and answers them in order; a failed request answers with its status.
import { Status as RpcStatus } from '../../gen/google/rpc/status.js';
import type { ModelRef } from '../../gen/maas/common/v1/model.js';
import { Pooling, TruncationDirection, type ModelInfo } from '../../gen/maas/embeddings/v1/embeddings.js';
import { childSignal } from '../runtime/call-signal.js';
import { InvalidArgumentError } from '../runtime/errors.js';
import { toStatus } from '../runtime/grpc-status.js';
import type { Logger } from '../runtime/logger.js';
import type { ModelSelector } from '../runtime/models/types.js';
import type { CallContext, Handlers } from '../runtime/server.js';
import type { Embedder, EmbedResult, ModelDescription } from './domain/embedder.js';
import type { TruncationSide } from './domain/tokenizer.js';
import type { EmbedCall, EmbeddingServiceDefinition, EmbedReply, EmbedStreamCall, EmbedStreamReply } from './wire.js';

export interface HandlerDeps {
  embedder: Embedder;
  /** Requests of one EmbedStream call in flight at once. */
  streamWindow: number;
  log: Logger;
}

export function createEmbeddingHandlers({ embedder, streamWindow, log }: HandlerDeps): Handlers<typeof EmbeddingServiceDefinition> {
  const embed = async (req: EmbedCall, signal: AbortSignal): Promise<EmbedReply> =>
    toEmbedReply(
      await embedder.embed(
        {
          model: selector(req.model),
          inputs: req.inputs,
          normalize: req.normalize ?? true,
          truncate: req.truncate,
          side: side(req.truncationDirection),
          dimensions: req.dimensions ?? 0,
        },
        signal,
      ),
    );

  return {
    embed: (req, ctx) => embed(req, ctx.signal),

    async *embedStream(requests: AsyncIterable<EmbedStreamCall>, ctx: CallContext): AsyncIterable<EmbedStreamReply> {
      const answer = async (m: EmbedStreamCall): Promise<EmbedStreamReply> => {
        try {
          if (!m.request) throw InvalidArgumentError.field('request', 'must be set');
          return { tag: m.tag, response: await embed(m.request, childSignal(ctx.signal)) };
        } catch (err) {
          return { tag: m.tag, error: statusOf(err, log) };
        }
      };
      const reader = requests[Symbol.asyncIterator]();
      const pending: Promise<EmbedStreamReply>[] = [];
      let next: Promise<IteratorResult<EmbedStreamCall>> | undefined;
      let reading = true;
      while (reading || pending.length > 0) {
        if (reading && pending.length < streamWindow) {
          if (!next) {
            next = reader.next();
            // Read errors (the call was cancelled) surface when awaited below, not as unhandled rejections.
            next.catch(() => undefined);
          }
          // Answer the oldest request as soon as it is done, without waiting for the client's next message.
          const first = await Promise.race([next.then((r) => ({ read: r })), ...(pending.length > 0 ? [pending[0]!.then(() => ({ read: undefined }))] : [])]);
          if (first.read) {
            next = undefined;
            if (first.read.done) reading = false;
            else pending.push(answer(first.read.value));
            continue;
          }
        }
        yield await pending.shift()!;
      }
    },

    async tokenize(req, ctx) {
      const out = await embedder.tokenize(
        {
          model: selector(req.model),
          inputs: req.inputs,
          addSpecialTokens: req.addSpecialTokens ?? true,
          truncate: req.truncate,
          side: side(req.truncationDirection),
        },
        ctx.signal,
      );
      return { inputs: out.inputs, model: out.served };
    },

    async countTokens(req, ctx) {
      const out = await embedder.countTokens(selector(req.model), req.inputs, ctx.signal);
      return { tokenCounts: out.counts, totalTokens: out.counts.reduce((s, n) => s + n, 0), maxInputTokens: out.maxLength, model: out.served };
    },

    listModels: () => ({ models: embedder.list().map(toModelInfo), defaultModel: embedder.defaultModel }),

    async getModelInfo(req, ctx) {
      return { info: toModelInfo(await embedder.describe(selector(req.model), ctx.signal)) };
    },
  };
}

function selector(ref: ModelRef | undefined): ModelSelector {
  return { name: ref?.name ?? '', version: ref?.version || undefined, alias: ref?.alias || undefined };
}

function side(d: TruncationDirection): TruncationSide {
  return d === TruncationDirection.TRUNCATION_DIRECTION_LEFT ? 'left' : 'right';
}

function toEmbedReply(r: EmbedResult): EmbedReply {
  return {
    // The engine's vectors go to the encoder as they lie in the batches that ran them.
    embeddings: r.vectors,
    dimensions: r.vectors.dimensions,
    usage: { inputTokens: r.inputTokens, outputTokens: 0, totalTokens: r.inputTokens },
    model: r.served,
    timings: { queueMs: r.timings.queueMs, inferenceMs: r.timings.inferenceMs, timeToFirstTokenMs: 0, totalMs: r.timings.totalMs },
  };
}

const POOLING: Record<string, Pooling> = { mean: Pooling.POOLING_MEAN, cls: Pooling.POOLING_CLS, last_token: Pooling.POOLING_LAST_TOKEN };

function toModelInfo(d: ModelDescription): ModelInfo {
  return {
    model: d.served,
    dimensions: d.info.dimensions,
    maxInputTokens: d.info.maxLength,
    pooling: POOLING[d.info.pooling] ?? Pooling.POOLING_UNSPECIFIED,
    pooledByModel: d.info.pooledByModel,
    aliases: d.aliases,
    memoryBytes: d.bytes,
    vocabSize: d.info.vocabSize,
    inUse: d.inUse,
  };
}

/** The google.rpc.Status a failed unary call would have carried (code, message, details). */
function statusOf(err: unknown, log: Logger): RpcStatus {
  const s = toStatus(err, log);
  const raw = s.metadata?.get('grpc-status-details-bin')[0];
  if (raw && typeof raw !== 'string') return RpcStatus.decode(raw);
  return { code: s.code, message: s.details, details: [] };
}
