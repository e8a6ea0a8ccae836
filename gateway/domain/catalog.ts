// The registry's models as the gateway knows them: names, tasks, versions and aliases, rebuilt from the
// registry's WatchModels stream (a snapshot, then changes), so resolving a model reference on the call path
// is a map lookup and an alias move is seen within one event.

export type ModelTaskName = 'embedding' | 'generation' | 'ocr' | 'image_classification' | 'unknown';

export interface CatalogModel {
  name: string;
  task: ModelTaskName;
  aliases: Map<string, number>;
  versions: Set<number>;
}

export interface ModelRefLike {
  name: string;
  version?: number;
  alias?: string;
}

export type Resolution =
  | { status: 'found'; name: string; version: number; task: ModelTaskName }
  | { status: 'not_found'; resource: 'model' | 'version' | 'alias'; name: string; message: string }
  /** The catalog is not in sync with the registry; the caller may ask the registry directly. */
  | { status: 'unknown' };

export type CatalogEvent =
  | { type: 'version_created' | 'version_deleted'; model: string; version: number; task: ModelTaskName }
  | { type: 'alias_set'; model: string; alias: string; version: number; task: ModelTaskName }
  | { type: 'alias_deleted'; model: string; alias: string; task: ModelTaskName }
  | { type: 'model_deleted'; model: string };

export class ModelCatalog {
  private models = new Map<string, CatalogModel>();
  private pending: Map<string, CatalogModel> | undefined;
  private inSync = false;

  get synced(): boolean {
    return this.inSync;
  }

  /** A (re)connected watch without a revision starts over: events build a new state, swapped in at the end. */
  beginSnapshot(): void {
    this.pending = new Map();
  }

  endSnapshot(): void {
    if (this.pending) this.models = this.pending;
    this.pending = undefined;
    this.inSync = true;
  }

  /** The watch broke: answers become `unknown` until it is back in sync. */
  markOutOfSync(): void {
    this.inSync = false;
    this.pending = undefined;
  }

  apply(e: CatalogEvent): void {
    const models = this.pending ?? this.models;
    if (e.type === 'model_deleted') {
      models.delete(e.model);
      return;
    }
    let m = models.get(e.model);
    if (!m) {
      m = { name: e.model, task: e.task, aliases: new Map(), versions: new Set() };
      models.set(e.model, m);
    }
    if (e.task !== 'unknown') m.task = e.task;
    switch (e.type) {
      case 'version_created':
        m.versions.add(e.version);
        break;
      case 'version_deleted':
        m.versions.delete(e.version);
        break;
      case 'alias_set':
        m.aliases.set(e.alias, e.version);
        m.versions.add(e.version);
        break;
      case 'alias_deleted':
        m.aliases.delete(e.alias);
        break;
    }
  }

  /** Name plus version or alias (alias `default` when neither) to a version, as the registry would. */
  resolve(ref: ModelRefLike): Resolution {
    if (!this.inSync) return { status: 'unknown' };
    const m = this.models.get(ref.name);
    if (!m) return { status: 'not_found', resource: 'model', name: ref.name, message: `model "${ref.name}" was not found` };
    if (ref.version !== undefined && ref.version > 0) {
      if (!m.versions.has(ref.version)) {
        return { status: 'not_found', resource: 'version', name: `${ref.name}@${ref.version}`, message: `version ${ref.version} of model "${ref.name}" was not found` };
      }
      return { status: 'found', name: m.name, version: ref.version, task: m.task };
    }
    const alias = ref.alias || 'default';
    const v = m.aliases.get(alias);
    if (v === undefined) {
      return { status: 'not_found', resource: 'alias', name: `${ref.name}:${alias}`, message: `alias "${alias}" of model "${ref.name}" was not found` };
    }
    return { status: 'found', name: m.name, version: v, task: m.task };
  }

  list(): CatalogModel[] {
    return [...this.models.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }
}
