// gRPC <-> domain for maas.vision.v1.VisionService: requests become plain arguments with the call's signal,
// results become response messages. Pages of a RecognizeTextStream run concurrently (a window per stream)
// and are answered in request order; a failed page carries its status in its response.
import { Status as RpcStatus } from '../../gen/google/rpc/status.js';
import { Task, type ModelRef, type ServedModel } from '../../gen/maas/common/v1/model.js';
import type { Timings } from '../../gen/maas/common/v1/usage.js';
import type {
  ClassifyImageRequest,
  ClassifyImageResponse,
  DetectTextRequest,
  DetectTextResponse,
  GetModelInfoRequest,
  GetModelInfoResponse,
  ListModelsResponse,
  ModelInfo,
  Quad,
  RecognizeTextRequest,
  RecognizeTextResponse,
  RecognizeTextStreamRequest,
  RecognizeTextStreamResponse,
  VisionServiceService,
} from '../../gen/maas/vision/v1/vision.js';
import { childSignal } from '../runtime/call-signal.js';
import { InvalidArgumentError } from '../runtime/errors.js';
import { toStatus } from '../runtime/grpc-status.js';
import type { ModelSelector } from '../runtime/models/types.js';
import type { CallContext, Handlers } from '../runtime/server.js';
import type { Point } from './domain/geometry.js';
import type { ModelDescription, RecognizeTextOutput, Served, TextOptionsInput, Timings as DomainTimings, VisionService } from './domain/vision-service.js';

const MODEL_NAME = /^[a-z0-9][a-z0-9._-]{0,127}$/;

export function createVisionHandlers(deps: { service: VisionService; streamWindow: number }): Handlers<typeof VisionServiceService> {
  const { service, streamWindow } = deps;

  const recognize = async (model: ModelRef | undefined, image: Buffer, options: TextOptionsInput, ctx: CallContext, field = 'model'): Promise<RecognizeTextResponse> =>
    recognizeResponse(await service.recognizeText(selector(model, field), image, options, ctx.signal));

  return {
    async recognizeText(req: RecognizeTextRequest, ctx) {
      return recognize(req.model, req.image, textOptions(req.options), ctx);
    },

    async detectText(req: DetectTextRequest, ctx): Promise<DetectTextResponse> {
      const r = await service.detectText(selector(req.model), req.image, textOptions(req.options), ctx.signal);
      return {
        regions: r.regions.map((b) => ({ box: quad(b.quad), score: b.score })),
        imageWidth: r.width,
        imageHeight: r.height,
        model: servedModel(r.model),
        timings: timings(r.timings),
      };
    },

    async *recognizeTextStream(reqs: AsyncIterable<RecognizeTextStreamRequest>, ctx): AsyncIterable<RecognizeTextStreamResponse> {
      const pending: Promise<RecognizeTextStreamResponse>[] = [];
      let ended = false;
      let readError: unknown;
      let wakeWriter: (() => void) | undefined;
      let wakeReader: (() => void) | undefined;
      const notify = () => {
        wakeWriter?.();
        wakeWriter = undefined;
      };
      const page = async (req: RecognizeTextStreamRequest, index: number): Promise<RecognizeTextStreamResponse> => {
        try {
          const own = { ...ctx, signal: childSignal(ctx.signal) };
          return { pageId: req.pageId, index, result: await recognize(req.model, req.image, textOptions(req.options), own) };
        } catch (err) {
          return { pageId: req.pageId, index, error: rpcStatus(err, ctx) };
        }
      };
      // A cancelled call must not leave the reader waiting for room forever.
      const onAbort = () => wakeReader?.();
      ctx.signal.addEventListener('abort', onAbort);
      void (async () => {
        let index = 0;
        for await (const req of reqs) {
          while (pending.length >= streamWindow && !ctx.signal.aborted) await new Promise<void>((r) => (wakeReader = r));
          if (ctx.signal.aborted) return;
          pending.push(page(req, index++));
          notify();
        }
      })().then(
        () => {
          ended = true;
          notify();
        },
        (err: unknown) => {
          readError = err;
          notify();
        },
      );
      try {
        for (;;) {
          if (pending.length > 0) {
            const response = await pending[0];
            pending.shift();
            wakeReader?.();
            wakeReader = undefined;
            yield response;
            continue;
          }
          if (readError !== undefined) throw readError;
          if (ended) return;
          await new Promise<void>((r) => (wakeWriter = r));
        }
      } finally {
        ctx.signal.removeEventListener('abort', onAbort);
      }
    },

    async classifyImage(req: ClassifyImageRequest, ctx): Promise<ClassifyImageResponse> {
      const r = await service.classifyImage(selector(req.model), req.image, req.topK, ctx.signal);
      return { labels: r.labels.map((l) => ({ label: l.label, index: l.index, score: l.score })), model: servedModel(r.model), timings: timings(r.timings) };
    },

    async listModels(_req, ctx): Promise<ListModelsResponse> {
      return { models: (await service.listModels(ctx.signal)).map(modelInfo) };
    },

    async getModelInfo(req: GetModelInfoRequest, ctx): Promise<GetModelInfoResponse> {
      return { info: modelInfo(await service.describe(selector(req.model), ctx.signal)) };
    },
  };
}

function selector(ref: ModelRef | undefined, field = 'model'): ModelSelector {
  const name = ref?.name ?? '';
  if (name !== '' && !MODEL_NAME.test(name)) {
    throw InvalidArgumentError.field(`${field}.name`, 'must be 1 to 128 lowercase letters, digits, "-", "_" or ".", starting with a letter or digit');
  }
  return { name, version: ref?.version || undefined, alias: ref?.version ? undefined : ref?.alias || undefined };
}

function textOptions(o: RecognizeTextRequest['options']): TextOptionsInput {
  return { detectOrientation: o?.detectOrientation, minConfidence: o?.minConfidence, maxSideLen: o?.maxSideLen ?? 0 };
}

function recognizeResponse(r: RecognizeTextOutput): RecognizeTextResponse {
  return {
    lines: r.lines.map((l) => ({ text: l.text, confidence: l.confidence, box: quad(l.quad), detectionScore: l.detectionScore, rotationDegrees: l.rotation })),
    imageWidth: r.width,
    imageHeight: r.height,
    model: servedModel(r.model),
    timings: timings(r.timings),
    stages: {
      decodeMs: r.stages.decodeMs,
      detectionMs: r.stages.detectionMs,
      cropMs: r.stages.cropMs,
      orientationMs: r.stages.orientationMs,
      recognitionMs: r.stages.recognitionMs,
    },
  };
}

function quad(points: Point[]): Quad {
  return { points: points.map((p) => ({ x: p.x, y: p.y })) };
}

function servedModel(s: Served): ServedModel {
  return { name: s.name, version: s.version, alias: s.alias, executionProvider: s.executionProvider };
}

function timings(t: DomainTimings): Timings {
  return { queueMs: t.queueMs, inferenceMs: t.inferenceMs, timeToFirstTokenMs: 0, totalMs: t.totalMs };
}

function modelInfo(d: ModelDescription): ModelInfo {
  const c = d.classifier;
  return {
    model: servedModel(d.model),
    task: d.task as number as Task,
    aliases: d.aliases,
    memoryBytes: d.memoryBytes,
    files: d.files,
    labels: c?.labels ?? [],
    preprocessing: c
      ? {
          height: c.height,
          width: c.width,
          resize: c.resize,
          mean: c.normalization.mean,
          std: c.normalization.std,
          scale: c.normalization.scale,
          channelOrder: c.normalization.channelOrder,
          layout: c.layout,
        }
      : undefined,
    ocr: d.ocr,
  };
}

/** A page's failure as google.rpc.Status, with the same details a unary call would carry. */
function rpcStatus(err: unknown, ctx: CallContext): RpcStatus {
  const status = toStatus(err, ctx.log);
  const raw = status.metadata?.get('grpc-status-details-bin')[0];
  if (raw && typeof raw !== 'string') return RpcStatus.decode(raw);
  return { code: status.code, message: status.details, details: [] };
}
