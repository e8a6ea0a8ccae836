// Thin: proto messages ↔ the registry's plain types, the admin check on writes, and the call's signal
// passed on. The rules are in domain/registry.ts.
import type { Metadata } from '@grpc/grpc-js';
import {
  WatchEventType,
  type ModelRegistryServiceService,
  type Model,
  type ModelVersion,
  type UploadVersionRequest,
} from '../../gen/maas/registry/v1/registry.js';
import type { Handlers } from '../runtime/server.js';
import { counter, observableGauge, upDownCounter } from '../runtime/telemetry/metrics.js';
import { annotate, Attr } from '../runtime/telemetry/tracing.js';
import type { Registry } from './domain/registry.js';
import type { ModelRecord, VersionRecord } from './domain/types.js';
import type { UploadPart } from './domain/upload.js';

export interface RegistryHandlerDeps {
  registry: Registry;
  /** Throws unless the call may write (see auth.ts). */
  authorizeWrite: (metadata: Metadata) => void;
}

export function createRegistryHandlers({ registry, authorizeWrite }: RegistryHandlerDeps): Handlers<typeof ModelRegistryServiceService> {
  const uploaded = counter('maas_registry_upload_bytes', 'bytes of committed uploads');
  const downloaded = counter('maas_registry_download_bytes', 'bytes sent by DownloadVersion');
  const watchers = upDownCounter('maas_registry_watch_streams', 'WatchModels streams open now');
  observableGauge('maas_registry_revision', 'the newest registry revision this replica has seen', () => [{ value: registry.feed.revision }]);
  return {
    async createModel(req, ctx) {
      authorizeWrite(ctx.metadata);
      annotate({ [Attr.model]: req.name });
      return { model: toModel(await registry.createModel({ name: req.name, task: req.task, description: req.description, tags: req.tags })) };
    },
    async getModel(req) {
      annotate({ [Attr.model]: req.name });
      return { model: toModel(await registry.getModel(req.name)) };
    },
    async listModels(req) {
      const page = await registry.listModels({ pageSize: req.pageSize, pageToken: req.pageToken, task: req.task, tags: req.tags });
      return { models: page.items.map(toModel), nextPageToken: page.nextPageToken };
    },
    async updateModel(req, ctx) {
      authorizeWrite(ctx.metadata);
      annotate({ [Attr.model]: req.name });
      return { model: toModel(await registry.updateModel(req.name, { description: req.description, tags: req.tags }, req.updateMask)) };
    },
    async deleteModel(req, ctx) {
      authorizeWrite(ctx.metadata);
      annotate({ [Attr.model]: req.name });
      await registry.deleteModel(req.name, req.force);
      return {};
    },
    async uploadVersion(requests, ctx) {
      authorizeWrite(ctx.metadata);
      const version = await registry.upload(uploadParts(requests), ctx.signal);
      uploaded.add(version.files.reduce((n, f) => n + f.size, 0));
      annotate({ [Attr.model]: version.model, [Attr.modelVersion]: version.version });
      return { version: toVersion(version) };
    },
    async getVersion(req) {
      annotate({ [Attr.model]: req.model, [Attr.modelVersion]: req.version });
      return { version: toVersion(await registry.getVersion(req.model, req.version)) };
    },
    async listVersions(req) {
      annotate({ [Attr.model]: req.model });
      const page = await registry.listVersions(req.model, { pageSize: req.pageSize, pageToken: req.pageToken });
      return { versions: page.items.map(toVersion), nextPageToken: page.nextPageToken };
    },
    async updateVersion(req, ctx) {
      authorizeWrite(ctx.metadata);
      annotate({ [Attr.model]: req.model, [Attr.modelVersion]: req.version });
      return { version: toVersion(await registry.updateVersion(req.model, req.version, { description: req.description, tags: req.tags }, req.updateMask)) };
    },
    async deleteVersion(req, ctx) {
      authorizeWrite(ctx.metadata);
      annotate({ [Attr.model]: req.model, [Attr.modelVersion]: req.version });
      await registry.deleteVersion(req.model, req.version);
      return {};
    },
    async setAlias(req, ctx) {
      authorizeWrite(ctx.metadata);
      annotate({ [Attr.model]: req.model, [Attr.modelVersion]: req.version });
      return { model: toModel(await registry.setAlias(req.model, req.alias, req.version)) };
    },
    async deleteAlias(req, ctx) {
      authorizeWrite(ctx.metadata);
      annotate({ [Attr.model]: req.model });
      await registry.deleteAlias(req.model, req.alias);
      return {};
    },
    async resolveModel(req) {
      const ref = req.ref ?? { name: '' };
      const { version, revision } = await registry.resolve(ref.name, { version: ref.version, alias: ref.alias });
      annotate({ [Attr.model]: version.model, [Attr.modelVersion]: version.version });
      return { version: toVersion(version), revision };
    },
    async *downloadVersion(req, ctx) {
      annotate({ [Attr.model]: req.model, [Attr.modelVersion]: req.version });
      const { file, chunks } = await registry.download(req.model, req.version, req.file, req.offset, ctx.signal);
      let first = true;
      for await (const c of chunks) {
        yield { offset: c.offset, data: c.data, file: first ? file : undefined };
        downloaded.add(c.data.length);
        first = false;
      }
      // An offset at the very end still answers once, with the file's size and digest.
      if (first) yield { offset: req.offset, data: Buffer.alloc(0), file };
    },
    async *watchModels(req, ctx) {
      watchers.add(1);
      try {
        for await (const e of registry.watch(req.afterRevision, req.models, ctx.signal)) {
          yield { type: e.type as number as WatchEventType, revision: e.revision, model: e.model, version: e.version, alias: e.alias, task: e.task };
        }
      } finally {
        watchers.add(-1);
      }
    },
  };
}

async function* uploadParts(requests: AsyncIterable<UploadVersionRequest>): AsyncIterable<UploadPart> {
  for await (const r of requests) {
    if (r.header) {
      const h = r.header;
      yield {
        header: {
          model: h.model,
          files: h.files.map((f) => ({ name: f.name, size: f.size, sha256: f.sha256 })),
          sourceUri: h.sourceUri,
          parentVersion: h.parentVersion,
          description: h.description,
          tags: h.tags,
          aliases: h.aliases,
        },
      };
    } else if (r.chunk) yield { chunk: { file: r.chunk.file, data: r.chunk.data } };
    else yield { chunk: { file: '', data: Buffer.alloc(0) } };
  }
}

export function toModel(m: ModelRecord): Model {
  return {
    name: m.name,
    task: m.task,
    description: m.description,
    tags: m.tags,
    aliases: m.aliases,
    latestVersion: m.latestVersion,
    createTime: m.createTime,
    updateTime: m.updateTime,
  };
}

export function toVersion(v: VersionRecord): ModelVersion {
  return {
    model: v.model,
    version: v.version,
    task: v.task,
    files: v.files,
    signatures: v.signatures,
    description: v.description,
    tags: v.tags,
    sourceUri: v.sourceUri,
    parentVersion: v.parentVersion,
    aliases: v.aliases,
    createTime: v.createTime,
  };
}
