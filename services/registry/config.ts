// The registry's configuration: the common server settings plus where metadata and artifacts live, the
// admin token for writes, size limits and watch history.
import { z } from 'zod';
import { nonNegativeInt, positiveInt, serverSettings, setting, type ConfigOf } from '../runtime/config.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

export const spec = {
  ...serverSettings({ port: 50052, metricsPort: 9461 }),
  dataDir: setting('MAAS_REGISTRY_DATA_DIR', z.string().min(1), '.maas/registry', 'folder for artifacts (blobs/, tmp/) and, without a database URL, the SQLite file registry.db'),
  databaseUrl: setting(
    'MAAS_REGISTRY_DATABASE_URL',
    z.string().refine((v) => v === '' || /^postgres(ql)?:\/\/.+/.test(v), 'must be empty (SQLite in the data folder) or a postgres:// URL'),
    '',
    'metadata database: empty for SQLite in the data folder, or postgres://user:password@host:port/db for PostgreSQL (needed for several replicas)',
    { secret: true },
  ),
  adminToken: setting('MAAS_REGISTRY_ADMIN_TOKEN', z.string(), '', 'when set, write RPCs need `authorization: Bearer <token>`; reads stay open', { secret: true }),
  maxFileBytes: setting('MAAS_REGISTRY_MAX_FILE_BYTES', positiveInt(), String(8 * GiB), 'largest single file accepted in an upload, in bytes'),
  maxVersionBytes: setting('MAAS_REGISTRY_MAX_VERSION_BYTES', positiveInt(), String(16 * GiB), 'largest version (all its files together) accepted, in bytes'),
  maxFiles: setting('MAAS_REGISTRY_MAX_FILES', positiveInt(), '64', 'most files in one version'),
  chunkBytes: setting('MAAS_REGISTRY_CHUNK_BYTES', z.coerce.number().int().min(4096).max(8 * MiB), String(MiB), 'size of the messages DownloadVersion sends, in bytes'),
  watchHistory: setting('MAAS_REGISTRY_WATCH_HISTORY', positiveInt(), '10000', 'changes kept so a watcher can resume from a revision (older ones are pruned)'),
  pollIntervalMs: setting('MAAS_REGISTRY_POLL_INTERVAL_MS', positiveInt(), '1000', "how often the change log is read for other replicas' changes when no NOTIFY arrived"),
  gcIntervalMs: setting('MAAS_REGISTRY_GC_INTERVAL_MS', nonNegativeInt(), String(10 * 60_000), 'how often unreferenced blobs and leftover temporary files are removed (0: only at start and after deletes)'),
  tempGraceMs: setting('MAAS_REGISTRY_TEMP_GRACE_MS', positiveInt(), String(60 * 60_000), "a temporary upload file untouched this long is a crashed upload's leftover (SQLite: all are, at start)"),
};

export type RegistryConfig = ConfigOf<typeof spec>;
