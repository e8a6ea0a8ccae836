// The generation process: config from the environment, then serve until SIGTERM (drain, unload the models).
import { runComponent } from '../runtime/process.js';
import { spec } from './config.js';
import { createGenerationService } from './service.js';

await runComponent({ component: 'generation', spec, start: (config, log) => createGenerationService(config, log) });
