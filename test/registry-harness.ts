// What the registry tests share: a registry built in process on SQLite or PostgreSQL (fresh data folder and
// database each time), a client, and helpers for raw upload streams.
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Metadata, type ServiceError } from '@grpc/grpc-js';
import { Task } from '../gen/maas/common/v1/model.js';
import * as R from '../gen/maas/registry/v1/registry.js';
import { ModelRegistryServiceClient, type UploadVersionRequest, type UploadVersionResponse } from '../gen/maas/registry/v1/registry.js';
import { createClient, unary } from '../services/runtime/client.js';
import { loadConfig } from '../services/runtime/config.js';
import { decodeStatus } from '../services/runtime/grpc-status.js';
import { silentLogger } from '../services/runtime/logger.js';
import { spec } from '../services/registry/config.js';
import { createRegistryService, type RegistryService } from '../services/registry/service.js';
import { sha256 } from './support/registry-fixtures.js';

export interface Harness {
  service: RegistryService;
  client: ModelRegistryServiceClient;
  address: string;
  dataDir: string;
  /** Every unary method, promisified, with optional metadata. */
  call: <K extends UnaryName>(method: K, request: Unary[K][0], metadata?: Metadata) => Promise<Unary[K][1]>;
  close(): Promise<void>;
}

interface Unary {
  createModel: [R.CreateModelRequest, R.CreateModelResponse];
  getModel: [R.GetModelRequest, R.GetModelResponse];
  listModels: [R.ListModelsRequest, R.ListModelsResponse];
  updateModel: [R.UpdateModelRequest, R.UpdateModelResponse];
  deleteModel: [R.DeleteModelRequest, R.DeleteModelResponse];
  getVersion: [R.GetVersionRequest, R.GetVersionResponse];
  listVersions: [R.ListVersionsRequest, R.ListVersionsResponse];
  updateVersion: [R.UpdateVersionRequest, R.UpdateVersionResponse];
  deleteVersion: [R.DeleteVersionRequest, R.DeleteVersionResponse];
  setAlias: [R.SetAliasRequest, R.SetAliasResponse];
  deleteAlias: [R.DeleteAliasRequest, R.DeleteAliasResponse];
  resolveModel: [R.ResolveModelRequest, R.ResolveModelResponse];
}
type UnaryName = keyof Unary;

/** Starts a registry in process; `databaseUrl` '' means SQLite in the data folder. */
export async function startRegistry(databaseUrl: string, env: Record<string, string> = {}): Promise<Harness> {
  const dataDir = await mkdtemp(join(tmpdir(), 'maas-registry-'));
  const config = loadConfig(spec, {
    MAAS_HOST: '127.0.0.1',
    MAAS_PORT: '0',
    MAAS_REGISTRY_DATA_DIR: dataDir,
    MAAS_REGISTRY_DATABASE_URL: databaseUrl,
    MAAS_REGISTRY_POLL_INTERVAL_MS: '200',
    ...env,
  });
  const service = await createRegistryService(config, silentLogger);
  const port = await service.server.start();
  const address = `127.0.0.1:${port}`;
  const client = createClient(ModelRegistryServiceClient, address);
  const call = ((method: UnaryName, request: unknown, metadata?: Metadata) =>
    unary((client[method] as (...a: unknown[]) => never).bind(client) as never, request as never, { metadata })) as Harness['call'];
  return {
    service,
    client,
    address,
    dataDir,
    call,
    async close() {
      client.close();
      await service.server.close();
      await service.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Sends exactly these messages as one UploadVersion stream. */
export function rawUpload(client: ModelRegistryServiceClient, messages: UploadVersionRequest[], metadata = new Metadata()): Promise<UploadVersionResponse> {
  return new Promise((resolve, reject) => {
    const call = client.uploadVersion(metadata, {}, (err, res) => (err ? reject(err) : resolve(res)));
    for (const m of messages) call.write(m);
    call.end();
  });
}

/** A header plus one chunk per file, sizes and digests declared correctly unless overridden. */
export function uploadOf(model: string, files: Record<string, Buffer>, header: Partial<NonNullable<UploadVersionRequest['header']>> = {}): UploadVersionRequest[] {
  const declared = Object.entries(files).map(([name, data]) => ({ name, size: data.length, sha256: sha256(data) }));
  return [
    { header: { model, files: declared, sourceUri: '', parentVersion: 0, description: '', tags: {}, aliases: [], ...header } },
    ...Object.entries(files).map(([name, data]) => ({ chunk: { file: name, data } })),
  ];
}

export async function createModel(h: Harness, name: string, task = Task.TASK_EMBEDDING) {
  return (await h.call('createModel', { name, task, description: '', tags: {} })).model!;
}

/** What the error's google.rpc details say. */
export function details(err: unknown) {
  return decodeStatus(err as ServiceError);
}

/** Files under the data folder's tmp/ and blobs/ (what a failed upload must not leave behind). */
export async function leftovers(dataDir: string): Promise<{ tmp: string[]; blobs: string[] }> {
  const tmp = await readdir(join(dataDir, 'tmp')).catch(() => []);
  const blobs: string[] = [];
  const root = join(dataDir, 'blobs', 'sha256');
  for (const p of await readdir(root).catch(() => [])) blobs.push(...(await readdir(join(root, p))));
  return { tmp, blobs };
}

/** Catches a rejection and returns it (for checking details). */
export async function failure(p: Promise<unknown>): Promise<ServiceError> {
  try {
    await p;
  } catch (err) {
    return err as ServiceError;
  }
  throw new Error('expected the call to fail');
}
