// The gateway process: config from the environment, then serve (gRPC front, HTTP API) until SIGTERM.
import { runComponent } from '../services/runtime/process.js';
import { spec } from './config.js';
import { createGateway } from './gateway.js';

await runComponent({
  component: 'gateway',
  spec,
  start: async (config, log) => {
    const gateway = createGateway({ config, log });
    return { server: gateway.server, close: () => gateway.close() };
  },
});
