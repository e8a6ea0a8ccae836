// The worker-thread side of a ThreadEncoder (thread-encoder.ts): an OnnxEncoder with its own onnxruntime
// session, running the batches the main thread posts, one after another.
import { collectingLog } from '../../runtime/models/onnx-session.js';
import { serveCalls } from '../../runtime/workers/worker-calls.js';
import { openOnnxEncoder } from './onnx-encoder.js';
import { unpackBatch, type EncoderInfo, type EncoderInit, type PackedBatch } from './thread-encoder.js';

await serveCalls<EncoderInit, EncoderInfo, PackedBatch, Float32Array>({
  async open(init) {
    const log = collectingLog();
    const { encoder, executionProvider, dimensions, readsTypeIds, release } = await openOnnxEncoder(init.file, init.settings, init.options, log);
    return {
      info: { dimensions, output: encoder.output, pooledByModel: encoder.pooledByModel, executionProvider, typed: readsTypeIds, warnings: log.warnings },
      async handle(batch) {
        const vectors = await encoder.run(unpackBatch(batch));
        // OnnxEncoder answers views of one buffer, row after row (onnxruntime's output, or the pooled rows):
        // one array over them all is moved to the main thread as it is, copied only if it is not the whole buffer.
        const first = vectors[0]!;
        const values = new Float32Array(first.buffer, first.byteOffset, vectors.length * dimensions);
        return values.byteOffset === 0 && values.byteLength === values.buffer.byteLength ? values : values.slice();
      },
      transfer: (values) => [values.buffer as ArrayBuffer],
      close: release,
    };
  },
});
