// Binds maas.generation.v1.GenerationService to its handlers.
import { GenerationServiceService } from '../../gen/maas/generation/v1/generation.js';
import { defineService, type ServiceRegistration } from '../runtime/server.js';
import { createGenerationHandlers, type HandlerDeps } from './handlers.js';

export function generationService(deps: HandlerDeps): ServiceRegistration {
  return defineService(GenerationServiceService, createGenerationHandlers(deps));
}
