// Starting the registry as its own process for the tests that kill it, measure it, or run two of it.
import { readFile } from 'node:fs/promises';
import { ModelRegistryServiceClient } from '../gen/maas/registry/v1/registry.js';
import { launch, type Launched } from '../cli/launch.js';
import { createClient, waitForReady } from '../services/runtime/client.js';

export interface RegistryProcess {
  proc: Launched;
  address: string;
  client: ModelRegistryServiceClient;
  /** Ends it gracefully (SIGTERM) and closes the client. */
  stop(): Promise<void>;
  /** kill -9, and wait for the exit. */
  kill(): Promise<void>;
}

export async function launchRegistry(env: Record<string, string>): Promise<RegistryProcess> {
  const lines: string[] = [];
  const proc = launch('registry', 'services/registry/main.ts', {
    env: { MAAS_PORT: '0', MAAS_METRICS_PORT: '0', MAAS_LOG_LEVEL: 'info', ...env },
    onLine: (l) => {
      if (lines.length < 200) lines.push(l);
    },
  });
  let port: number;
  try {
    port = await proc.port;
  } catch (err) {
    await proc.stop('SIGKILL');
    throw err;
  }
  const address = `127.0.0.1:${port}`;
  const client = createClient(ModelRegistryServiceClient, address);
  await waitForReady(client, 10_000);
  return {
    proc,
    address,
    client,
    async stop() {
      client.close();
      await proc.stop('SIGTERM');
    },
    async kill() {
      client.close();
      await proc.stop('SIGKILL');
    },
  };
}

/** Peak and current resident memory of a process, in bytes (Linux /proc). */
export async function memoryOf(pid: number): Promise<{ peak: number; rss: number }> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) * 1024;
  return { peak: kb('VmHWM'), rss: kb('VmRSS') };
}
