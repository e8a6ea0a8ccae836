import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { DataType, GraphBuilder } from '../defaults/onnx-graph.js';
import { prepareDecodeGraph } from './decode-graph.js';

const H = 2;
const D = 4;

/**
 * One layer of attention the Hugging Face way: present = Concat(past, new) on the positions, scores against
 * the transposed keys, the probabilities times the values. `extraUse` reads the concatenated keys once more.
 */
function attentionGraph(options: { extraUse?: boolean; present?: 'concat' | 'identity'; opset?: number } = {}): Uint8Array {
  const g = new GraphBuilder('attention');
  const dims = ['batch', H, 'past', D];
  const pastK = g.input('past_key_values.0.key', DataType.FLOAT, dims);
  const pastV = g.input('past_key_values.0.value', DataType.FLOAT, dims);
  const q = g.input('q', DataType.FLOAT, ['batch', H, 1, D]);
  const k = g.input('k', DataType.FLOAT, ['batch', H, 1, D]);
  const v = g.input('v', DataType.FLOAT, ['batch', H, 1, D]);
  const newK = g.op1('Mul', [k, g.scalar('two', 2)]);
  const newV = g.op1('Add', [v, g.scalar('one', 1)]);
  let presentK: string;
  if (options.present === 'identity') presentK = g.op1('Identity', [g.op1('Concat', [pastK, newK], { axis: 2 })], {}, 'present.0.key');
  else presentK = g.op1('Concat', [pastK, newK], { axis: 2 }, 'present.0.key');
  const presentV = g.op1('Concat', [pastV, newV], { axis: 2 }, 'present.0.value');
  const scores = g.op1('MatMul', [q, g.op1('Transpose', [presentK], { perm: [0, 1, 3, 2] })]);
  const probs = g.op1('Softmax', [scores], { axis: -1 });
  g.op1('MatMul', [probs, presentV], {}, 'context');
  g.output('context', DataType.FLOAT, ['batch', H, 1, D]);
  g.output('present.0.key', DataType.FLOAT, ['batch', H, 'total', D]);
  g.output('present.0.value', DataType.FLOAT, ['batch', H, 'total', D]);
  if (options.extraUse) {
    g.op1('ReduceSum', [presentK], { keepdims: 0 }, 'total_keys');
    g.output('total_keys', DataType.FLOAT, []);
  }
  return g.serialize(options.opset ?? 17);
}

function feeds(batch: number, past: number): Record<string, ort.Tensor> {
  let x = 0.1;
  const fill = (n: number) => Float32Array.from({ length: n }, () => (x = (x * 7.3 + 0.37) % 1.9) - 0.95);
  const t = (dims: number[]) => new ort.Tensor('float32', fill(dims.reduce((a, b) => a * b, 1)), dims);
  return {
    'past_key_values.0.key': t([batch, H, past, D]),
    'past_key_values.0.value': t([batch, H, past, D]),
    q: t([batch, H, 1, D]),
    k: t([batch, H, 1, D]),
    v: t([batch, H, 1, D]),
  };
}

async function run(model: Uint8Array, input: Record<string, ort.Tensor>, fetch: string[]): Promise<Record<string, Float32Array>> {
  const session = await ort.InferenceSession.create(model);
  try {
    const out = await session.run(input, fetch);
    return Object.fromEntries(fetch.map((name) => [name, out[name]!.data as Float32Array]));
  } finally {
    await session.release();
  }
}

async function outputNames(model: Uint8Array): Promise<string[]> {
  const session = await ort.InferenceSession.create(model);
  const names = [...session.outputNames];
  await session.release();
  return names;
}

describe('prepareDecodeGraph', () => {
  it.each([17, 13])('splits attention into past and new entries: the same context, the new entries as outputs, no present outputs (opset %i)', async (opset) => {
    const original = attentionGraph({ opset });
    const prepared = prepareDecodeGraph(original, { splitAttention: true })!;
    expect(prepared.splitAttention).toBe(true);
    expect([...prepared.newEntries.keys()]).toEqual(['present.0.key', 'present.0.value']);
    const names = await outputNames(prepared.model);
    expect(names).not.toContain('present.0.key');
    expect(names).toEqual(expect.arrayContaining(['context', ...prepared.newEntries.values()]));

    // An empty past (a prefill) and a past of 5 positions.
    for (const past of [0, 5]) {
      const input = feeds(3, past);
      const before = await run(original, input, ['context', 'present.0.key', 'present.0.value']);
      const after = await run(prepared.model, input, ['context', ...prepared.newEntries.values()]);
      const close = (a: Float32Array, b: Float32Array) => a.every((x, i) => Math.abs(x - b[i]!) < 1e-6);
      expect(close(after.context!, before.context!)).toBe(true);
      // The new entries are the last position of each present.
      const newK = after[prepared.newEntries.get('present.0.key')!]!;
      for (let row = 0; row < 3 * H; row++) {
        const last = before['present.0.key']!.subarray((row * (past + 1) + past) * D, (row * (past + 1) + past + 1) * D);
        expect([...newK.subarray(row * D, (row + 1) * D)]).toEqual([...last]);
      }
    }
  });

  it('only adds the new entries when asked not to split, or when something else reads the concatenated cache', async () => {
    for (const [model, split] of [
      [attentionGraph(), false],
      [attentionGraph({ extraUse: true }), true],
    ] as const) {
      const prepared = prepareDecodeGraph(model, { splitAttention: split })!;
      expect(prepared.splitAttention).toBe(false);
      expect(prepared.newEntries.size).toBe(2);
      expect(await outputNames(prepared.model)).toEqual(expect.arrayContaining(['present.0.key', 'present.0.value', ...prepared.newEntries.values()]));
      const input = feeds(2, 3);
      const before = await run(model, input, ['context']);
      const after = await run(prepared.model, input, ['context']);
      expect([...after.context!]).toEqual([...before.context!]);
    }
  });

  it('leaves a present that is not a plain Concat of the past alone, and does not split its layer', async () => {
    const prepared = prepareDecodeGraph(attentionGraph({ present: 'identity' }), { splitAttention: true })!;
    expect([...prepared.newEntries.keys()]).toEqual(['present.0.value']);
    expect(prepared.splitAttention).toBe(false);
  });

  it('does not amend a model whose weights live in external files, nor bytes that are no model', () => {
    const { onnx } = onnxProto;
    const model = onnx.ModelProto.decode(attentionGraph());
    model.graph!.initializer!.push({ name: 'elsewhere', dims: [1], dataType: DataType.FLOAT, dataLocation: onnx.TensorProto.DataLocation.EXTERNAL, externalData: [{ key: 'location', value: 'weights.bin' }] });
    expect(prepareDecodeGraph(onnx.ModelProto.encode(model).finish(), { splitAttention: true })).toBeUndefined();
    expect(prepareDecodeGraph(new Uint8Array([1, 2, 3]), { splitAttention: true })).toBeUndefined();
  });
});
