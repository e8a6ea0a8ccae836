// The embeddings service's configuration: the common server settings, where models come from (the registry,
// or a local model folder), the onnxruntime session settings, the dynamic batcher and the per-request limits.
import { z } from 'zod';
import { bool, modelServiceSettings, nonNegativeInt, positiveInt, serverSettings, setting, type ConfigOf } from '../runtime/config.js';

export const spec = {
  ...serverSettings({ port: 50053, metricsPort: 9462 }),
  ...modelServiceSettings('embeddings'),
  defaultModel: setting('MAAS_EMBEDDINGS_DEFAULT_MODEL', z.string().min(1), 'glove-100d', 'model used when a request names none (through its `default` alias)'),
  preloadDefault: setting('MAAS_EMBEDDINGS_PRELOAD', bool(), 'true', 'load the default model at start, so the first request does not wait for it'),
  maxBatchSize: setting('MAAS_EMBEDDINGS_MAX_BATCH_SIZE', positiveInt(), '512', 'most inputs in one batch (MAAS_EMBEDDINGS_MAX_BATCH_TOKENS caps long inputs first)'),
  maxBatchTokens: setting('MAAS_EMBEDDINGS_MAX_BATCH_TOKENS', positiveInt(), '16384', 'most padded tokens (longest input × inputs) in one batch'),
  maxQueueDelayMs: setting('MAAS_EMBEDDINGS_MAX_QUEUE_DELAY_MS', nonNegativeInt(), '0', 'how long an input may wait for its batch to fill while the model is idle (0: run at once; batches still grow under load)'),
  maxQueueSize: setting('MAAS_EMBEDDINGS_MAX_QUEUE_INPUTS', positiveInt(), '4096', 'inputs waiting per model version before requests are refused with RESOURCE_EXHAUSTED'),
  encoderThread: setting(
    'MAAS_EMBEDDINGS_ENCODER_THREAD',
    bool(),
    'true',
    'run each model version\'s onnxruntime session on a worker thread of its own, so that batches run while the event loop serves calls (false: on the event loop)',
  ),
  batchConcurrency: setting(
    'MAAS_EMBEDDINGS_BATCH_CONCURRENCY',
    positiveInt(),
    '2',
    'batches of one model version running or waiting at once (on an encoder thread the second waits there, so the thread never waits for the event loop between batches)',
  ),
  maxInputsPerRequest: setting('MAAS_EMBEDDINGS_MAX_INPUTS_PER_REQUEST', positiveInt(), '512', 'most texts in one Embed request (INVALID_ARGUMENT beyond)'),
  maxInputChars: setting('MAAS_EMBEDDINGS_MAX_INPUT_CHARS', positiveInt(), '50000', 'most characters in one text (INVALID_ARGUMENT beyond)'),
  streamWindow: setting('MAAS_EMBEDDINGS_STREAM_WINDOW', positiveInt(), '32', 'requests of one EmbedStream call in flight at once; reading pauses beyond'),
};

export type EmbeddingsConfig = ConfigOf<typeof spec>;
