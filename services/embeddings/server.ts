// Binds maas.embeddings.v1.EmbeddingService to its handlers.
import { EmbeddingServiceService } from '../../gen/maas/embeddings/v1/embeddings.js';
import { defineService, type ServiceRegistration } from '../runtime/server.js';
import { createEmbeddingHandlers, type HandlerDeps } from './handlers.js';

export function embeddingService(deps: HandlerDeps): ServiceRegistration {
  return defineService(EmbeddingServiceService, createEmbeddingHandlers(deps));
}
