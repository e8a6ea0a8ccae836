// The worker-thread side of a decode lane (worker-decoder.ts): an OnnxDecoder of its own, driven by
// messages. Caches stay here, named by number; logits go back through a SharedArrayBuffer that both threads
// view, so a step's rows are neither copied into a message nor left for the main thread's garbage collector.
import { parentPort, workerData } from 'node:worker_threads';
import type { SequenceCache } from '../domain/decoder.js';
import { OnnxDecoder } from './onnx-decoder.js';
import type { LaneInit, LaneMessage, LaneReply, LaneRequest } from './worker-decoder.js';

const port = parentPort!;
const init = (workerData as { data: LaneInit }).data;

let decoder: OnnxDecoder;
try {
  decoder = await OnnxDecoder.create(init.model, init.settings, init.hints);
} catch (err) {
  port.postMessage({ ready: false, error: String(err instanceof Error ? err.message : err) });
  process.exit(0);
}
port.postMessage({ ready: true, shape: decoder.shape, executionProvider: decoder.executionProvider });

const caches = new Map<number, SequenceCache>();
let nextId = 1;
/** The logits buffer both threads view. */
let view = new Float32Array(new SharedArrayBuffer(0));

/** Copies logits into the shared buffer, growing it when needed (the reply then carries the new one). */
function share(logits: Float32Array): SharedArrayBuffer | undefined {
  let grown: SharedArrayBuffer | undefined;
  if (view.length < logits.length) {
    grown = new SharedArrayBuffer(Math.max(logits.length, view.length * 2) * 4);
    view = new Float32Array(grown);
  }
  view.set(logits);
  return grown;
}

async function handle(m: LaneRequest): Promise<LaneReply> {
  switch (m.op) {
    case 'prefill': {
      const r = await decoder.prefill(m.tokens);
      const id = nextId++;
      caches.set(id, r.cache);
      const V = decoder.shape.vocabSize;
      return { seq: m.seq, id, shared: share(r.logits.subarray(r.offset, r.offset + V)) };
    }
    case 'decode': {
      const batch = m.ids.map((id, i) => {
        const cache = caches.get(id);
        if (!cache) throw new Error(`decode lane: no cache ${id} (released or never made)`);
        return { cache, token: m.tokens[i]! };
      });
      return { seq: m.seq, shared: share(await decoder.decode(batch)) };
    }
    case 'close':
      await decoder.close();
      return { seq: m.seq };
  }
}

// One message at a time, in order (the decoder is not reentrant; a release waits for the step before it).
let chain = Promise.resolve();
port.on('message', (m: LaneMessage) => {
  chain = chain.then(async () => {
    if (m.op === 'release') {
      const cache = caches.get(m.id);
      if (cache) decoder.release(cache);
      caches.delete(m.id);
      return;
    }
    try {
      port.postMessage(await handle(m));
    } catch (err) {
      port.postMessage({ seq: m.seq, error: err instanceof Error ? err.message : String(err) });
    }
  });
});
