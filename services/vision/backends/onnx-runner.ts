// One onnxruntime session (on the event loop or on worker threads) as a TensorRunner: a float32 tensor into its first input, its first output back.
import * as ort from 'onnxruntime-node';
import type { SessionLike } from '../../runtime/models/session-thread.js';
import type { TensorRunner } from '../domain/ocr-engine.js';

export function tensorRunner(session: SessionLike): TensorRunner {
  const input = session.inputNames[0];
  const output = session.outputNames[0];
  if (!input || !output) throw new Error('the model needs at least one input and one output');
  return {
    async run(data, dims) {
      // The engine builds a new tensor for every run and never reads it again: a session on a thread may take it.
      const result = await session.run({ [input]: new ort.Tensor('float32', data, dims) }, [output], true);
      const tensor = result[output];
      if (!tensor || tensor.type !== 'float32') throw new Error(`output ${output} is not a float32 tensor`);
      return { data: tensor.data as Float32Array, dims: tensor.dims };
    },
  };
}
