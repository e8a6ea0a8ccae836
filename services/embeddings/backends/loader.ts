// The embeddings service's ModelLoader for the model host: from a version's folder (model.onnx, tokenizer.json,
// optional tokenizer_config.json and config.json) to an onnxruntime session behind its own dynamic batcher.
// Also the adapter that shows the host to the engine as a ModelProvider.
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DynamicBatcher } from '../../runtime/batching/dynamic-batcher.js';
import { FailedPreconditionError, MaasError } from '../../runtime/errors.js';
import type { Logger } from '../../runtime/logger.js';
import type { ModelHost } from '../../runtime/models/model-host.js';
import type { SessionSettings } from '../../runtime/models/onnx-session.js';
import type { LocalVersion, ModelLoader } from '../../runtime/models/types.js';
import { Attr } from '../../runtime/telemetry/tracing.js';
import type { EmbeddingModel, ModelProvider } from '../domain/model.js';
import { TextTokenizer, type Encoded } from '../domain/tokenizer.js';
import { readEncoderConfig } from './model-config.js';
import { openOnnxEncoder, tracedRun, type EncoderOptions, type EncoderRow } from './onnx-encoder.js';
import { ThreadEncoder } from './thread-encoder.js';

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
    const tokenizerPath = join(version.dir, 'tokenizer.json');
    if (!existsSync(tokenizerPath)) {
      throw new FailedPreconditionError(`model "${version.name}" version ${version.version} has no tokenizer.json`, [
        { type: 'FILE', subject: `${version.name}:${version.version}`, description: 'an embedding model needs tokenizer.json' },
      ]);
    }
    const config = await readEncoderConfig(version.dir, version.name);
    let tokenizer: TextTokenizer;
    try {
      const tokenizerConfigPath = join(version.dir, 'tokenizer_config.json');
      const tokenizerConfig = existsSync(tokenizerConfigPath) ? (JSON.parse(await readFile(tokenizerConfigPath, 'utf8')) as object) : {};
      tokenizer = new TextTokenizer(JSON.parse(await readFile(tokenizerPath, 'utf8')) as object, tokenizerConfig, config.maxLength);
    } catch (err) {
      throw new FailedPreconditionError(`model "${version.name}" version ${version.version}: its tokenizer cannot be loaded: ${(err as Error).message}`);
    }
    const file = join(version.dir, onnxFile);
    const options = { name: version.name, version: version.version, pooling: config.pooling, padId: tokenizer.padId };
    const encoder = await openEncoder(file, options, settings).catch((err: unknown) => {
      if (err instanceof MaasError) throw err;
      throw new FailedPreconditionError(`model "${version.name}" version ${version.version}: onnxruntime cannot load or run ${onnxFile}: ${(err as Error).message}`);
    });
    const { executionProvider, dimensions } = encoder;
    const b = settings.batching;
    const attributes = { [Attr.model]: version.name, [Attr.modelVersion]: version.version, [Attr.executionProvider]: executionProvider };
    const batcher = new DynamicBatcher<Encoded, Float32Array>({
      name: 'embeddings',
      maxBatchSize: b.maxBatchSize,
      maxBatchCost: Math.max(b.maxBatchTokens, config.maxLength),
      padded: true,
      maxQueueDelayMs: b.maxQueueDelayMs,
      maxQueueSize: b.maxQueueSize,
      concurrency: b.concurrency,
      attributes,
      run: (items) => tracedRun(attributes, encoder.output, items, () => encoder.run(items)),
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
      bytes: await estimateBytes(version, onnxFile),
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
interface OpenEncoder {
  executionProvider: string;
  dimensions: number;
  output: string;
  pooledByModel: boolean;
  run(batch: readonly EncoderRow[]): Promise<Float32Array[]>;
  close(): Promise<void>;
}

async function openEncoder(file: string, options: EncoderOptions, settings: BackendSettings): Promise<OpenEncoder> {
  if (settings.encoderThread) return ThreadEncoder.create({ file, settings: settings.session, options }, settings.log);
  const { encoder, executionProvider, dimensions, release } = await openOnnxEncoder(file, settings.session, options, settings.log);
  return { executionProvider, dimensions, output: encoder.output, pooledByModel: encoder.pooledByModel, run: (batch) => encoder.run(batch), close: release };
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

/** The ONNX file's size plus the tokenizer's: a fair estimate of what the version holds in memory. */
async function estimateBytes(version: LocalVersion, onnxFile: string): Promise<number> {
  let bytes = 0;
  for (const f of [onnxFile, 'tokenizer.json']) bytes += (await stat(join(version.dir, f))).size;
  return bytes;
}
