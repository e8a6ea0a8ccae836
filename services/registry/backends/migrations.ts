// The registry's schema: one set of migrations for SQLite and PostgreSQL (portable column types only; times
// are epoch milliseconds, tags and signatures JSON text). Kysely's migrator records what ran and takes a
// lock, so replicas starting together on one PostgreSQL migrate once.
import { Kysely, Migrator, sql, type Migration, type MigrationProvider } from 'kysely';

export interface RegistryTables {
  models: { name: string; task: number; description: string; tags: string; latest_version: number; create_time: number; update_time: number };
  versions: {
    model: string;
    version: number;
    description: string;
    tags: string;
    source_uri: string;
    parent_version: number;
    signatures: string;
    create_time: number;
  };
  version_files: { model: string; version: number; position: number; name: string; size: number; sha256: string };
  aliases: { model: string; alias: string; version: number };
  events: { revision: number; type: number; model: string; version: number; alias: string; task: number; time: number };
  /** One row (id 1): the last revision. Every writer updates it first, which is the registry-wide write lock. */
  registry_state: { id: number; revision: number };
}

const migrations: Record<string, Migration> = {
  '2025-01-001-initial': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('models')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('task', 'integer', (c) => c.notNull())
        .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('tags', 'text', (c) => c.notNull().defaultTo('{}'))
        .addColumn('latest_version', 'bigint', (c) => c.notNull().defaultTo(0))
        .addColumn('create_time', 'bigint', (c) => c.notNull())
        .addColumn('update_time', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('versions')
        .addColumn('model', 'text', (c) => c.notNull())
        .addColumn('version', 'bigint', (c) => c.notNull())
        .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('tags', 'text', (c) => c.notNull().defaultTo('{}'))
        .addColumn('source_uri', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('parent_version', 'bigint', (c) => c.notNull().defaultTo(0))
        .addColumn('signatures', 'text', (c) => c.notNull().defaultTo('[]'))
        .addColumn('create_time', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('versions_pk', ['model', 'version'])
        .execute();
      await db.schema
        .createTable('version_files')
        .addColumn('model', 'text', (c) => c.notNull())
        .addColumn('version', 'bigint', (c) => c.notNull())
        .addColumn('position', 'integer', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('size', 'bigint', (c) => c.notNull())
        .addColumn('sha256', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('version_files_pk', ['model', 'version', 'name'])
        .execute();
      await db.schema.createIndex('version_files_sha256').on('version_files').column('sha256').execute();
      await db.schema
        .createTable('aliases')
        .addColumn('model', 'text', (c) => c.notNull())
        .addColumn('alias', 'text', (c) => c.notNull())
        .addColumn('version', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('aliases_pk', ['model', 'alias'])
        .execute();
      await db.schema
        .createTable('events')
        .addColumn('revision', 'bigint', (c) => c.primaryKey())
        .addColumn('type', 'integer', (c) => c.notNull())
        .addColumn('model', 'text', (c) => c.notNull())
        .addColumn('version', 'bigint', (c) => c.notNull().defaultTo(0))
        .addColumn('alias', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('task', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('time', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('registry_state')
        .addColumn('id', 'integer', (c) => c.primaryKey())
        .addColumn('revision', 'bigint', (c) => c.notNull())
        .execute();
      await sql`insert into registry_state (id, revision) values (1, 0)`.execute(db);
    },
  },
};

const provider: MigrationProvider = { getMigrations: async () => migrations };

/** Brings the schema up to date; throws with the failing migration's error. */
export async function migrate(db: Kysely<RegistryTables>): Promise<void> {
  const migrator = new Migrator({ db, provider, migrationTableName: 'registry_migrations', migrationLockTableName: 'registry_migrations_lock' });
  const { error, results } = await migrator.migrateToLatest();
  const failed = results?.find((r) => r.status === 'Error');
  if (error || failed) {
    throw new Error(`registry database migration ${failed?.migrationName ?? ''} failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
}
