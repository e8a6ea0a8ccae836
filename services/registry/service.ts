// Builds a running registry from its configuration: the artifact store, the metadata store, the registry
// itself and its gRPC server. main.ts runs it as a process; tests build it in process the same way.
import { resolve } from 'node:path';
import type { Logger } from '../runtime/logger.js';
import { MeshServer } from '../runtime/server.js';
import { adminTokenCheck } from './auth.js';
import { openStore } from './backends/database.js';
import { FileArtifactStore } from './backends/file-artifacts.js';
import { onnxValidator } from './backends/onnx-validator.js';
import type { RegistryConfig } from './config.js';
import { Registry } from './domain/registry.js';
import { registryService } from './server.js';

export interface RegistryService {
  server: MeshServer;
  registry: Registry;
  artifacts: FileArtifactStore;
  /** Stops the registry's background work and closes the database (after the server has stopped). */
  close(): Promise<void>;
}

export async function createRegistryService(config: RegistryConfig, log: Logger): Promise<RegistryService> {
  const dataDir = resolve(config.dataDir);
  const artifacts = new FileArtifactStore(dataDir);
  await artifacts.init();
  const store = await openStore({ databaseUrl: config.databaseUrl, dataDir, log });
  const registry = new Registry({
    store,
    artifacts,
    validateOnnx: onnxValidator(),
    limits: { maxFileBytes: config.maxFileBytes, maxVersionBytes: config.maxVersionBytes, maxFiles: config.maxFiles },
    chunkBytes: config.chunkBytes,
    watchHistory: config.watchHistory,
    pollIntervalMs: config.pollIntervalMs,
    gcIntervalMs: config.gcIntervalMs,
    tempGraceMs: config.tempGraceMs,
    log,
  });
  try {
    await registry.start();
  } catch (err) {
    await store.close().catch(() => undefined);
    throw err;
  }
  const server = new MeshServer({
    component: 'registry',
    settings: config,
    log,
    services: [registryService({ registry, authorizeWrite: adminTokenCheck(config.adminToken) })],
  });
  log.info({ dataDir, database: store.kind, writesNeedToken: config.adminToken !== '' }, 'registry ready');
  return {
    server,
    registry,
    artifacts,
    async close() {
      await registry.close();
      await store.close();
    },
  };
}
