// The whole mesh for resilience tests: `startMesh` (the same code as `maas up`) on port 0 for every component,
// with extra environment (small queues, short drain) passed to every process, and what the tests need to
// observe it from outside: each component's pid, Prometheus port and the gateway's HTTP port (read from the
// components' own log lines).
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { components } from '../../../cli/components.js';
import type { Launched } from '../../../cli/launch.js';
import { startMesh, type RunningMesh } from '../../../cli/up.js';

export interface TestMesh {
  dataDir: string;
  /** name → 127.0.0.1:port */
  grpc: Record<string, string>;
  metricsPort: Record<string, number>;
  pid: Record<string, number>;
  proc: Record<string, Launched>;
  httpPort: number;
  /** A component's log lines so far, parsed. */
  logLines(name: string): Promise<Record<string, unknown>[]>;
  /** SIGTERM to every process (gateway first); then the data folder goes. */
  stop(): Promise<void>;
}

/** Starts registry, embeddings, generation, vision and gateway (or `only` those) with `env` added to each. */
export async function startTestMesh(env: Record<string, string> = {}, only?: string[]): Promise<TestMesh> {
  const dataDir = await mkdtemp(join(tmpdir(), 'maas-resilience-'));
  const all = { MAAS_GATEWAY_HTTP_PORT: '0', MAAS_LOG_LEVEL: 'info', OTEL_SDK_DISABLED: 'true', ...env };
  // startMesh passes its own environment on to the components; set ours for the duration of the start only.
  const saved = Object.fromEntries(Object.keys(all).map((k) => [k, process.env[k]]));
  Object.assign(process.env, all);
  let mesh: RunningMesh;
  try {
    const names = only ?? components.map((c) => c.name);
    mesh = await startMesh({ dataDir, only, ports: Object.fromEntries(names.map((n) => [n, 0])), print: () => undefined });
  } catch (err) {
    await rm(dataDir, { recursive: true, force: true });
    throw err;
  } finally {
    for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  const logLines = async (name: string) => {
    const text = await readFile(join(dataDir, 'logs', `${name}.log`), 'utf8').catch(() => '');
    return text
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .flatMap((l) => {
        try {
          return [JSON.parse(l) as Record<string, unknown>];
        } catch {
          return [];
        }
      });
  };
  const metricsPort: Record<string, number> = {};
  const pid: Record<string, number> = {};
  const proc: Record<string, Launched> = {};
  let httpPort = 0;
  for (const p of mesh.processes) {
    proc[p.name] = p;
    pid[p.name] = p.child.pid!;
    // The log files are written asynchronously: wait for the lines rather than read once.
    for (let tries = 0; tries < 200; tries++) {
      const lines = await logLines(p.name);
      const m = lines.find((r) => r.msg === 'metrics on /metrics');
      if (m) metricsPort[p.name] = m.port as number;
      const serving = lines.find((r) => r.msg === 'gateway serving');
      if (serving) httpPort = serving.httpPort as number;
      if (m && (p.name !== 'gateway' || serving)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    if (metricsPort[p.name] === undefined) {
      await mesh.stop();
      throw new Error(`${p.name} logged no metrics port`);
    }
  }
  return {
    dataDir,
    grpc: mesh.addresses.grpc,
    metricsPort,
    pid,
    proc,
    httpPort,
    logLines,
    async stop() {
      await mesh.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
