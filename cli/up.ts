// `maas up`: the whole mesh on this machine, each component its own Node process on 127.0.0.1, started in
// order (registry first, then the model services with their default models prepared, then the gateway),
// each awaited until SERVING. Ctrl-C (or SIGTERM) drains and stops them all, gateway first.
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import type { ComponentSpec, MeshAddresses } from './component.js';
import { components as allComponents } from './components.js';
import { waitServing } from './health.js';
import { launch, ROOT, type Launched } from './launch.js';
import { table } from './table.js';
import { createLogger } from '../services/runtime/logger.js';

export interface UpOptions {
  dataDir: string;
  /** Only these components (by name); all by default. */
  only?: string[];
  /** Port overrides by component name (`--registry-port 6000`); 0 picks free ports. */
  ports?: Record<string, number>;
  /** Skip building and pushing default models. */
  skipDefaults?: boolean;
  /** Resolves when the mesh should stop (Ctrl-C). */
  until?: Promise<unknown>;
  /** Where the table and progress go. */
  print?: (line: string) => void;
}

export interface RunningMesh {
  addresses: MeshAddresses;
  processes: Launched[];
  stop(): Promise<void>;
}

/** Starts the mesh and returns once every component is SERVING. */
export async function startMesh(options: UpOptions): Promise<RunningMesh> {
  const print = options.print ?? ((l: string) => process.stdout.write(`${l}\n`));
  const dataDir = resolve(options.dataDir);
  const logDir = join(dataDir, 'logs');
  mkdirSync(logDir, { recursive: true });
  const log = createLogger('maas-up', 'warn');
  const selected = allComponents.filter((c) => !options.only || options.only.includes(c.name));
  // Every fixed port checked before anything starts: a port another process holds fails here, with how to
  // choose another, rather than after half the mesh is up.
  const busy = await busyPorts(plannedPorts(selected, options.ports ?? {}));
  if (busy.length > 0) {
    throw new Error(
      [
        'these ports are in use by other processes, so nothing was started:',
        ...busy.map((p) => `  127.0.0.1:${p.port}  ${p.what}  (another port: ${p.choose})`),
        '`ss -ltnp` shows which process holds a port; `--<component>-port 0` lets a component take free ports.',
      ].join('\n'),
    );
  }
  const addresses: MeshAddresses = { grpc: {}, other: {} };
  const processes: Launched[] = [];
  const logs: WriteStream[] = [];
  let stopping = false;

  const stop = async () => {
    stopping = true;
    for (const p of [...processes].reverse()) await p.stop('SIGTERM', 30_000);
    for (const l of logs) l.end();
  };

  try {
    for (const c of selected) {
      if (c.prepareDefaults && !options.skipDefaults && addresses.grpc.registry) {
        print(`preparing default models for ${c.name} ...`);
        await c.prepareDefaults({ registryAddress: addresses.grpc.registry, dataDir, cacheDir: defaultCacheDir(), log });
      }
      const port = options.ports?.[c.name] ?? c.port;
      const logFile = createWriteStream(join(logDir, `${c.name}.log`), { flags: 'a' });
      logs.push(logFile);
      // The other ports it bound, as its log says them.
      const extraFields = Object.entries(c.extraPorts ?? {}).map(([name, e]) => [name, new RegExp(`"${e.logField}":(\\d+)`)] as const);
      const p = launch(c.name, c.entry, {
        env: {
          MAAS_PORT: String(port),
          MAAS_METRICS_PORT: String(options.ports?.[c.name] === 0 ? 0 : c.metricsPort),
          MAAS_DATA_DIR: dataDir,
          ...c.env?.(addresses, dataDir),
        },
        onLine: (line, stream) => {
          logFile.write(`${line}\n`);
          for (const [name, field] of extraFields) {
            const bound = field.exec(line);
            if (bound) (addresses.other[c.name] ??= {})[name] = `127.0.0.1:${bound[1]}`;
          }
          if (stream === 'stderr' || /"level":"(warn|error|fatal)"/.test(line)) print(`[${c.name}] ${line}`);
        },
        startTimeoutMs: 300_000,
      });
      processes.push(p);
      void p.exited.then(({ code, signal }) => {
        if (!stopping) print(`${c.name} exited unexpectedly (code ${code}, signal ${signal}); see ${join(logDir, `${c.name}.log`)}`);
      });
      const bound = await p.port;
      const address = `127.0.0.1:${bound}`;
      await waitServing(address, 300_000, () => p.child.exitCode === null);
      addresses.grpc[c.name] = address;
      print(`${c.name} SERVING on ${address}`);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { addresses, processes, stop };
}

export async function up(options: UpOptions): Promise<number> {
  const print = options.print ?? ((l: string) => process.stdout.write(`${l}\n`));
  const mesh = await startMesh(options);
  const rows: string[][] = [];
  for (const c of allComponents.filter((x) => mesh.addresses.grpc[x.name])) {
    const address = mesh.addresses.grpc[c.name]!;
    const extra = Object.entries(c.extraPorts ?? {})
      .map(([k, v]) => {
        const bound = mesh.addresses.other[c.name]?.[k];
        if (bound) return `${k} ${bound}`;
        const port = extraPort(v);
        return port === 0 ? `${k}: a free port (see its log)` : `${k} 127.0.0.1:${port}`;
      })
      .join(', ');
    const models = c.describe ? await c.describe(address).catch((e: unknown) => `(could not list: ${String(e)})`) : '';
    rows.push([c.name, address, extra, models]);
  }
  print('');
  print(table(['component', 'gRPC', 'other', 'models'], rows));
  print('');
  print(`logs in ${join(resolve(options.dataDir), 'logs')}; \`maas health\` checks them; Ctrl-C stops the mesh.`);
  // The first Ctrl-C drains; a second one kills what is left at once (a default handler would kill only
  // this process and orphan the components).
  let signals = 0;
  const stopSignal =
    options.until ??
    new Promise<void>((res) => {
      const onSignal = () => {
        if (++signals === 1) res();
        else {
          print('stopping at once');
          for (const p of mesh.processes) p.child.kill('SIGKILL');
        }
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
    });
  const died = Promise.race(mesh.processes.map((p) => p.exited.then(() => 'died' as const)));
  // Signal listeners alone do not keep Node's event loop alive.
  const keepAlive = setInterval(() => undefined, 60_000);
  const why = await Promise.race([stopSignal.then(() => 'stop' as const), died]);
  clearInterval(keepAlive);
  print(why === 'stop' ? 'draining and stopping ...' : 'a component died; stopping the others ...');
  await mesh.stop();
  print('stopped');
  return why === 'stop' ? 0 : 1;
}

interface PlannedPort {
  port: number;
  what: string;
  /** How to choose another. */
  choose: string;
}

/** The fixed (non-zero) ports the components will listen on: gRPC, metrics, and their other ports. */
function plannedPorts(selected: ComponentSpec[], overrides: Record<string, number>): PlannedPort[] {
  const metricsOn = process.env.MAAS_METRICS_ENABLED !== 'false';
  return selected.flatMap((c) => {
    const grpc = overrides[c.name] ?? c.port;
    const metrics = overrides[c.name] === 0 ? 0 : c.metricsPort;
    return [
      { port: grpc, what: `${c.name} gRPC`, choose: `--${c.name}-port N` },
      ...(metricsOn ? [{ port: metrics, what: `${c.name} metrics`, choose: `--${c.name}-port 0, or MAAS_METRICS_ENABLED=false` }] : []),
      ...Object.entries(c.extraPorts ?? {}).map(([name, p]) => ({ port: extraPort(p), what: `${c.name} ${name}`, choose: `${p.variable}=N` })),
    ].filter((p) => p.port !== 0);
  });
}

function extraPort(p: { port: number; variable: string }): number {
  const set = process.env[p.variable];
  return set !== undefined && set !== '' ? Number(set) : p.port;
}

/** The planned ports that cannot be bound on 127.0.0.1 now. */
async function busyPorts(planned: PlannedPort[]): Promise<PlannedPort[]> {
  const free = (port: number) =>
    new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(false));
      server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => resolve(true)));
    });
  const results = await Promise.all(planned.map(async (p) => ((await free(p.port)) ? undefined : p)));
  return results.filter((p): p is PlannedPort => p !== undefined);
}

export function defaultDataDir(): string {
  return process.env.MAAS_DATA_DIR || join(ROOT, '.maas');
}

export function defaultCacheDir(): string {
  return process.env.MAAS_CACHE_DIR || join(ROOT, '.maas', 'cache');
}

export type { ComponentSpec };
