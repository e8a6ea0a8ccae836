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
import { OnnxDecoder, type DecoderConfigHints, type DecoderGraphMode } from './onnx-decoder.js';
import { WorkerLane, type LaneInit } from './worker-lane.js';
import { startAll } from '../../runtime/workers/start-worker.js';

const GRAPH_NAMES = ['model.onnx', 'decoder_model_merged.onnx', 'onnx/model.onnx', 'onnx/decoder_model_merged.onnx'];

export interface LoaderOptions {
  session: SessionSettings;
  /** Decode lanes per version (0: one per core, at most 4, on cpu; 1 on other providers). Default 1. */
  decodeLanes?: number;
  /** How the decoder graph is amended (see MAAS_GENERATION_DECODE_GRAPH). Default split-attention. */
  decodeGraph?: DecoderGraphMode;
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
  const path = join(dir, graph);
  const eos = idList(generationConfig.eos_token_id ?? config.eos_token_id);
  const tokenizerFor = (modelVocabSize: number) => new TextTokenizer(tokenizerJson, tokenizerConfig, eos, modelVocabSize);
  const laneOptions = (tokenizer: TextTokenizer) => ({ eosIds: [...tokenizer.eosIds], maxLogprobs: options.limits.maxLogprobs });
  const workerInit = (tokenizer: TextTokenizer, executionProvider: string): LaneInit => ({
    model: path,
    graph: options.decodeGraph,
    settings: { ...options.session, executionProviders: [executionProvider] },
    hints,
    options: laneOptions(tokenizer),
    niceness: options.laneNiceness ?? 0,
  });
  const lanes: Lane[] = [];
  let decoder: OnnxDecoder | undefined;
  try {
    let tokenizer: TextTokenizer;
    let executionProvider = 'cpu';
    const cpuLanes = laneCount(options.decodeLanes ?? 1, 'cpu');
    // The vocabulary the tokenizer is checked against, when it is known before any session exists.
    const vocab = registeredVocab(registered) ?? hints.vocabSize;
    const early = onlyCpu(options.session) && cpuLanes > 1 && vocab !== undefined ? attempt(() => tokenizerFor(vocab)) : undefined;
    if (early) {
      // Lanes on worker threads straight away: the provider is the CPU, where lanes add cores, and nothing
      // needs a session on this thread (each lane checks the graph; a check that fails keeps its reason).
      tokenizer = early;
      lanes.push(...(await startWorkerLanes(cpuLanes, workerInit(tokenizer, 'cpu'), options)));
      // config.json can disagree with a graph that fixes its own logits width: the graph is what runs.
      if (lanes[0]!.shape.vocabSize !== vocab) tokenizer = tokenizerFor(lanes[0]!.shape.vocabSize);
    } else {
      // A decoder on this thread checks the graph, finds the execution provider (`cuda,cpu` may fall back) and
      // the vocabulary the tokenizer is checked against. It is the only lane when there is one; with several,
      // every lane runs on a worker thread so that this thread's work for the callers (detokenizing, stop
      // strings, streaming) never waits behind a step.
      decoder = await OnnxDecoder.create(path, options.session, hints, options.log, { graph: options.decodeGraph });
      executionProvider = decoder.executionProvider;
      tokenizer = tokenizerFor(decoder.shape.vocabSize);
      const count = laneCount(options.decodeLanes ?? 1, executionProvider);
      if (count === 1) {
        lanes.push(new LaneLoop(decoder, laneOptions(tokenizer)));
        options.log.info({ model: options.name, version: options.version, lanes: 1, graph: decoder.graph }, 'decode lane on the main thread');
      } else {
        await decoder.close();
        lanes.push(...(await startWorkerLanes(count, workerInit(tokenizer, executionProvider), options)));
      }
      decoder = undefined;
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
    const bytes = (await stat(path)).size * lanes.length;
    return { model, bytes, executionProvider };
  } catch (err) {
    await Promise.all([...(decoder ? [decoder] : []), ...lanes].map((d) => d.close().catch(() => undefined)));
    throw err;
  }
}

/** Starts `count` worker lanes side by side; if one fails, the others are closed and its reason is thrown. */
async function startWorkerLanes(count: number, init: LaneInit, options: LoaderOptions & { name: string; version: number }): Promise<WorkerLane[]> {
  const workers = await startAll(count, () => WorkerLane.create(init));
  const refused = workers.map((w) => w.nicenessRefused).find((r) => r !== undefined);
  if (refused) options.log.warn({ model: options.name, niceness: init.niceness, err: refused }, "decode lanes run at the main thread's priority: lowering it was refused");
  options.log.info({ model: options.name, version: options.version, lanes: count, niceness: init.niceness, graph: workers[0]!.graph }, 'decode lanes on worker threads');
  return workers;
}

/** The function's result, or undefined when it throws (the caller then takes the path that reports why). */
function attempt<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch {
    return undefined;
  }
}

/** True when the settings allow no execution provider but the CPU. */
function onlyCpu(session: SessionSettings): boolean {
  return session.executionProviders.every((p) => p.toLowerCase() === 'cpu');
}

/** The logits width the registry recorded for the graph (its last dimension), when it is fixed. */
function registeredVocab(registered: { outputs: TensorSignature[] } | undefined): number | undefined {
  const width = registered?.outputs.find((o) => o.name === 'logits')?.shape.at(-1);
  return width !== undefined && width > 0 ? width : undefined;
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
