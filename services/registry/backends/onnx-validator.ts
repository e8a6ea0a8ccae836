// ONNX validation: a file is accepted only if onnxruntime loads it; its inputs and outputs become the
// version's signature. onnxruntime is imported on first use so the registry starts without it, and loads run
// one at a time so two large uploads do not hold two large graphs in memory together.
import type { GraphSignature, OnnxValidator } from '../domain/types.js';

export function onnxValidator(): OnnxValidator {
  let queue: Promise<unknown> = Promise.resolve();
  return (path, file) => {
    const run = queue.then(() => validate(path, file));
    queue = run.catch(() => undefined);
    return run;
  };
}

async function validate(path: string, file: string): Promise<GraphSignature> {
  const { createOnnxSession, sessionSignature } = await import('../../runtime/models/onnx-session.js');
  const { session } = await createOnnxSession(path, { executionProviders: ['cpu'], intraOpThreads: 1, interOpThreads: 1 });
  try {
    return { file, ...sessionSignature(session) };
  } finally {
    await session.release();
  }
}
