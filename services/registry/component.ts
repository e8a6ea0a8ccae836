// How `maas up` runs the registry: first of all components, its data (SQLite file and blobs) under the mesh's
// data folder, and a table line that lists its models.
import { join } from 'node:path';
import type { ComponentSpec } from '../../cli/component.js';
import { ModelRegistryServiceClient } from '../../gen/maas/registry/v1/registry.js';
import { createClient, unary } from '../runtime/client.js';
import { spec } from './config.js';

export const registryComponent: ComponentSpec = {
  name: 'registry',
  entry: 'services/registry/main.ts',
  spec,
  port: 50052,
  metricsPort: 9461,
  env: (_mesh, dataDir) => ({ MAAS_REGISTRY_DATA_DIR: join(dataDir, 'registry') }),
  async describe(address) {
    const client = createClient(ModelRegistryServiceClient, address);
    try {
      const { models, nextPageToken } = await unary(client.listModels.bind(client), { pageSize: 20, pageToken: '', task: 0, tags: {} }, { deadline: Date.now() + 5000 });
      if (models.length === 0) return 'no models yet';
      const listed = models.map((m) => {
        const aliases = Object.entries(m.aliases).map(([a, v]) => `${a}→${v}`);
        return `${m.name}${aliases.length ? ` [${aliases.join(',')}]` : ''}`;
      });
      return `${listed.join('; ')}${nextPageToken ? '; …' : ''}`;
    } finally {
      client.close();
    }
  },
};
