// The vision process: config from the environment, models from the registry (or a local folder), serve until
// SIGTERM (drain, then unload the models).
import { runComponent } from '../runtime/process.js';
import { spec } from './config.js';
import { createVisionComponent } from './service.js';

await runComponent({ component: 'vision', spec, start: (config, log) => createVisionComponent(config, log) });
