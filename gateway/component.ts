// How `maas up` runs the gateway: its entry, ports (gRPC 50051, HTTP 8080, metrics 9460), the addresses of
// the registry and of whichever model services are running, and a table line naming what it fronts.
import type { ComponentSpec } from '../cli/component.js';
import { HealthClient, HealthCheckResponse_ServingStatus as S } from '../gen/grpc/health/v1/health.js';
import { createClient, unary } from '../services/runtime/client.js';
import { spec } from './config.js';

const TARGET_VARIABLES: Record<string, string> = {
  embeddings: 'MAAS_GATEWAY_EMBEDDINGS_TARGETS',
  generation: 'MAAS_GATEWAY_GENERATION_TARGETS',
  vision: 'MAAS_GATEWAY_VISION_TARGETS',
};

export const gatewayComponent: ComponentSpec = {
  name: 'gateway',
  entry: 'gateway/main.ts',
  spec,
  port: 50051,
  metricsPort: 9460,
  extraPorts: { http: { port: 8080, variable: 'MAAS_GATEWAY_HTTP_PORT', logField: 'httpPort' } },
  env: (mesh) => {
    const env: Record<string, string> = {};
    if (mesh.grpc.registry) env.MAAS_REGISTRY_ADDRESS = mesh.grpc.registry;
    for (const [name, variable] of Object.entries(TARGET_VARIABLES)) if (mesh.grpc[name]) env[variable] = mesh.grpc[name]!;
    return env;
  },
  async describe(address) {
    const client = createClient(HealthClient, address);
    try {
      const { statuses } = await unary(client.list.bind(client), {}, { deadline: Date.now() + 5000 });
      return Object.entries(statuses)
        .filter(([name]) => name.startsWith('maas.'))
        .map(([name, s]) => `${name.split('.')[1]}${s.status === S.SERVING ? '' : ' (no healthy replica)'}`)
        .join(', ');
    } finally {
      client.close();
    }
  },
};
