// The worker-thread side of a ThreadEncoder (thread-encoder.ts): an onnxruntime session and its OnnxEncoder,
// running the batches the main thread posts, one after another.
import { parentPort, workerData } from 'node:worker_threads';
import { FailedPreconditionError } from '../../runtime/errors.js';
import { createOnnxSession } from '../../runtime/models/onnx-session.js';
import { OnnxEncoder } from './onnx-encoder.js';
import { unpackBatch, type EncoderInit, type EncoderReady, type EncoderReply, type EncoderRequest } from './thread-encoder.js';

const port = parentPort!;
const init = (workerData as { data: EncoderInit }).data;

let encoder: OnnxEncoder;
let dimensions: number;
let release: () => Promise<void>;
try {
  const { session, executionProvider } = await createOnnxSession(init.file, init.settings);
  release = () => session.release();
  encoder = new OnnxEncoder(session, { ...init.options, executionProvider });
  dimensions = await encoder.probe();
  port.postMessage({
    ready: true,
    dimensions,
    output: encoder.output,
    pooledByModel: encoder.pooledByModel,
    executionProvider,
    typed: session.inputNames.includes('token_type_ids'),
  } satisfies EncoderReady);
} catch (err) {
  const ready: EncoderReady = { ready: false, error: err instanceof Error ? err.message : String(err) };
  if (err instanceof FailedPreconditionError) Object.assign(ready, { violations: err.violations, reason: err.reason });
  port.postMessage(ready);
  process.exit(0);
}

port.on('message', (request: EncoderRequest) => {
  if (request.op === 'close') return void release().then(() => port.postMessage({ id: -1, closed: true } satisfies EncoderReply));
  encoder.run(unpackBatch(request)).then(
    (vectors) => {
      // Copied into a buffer of their own, which is moved to the main thread rather than cloned (onnxruntime's
      // output may live in memory that cannot be handed over).
      const values = new Float32Array(vectors.length * dimensions);
      vectors.forEach((v, r) => values.set(v, r * dimensions));
      port.postMessage({ id: request.id, values } satisfies EncoderReply, [values.buffer]);
    },
    (err: unknown) => port.postMessage({ id: request.id, error: err instanceof Error ? err.message : String(err) } satisfies EncoderReply),
  );
});
