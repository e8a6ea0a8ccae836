import { describe, expect, it } from 'vitest';
import { parseDuration, parseMethodTable, parseSize } from '../domain/method-policy.js';
import { buildMethodTable, loadDescriptors, PUBLIC_SERVICES } from './method-table.js';

const policy = {
  defaultDeadlines: parseMethodTable('*=30s,WatchModels=0,UploadVersion=30m', parseDuration),
  maxRequestBytes: parseMethodTable('maas.vision.v1.VisionService/*=16MiB', parseSize),
  fallbackMaxRequestBytes: 4 * 1024 * 1024,
  longLived: ['WatchModels'],
};

describe('the routing table built from the descriptors', () => {
  const table = buildMethodTable(loadDescriptors(), PUBLIC_SERVICES, policy);

  it('routes every method of the registry to the registry pool with read and write scopes', () => {
    const get = table.get('/maas.registry.v1.ModelRegistryService/GetModel')!;
    expect(get).toMatchObject({ pool: 'registry', kind: 'unary', scope: 'registry:read', idempotent: true, modelRefPath: undefined, defaultDeadlineMs: 30_000 });
    expect(table.get('/maas.registry.v1.ModelRegistryService/CreateModel')).toMatchObject({ scope: 'registry:write', idempotent: false });
    expect(table.get('/maas.registry.v1.ModelRegistryService/UploadVersion')).toMatchObject({ kind: 'client_stream', defaultDeadlineMs: 1_800_000 });
    expect(table.get('/maas.registry.v1.ModelRegistryService/WatchModels')).toMatchObject({ kind: 'server_stream', longLived: true, defaultDeadlineMs: 0 });
  });

  it('finds the model reference of each model-service request by type, nested ones included', () => {
    expect(table.get('/maas.embeddings.v1.EmbeddingService/Embed')).toMatchObject({ modelRefPath: [1], tasks: ['embedding'], scope: 'infer', idempotent: true });
    expect(table.get('/maas.embeddings.v1.EmbeddingService/EmbedStream')).toMatchObject({ modelRefPath: [1, 1], kind: 'bidi' });
    expect(table.get('/maas.embeddings.v1.EmbeddingService/ListModels')!.modelRefPath).toBeUndefined();
    expect(table.get('/maas.vision.v1.VisionService/RecognizeTextStream')).toMatchObject({ modelRefPath: [2], maxRequestBytes: 16 * 1024 * 1024 });
  });
});
