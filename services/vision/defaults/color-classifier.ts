// The default image classifier, built here with onnx-proto: it names the colour closest to an image's mean
// colour, so the right answer is known from the picture. It is a real preprocessing test: the graph takes the
// normalized tensor the service prepares (fixed input size, mean/std normalization, channel order, layout),
// undoes the normalization with the constants the model was "trained" with, averages the pixels, and scores
// each colour by minus its squared distance. A service that resized, normalized or ordered channels wrongly
// gets the wrong colour or a visibly wrong score.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

/** The classes, in output order, as RGB in 0..1. */
export const COLORS: { label: string; rgb: [number, number, number] }[] = [
  { label: 'red', rgb: [1, 0, 0] },
  { label: 'green', rgb: [0, 1, 0] },
  { label: 'blue', rgb: [0, 0, 1] },
  { label: 'yellow', rgb: [1, 1, 0] },
  { label: 'cyan', rgb: [0, 1, 1] },
  { label: 'magenta', rgb: [1, 0, 1] },
  { label: 'orange', rgb: [1, 0.5, 0] },
  { label: 'white', rgb: [1, 1, 1] },
  { label: 'gray', rgb: [0.5, 0.5, 0.5] },
  { label: 'black', rgb: [0, 0, 0] },
];

/** Logits are -GAIN x squared distance (in 0..1 RGB units). */
export const GAIN = 12;

export interface ColorClassifierOptions {
  height: number;
  width: number;
  layout: 'NCHW' | 'NHWC';
  channelOrder: 'RGB' | 'BGR';
  /** Per-channel mean and std in the model's channel order (values scaled to 0..1). */
  mean: [number, number, number];
  std: [number, number, number];
}

/** The default: a 64 x 64 NCHW RGB input with ImageNet's mean and std. */
export const DEFAULT_COLOR_CLASSIFIER: ColorClassifierOptions = {
  height: 64,
  width: 64,
  layout: 'NCHW',
  channelOrder: 'RGB',
  mean: [0.485, 0.456, 0.406],
  std: [0.229, 0.224, 0.225],
};

/** The ONNX model (IR 8, opset 13): pixel_values -> logits[N, classes]. */
export function buildColorClassifier(o: ColorClassifierOptions = DEFAULT_COLOR_CLASSIFIER): Uint8Array {
  const order = o.channelOrder === 'BGR' ? [2, 1, 0] : [0, 1, 2];
  const prototypes = new Float32Array(COLORS.flatMap((c) => order.map((i) => c.rgb[i])));
  const inputShape = o.layout === 'NCHW' ? ['batch', 3, o.height, o.width] : ['batch', o.height, o.width, 3];
  const nodes = [
    // Mean over the pixels: [N, 3], still normalized, in the model's channel order.
    node('ReduceMean', ['pixel_values'], ['mean_normalized'], [ints('axes', o.layout === 'NCHW' ? [2, 3] : [1, 2]), int('keepdims', 0)]),
    // Undo the normalization: x * std + mean.
    node('Mul', ['mean_normalized', 'std'], ['mean_scaled']),
    node('Add', ['mean_scaled', 'mean'], ['color']),
    node('Unsqueeze', ['color', 'axis1'], ['color_1']),
    node('Sub', ['color_1', 'prototypes'], ['diff']),
    node('Mul', ['diff', 'diff'], ['squared']),
    node('ReduceSum', ['squared', 'axis2'], ['distance'], [int('keepdims', 0)]),
    node('Mul', ['distance', 'neg_gain'], ['logits']),
  ];
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'maas',
    opsetImport: [{ domain: '', version: 13 }],
    graph: {
      name: 'color_classifier',
      node: nodes,
      initializer: [
        floats('std', [3], Float32Array.from(o.std)),
        floats('mean', [3], Float32Array.from(o.mean)),
        floats('prototypes', [COLORS.length, 3], prototypes),
        floats('neg_gain', [], Float32Array.of(-GAIN)),
        int64s('axis1', [1]),
        int64s('axis2', [2]),
      ],
      input: [valueInfo('pixel_values', inputShape)],
      output: [valueInfo('logits', ['batch', COLORS.length])],
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

/** classifier.json for a model built with these options. */
export function colorClassifierJson(o: ColorClassifierOptions = DEFAULT_COLOR_CLASSIFIER): object {
  return {
    file: 'model.onnx',
    labels_file: 'labels.txt',
    input: { height: o.height, width: o.width, resize: 'fill', layout: o.layout, channel_order: o.channelOrder, scale: 1 / 255, mean: o.mean, std: o.std },
    output: 'logits',
  };
}

/**
 * Writes the version's files (model.onnx, classifier.json, labels.txt) into a folder under cacheDir keyed by
 * a hash of what they are built from, reusing it when present. Returns the files for a push.
 */
export async function colorClassifierFiles(cacheDir: string, o: ColorClassifierOptions = DEFAULT_COLOR_CLASSIFIER): Promise<{ name: string; path: string }[]> {
  const key = createHash('sha256').update(JSON.stringify({ o, COLORS, GAIN, v: 1 })).digest('hex').slice(0, 16);
  const dir = join(cacheDir, 'vision', `color-classifier-${key}`);
  const names = ['model.onnx', 'classifier.json', 'labels.txt'];
  if (!names.every((n) => existsSync(join(dir, n)))) {
    const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
    await mkdir(tmp, { recursive: true });
    await writeFile(join(tmp, 'model.onnx'), buildColorClassifier(o));
    await writeFile(join(tmp, 'classifier.json'), `${JSON.stringify(colorClassifierJson(o), null, 2)}\n`);
    await writeFile(join(tmp, 'labels.txt'), `${COLORS.map((c) => c.label).join('\n')}\n`);
    await rename(tmp, dir).catch(async (err: NodeJS.ErrnoException) => {
      // Another process built the same thing first: use theirs.
      if (!existsSync(join(dir, 'model.onnx'))) throw err;
    });
  }
  return names.map((name) => ({ name, path: join(dir, name) }));
}

function node(opType: string, input: string[], output: string[], attribute: onnxProto.onnx.IAttributeProto[] = []): onnxProto.onnx.INodeProto {
  return { opType, input, output, name: output[0], attribute };
}

function int(name: string, i: number): onnxProto.onnx.IAttributeProto {
  return { name, type: onnx.AttributeProto.AttributeType.INT, i };
}

function ints(name: string, values: number[]): onnxProto.onnx.IAttributeProto {
  return { name, type: onnx.AttributeProto.AttributeType.INTS, ints: values };
}

function floats(name: string, dims: number[], data: Float32Array): onnxProto.onnx.ITensorProto {
  return { name, dims, dataType: onnx.TensorProto.DataType.FLOAT, rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

function int64s(name: string, values: number[]): onnxProto.onnx.ITensorProto {
  const data = BigInt64Array.from(values.map((v) => BigInt(v)));
  return { name, dims: [values.length], dataType: onnx.TensorProto.DataType.INT64, rawData: new Uint8Array(data.buffer) };
}

function valueInfo(name: string, shape: (number | string)[]): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: onnx.TensorProto.DataType.FLOAT,
        shape: { dim: shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}
