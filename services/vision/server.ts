// Binds maas.vision.v1.VisionService to its handlers on a MeshServer (health and reflection come with it).
import { VisionServiceService } from '../../gen/maas/vision/v1/vision.js';
import type { ServerSettings } from '../runtime/config.js';
import type { Logger } from '../runtime/logger.js';
import { defineService, MeshServer } from '../runtime/server.js';
import type { VisionService } from './domain/vision-service.js';
import { createVisionHandlers } from './handlers.js';

export function createVisionServer(deps: { settings: ServerSettings; log: Logger; service: VisionService; streamWindow: number }): MeshServer {
  return new MeshServer({
    component: 'vision',
    settings: deps.settings,
    log: deps.log,
    services: [defineService(VisionServiceService, createVisionHandlers({ service: deps.service, streamWindow: deps.streamWindow }))],
  });
}
