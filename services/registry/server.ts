// Binds maas.registry.v1.ModelRegistryService to its handlers. WatchModels streams are long-lived: drain
// ends them with UNAVAILABLE (clients reconnect to another replica and resume from their revision).
import { ModelRegistryServiceService } from '../../gen/maas/registry/v1/registry.js';
import { defineService, type ServiceRegistration } from '../runtime/server.js';
import { createRegistryHandlers, type RegistryHandlerDeps } from './handlers.js';

export function registryService(deps: RegistryHandlerDeps): ServiceRegistration {
  return defineService(ModelRegistryServiceService, createRegistryHandlers(deps), { longLived: ['watchModels'] });
}
