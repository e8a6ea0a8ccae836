// Model references to versions and tasks, for routing: the registry's WatchModels stream keeps a local
// catalog current (resuming from the last revision after a break), so the call path does a map lookup.
// A name the catalog does not know is confirmed with ResolveModel before the gateway answers NOT_FOUND
// (the watch may be a moment behind), and while the catalog has never been in sync ResolveModel answers,
// cached briefly. When the registry cannot be asked at all, calls pass through unresolved and the model
// service decides.
import * as grpc from '@grpc/grpc-js';
import { Task } from '../../gen/maas/common/v1/model.js';
import { ModelRegistryServiceService, WatchEventType, type WatchModelsResponse } from '../../gen/maas/registry/v1/registry.js';
import { decodeStatus, isServiceError } from '../../services/runtime/grpc-status.js';
import type { Logger } from '../../services/runtime/logger.js';
import { ModelCatalog, type CatalogEvent, type ModelRefLike, type ModelTaskName, type Resolution } from '../domain/catalog.js';
import type { ServicePool } from './service-pool.js';
import { serverStreamCall, unaryCall } from './typed-calls.js';

export function taskName(t: Task): ModelTaskName {
  switch (t) {
    case Task.TASK_EMBEDDING:
      return 'embedding';
    case Task.TASK_GENERATION:
      return 'generation';
    case Task.TASK_OCR:
      return 'ocr';
    case Task.TASK_IMAGE_CLASSIFICATION:
      return 'image_classification';
    default:
      return 'unknown';
  }
}

const RESOLVE_TIMEOUT_MS = 2000;

export class ModelDirectory {
  readonly catalog = new ModelCatalog();
  private readonly abort = new AbortController();
  private revision = 0;
  private readonly cache = new Map<string, { resolution: Resolution; until: number }>();
  private stopped = false;

  constructor(
    private readonly registry: ServicePool,
    private readonly log: Logger,
    private readonly cacheMs: number,
  ) {
    void this.watch();
  }

  /** Resolves a reference; synchronous when the catalog knows the answer. */
  resolve(ref: ModelRefLike): Resolution | Promise<Resolution> {
    const local = this.catalog.resolve(ref);
    if (local.status === 'found') return local;
    const key = `${ref.name}\u0000${ref.version ?? ''}\u0000${ref.alias ?? ''}`;
    const hit = this.cache.get(key);
    if (hit && hit.until > Date.now()) return hit.resolution;
    return this.ask(ref).then((resolution) => {
      // Negative answers are kept only a moment: a model may be pushed right after.
      const ttl = resolution.status === 'found' ? this.cacheMs : resolution.status === 'not_found' ? 1000 : 0;
      if (ttl > 0) {
        if (this.cache.size > 10_000) this.cache.clear();
        this.cache.set(key, { resolution, until: Date.now() + ttl });
      }
      return resolution;
    });
  }

  private async ask(ref: ModelRefLike): Promise<Resolution> {
    const replica = this.registry.pick(undefined);
    if (!replica) return { status: 'unknown' };
    try {
      const request = { ref: { name: ref.name, version: ref.version, alias: ref.alias } };
      const res = await unaryCall(replica.handle.upstream, ModelRegistryServiceService.resolveModel, request, { deadline: Date.now() + RESOLVE_TIMEOUT_MS });
      const v = res.version!;
      return { status: 'found', name: v.model, version: v.version, task: taskName(v.task) };
    } catch (err) {
      if (isServiceError(err) && err.code === grpc.status.NOT_FOUND) {
        const d = decodeStatus(err);
        const type = d.resourceInfo?.resourceType;
        return {
          status: 'not_found',
          resource: type === 'version' || type === 'alias' ? type : 'model',
          name: d.resourceInfo?.resourceName ?? ref.name,
          message: d.message,
        };
      }
      return { status: 'unknown' };
    }
  }

  private async watch(): Promise<void> {
    let delay = 200;
    while (!this.stopped) {
      const replica = this.registry.pick(undefined);
      if (replica) {
        const resuming = this.revision > 0;
        if (!resuming) this.catalog.beginSnapshot();
        try {
          const events = serverStreamCall(replica.handle.upstream, ModelRegistryServiceService.watchModels, { afterRevision: this.revision, models: [] }, { signal: this.abort.signal });
          for await (const e of events) {
            delay = 200;
            this.onEvent(e);
          }
        } catch (err) {
          if (this.stopped) return;
          if (isServiceError(err) && err.code === grpc.status.OUT_OF_RANGE) {
            this.log.info({ revision: this.revision }, 'registry no longer has the changes after our revision; reading its state again');
            this.revision = 0;
            continue;
          }
          this.log.debug({ err: (err as Error).message }, 'registry watch ended; watching again');
        }
      }
      await new Promise((r) => setTimeout(r, delay).unref());
      delay = Math.min(delay * 2, 2000);
    }
  }

  private onEvent(e: WatchModelsResponse): void {
    if (e.revision > this.revision) this.revision = e.revision;
    const task = taskName(e.task);
    let event: CatalogEvent | undefined;
    switch (e.type) {
      case WatchEventType.WATCH_EVENT_TYPE_SNAPSHOT_END:
        this.catalog.endSnapshot();
        this.cache.clear();
        this.log.info({ revision: e.revision, models: this.catalog.list().length }, 'model catalog in sync with the registry');
        return;
      case WatchEventType.WATCH_EVENT_TYPE_VERSION_CREATED:
        event = { type: 'version_created', model: e.model, version: e.version, task };
        break;
      case WatchEventType.WATCH_EVENT_TYPE_VERSION_DELETED:
        event = { type: 'version_deleted', model: e.model, version: e.version, task };
        break;
      case WatchEventType.WATCH_EVENT_TYPE_ALIAS_SET:
        event = { type: 'alias_set', model: e.model, alias: e.alias, version: e.version, task };
        break;
      case WatchEventType.WATCH_EVENT_TYPE_ALIAS_DELETED:
        event = { type: 'alias_deleted', model: e.model, alias: e.alias, task };
        break;
      case WatchEventType.WATCH_EVENT_TYPE_MODEL_DELETED:
        event = { type: 'model_deleted', model: e.model };
        break;
      default:
        return;
    }
    this.catalog.apply(event);
    // Answers cached from ResolveModel may be stale now.
    if (this.cache.size > 0) this.cache.clear();
  }

  close(): void {
    this.stopped = true;
    this.abort.abort();
  }
}
