// Prepares a Hugging Face decoder graph for stepping a batch whose cache this service keeps itself.
//
// A decode step needs from the graph the logits and, per layer, the key and value of the new token. The
// signature returns instead the whole `present` cache (past + new), and onnxruntime-node copies every output
// it returns: at 8 rows and 100 positions that copy cost the gpt2-mini step more than half again its compute.
// Where `present.<i>.key/value` is a plain Concat of the past input and the new entries (how transformers'
// ONNX exports and this project's own decoders write attention), the new entries are a tensor of the graph
// already; they become graph outputs, and a step fetches a few hundred bytes per row instead of the cache.
//
// Where, beyond that, attention reads the concatenated cache only as `MatMul(q, Transpose(keys))` and
// `MatMul(probs, values)`, it is rewritten to read the past and the new entries apart:
//   scores = Concat(MatMul(q, Transpose(past_k)), MatMul(q, Transpose(new_k)), axis -1)
//   out    = MatMul(probs[..., :past], past_v) + MatMul(probs[..., past:], new_v)
// the same sums, without copying the whole cache into a new tensor at every step (a quarter of an 8-row
// step). The present outputs are then dropped: the new entries of a prefill are its whole cache.
//
// The model is read with a protobuf scanner (the weights are skipped, not decoded) and written back by
// copying every field it does not change. The few messages it adds are encoded here by field number rather
// than with onnx-proto, which the project's model builders use: that is a development dependency (23 MB, with
// a protobufjs of its own), and this runs in the service, whose image installs production dependencies only.
import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';

// Field numbers of onnx.proto.
const MODEL_GRAPH = 7;
const MODEL_OPSET_IMPORT = 8;
const OPSET_DOMAIN = 1;
const OPSET_VERSION = 2;
const GRAPH_NODE = 1;
const GRAPH_INITIALIZER = 5;
const GRAPH_OUTPUT = 12;
const NODE_INPUT = 1;
const NODE_OUTPUT = 2;
const NODE_OP_TYPE = 4;
const NODE_ATTRIBUTE = 5;
const NODE_DOMAIN = 7;
const ATTRIBUTE_NAME = 1;
const ATTRIBUTE_I = 3;
const ATTRIBUTE_G = 6;
const ATTRIBUTE_INTS = 8;
const ATTRIBUTE_GRAPHS = 11;
const ATTRIBUTE_TYPE = 20;
const ATTRIBUTE_TYPE_INT = 2;
const ATTRIBUTE_TYPE_INTS = 7;
const TENSOR_DIMS = 1;
const TENSOR_DATA_TYPE = 2;
const TENSOR_NAME = 8;
const TENSOR_RAW_DATA = 9;
const TENSOR_DATA_LOCATION = 14;
const DATA_LOCATION_EXTERNAL = 1;
const VALUE_INFO_NAME = 1;
const VALUE_INFO_TYPE = 2;
const TYPE_TENSOR = 1;
const TENSOR_TYPE_ELEM_TYPE = 1;
const ELEM_FLOAT = 1;
const ELEM_INT64 = 7;
const PRESENT = /^present\.(\d+)\.(key|value)$/;

export interface DecodeGraph {
  /** The amended model, to load instead of the original. */
  model: Uint8Array;
  /** Per present name, the graph output that holds a step's new entries for it. */
  newEntries: Map<string, string>;
  /** True when attention was rewritten to read the past and the new entries apart (no present outputs left). */
  splitAttention: boolean;
}

interface Node {
  /** Where the node's field lies in the graph message. */
  start: number;
  end: number;
  opType: string;
  domain: string;
  inputs: string[];
  outputs: string[];
  axis: number | undefined;
  perm: number[];
  subgraph: boolean;
}

/**
 * The amended graph, or undefined when no `present` is a plain `Concat(past, new, axis 2)` at the top level, or
 * when the weights live in external files (the amended graph is loaded from memory, where their relative paths
 * cannot be resolved).
 */
export function prepareDecodeGraph(model: Uint8Array, options: { splitAttention: boolean }): DecodeGraph | undefined {
  try {
    return prepare(model, options);
  } catch {
    return undefined; // not a model this can read: onnxruntime says what is wrong with it when it loads it
  }
}

function prepare(model: Uint8Array, options: { splitAttention: boolean }): DecodeGraph | undefined {
  const located = locateGraph(model);
  if (!located) return undefined;
  const graph = model.subarray(located.start, located.end);
  const nodes: Node[] = [];
  const outputs: { start: number; end: number; name: string }[] = [];
  let external = false;
  eachField(graph, (no, type, reader, start) => {
    if (type !== WireType.LengthDelimited) return false;
    if (no === GRAPH_NODE) nodes.push({ start, ...readNode(reader.bytes()), end: reader.pos });
    else if (no === GRAPH_INITIALIZER) external ||= isExternal(reader.bytes());
    else if (no === GRAPH_OUTPUT) outputs.push({ start, name: readName(reader.bytes()), end: reader.pos });
    else return false;
    return true;
  });
  if (external) return undefined;

  const consumers = new Map<string, Node[]>();
  for (const node of nodes) {
    for (const input of node.inputs) {
      const readers = consumers.get(input);
      if (readers) readers.push(node);
      else consumers.set(input, [node]);
    }
  }
  const newEntries = new Map<string, string>();
  const concats = new Map<string, Node>();
  for (const node of nodes) {
    const present = node.outputs.length === 1 ? PRESENT.exec(node.outputs[0]!) : null;
    if (!present) continue;
    const plain = node.opType === 'Concat' && node.domain === '' && node.inputs.length === 2 && node.inputs[0] === `past_key_values.${present[1]}.${present[2]}` && (node.axis === 2 || node.axis === -2);
    if (plain && node.inputs[1]) {
      newEntries.set(present[0], node.inputs[1]);
      concats.set(present[0], node);
    }
  }
  if (newEntries.size === 0) return undefined;

  // The rewrite's Slice reads its bounds from inputs and its Concat takes a negative axis (opset 11 on).
  const split = options.splitAttention && located.opset >= 11 && !nodes.some((n) => n.subgraph) ? planSplit(concats, consumers) : undefined;
  const out = new GraphWriter(graph);
  if (split) {
    const dropped = new Set(split.dropped);
    const droppedOutputs = new Set(concats.keys());
    const pieces = [...nodes.filter((n) => dropped.has(n)), ...outputs.filter((o) => droppedOutputs.has(o.name))].sort((a, b) => a.start - b.start);
    out.copyExcept(pieces);
    out.int64Initializer(ZERO, [0]);
    out.int64Initializer(END, [Number.MAX_SAFE_INTEGER]);
    out.int64Initializer(LAST_AXIS, [-1]);
    out.int64Initializer(POSITIONS_AXIS, [2]);
    split.layers.forEach((layer, i) => out.splitAttention(layer, i));
  } else out.copyExcept([]);
  for (const name of newEntries.values()) out.floatOutput(name);
  return { model: replaceGraph(model, located, out.finish()), newEntries, splitAttention: split !== undefined };
}

const ZERO = 'maas_split_zero';
const END = 'maas_split_end';
const LAST_AXIS = 'maas_split_last_axis';
const POSITIONS_AXIS = 'maas_split_positions_axis';

interface SplitLayer {
  pastKey: string;
  newKey: string;
  query: string;
  scores: string;
  pastValue: string;
  newValue: string;
  probs: string;
  context: string;
}

/** The attention of every layer, if each reads its concatenated cache only in the two products. */
function planSplit(concats: Map<string, Node>, consumers: Map<string, Node[]>): { layers: SplitLayer[]; dropped: Node[] } | undefined {
  const layers: SplitLayer[] = [];
  const dropped: Node[] = [];
  for (let i = 0; concats.has(`present.${i}.key`) || concats.has(`present.${i}.value`); i++) {
    const keys = concats.get(`present.${i}.key`);
    const values = concats.get(`present.${i}.value`);
    if (!keys || !values) return undefined;
    const [transpose, ...otherK] = consumers.get(keys.outputs[0]!) ?? [];
    if (!transpose || otherK.length > 0 || transpose.opType !== 'Transpose' || transpose.perm.join() !== '0,1,3,2') return undefined;
    const [scores, ...otherT] = consumers.get(transpose.outputs[0]!) ?? [];
    if (!scores || otherT.length > 0 || scores.opType !== 'MatMul' || scores.inputs[1] !== transpose.outputs[0]) return undefined;
    const [context, ...otherV] = consumers.get(values.outputs[0]!) ?? [];
    if (!context || otherV.length > 0 || context.opType !== 'MatMul' || context.inputs[1] !== values.outputs[0]) return undefined;
    if ([transpose, scores, context].some((n) => n.domain !== '' || PRESENT.test(n.outputs[0] ?? ''))) return undefined;
    layers.push({
      pastKey: keys.inputs[0]!,
      newKey: keys.inputs[1]!,
      query: scores.inputs[0]!,
      scores: scores.outputs[0]!,
      pastValue: values.inputs[0]!,
      newValue: values.inputs[1]!,
      probs: context.inputs[0]!,
      context: context.outputs[0]!,
    });
    dropped.push(keys, values, transpose, scores, context);
  }
  return layers.length > 0 && layers.length * 2 === concats.size ? { layers, dropped } : undefined;
}

/** Writes a GraphProto: the original's fields but some, then new ones. */
class GraphWriter {
  private readonly writer = new BinaryWriter();
  private readonly parts: Uint8Array[] = [];

  constructor(private readonly graph: Uint8Array) {}

  /** Copies the original graph's bytes but the given field ranges (sorted). */
  copyExcept(skip: readonly { start: number; end: number }[]): void {
    let at = 0;
    for (const piece of skip) {
      this.parts.push(this.graph.subarray(at, piece.start));
      at = piece.end;
    }
    this.parts.push(this.graph.subarray(at));
  }

  int64Initializer(name: string, values: number[]): void {
    const tensor = new BinaryWriter().uint32((TENSOR_DIMS << 3) | WireType.Varint).int64(values.length);
    tensor.uint32((TENSOR_DATA_TYPE << 3) | WireType.Varint).int32(ELEM_INT64);
    tensor.uint32((TENSOR_NAME << 3) | WireType.LengthDelimited).string(name);
    tensor.uint32((TENSOR_RAW_DATA << 3) | WireType.LengthDelimited).bytes(new Uint8Array(BigInt64Array.from(values, (v) => BigInt(v)).buffer));
    this.writer.uint32((GRAPH_INITIALIZER << 3) | WireType.LengthDelimited).bytes(tensor.finish());
  }

  floatOutput(name: string): void {
    const tensorType = new BinaryWriter().uint32((TENSOR_TYPE_ELEM_TYPE << 3) | WireType.Varint).int32(ELEM_FLOAT).finish();
    const type = new BinaryWriter().uint32((TYPE_TENSOR << 3) | WireType.LengthDelimited).bytes(tensorType).finish();
    const info = new BinaryWriter().uint32((VALUE_INFO_NAME << 3) | WireType.LengthDelimited).string(name).uint32((VALUE_INFO_TYPE << 3) | WireType.LengthDelimited).bytes(type).finish();
    this.writer.uint32((GRAPH_OUTPUT << 3) | WireType.LengthDelimited).bytes(info);
  }

  splitAttention(l: SplitLayer, i: number): void {
    const n = (what: string) => `maas_split_${i}_${what}`;
    this.node('Transpose', [l.pastKey], [n('past_kt')], { perm: [0, 1, 3, 2] });
    this.node('Transpose', [l.newKey], [n('new_kt')], { perm: [0, 1, 3, 2] });
    this.node('MatMul', [l.query, n('past_kt')], [n('past_scores')]);
    this.node('MatMul', [l.query, n('new_kt')], [n('new_scores')]);
    this.node('Concat', [n('past_scores'), n('new_scores')], [l.scores], { axis: -1 });
    // Shape's start/end attributes need opset 15; Gather picks the positions' axis at any opset.
    this.node('Shape', [l.pastValue], [n('past_shape')]);
    this.node('Gather', [n('past_shape'), POSITIONS_AXIS], [n('past_length')], { axis: 0 });
    this.node('Slice', [l.probs, ZERO, n('past_length'), LAST_AXIS], [n('past_probs')]);
    this.node('Slice', [l.probs, n('past_length'), END, LAST_AXIS], [n('new_probs')]);
    this.node('MatMul', [n('past_probs'), l.pastValue], [n('past_context')]);
    this.node('MatMul', [n('new_probs'), l.newValue], [n('new_context')]);
    this.node('Add', [n('past_context'), n('new_context')], [l.context]);
  }

  finish(): Uint8Array {
    return concat([...this.parts, this.writer.finish()]);
  }

  private node(opType: string, inputs: string[], outputs: string[], attributes: Record<string, number | number[]> = {}): void {
    const node = new BinaryWriter();
    for (const input of inputs) node.uint32((NODE_INPUT << 3) | WireType.LengthDelimited).string(input);
    for (const output of outputs) node.uint32((NODE_OUTPUT << 3) | WireType.LengthDelimited).string(output);
    node.uint32((NODE_OP_TYPE << 3) | WireType.LengthDelimited).string(opType);
    for (const [name, value] of Object.entries(attributes)) {
      const a = new BinaryWriter().uint32((ATTRIBUTE_NAME << 3) | WireType.LengthDelimited).string(name);
      if (Array.isArray(value)) {
        for (const v of value) a.uint32((ATTRIBUTE_INTS << 3) | WireType.Varint).int64(v);
        a.uint32((ATTRIBUTE_TYPE << 3) | WireType.Varint).int32(ATTRIBUTE_TYPE_INTS);
      } else a.uint32((ATTRIBUTE_I << 3) | WireType.Varint).int64(value).uint32((ATTRIBUTE_TYPE << 3) | WireType.Varint).int32(ATTRIBUTE_TYPE_INT);
      node.uint32((NODE_ATTRIBUTE << 3) | WireType.LengthDelimited).bytes(a.finish());
    }
    this.writer.uint32((GRAPH_NODE << 3) | WireType.LengthDelimited).bytes(node.finish());
  }
}

/**
 * Walks a message's fields: `read` takes the value of each field it wants from the reader and returns true; the
 * others are skipped. `start` is where the field's tag begins.
 */
function eachField(bytes: Uint8Array, read: (no: number, type: WireType, reader: BinaryReader, start: number) => boolean): void {
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const start = reader.pos;
    const [no, type] = reader.tag();
    if (!read(no, type, reader, start)) reader.skip(type, no);
  }
}

/** Where the graph field's value lies in the model (one graph field only), and the default domain's opset. */
function locateGraph(model: Uint8Array): { fieldStart: number; start: number; end: number; opset: number } | undefined {
  let found: { fieldStart: number; start: number; end: number } | undefined;
  let graphs = 0;
  let opset = 0;
  eachField(model, (no, type, reader, fieldStart) => {
    if (type !== WireType.LengthDelimited) return false;
    if (no === MODEL_GRAPH) {
      graphs++;
      const bytes = reader.bytes();
      found = { fieldStart, start: reader.pos - bytes.length, end: reader.pos };
    } else if (no === MODEL_OPSET_IMPORT) {
      let domain = '';
      let version = 0;
      eachField(reader.bytes(), (n, t, r) => {
        if (n === OPSET_DOMAIN) domain = r.string();
        else if (n === OPSET_VERSION && t === WireType.Varint) version = Number(r.int64());
        else return false;
        return true;
      });
      if (domain === '' || domain === 'ai.onnx') opset = version;
    } else return false;
    return true;
  });
  // A graph split over several fields (which a parser merges) is not worth merging by hand.
  return found && graphs === 1 ? { ...found, opset } : undefined;
}

function replaceGraph(model: Uint8Array, at: { fieldStart: number; end: number }, graph: Uint8Array): Uint8Array {
  const field = new BinaryWriter().uint32((MODEL_GRAPH << 3) | WireType.LengthDelimited).uint32(graph.length).finish();
  return concat([model.subarray(0, at.fieldStart), field, graph, model.subarray(at.end)]);
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function readNode(bytes: Uint8Array): Omit<Node, 'start' | 'end'> {
  const node: Omit<Node, 'start' | 'end'> = { opType: '', domain: '', inputs: [], outputs: [], axis: undefined, perm: [], subgraph: false };
  eachField(bytes, (no, _type, reader) => {
    if (no === NODE_INPUT) node.inputs.push(reader.string());
    else if (no === NODE_OUTPUT) node.outputs.push(reader.string());
    else if (no === NODE_OP_TYPE) node.opType = reader.string();
    else if (no === NODE_DOMAIN) node.domain = reader.string();
    else if (no === NODE_ATTRIBUTE) readAttribute(reader.bytes(), node);
    else return false;
    return true;
  });
  return node;
}

/** Reads the attributes the rewrite looks at: axis, perm, and whether the node holds a subgraph. */
function readAttribute(bytes: Uint8Array, node: Omit<Node, 'start' | 'end'>): void {
  let name = '';
  let i: number | undefined;
  const ints: number[] = [];
  eachField(bytes, (no, type, reader) => {
    if (no === ATTRIBUTE_NAME) name = reader.string();
    else if (no === ATTRIBUTE_I && type === WireType.Varint) i = Number(reader.int64());
    else if (no === ATTRIBUTE_INTS && type === WireType.Varint) ints.push(Number(reader.int64()));
    else if (no === ATTRIBUTE_INTS && type === WireType.LengthDelimited) {
      const packed = new BinaryReader(reader.bytes());
      while (packed.pos < packed.len) ints.push(Number(packed.int64()));
    } else {
      if (no === ATTRIBUTE_G || no === ATTRIBUTE_GRAPHS) node.subgraph = true;
      return false;
    }
    return true;
  });
  if (name === 'axis') node.axis = i;
  if (name === 'perm') node.perm = ints;
}

function readName(bytes: Uint8Array): string {
  let name = '';
  eachField(bytes, (no, _type, reader) => {
    if (no !== VALUE_INFO_NAME) return false;
    name = reader.string();
    return true;
  });
  return name;
}

function isExternal(bytes: Uint8Array): boolean {
  let external = false;
  eachField(bytes, (no, type, reader) => {
    if (no !== TENSOR_DATA_LOCATION || type !== WireType.Varint) return false;
    external = reader.int32() === DATA_LOCATION_EXTERNAL;
    return true;
  });
  return external;
}
