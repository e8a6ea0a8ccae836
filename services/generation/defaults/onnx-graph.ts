// A small helper for writing ONNX graphs from JavaScript with onnx-proto: named initializers, nodes with
// generated output names, typed graph inputs and outputs with symbolic dimensions, and serialization.
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;
type Dim = number | string;

export const DataType = { FLOAT: 1, INT64: 7, BOOL: 9 } as const;

/** Numbers are INT attributes; floats are written `{ float: x }`. */
export type AttrValue = number | number[] | string | { float: number } | { tensor: onnxProto.onnx.ITensorProto };

export class GraphBuilder {
  private readonly nodes: onnxProto.onnx.INodeProto[] = [];
  private readonly initializers: onnxProto.onnx.ITensorProto[] = [];
  private readonly inputs: onnxProto.onnx.IValueInfoProto[] = [];
  private readonly outputs: onnxProto.onnx.IValueInfoProto[] = [];
  private counter = 0;

  constructor(private readonly name: string) {}

  /** A float initializer (weights). */
  float(name: string, dims: number[], data: Float32Array): string {
    const expected = dims.reduce((a, b) => a * b, 1);
    if (data.length !== expected) throw new Error(`initializer ${name}: expected ${expected} values for [${dims.join(', ')}], got ${data.length}`);
    this.initializers.push({ name, dims, dataType: DataType.FLOAT, rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
    return name;
  }

  /** An int64 initializer (shapes, axes, indices). */
  ints(name: string, values: number[], dims: number[] = [values.length]): string {
    const data = BigInt64Array.from(values.map((v) => BigInt(v)));
    this.initializers.push({ name, dims, dataType: DataType.INT64, rawData: new Uint8Array(data.buffer) });
    return name;
  }

  /** A float scalar initializer. */
  scalar(name: string, value: number): string {
    this.initializers.push({ name, dims: [], dataType: DataType.FLOAT, rawData: new Uint8Array(Float32Array.of(value).buffer) });
    return name;
  }

  input(name: string, elemType: number, shape: Dim[]): string {
    this.inputs.push(valueInfo(name, elemType, shape));
    return name;
  }

  output(name: string, elemType: number, shape: Dim[]): void {
    this.outputs.push(valueInfo(name, elemType, shape));
  }

  /** Adds a node; returns its output names (generated unless given). */
  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, outputs: number | string[] = 1): string[] {
    const outNames = typeof outputs === 'number' ? Array.from({ length: outputs }, () => `${opType.toLowerCase()}_${this.counter++}`) : outputs;
    this.nodes.push({ opType, input: inputs, output: outNames, name: `${opType}_${this.counter++}`, attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)) });
    return outNames;
  }

  /** Adds a node with one output and returns it. */
  op1(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, output?: string): string {
    return this.op(opType, inputs, attrs, output ? [output] : 1)[0]!;
  }

  /** Serializes the model: IR version 8, default-domain opset `opset`. */
  serialize(opset = 17, producer = 'maas'): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: producer,
      opsetImport: [{ domain: '', version: opset }],
      graph: { name: this.name, node: this.nodes, initializer: this.initializers, input: this.inputs, output: this.outputs },
    });
    return onnx.ModelProto.encode(model).finish();
  }
}

function valueInfo(name: string, elemType: number, shape: Dim[]): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType, shape: { dim: shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
  };
}

function attribute(name: string, v: AttrValue): onnxProto.onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) return { name, type: T.INTS, ints: v };
  if (typeof v === 'object') return 'float' in v ? { name, type: T.FLOAT, f: v.float } : { name, type: T.TENSOR, t: v.tensor };
  return { name, type: T.INT, i: v };
}
