// A registry client for tools and other components (the CLI, model services' default-model setup). Callers
// pass an address or an existing client; the admin token travels as `authorization: Bearer …`.
import { Metadata } from '@grpc/grpc-js';
import { ModelRegistryServiceClient } from '../../../gen/maas/registry/v1/registry.js';
import { createClient, TRANSFER_CHANNEL_OPTIONS } from '../../runtime/client.js';

export { TRANSFER_CHANNEL_OPTIONS };

/** An address (`host:port`) or a client already connected to the registry. */
export type RegistryTarget = string | ModelRegistryServiceClient;

/** The client for a target, and whether the caller must close it. */
export function connect(target: RegistryTarget): { client: ModelRegistryServiceClient; owned: boolean } {
  if (typeof target === 'string') return { client: createClient(ModelRegistryServiceClient, target, { channelOptions: TRANSFER_CHANNEL_OPTIONS }), owned: true };
  return { client: target, owned: false };
}

/** Metadata carrying the admin token (when there is one). */
export function authMetadata(token: string | undefined): Metadata {
  const md = new Metadata();
  if (token) md.set('authorization', `Bearer ${token}`);
  return md;
}

/** The admin token given, else MAAS_REGISTRY_ADMIN_TOKEN from the environment (as `maas up` passes it on). */
export function tokenOrEnv(token: string | undefined): string | undefined {
  return token ?? (process.env.MAAS_REGISTRY_ADMIN_TOKEN || undefined);
}
