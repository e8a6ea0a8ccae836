// The generation service's configuration: the common server settings, where models come from (the registry,
// or a local model folder), onnxruntime session settings, the continuous batcher and per-request limits.
import { z } from 'zod';
import { bool, modelServiceSettings, nonNegativeInt, positiveInt, serverSettings, setting, type ConfigOf } from '../runtime/config.js';

/** How far the decoder graph is amended at load (backends/onnx-decoder.ts, decode-graph.ts). */
export const DECODER_GRAPH_MODES = ['split-attention', 'new-entries', 'as-exported'] as const;
export type DecoderGraphMode = (typeof DECODER_GRAPH_MODES)[number];

export const spec = {
  ...serverSettings({ port: 50054, metricsPort: 9463 }),
  ...modelServiceSettings('generation'),
  defaultModel: setting('MAAS_GENERATION_DEFAULT_MODEL', z.string().min(1), 'gpt2-mini', 'model used when a request names none (through its `default` alias)'),
  preloadDefault: setting('MAAS_GENERATION_PRELOAD', bool(), 'true', 'load the default model at start, so the first request does not wait for it'),
  maxBatchSize: setting('MAAS_GENERATION_MAX_BATCH_SIZE', positiveInt(), '32', 'sequences decoded together in one step, per model version'),
  maxKvTokens: setting(
    'MAAS_GENERATION_MAX_KV_TOKENS',
    positiveInt(),
    '32768',
    'key/value cache tokens the running sequences of one model version may reserve together (prompt + max_new_tokens each); a request that needs more is INVALID_ARGUMENT',
  ),
  decodeLanes: setting(
    'MAAS_GENERATION_DECODE_LANES',
    nonNegativeInt(),
    '0',
    'lanes per loaded version, each stepping and sampling its share of the batch on its own: one lane runs on the main thread, several each on a worker thread, each with its own copy of the weights (0: one per CPU core, at most 4, on the cpu execution provider; 1 on others)',
  ),
  decodeGraph: setting(
    'MAAS_GENERATION_DECODE_GRAPH',
    z.enum(DECODER_GRAPH_MODES),
    'split-attention',
    'how the decoder graph is amended at load where it allows: split-attention (a step neither fetches nor copies the whole key/value cache), new-entries (a step fetches only the new keys and values), as-exported (no change; the load holds the model file once less)',
  ),
  laneNiceness: setting(
    'MAAS_GENERATION_LANE_NICENESS',
    z.coerce.number().int().min(0).max(19),
    '5',
    'how much lower than the main thread the worker-thread lanes run (Unix niceness added, 0 to 19): when both want a core, the main thread\'s short work (new requests, streaming every token) goes first, and a lane never waits for it',
  ),
  maxQueue: setting('MAAS_GENERATION_MAX_QUEUE', positiveInt(), '128', 'requests waiting for a place in the batch, per model version, before RESOURCE_EXHAUSTED'),
  maxNewTokens: setting('MAAS_GENERATION_MAX_NEW_TOKENS', positiveInt(), '2048', 'largest max_new_tokens a request may ask for (INVALID_ARGUMENT beyond)'),
  defaultMaxNewTokens: setting('MAAS_GENERATION_DEFAULT_MAX_NEW_TOKENS', positiveInt(), '256', 'max_new_tokens when a request leaves it unset (reduced to what fits the context)'),
  maxStopSequences: setting('MAAS_GENERATION_MAX_STOP_SEQUENCES', positiveInt(), '16', 'most stop sequences per request'),
  maxLogprobs: setting('MAAS_GENERATION_MAX_LOGPROBS', nonNegativeInt(), '20', 'largest top-n of log probabilities per token'),
  maxPromptChars: setting('MAAS_GENERATION_MAX_PROMPT_CHARS', positiveInt(), '200000', 'most characters in a prompt (or all chat messages together), checked before tokenizing'),
  maxMessages: setting('MAAS_GENERATION_MAX_MESSAGES', positiveInt(), '512', 'most chat messages per request'),
};

export type GenerationConfig = ConfigOf<typeof spec>;

/** Engine limits from the configuration. */
export function engineLimits(config: GenerationConfig) {
  return {
    maxNewTokens: config.maxNewTokens,
    defaultMaxNewTokens: Math.min(config.defaultMaxNewTokens, config.maxNewTokens),
    maxStopSequences: config.maxStopSequences,
    maxStopLength: 256,
    maxLogprobs: config.maxLogprobs,
    maxBatchSize: config.maxBatchSize,
    maxKvTokens: config.maxKvTokens,
    maxQueue: config.maxQueue,
    maxPromptChars: config.maxPromptChars,
    maxMessages: config.maxMessages,
  };
}
