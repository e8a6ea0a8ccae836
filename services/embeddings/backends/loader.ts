// The embeddings service's ModelLoader for the model host: from a version's folder (model.onnx, tokenizer.json,
// optional tokenizer_config.json and config.json) to a tokenizer and an onnxruntime session (on a worker thread
// of their own by default) behind the version's own dynamic batcher, which queues texts. Also the adapter that
// shows the host to the engine as a ModelProvider.
import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { context, trace, type Attributes, type Span } from '@opentelemetry/api';
import { DynamicBatcher } from '../../runtime/batching/dynamic-batcher.js';
import { FailedPreconditionError, MaasError } from '../../runtime/errors.js';
import type { Logger } from '../../runtime/logger.js';
import type { ModelHost } from '../../runtime/models/model-host.js';
import type { SessionSettings } from '../../runtime/models/onnx-session.js';
import type { LocalVersion, ModelLoader } from '../../runtime/models/types.js';
import { Attr, tracer } from '../../runtime/telemetry/tracing.js';
import type { EmbeddingModel, EncodedRange, ModelProvider, TextRange } from '../domain/model.js';
import type { TextTokenizer } from '../domain/tokenizer.js';
import { readEncoderConfig, readTokenizer } from './model-config.js';
import { ThreadEncoder, type EncoderInit } from './thread-encoder.js';
import { monotonicMs, openTokenizingEncoder, packTexts, type EncodedBatch, type EncoderFacts } from './tokenizing-encoder.js';

export interface BatchingSettings {
  maxBatchSize: number;
  /** Cap on padded tokens per batch (longest input × count). */
  maxBatchTokens: number;
  maxQueueDelayMs: number;
  /** Inputs waiting per model version before RESOURCE_EXHAUSTED. */
  maxQueueSize: number;
  /** Batches run at once per model version. */
  concurrency: number;
}

export interface BackendSettings {
  session: SessionSettings;
  /** Run each version's session on a worker thread of its own instead of the event loop. */
  encoderThread: boolean;
  batching: BatchingSettings;
  log: Logger;
}

export interface EmbeddingBackend {
  loader: ModelLoader<EmbeddingModel>;
  /** A loaded version's model, if it is loaded. */
  peek(name: string, version: number): EmbeddingModel | undefined;
}

export function createEmbeddingBackend(settings: BackendSettings): EmbeddingBackend {
  const loaded = new Map<string, EmbeddingModel>();
  const loader: ModelLoader<EmbeddingModel> = async (version) => {
    const key = `${version.name}:${version.version}`;
    const onnxFile = pickOnnxFile(version);
    const config = await readEncoderConfig(version.dir, version.name);
    const tokenizer = await readTokenizer(version.dir, version.name, version.version, config.maxLength);
    const file = join(version.dir, onnxFile);
    const options = { name: version.name, version: version.version, pooling: config.pooling, padId: tokenizer.padId };
    const maxBatchTokens = Math.max(settings.batching.maxBatchTokens, config.maxLength);
    const encoder = await openEncoder({ file, dir: version.dir, maxLength: config.maxLength, maxBatchTokens, options }, tokenizer, settings).catch((err: unknown) => {
      if (err instanceof MaasError) throw err;
      throw new FailedPreconditionError(`model "${version.name}" version ${version.version}: onnxruntime cannot load or run ${onnxFile}: ${(err as Error).message}`);
    });
    const { executionProvider, dimensions } = encoder;
    const b = settings.batching;
    const attributes = { [Attr.model]: version.name, [Attr.modelVersion]: version.version, [Attr.executionProvider]: executionProvider };
    const batcher = new DynamicBatcher<TextRange, EncodedRange>({
      name: 'embeddings',
      maxBatchSize: b.maxBatchSize,
      // Costs are estimated tokens (texts queue untokenized); the encoder keeps every run within the cap.
      maxBatchCost: maxBatchTokens,
      padded: true,
      maxQueueDelayMs: b.maxQueueDelayMs,
      maxQueueSize: b.maxQueueSize,
      concurrency: b.concurrency,
      attributes,
      run: async (ranges, info) => answers(ranges, recordSpans(info.span, attributes, encoder.output, await encoder.run(ranges))),
    });
    const model: EmbeddingModel = {
      name: version.name,
      version: version.version,
      executionProvider,
      info: { dimensions, maxLength: config.maxLength, pooling: config.pooling, pooledByModel: encoder.pooledByModel, vocabSize: tokenizer.vocabSize },
      tokenizer,
      batcher,
    };
    loaded.set(key, model);
    settings.log.info(
      { model: version.name, version: version.version, dimensions, maxLength: config.maxLength, pooling: config.pooling, output: encoder.output, executionProvider, thread: settings.encoderThread },
      'embedding model ready',
    );
    return {
      model,
      // On a thread, the tokenizer is held twice: here (Tokenize, CountTokens) and there.
      bytes: await estimateBytes(version, onnxFile, settings.encoderThread ? 2 : 1),
      executionProvider,
      close: async () => {
        if (loaded.get(key) === model) loaded.delete(key);
        await batcher.close();
        await encoder.close();
      },
    };
  };
  return { loader, peek: (name, version) => loaded.get(`${name}:${version}`) };
}

/** What the loader needs of an encoder, on the event loop or on a thread of its own. */
interface OpenEncoder extends EncoderFacts {
  run(ranges: readonly TextRange[]): Promise<EncodedBatch>;
  close(): Promise<void>;
}

async function openEncoder(init: Omit<EncoderInit, 'settings'>, tokenizer: TextTokenizer, settings: BackendSettings): Promise<OpenEncoder> {
  if (settings.encoderThread) return ThreadEncoder.create({ ...init, settings: settings.session }, settings.log);
  const { encoding, release, ...facts } = await openTokenizingEncoder(tokenizer, { ...init, settings: settings.session }, settings.log);
  return { ...facts, run: (ranges) => encoding.run(packTexts(ranges)), close: release };
}

/** One answer per range for the batcher: the batch's vectors and the row its first input is in. */
function answers(ranges: readonly TextRange[], batch: EncodedBatch): EncodedRange[] {
  const out: EncodedRange[] = new Array(ranges.length);
  let row = 0;
  for (let i = 0; i < ranges.length; i++) {
    out[i] = { batch, row };
    row += ranges[i]!.end - ranges[i]!.start;
  }
  return out;
}

/**
 * The batch's "embeddings tokenize" and "onnxruntime run" spans, children of its batch span, from the times the
 * encoder measured where it ran.
 */
function recordSpans(batchSpan: Span, attributes: Attributes, output: string, out: EncodedBatch): EncodedBatch {
  if (!batchSpan.isRecording()) return out;
  const parent = trace.setSpan(context.active(), batchSpan);
  const rows = out.counts.length / 2;
  let tokens = 0;
  for (let r = 0; r < rows; r++) tokens += out.counts[r]!;
  // The encoder's times are on the monotonic clock every thread shares. Placed as a span places its own times
  // (the wall clock at its start, plus monotonic time elapsed since), with one offset for both spans so that one
  // ends exactly where the other begins.
  const toEpoch = Date.now() - monotonicMs();
  const started = out.startedAt + toEpoch;
  const ran = started + out.tokenizeMs;
  tracer()
    .startSpan('embeddings tokenize', { startTime: started, attributes: { ...attributes, 'maas.inputs': rows, [Attr.inputTokens]: tokens } }, parent)
    .end(ran);
  tracer()
    .startSpan('onnxruntime run', { startTime: ran, attributes: { ...attributes, [Attr.batchSize]: rows, 'maas.sequence_length': out.width, 'maas.output': output, 'maas.runs': out.runs } }, parent)
    .end(ran + out.runMs);
  return out;
}

/** The model host as the engine sees it. */
export function hostProvider(host: ModelHost<EmbeddingModel>, backend: EmbeddingBackend): ModelProvider {
  return {
    get defaultModel() {
      return host.defaultModel;
    },
    acquire: (selector, signal) => host.acquire(selector, signal),
    loaded: () =>
      host.list().flatMap((info) => {
        const model = backend.peek(info.name, info.version);
        return model ? [{ model, aliases: info.aliases, bytes: info.bytes, inUse: info.inUse }] : [];
      }),
  };
}

function pickOnnxFile(version: LocalVersion): string {
  for (const name of ['model.onnx', 'onnx/model.onnx']) if (existsSync(join(version.dir, name))) return name;
  const onnx = version.files.map((f) => f.name).filter((n) => n.endsWith('.onnx'));
  if (onnx.length === 1) return onnx[0]!;
  throw new FailedPreconditionError(
    `model "${version.name}" version ${version.version} needs model.onnx (found ${onnx.length === 0 ? 'no ONNX file' : onnx.join(', ')})`,
    [{ type: 'FILE', subject: `${version.name}:${version.version}`, description: 'an embedding model needs model.onnx' }],
  );
}

/** The ONNX file's size plus the tokenizer's (times the copies held): a fair estimate of what the version holds in memory. */
async function estimateBytes(version: LocalVersion, onnxFile: string, tokenizers: number): Promise<number> {
  return (await stat(join(version.dir, onnxFile))).size + tokenizers * (await stat(join(version.dir, 'tokenizer.json'))).size;
}
