// Test fixtures for the registry: tiny valid ONNX graphs built with onnx-proto (no downloads), and large
// generated files written in pieces so the test process itself stays small.
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

/**
 * A valid ONNX model: `y = x + bias` with x: float32[batch, width] and a constant bias of `width` values.
 * Different `bias` values give different bytes (so digests differ between "versions").
 */
export function tinyOnnx(options: { width?: number; bias?: number; inputName?: string; outputName?: string } = {}): Buffer {
  const width = options.width ?? 4;
  const bias = options.bias ?? 1;
  const input = options.inputName ?? 'x';
  const output = options.outputName ?? 'y';
  const tensorType = (dims: onnxProto.onnx.TensorShapeProto.IDimension[]) => ({
    tensorType: { elemType: onnx.TensorProto.DataType.FLOAT, shape: { dim: dims } },
  });
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'maas-tests',
    opsetImport: [{ domain: '', version: 15 }],
    graph: {
      name: 'tiny',
      node: [{ opType: 'Add', input: [input, 'bias'], output: [output], name: 'add' }],
      initializer: [{ name: 'bias', dataType: onnx.TensorProto.DataType.FLOAT, dims: [width], floatData: Array.from({ length: width }, () => bias) }],
      input: [{ name: input, type: tensorType([{ dimParam: 'batch' }, { dimValue: width }]) }],
      output: [{ name: output, type: tensorType([{ dimParam: 'batch' }, { dimValue: width }]) }],
    },
  });
  return Buffer.from(onnx.ModelProto.encode(model).finish());
}

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * Writes `bytes` of deterministic pseudo-random content to `path` in 1 MiB pieces and returns its sha256.
 * (Pseudo-random so that no filesystem or transport compression flatters the figures.)
 */
export async function writeGeneratedFile(path: string, bytes: number, seed = 1): Promise<string> {
  const hash = createHash('sha256');
  const fh = await open(path, 'w');
  try {
    const piece = Buffer.alloc(1024 * 1024);
    let x = seed >>> 0 || 1;
    for (let written = 0; written < bytes; ) {
      for (let i = 0; i < piece.length; i += 4) {
        // xorshift32
        x ^= x << 13;
        x >>>= 0;
        x ^= x >>> 17;
        x ^= x << 5;
        x >>>= 0;
        piece.writeUInt32LE(x, i);
      }
      const n = Math.min(piece.length, bytes - written);
      const slice = piece.subarray(0, n);
      await fh.write(slice);
      hash.update(slice);
      written += n;
    }
  } finally {
    await fh.close();
  }
  return hash.digest('hex');
}
