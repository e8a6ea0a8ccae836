// Starts a worker thread from an entry module next to the caller, whether the project runs from its
// TypeScript sources (through tsx, which workers must register themselves: ts-worker.mjs) or compiled to
// JavaScript. The entry reads its own data from workerData.data.
import { Worker } from 'node:worker_threads';

/**
 * entry: the module's URL as the caller sees it, e.g. new URL('./lane-worker.js', import.meta.url); under
 * TypeScript sources the .ts file of that name is started.
 */
export function startWorker(entry: URL, data: unknown): Worker {
  const execArgv = withoutPreloads(process.execArgv);
  const fromSources = import.meta.url.endsWith('.ts');
  if (!fromSources) return new Worker(entry, { workerData: { data }, execArgv });
  const source = entry.href.replace(/\.js$/, '.ts');
  return new Worker(new URL('./ts-worker.mjs', import.meta.url), { workerData: { entry: source, data }, execArgv });
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
