// The worker-thread side of a lane (worker-lane.ts): an OnnxDecoder of its own driven by a LaneLoop, which
// takes joins and leaves as messages (also read at each step boundary, not only between event-loop turns)
// and posts its events back.
import { getPriority, setPriority } from 'node:os';
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { notReady, type Ready } from '../../runtime/workers/start-worker.js';
import { LaneLoop } from '../domain/lane.js';
import { OnnxDecoder } from './onnx-decoder.js';
import type { LaneInit, LaneMessage, LaneReady, LaneReply } from './worker-lane.js';

const port = parentPort!;
const init = (workerData as { data: LaneInit }).data;

let decoder: OnnxDecoder;
try {
  decoder = await OnnxDecoder.create(init.model, init.settings, init.hints, undefined, { graph: init.graph });
} catch (err) {
  port.postMessage(notReady(err));
  process.exit(0);
}
// Niceness is per thread on Linux: 0 names this thread. Raising it needs no privilege; where it is refused the
// lane runs at the process's priority.
let nicenessRefused: string | undefined;
if (init.niceness > 0) {
  try {
    setPriority(0, Math.min(19, getPriority(0) + init.niceness));
  } catch (err) {
    nicenessRefused = err instanceof Error ? err.message : String(err);
  }
}
const lane: LaneLoop = new LaneLoop(decoder, {
  ...init.options,
  poll: () => {
    for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) handle(m.message as LaneMessage);
  },
});
lane.listen((event) => port.postMessage(event satisfies LaneReply));
port.on('message', handle);
// Ready only now: the main thread sends joins as soon as it reads this, and they need the lane.
port.postMessage({ ready: true, value: { shape: decoder.shape, executionProvider: decoder.executionProvider, graph: decoder.graph, nicenessRefused } } satisfies Ready<LaneReady>);

function handle(m: LaneMessage): void {
  switch (m.op) {
    case 'join':
      return lane.join(m.sequence);
    case 'leave':
      return lane.leave(m.id);
    case 'close':
      return void lane.close().then(() => port.postMessage({ kind: 'closed' } satisfies LaneReply));
  }
}
