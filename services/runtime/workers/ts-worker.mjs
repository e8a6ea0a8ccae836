// Bootstrap of worker threads started from TypeScript sources (npm start, tests): a worker does not inherit
// the main thread's `--import tsx` hooks, so this registers tsx in the worker, then loads the entry. Compiled
// builds (dist/) start their .js entries directly and never load this file.
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.entry);
