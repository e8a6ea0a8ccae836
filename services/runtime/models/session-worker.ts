// The worker-thread side of a ThreadSession (session-thread.ts): one onnxruntime session, running the calls
// the main thread sends, one after another.
import * as ort from 'onnxruntime-node';
import { serveCalls } from '../workers/worker-calls.js';
import { collectingLog, createOnnxSession } from './onnx-session.js';
import type { PlainTensor, RunCall, SessionThreadInfo, SessionThreadInit } from './session-thread.js';

await serveCalls<SessionThreadInit, SessionThreadInfo, RunCall, Record<string, PlainTensor>>({
  async open({ model, settings }) {
    const log = collectingLog();
    const { session, executionProvider } = await createOnnxSession(model, settings, log);
    return {
      info: {
        warnings: log.warnings,
        inputNames: [...session.inputNames],
        outputNames: [...session.outputNames],
        inputMetadata: [...session.inputMetadata],
        outputMetadata: [...session.outputMetadata],
        executionProvider,
      },
      async handle({ feeds, fetches }) {
        const tensors: Record<string, ort.Tensor> = {};
        for (const [name, t] of Object.entries(feeds)) tensors[name] = new ort.Tensor(t.type, t.data as never, t.dims);
        const out = await session.run(tensors, [...fetches]);
        const plain: Record<string, PlainTensor> = {};
        for (const name of fetches) {
          const t = out[name]!;
          plain[name] = { type: t.type, data: t.data, dims: t.dims };
        }
        return plain;
      },
      close: () => session.release(),
    };
  },
});
