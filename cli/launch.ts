// Starts a component as its own Node process (TypeScript through tsx, telemetry loaded first) and learns
// its bound port from its "serving" log line, so components and tests can listen on port 0.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** The node arguments that run a component entry file (relative to the project root). */
export function nodeArgs(entry: string): string[] {
  return ['--import', 'tsx', '--import', './services/runtime/telemetry/register.ts', entry];
}

export interface Launched {
  name: string;
  child: ChildProcess;
  /** Resolves with the gRPC port once the component logs that it is serving. */
  port: Promise<number>;
  /** Resolves with the Prometheus port once the component logs it (never, when metrics are off). */
  metricsPort: Promise<number>;
  /** Resolves with the exit code (null when killed by a signal) once the process ends. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends the signal and waits for the exit (SIGKILL after timeoutMs). */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface LaunchOptions {
  env?: Record<string, string | undefined>;
  /** Every output line of the process (stdout and stderr). */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
  /** Rejects `port` if the process has not logged "serving" by then. */
  startTimeoutMs?: number;
}

export function launch(name: string, entry: string, options: LaunchOptions = {}): Launched {
  const child = spawn(process.execPath, nodeArgs(entry), {
    cwd: ROOT,
    // Supervised: the caller stops it (stop() below); a Ctrl-C that reaches the whole process group is left
    // to the caller, which stops its components in order.
    env: { ...process.env, MAAS_HOST: '127.0.0.1', MAAS_SUPERVISED: 'true', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  let onMetricsPort!: (port: number) => void;
  const metricsPort = new Promise<number>((resolve) => (onMetricsPort = resolve));
  const port = new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start within ${options.startTimeoutMs ?? 120_000} ms`)), options.startTimeoutMs ?? 120_000);
    timer.unref();
    const lines: string[] = [];
    const onLine = (stream: 'stdout' | 'stderr') => (line: string) => {
      options.onLine?.(line, stream);
      if (lines.length < 50) lines.push(line);
      if (stream === 'stdout' && line.includes('"msg":"metrics on /metrics"')) {
        const p = (JSON.parse(line) as { port?: number }).port;
        if (typeof p === 'number') onMetricsPort(p);
      }
      if (stream !== 'stdout' || !line.includes(' serving"')) return;
      try {
        const rec = JSON.parse(line) as { msg?: string; port?: number };
        if (rec.msg?.endsWith(' serving') && typeof rec.port === 'number') {
          clearTimeout(timer);
          resolve(rec.port);
        }
      } catch {
        /* not a JSON line */
      }
    };
    createInterface({ input: child.stdout! }).on('line', onLine('stdout'));
    createInterface({ input: child.stderr! }).on('line', onLine('stderr'));
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (code ${code}, signal ${signal}) before serving:\n${lines.join('\n')}`));
    });
  });
  port.catch(() => undefined);
  return {
    name,
    child,
    port,
    metricsPort,
    exited,
    async stop(signal = 'SIGTERM', timeoutMs = 30_000) {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill(signal);
      const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      const r = await exited;
      clearTimeout(t);
      return r;
    },
  };
}
