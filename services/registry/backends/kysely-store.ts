// The metadata store on Kysely: SQLite (better-sqlite3, WAL) by default, PostgreSQL (pg) when replicated.
// The same queries serve both; the differences are the isolation level of reads and, on PostgreSQL, NOTIFY
// so other replicas' watch streams wake at once.
import { Kysely, sql, type Transaction } from 'kysely';
import type { Logger } from '../../runtime/logger.js';
import type { MetadataStore, NewModel, NewVersion, ReadTx, SnapshotEntry, WriteTx } from '../domain/store.js';
import type { EventType, FileRecord, GraphSignature, ModelRecord, RegistryEvent, Tags, VersionRecord } from '../domain/types.js';
import { migrate, type RegistryTables } from './migrations.js';

export const NOTIFY_CHANNEL = 'maas_registry_events';

type Db = Kysely<RegistryTables> | Transaction<RegistryTables>;

export interface StoreOptions {
  kind: 'sqlite' | 'postgres';
  db: Kysely<RegistryTables>;
  /** PostgreSQL: subscribes to NOTIFY on the channel (a dedicated connection). */
  listen?: (channel: string, listener: () => void) => Promise<() => Promise<void>>;
  log: Logger;
}

export class KyselyStore implements MetadataStore {
  readonly kind: 'sqlite' | 'postgres';
  private readonly db: Kysely<RegistryTables>;

  constructor(private readonly options: StoreOptions) {
    this.kind = options.kind;
    this.db = options.db;
  }

  async migrate(): Promise<void> {
    await migrate(this.db);
  }

  async write<T>(fn: (tx: WriteTx) => Promise<T>): Promise<T> {
    return this.db.transaction().execute(async (trx) => {
      // Taking the state row first makes writers queue here, on every replica, before reading anything.
      await trx.updateTable('registry_state').set({ revision: sql`revision` }).where('id', '=', 1).execute();
      const tx = new Tx(trx);
      const result = await fn(tx);
      if (tx.appended && this.kind === 'postgres') await sql`select pg_notify(${NOTIFY_CHANNEL}, '')`.execute(trx);
      return result;
    });
  }

  async read<T>(fn: (tx: ReadTx) => Promise<T>): Promise<T> {
    const builder = this.kind === 'postgres' ? this.db.transaction().setIsolationLevel('repeatable read') : this.db.transaction();
    return builder.execute((trx) => fn(new Tx(trx)));
  }

  async pruneEvents(keep: number): Promise<number> {
    const state = await this.db.selectFrom('registry_state').select('revision').where('id', '=', 1).executeTakeFirstOrThrow();
    const r = await this.db.deleteFrom('events').where('revision', '<=', Number(state.revision) - keep).executeTakeFirst();
    return Number(r.numDeletedRows ?? 0);
  }

  async onRemoteChange(listener: () => void): Promise<() => Promise<void>> {
    if (!this.options.listen) return async () => undefined;
    return this.options.listen(NOTIFY_CHANNEL, listener);
  }

  async close(): Promise<void> {
    await this.db.destroy();
  }
}

class Tx implements WriteTx {
  appended = false;
  constructor(private readonly db: Db) {}

  async revision(): Promise<number> {
    const row = await this.db.selectFrom('registry_state').select('revision').where('id', '=', 1).executeTakeFirstOrThrow();
    return Number(row.revision);
  }

  async getModel(name: string): Promise<ModelRecord | undefined> {
    const row = await this.db.selectFrom('models').selectAll().where('name', '=', name).executeTakeFirst();
    if (!row) return undefined;
    const aliases = await this.db.selectFrom('aliases').select(['alias', 'version']).where('model', '=', name).orderBy('alias').execute();
    return toModel(row, aliases);
  }

  async listModels(after: string, limit: number): Promise<ModelRecord[]> {
    const rows = await this.db.selectFrom('models').selectAll().where('name', '>', after).orderBy('name').limit(limit).execute();
    if (rows.length === 0) return [];
    const aliases = await this.db
      .selectFrom('aliases')
      .select(['model', 'alias', 'version'])
      .where('model', 'in', rows.map((r) => r.name))
      .orderBy('alias')
      .execute();
    return rows.map((r) => toModel(r, aliases.filter((a) => a.model === r.name)));
  }

  async getVersion(model: string, version: number): Promise<VersionRecord | undefined> {
    return (await this.versions(model, [version]))[0];
  }

  async listVersions(model: string, below: number, limit: number): Promise<VersionRecord[]> {
    let q = this.db.selectFrom('versions').select('version').where('model', '=', model);
    if (below > 0) q = q.where('version', '<', below);
    const numbers = (await q.orderBy('version', 'desc').limit(limit).execute()).map((r) => Number(r.version));
    return this.versions(model, numbers);
  }

  /** Full records of some versions of one model, in the order asked. */
  private async versions(model: string, numbers: number[]): Promise<VersionRecord[]> {
    if (numbers.length === 0) return [];
    const m = await this.db.selectFrom('models').select('task').where('name', '=', model).executeTakeFirst();
    if (!m) return [];
    const rows = await this.db.selectFrom('versions').selectAll().where('model', '=', model).where('version', 'in', numbers).execute();
    const files = await this.db
      .selectFrom('version_files')
      .select(['version', 'name', 'size', 'sha256'])
      .where('model', '=', model)
      .where('version', 'in', numbers)
      .orderBy('version')
      .orderBy('position')
      .execute();
    const aliases = await this.db.selectFrom('aliases').select(['alias', 'version']).where('model', '=', model).orderBy('alias').execute();
    const byNumber = new Map(rows.map((r) => [Number(r.version), r]));
    const out: VersionRecord[] = [];
    for (const n of numbers) {
      const r = byNumber.get(n);
      if (!r) continue;
      out.push({
        model,
        version: n,
        task: m.task,
        files: files.filter((f) => Number(f.version) === n).map((f): FileRecord => ({ name: f.name, size: Number(f.size), sha256: f.sha256 })),
        signatures: JSON.parse(r.signatures) as GraphSignature[],
        description: r.description,
        tags: JSON.parse(r.tags) as Tags,
        sourceUri: r.source_uri,
        parentVersion: Number(r.parent_version),
        aliases: aliases.filter((a) => Number(a.version) === n).map((a) => a.alias),
        createTime: new Date(Number(r.create_time)),
      });
    }
    return out;
  }

  async snapshot(models: string[]): Promise<{ versions: SnapshotEntry[]; aliases: SnapshotEntry[] }> {
    let vq = this.db
      .selectFrom('versions')
      .innerJoin('models', 'models.name', 'versions.model')
      .select(['versions.model', 'versions.version', 'models.task']);
    let aq = this.db
      .selectFrom('aliases')
      .innerJoin('models', 'models.name', 'aliases.model')
      .select(['aliases.model', 'aliases.alias', 'aliases.version', 'models.task']);
    if (models.length > 0) {
      vq = vq.where('versions.model', 'in', models);
      aq = aq.where('aliases.model', 'in', models);
    }
    const versions = await vq.orderBy('versions.model').orderBy('versions.version').execute();
    const aliases = await aq.orderBy('aliases.model').orderBy('aliases.alias').execute();
    return {
      versions: versions.map((v) => ({ model: v.model, version: Number(v.version), task: v.task })),
      aliases: aliases.map((a) => ({ model: a.model, alias: a.alias, version: Number(a.version), task: a.task })),
    };
  }

  async eventsAfter(revision: number, limit: number): Promise<RegistryEvent[]> {
    const rows = await this.db.selectFrom('events').selectAll().where('revision', '>', revision).orderBy('revision').limit(limit).execute();
    return rows.map((r) => ({
      type: r.type as EventType,
      revision: Number(r.revision),
      model: r.model,
      version: Number(r.version),
      alias: r.alias,
      task: r.task,
    }));
  }

  async oldestRevision(): Promise<number | undefined> {
    const row = await this.db.selectFrom('events').select((eb) => eb.fn.min('revision').as('oldest')).executeTakeFirst();
    return row?.oldest === null || row?.oldest === undefined ? undefined : Number(row.oldest);
  }

  async referencedDigests(): Promise<Set<string>> {
    const rows = await this.db.selectFrom('version_files').select('sha256').distinct().execute();
    return new Set(rows.map((r) => r.sha256));
  }

  async insertModel(m: NewModel): Promise<void> {
    await this.db
      .insertInto('models')
      .values({
        name: m.name,
        task: m.task,
        description: m.description,
        tags: JSON.stringify(m.tags),
        latest_version: 0,
        create_time: m.time.getTime(),
        update_time: m.time.getTime(),
      })
      .execute();
  }

  async updateModel(name: string, changes: { description?: string; tags?: Tags; latestVersion?: number; time: Date }): Promise<void> {
    await this.db
      .updateTable('models')
      .set({
        update_time: changes.time.getTime(),
        ...(changes.description !== undefined ? { description: changes.description } : {}),
        ...(changes.tags !== undefined ? { tags: JSON.stringify(changes.tags) } : {}),
        ...(changes.latestVersion !== undefined ? { latest_version: changes.latestVersion } : {}),
      })
      .where('name', '=', name)
      .execute();
  }

  async deleteModel(name: string): Promise<void> {
    await this.db.deleteFrom('aliases').where('model', '=', name).execute();
    await this.db.deleteFrom('version_files').where('model', '=', name).execute();
    await this.db.deleteFrom('versions').where('model', '=', name).execute();
    await this.db.deleteFrom('models').where('name', '=', name).execute();
  }

  async insertVersion(v: NewVersion): Promise<void> {
    await this.db
      .insertInto('versions')
      .values({
        model: v.model,
        version: v.version,
        description: v.description,
        tags: JSON.stringify(v.tags),
        source_uri: v.sourceUri,
        parent_version: v.parentVersion,
        signatures: JSON.stringify(v.signatures),
        create_time: v.time.getTime(),
      })
      .execute();
    await this.db
      .insertInto('version_files')
      .values(v.files.map((f, i) => ({ model: v.model, version: v.version, position: i, name: f.name, size: f.size, sha256: f.sha256 })))
      .execute();
  }

  async updateVersion(model: string, version: number, changes: { description?: string; tags?: Tags }): Promise<void> {
    const set = {
      ...(changes.description !== undefined ? { description: changes.description } : {}),
      ...(changes.tags !== undefined ? { tags: JSON.stringify(changes.tags) } : {}),
    };
    if (Object.keys(set).length === 0) return;
    await this.db.updateTable('versions').set(set).where('model', '=', model).where('version', '=', version).execute();
  }

  async deleteVersion(model: string, version: number): Promise<void> {
    await this.db.deleteFrom('version_files').where('model', '=', model).where('version', '=', version).execute();
    await this.db.deleteFrom('versions').where('model', '=', model).where('version', '=', version).execute();
  }

  async setAlias(model: string, alias: string, version: number): Promise<void> {
    await this.db
      .insertInto('aliases')
      .values({ model, alias, version })
      .onConflict((oc) => oc.columns(['model', 'alias']).doUpdateSet({ version }))
      .execute();
  }

  async deleteAlias(model: string, alias: string): Promise<void> {
    await this.db.deleteFrom('aliases').where('model', '=', model).where('alias', '=', alias).execute();
  }

  async appendEvent(e: { type: EventType; model: string; version: number; alias: string; task: number }): Promise<number> {
    const row = await this.db
      .updateTable('registry_state')
      .set({ revision: sql`revision + 1` })
      .where('id', '=', 1)
      .returning('revision')
      .executeTakeFirstOrThrow();
    const revision = Number(row.revision);
    await this.db.insertInto('events').values({ revision, type: e.type, model: e.model, version: e.version, alias: e.alias, task: e.task, time: Date.now() }).execute();
    this.appended = true;
    return revision;
  }
}

function toModel(
  row: RegistryTables['models'],
  aliases: { alias: string; version: number }[],
): ModelRecord {
  return {
    name: row.name,
    task: row.task,
    description: row.description,
    tags: JSON.parse(row.tags) as Tags,
    aliases: Object.fromEntries(aliases.map((a) => [a.alias, Number(a.version)])),
    latestVersion: Number(row.latest_version),
    createTime: new Date(Number(row.create_time)),
    updateTime: new Date(Number(row.update_time)),
  };
}
