// The generation service's ModelLoader: turns a local model version folder (Hugging Face layout) into a
// GenerationModel. It reads config.json / generation_config.json for shape hints and end-of-sequence ids,
// tokenizer.json and tokenizer_config.json for the tokenizer and chat template, and the ONNX decoder. A
// version whose files or signature this service cannot drive fails with FailedPreconditionError.
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { FailedPreconditionError } from '../../runtime/errors.js';
import type { Logger } from '../../runtime/logger.js';
import type { SessionSettings } from '../../runtime/models/onnx-session.js';
import type { Loaded, LocalVersion, ModelLoader, TensorSignature } from '../../runtime/models/types.js';
import { GenerationModel, type EngineLimits } from '../domain/engine.js';
import type { EngineMetrics } from '../domain/scheduler.js';
import { TextTokenizer } from '../domain/tokenizer.js';
import { LaneLoop, type Lane } from '../domain/lane.js';
import { OnnxDecoder, type DecoderConfigHints } from './onnx-decoder.js';
import { WorkerLane } from './worker-lane.js';

const GRAPH_NAMES = ['model.onnx', 'decoder_model_merged.onnx', 'onnx/model.onnx', 'onnx/decoder_model_merged.onnx'];

export interface LoaderOptions {
  session: SessionSettings;
  /** Decode lanes per version (0: one per core, at most 4, on cpu; 1 on other providers). Default 1. */
  decodeLanes?: number;
  /** Niceness added to worker-thread lanes (see MAAS_GENERATION_LANE_NICENESS). Default 0. */
  laneNiceness?: number;
  limits: EngineLimits;
  log: Logger;
  /** Metrics bound to one model version (main.ts passes OpenTelemetry instruments). */
  metrics?: (model: string, version: number) => EngineMetrics;
}

export function createGenerationLoader(options: LoaderOptions): ModelLoader<GenerationModel> {
  return async (version: LocalVersion): Promise<Loaded<GenerationModel>> => {
    const model = await loadGenerationModel(version.dir, { ...options, name: version.name, version: version.version, signatures: version.signatures });
    return {
      model: model.model,
      bytes: model.bytes,
      executionProvider: model.executionProvider,
      close: () => model.model.close(),
    };
  };
}

/** Loads a version folder directly (tests, benches, and the loader above). */
export async function loadGenerationModel(
  dir: string,
  options: LoaderOptions & { name: string; version: number; signatures?: LocalVersion['signatures'] },
): Promise<{ model: GenerationModel; bytes: number; executionProvider: string }> {
  const graph = GRAPH_NAMES.find((n) => existsSync(join(dir, n)));
  if (!graph) throw precondition(`the version has no decoder graph (one of ${GRAPH_NAMES.join(', ')})`, 'FILES', 'model.onnx');
  if (!existsSync(join(dir, 'tokenizer.json'))) throw precondition('the version has no tokenizer.json', 'FILES', 'tokenizer.json');
  const registered = options.signatures?.[graph];
  if (registered) precheckSignature(registered.inputs, registered.outputs);

  const config = await readJson(dir, 'config.json');
  const generationConfig = await readJson(dir, 'generation_config.json');
  const tokenizerConfig = await readJson(dir, 'tokenizer_config.json');
  const tokenizerJson = await readJson(dir, 'tokenizer.json');
  const hints = configHints(config, tokenizerConfig);
  // A decoder on this thread checks the graph and finds the execution provider. It is the only lane when
  // there is one; with several, every lane runs on a worker thread (with the provider found), so that this
  // thread's work for the callers (detokenizing, stop strings, streaming) never waits behind a step. (With
  // several, this load is one more than the lanes need; it stays because the lanes' end-of-sequence ids come
  // from the tokenizer, which is checked against the model's shape first.)
  const decoder = await OnnxDecoder.create(join(dir, graph), options.session, hints, options.log);
  const { executionProvider, shape } = decoder;
  const count = laneCount(options.decodeLanes ?? 1, executionProvider);
  const lanes: Lane[] = [];
  try {
    const eos = idList(generationConfig.eos_token_id ?? config.eos_token_id);
    const tokenizer = new TextTokenizer(tokenizerJson, tokenizerConfig, eos, shape.vocabSize);
    const laneOptions = { eosIds: [...tokenizer.eosIds], maxLogprobs: options.limits.maxLogprobs };
    if (count === 1) lanes.push(new LaneLoop(decoder, laneOptions));
    else {
      await decoder.close();
      const init = { model: join(dir, graph), settings: { ...options.session, executionProviders: [executionProvider] }, hints, options: laneOptions, niceness: options.laneNiceness ?? 0 };
      // The lanes load side by side; if one fails, the others are closed below and its reason is thrown.
      const started = await Promise.allSettled(Array.from({ length: count }, () => WorkerLane.create(init)));
      const workers = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      lanes.push(...workers);
      const failed = started.find((r) => r.status === 'rejected');
      if (failed) throw failed.reason;
      const refused = workers.map((w) => w.nicenessRefused).find((r) => r !== undefined);
      if (refused) options.log.warn({ model: options.name, niceness: init.niceness, err: refused }, 'decode lanes run at the main thread\'s priority: lowering it was refused');
      options.log.info({ model: options.name, version: options.version, lanes: count, niceness: init.niceness }, 'decode lanes on worker threads');
    }
    const notes: Record<string, string> = {};
    for (const [k, v] of Object.entries(config)) if (k.startsWith('maas_') && (typeof v === 'string' || typeof v === 'number')) notes[k] = String(v);
    const model = new GenerationModel(lanes, tokenizer, options.limits, {
      model: options.name,
      version: options.version,
      log: options.log,
      metrics: options.metrics?.(options.name, options.version),
      notes,
    });
    // Every lane holds its own copy of the weights.
    const bytes = (await stat(join(dir, graph))).size * lanes.length;
    return { model, bytes, executionProvider };
  } catch (err) {
    await Promise.all([decoder, ...lanes].map((d) => d.close().catch(() => undefined)));
    throw err;
  }
}

/** Lanes for a setting: 0 means one per core (at most 4) on the cpu provider, where they add cores; else 1. */
export function laneCount(setting: number, executionProvider: string): number {
  if (setting > 0) return setting;
  return executionProvider === 'cpu' ? Math.max(1, Math.min(4, availableParallelism())) : 1;
}

/** The decoder's shape hints from a version folder's config.json and tokenizer_config.json (benches use it too). */
export async function decoderHints(dir: string): Promise<DecoderConfigHints> {
  return configHints(await readJson(dir, 'config.json'), await readJson(dir, 'tokenizer_config.json'));
}

function configHints(config: Record<string, unknown>, tokenizerConfig: Record<string, unknown>): DecoderConfigHints {
  const num = (...keys: string[]) => {
    for (const k of keys) if (typeof config[k] === 'number') return config[k] as number;
    return undefined;
  };
  const heads = num('n_head', 'num_attention_heads');
  const kvHeads = num('num_key_value_heads') ?? heads;
  const hidden = num('n_embd', 'hidden_size', 'd_model');
  const headDim = num('head_dim') ?? (hidden && heads ? hidden / heads : undefined);
  const modelMax = typeof tokenizerConfig.model_max_length === 'number' && tokenizerConfig.model_max_length < 1e9 ? tokenizerConfig.model_max_length : undefined;
  return { vocabSize: num('vocab_size'), maxPositions: num('n_positions', 'max_position_embeddings', 'n_ctx') ?? modelMax, kvHeads, headDim };
}

/** The registry's recorded signature, checked before a session is built. */
function precheckSignature(inputs: TensorSignature[], outputs: TensorSignature[]): void {
  const inNames = new Set(inputs.map((t) => t.name));
  const outNames = new Set(outputs.map((t) => t.name));
  const missing = [
    ...['input_ids', 'attention_mask', 'past_key_values.0.key', 'past_key_values.0.value'].filter((n) => !inNames.has(n)),
    ...['logits', 'present.0.key', 'present.0.value'].filter((n) => !outNames.has(n)),
  ];
  if (missing.length > 0) {
    throw new FailedPreconditionError(
      `the model is not a decoder with a key/value cache this service can drive: ${missing.join(', ')} missing from its signature`,
      missing.map((m) => ({ type: 'SIGNATURE', subject: m, description: `${m} is missing` })),
      { reason: 'UNSUPPORTED_MODEL' },
    );
  }
}

function idList(v: unknown): number[] {
  if (typeof v === 'number') return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === 'number');
  return [];
}

async function readJson(dir: string, name: string): Promise<Record<string, unknown>> {
  const path = join(dir, name);
  if (!existsSync(path)) return {};
  try {
    return JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw precondition(`${name} is not valid JSON: ${String(err)}`, 'FILES', name);
  }
}

function precondition(message: string, type: string, subject: string): FailedPreconditionError {
  return new FailedPreconditionError(message, [{ type, subject, description: message }], { reason: 'UNSUPPORTED_MODEL' });
}
