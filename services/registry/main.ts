// The registry process: config from the environment, then serve until SIGTERM (drain, close the database).
import { runComponent } from '../runtime/process.js';
import { spec } from './config.js';
import { createRegistryService } from './service.js';

await runComponent({ component: 'registry', spec, start: (config, log) => createRegistryService(config, log) });
