// Opens the metadata store named by MAAS_REGISTRY_DATABASE_URL: empty → a SQLite file in the data folder
// (WAL, full fsync on commit: registry writes are rare and must survive a crash); postgres://… → a pg pool.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import type { Logger } from '../../runtime/logger.js';
import { KyselyStore } from './kysely-store.js';
import type { RegistryTables } from './migrations.js';

export function isPostgresUrl(url: string): boolean {
  return /^postgres(ql)?:\/\//.test(url);
}

/** Opens and migrates the store. */
export async function openStore(options: { databaseUrl: string; dataDir: string; log: Logger; poolSize?: number }): Promise<KyselyStore> {
  const store = isPostgresUrl(options.databaseUrl) ? await openPostgres(options.databaseUrl, options.log, options.poolSize ?? 10) : await openSqlite(options.dataDir, options.log);
  try {
    await store.migrate();
  } catch (err) {
    await store.close().catch(() => undefined);
    throw err;
  }
  return store;
}

async function openSqlite(dataDir: string, log: Logger): Promise<KyselyStore> {
  const { default: Database } = await import('better-sqlite3');
  mkdirSync(dataDir, { recursive: true });
  const file = join(dataDir, 'registry.db');
  const sqlite = new Database(file);
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('synchronous = FULL');
  sqlite.pragma('busy_timeout = 5000');
  log.debug({ file }, 'registry metadata in SQLite');
  return new KyselyStore({ kind: 'sqlite', db: new Kysely<RegistryTables>({ dialect: new SqliteDialect({ database: sqlite }) }), log });
}

async function openPostgres(url: string, log: Logger, poolSize: number): Promise<KyselyStore> {
  const { default: pg } = await import('pg');
  // bigint columns (versions, sizes, revisions, times) come back as numbers; they stay far below 2^53.
  const types = {
    getTypeParser: ((oid: number, format?: string) =>
      oid === pg.types.builtins.INT8 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
  };
  const pool = new pg.Pool({ connectionString: url, max: poolSize, types });
  pool.on('error', (err) => log.warn({ err: err.message }, 'idle PostgreSQL connection failed'));
  const listen = async (channel: string, listener: () => void) => {
    let client: InstanceType<typeof pg.Client> | undefined;
    let closed = false;
    let retry: NodeJS.Timeout | undefined;
    const reconnect = () => {
      if (closed) return;
      retry = setTimeout(() => void connect().catch(() => reconnect()), 1000);
      retry.unref();
    };
    const connect = async () => {
      const c = new pg.Client({ connectionString: url, types });
      c.on('notification', () => listener());
      c.on('error', (err) => {
        log.warn({ err: err.message }, 'lost the PostgreSQL LISTEN connection; polling until it is back');
        c.end().catch(() => undefined);
        reconnect();
      });
      await c.connect();
      await c.query(`LISTEN ${channel}`);
      client = c;
      // Anything committed while the connection was down is picked up by one poll.
      listener();
    };
    await connect();
    return async () => {
      closed = true;
      if (retry) clearTimeout(retry);
      await client?.end().catch(() => undefined);
    };
  };
  log.debug({ host: new URL(url).host }, 'registry metadata in PostgreSQL');
  return new KyselyStore({ kind: 'postgres', db: new Kysely<RegistryTables>({ dialect: new PostgresDialect({ pool }) }), listen, log });
}
