// A small writer of ONNX graphs (through onnx-proto's protobuf classes), enough for the project's own encoder
// models: typed inputs and outputs with symbolic dimensions, initializers as raw little-endian bytes, nodes
// with int, ints and float attributes.
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

export const DataType = { FLOAT: 1, INT64: 7 } as const;
type ElemType = (typeof DataType)[keyof typeof DataType];

type AttrValue = number | number[] | { float: number };

export class GraphBuilder {
  private readonly nodes: InstanceType<typeof onnx.NodeProto>[] = [];
  private readonly initializers: InstanceType<typeof onnx.TensorProto>[] = [];
  private readonly inputs: InstanceType<typeof onnx.ValueInfoProto>[] = [];
  private readonly outputs: InstanceType<typeof onnx.ValueInfoProto>[] = [];
  private count = 0;

  constructor(private readonly name: string) {}

  /** A graph input; string dimensions are symbolic (`batch`, `sequence`). */
  input(name: string, type: ElemType, dims: (number | string)[]): string {
    this.inputs.push(valueInfo(name, type, dims));
    return name;
  }

  output(name: string, type: ElemType, dims: (number | string)[]): string {
    this.outputs.push(valueInfo(name, type, dims));
    return name;
  }

  floats(name: string, dims: number[], values: Float32Array): string {
    const raw = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    this.initializers.push(onnx.TensorProto.create({ name, dims, dataType: DataType.FLOAT, rawData: raw }));
    return name;
  }

  int64s(name: string, dims: number[], values: number[]): string {
    const data = BigInt64Array.from(values.map((v) => BigInt(v)));
    this.initializers.push(onnx.TensorProto.create({ name, dims, dataType: DataType.INT64, rawData: new Uint8Array(data.buffer) }));
    return name;
  }

  /** Adds a node; returns its output names (generated when not given). */
  node(op: string, inputs: string[], attributes: Record<string, AttrValue> = {}, outputs?: string[]): string[] {
    const outs = outputs ?? [`${op.toLowerCase()}_${this.count++}`];
    const attribute = Object.entries(attributes).map(([name, v]) => {
      if (Array.isArray(v)) return onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.INTS, ints: v });
      if (typeof v === 'number') return onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.INT, i: v });
      return onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.FLOAT, f: v.float });
    });
    this.nodes.push(onnx.NodeProto.create({ name: `${op}_${this.nodes.length}`, opType: op, input: inputs, output: outs, attribute }));
    return outs;
  }

  /** One-output node. */
  op(op: string, inputs: string[], attributes: Record<string, AttrValue> = {}, output?: string): string {
    return this.node(op, inputs, attributes, output ? [output] : undefined)[0]!;
  }

  /** The serialized model (IR 8, default-domain opset). */
  encode(options: { opset: number; producer: string; docString?: string }): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: options.producer,
      producerVersion: '1',
      docString: options.docString ?? '',
      opsetImport: [onnx.OperatorSetIdProto.create({ domain: '', version: options.opset })],
      graph: onnx.GraphProto.create({ name: this.name, node: this.nodes, initializer: this.initializers, input: this.inputs, output: this.outputs }),
    });
    return onnx.ModelProto.encode(model).finish();
  }
}

function valueInfo(name: string, elemType: ElemType, dims: (number | string)[]) {
  return onnx.ValueInfoProto.create({
    name,
    type: onnx.TypeProto.create({
      tensorType: onnx.TypeProto.Tensor.create({
        elemType,
        shape: onnx.TensorShapeProto.create({
          dim: dims.map((d) => onnx.TensorShapeProto.Dimension.create(typeof d === 'number' ? { dimValue: d } : { dimParam: d })),
        }),
      }),
    }),
  });
}
