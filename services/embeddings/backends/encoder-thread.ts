// The worker-thread side of a ThreadEncoder (thread-encoder.ts): an onnxruntime session and its OnnxEncoder,
// running the batches the main thread posts, one after another.
import { collectingLog, createOnnxSession } from '../../runtime/models/onnx-session.js';
import { serveCalls } from '../../runtime/workers/worker-calls.js';
import { OnnxEncoder } from './onnx-encoder.js';
import { unpackBatch, type EncoderInfo, type EncoderInit, type PackedBatch } from './thread-encoder.js';

await serveCalls<EncoderInit, EncoderInfo, PackedBatch, Float32Array>({
  async open(init) {
    const log = collectingLog();
    const { session, executionProvider } = await createOnnxSession(init.file, init.settings, log);
    try {
      const encoder = new OnnxEncoder(session, { ...init.options, executionProvider });
      const dimensions = await encoder.probe();
      return {
        info: {
          dimensions,
          output: encoder.output,
          pooledByModel: encoder.pooledByModel,
          executionProvider,
          typed: session.inputNames.includes('token_type_ids'),
          warnings: log.warnings,
        },
        async handle(batch) {
          const vectors = await encoder.run(unpackBatch(batch));
          // Copied into a buffer of their own, which is moved to the main thread rather than cloned
          // (onnxruntime's output may live in memory that cannot be handed over).
          const values = new Float32Array(vectors.length * dimensions);
          vectors.forEach((v, r) => values.set(v, r * dimensions));
          return values;
        },
        transfer: (values) => [values.buffer as ArrayBuffer],
        close: () => session.release(),
      };
    } catch (err) {
      await session.release().catch(() => undefined);
      throw err;
    }
  },
});
