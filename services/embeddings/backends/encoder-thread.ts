// The worker-thread side of a ThreadEncoder (thread-encoder.ts): the version's tokenizer and an OnnxEncoder
// with its own onnxruntime session, tokenizing and running the batches the main thread posts, one after another.
import { collectingLog } from '../../runtime/models/onnx-session.js';
import { serveCalls } from '../../runtime/workers/worker-calls.js';
import { readTokenizer } from './model-config.js';
import type { EncoderInfo, EncoderInit } from './thread-encoder.js';
import { openTokenizingEncoder, type EncodedBatch, type TextBatch } from './tokenizing-encoder.js';

await serveCalls<EncoderInit, EncoderInfo, TextBatch, EncodedBatch>({
  async open(init) {
    const log = collectingLog();
    const { name, version } = init.options;
    const tokenizer = await readTokenizer(init.dir, name, version, init.maxLength);
    const { encoding, release, ...facts } = await openTokenizingEncoder(tokenizer, init, log);
    return {
      info: { ...facts, warnings: log.warnings },
      handle: (batch) => encoding.run(batch),
      transfer: (out) => [out.values.buffer as ArrayBuffer, out.counts.buffer as ArrayBuffer],
      close: release,
    };
  },
});
