// Starts a worker thread from an entry module next to the caller, whether the project runs from its
// TypeScript sources (through tsx, which workers must register themselves: ts-worker.mjs) or compiled to
// JavaScript. The entry reads its own data from workerData.data. startReadyWorker adds the handshake every
// worker of the services uses: its first message says what it loaded, or why it could not.
import { Worker, type WorkerOptions } from 'node:worker_threads';
import { FailedPreconditionError } from '../errors.js';

/**
 * entry: the module's URL as the caller sees it, e.g. new URL('./lane-worker.js', import.meta.url); under
 * TypeScript sources the .ts file of that name is started.
 */
export function startWorker(entry: URL, data: unknown): Worker {
  const execArgv = withoutPreloads(process.execArgv);
  const fromSources = import.meta.url.endsWith('.ts');
  if (!fromSources) return newWorker(entry, { workerData: { data }, execArgv });
  const source = entry.href.replace(/\.js$/, '.ts');
  return newWorker(new URL('./ts-worker.mjs', import.meta.url), { workerData: { entry: source, data }, execArgv });
}

/**
 * A Worker with the given node flags, less those a worker refuses: V8's (--max-old-space-size, which platform
 * engineers set on the command line, and the like) belong to the whole process, and a worker given one
 * throws ERR_WORKER_INVALID_EXEC_ARGV naming them — which would stop every model thread from starting.
 */
function newWorker(file: URL, options: WorkerOptions & { execArgv: string[] }): Worker {
  try {
    return new Worker(file, options);
  } catch (err) {
    if ((err as { code?: string }).code !== 'ERR_WORKER_INVALID_EXEC_ARGV') throw err;
    // "Initiated Worker with invalid execArgv flags: --a=1, --b"
    const refused = new Set((err as Error).message.slice((err as Error).message.indexOf(': ') + 2).split(', '));
    return new Worker(file, { ...options, execArgv: options.execArgv.filter((a) => !refused.has(a)) });
  }
}

/**
 * The process's node flags without its --import / --require preloads: those (tsx, the telemetry SDK) belong
 * to the main thread, and a worker inheriting them would load a TypeScript file before it can read one.
 */
export function withoutPreloads(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--import' || a === '--require' || a === '-r') i++;
    else if (!a.startsWith('--import=') && !a.startsWith('--require=')) out.push(a);
  }
  return out;
}

/** A worker's first message: what it loaded, or why it could not. */
export type Ready<T> = { ready: true; value: T } | { ready: false; error: string; violations?: FailedPreconditionError['violations']; reason?: string };

/**
 * Starts a worker entry and waits for its first message (a Ready). Rejects with the worker's reason — a
 * FailedPreconditionError when it threw one — or when it dies first; the thread is then ended.
 */
export async function startReadyWorker<T>(entry: URL, data: unknown, what: string): Promise<{ worker: Worker; value: T }> {
  const worker = startWorker(entry, data);
  let onMessage!: (r: Ready<T>) => void;
  let onError!: (err: Error) => void;
  let onExit!: (code: number) => void;
  const ready = await new Promise<Ready<T>>((resolve, reject) => {
    onMessage = resolve;
    onError = reject;
    onExit = (code) => reject(new Error(`${what} exited with code ${code} before it was ready`));
    worker.once('message', onMessage).once('error', onError).once('exit', onExit);
  }).finally(() => worker.off('message', onMessage).off('error', onError).off('exit', onExit));
  if (!ready.ready) {
    await worker.terminate();
    if (ready.violations) throw new FailedPreconditionError(ready.error, ready.violations, { reason: ready.reason });
    throw new Error(ready.error);
  }
  return { worker, value: ready.value };
}

/** The Ready a worker posts when what it loads threw. */
export function notReady(err: unknown): Ready<never> {
  const ready: Ready<never> = { ready: false, error: err instanceof Error ? err.message : String(err) };
  if (err instanceof FailedPreconditionError) Object.assign(ready, { violations: err.violations, reason: err.reason });
  return ready;
}

/**
 * Starts `count` of something side by side (workers, each loading a model); if any fails, closes the ones
 * that started and throws the first failure's reason.
 */
export async function startAll<T extends { close(): Promise<void> }>(count: number, start: () => Promise<T>): Promise<T[]> {
  const started = await Promise.allSettled(Array.from({ length: count }, start));
  const ok = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await Promise.all(ok.map((x) => x.close().catch(() => undefined)));
    throw failed.reason;
  }
  return ok;
}
