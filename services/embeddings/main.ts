// The embeddings process: config from the environment, then serve until SIGTERM (drain, unload the models).
import { runComponent } from '../runtime/process.js';
import { spec } from './config.js';
import { createEmbeddingsService } from './service.js';

await runComponent({ component: 'embeddings', spec, start: (config, log) => createEmbeddingsService(config, log) });
