// Binds maas.embeddings.v1.EmbeddingService to its handlers.
import { defineService, type ServiceRegistration } from '../runtime/server.js';
import { createEmbeddingHandlers, type HandlerDeps } from './handlers.js';
import { EmbeddingServiceDefinition } from './wire.js';

export function embeddingService(deps: HandlerDeps): ServiceRegistration {
  return defineService(EmbeddingServiceDefinition, createEmbeddingHandlers(deps));
}
