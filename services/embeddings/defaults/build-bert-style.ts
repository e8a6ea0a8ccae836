// Builds a small encoder with a BERT-style signature for tests: inputs input_ids, attention_mask and
// token_type_ids (int64 [batch, sequence]); one output, last_hidden_state (float [batch, sequence, hidden]),
// that the service must pool itself (CLS, mean or last token, from config.json). Its tokenizer wraps inputs
// in [CLS] … [SEP] and splits unknown words into `##` letter pieces, as BERT's WordPiece does.
//
// The weights are random (seeded), so its vectors mean nothing; what matters is that it behaves like a real
// encoder: word, position and token-type embeddings, a context term that mixes every unmasked token into each
// position (so attention_mask must be honoured and padding must not leak), then a dense layer with tanh.
//
// Run directly: `node --import tsx services/embeddings/defaults/build-bert-style.ts <dir> [cls|mean|last_token]`.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DataType, GraphBuilder } from './onnx-graph.js';
import { wordPieceTokenizerJson } from './wordpiece-tokenizer.js';

export type PoolingName = 'mean' | 'cls' | 'last_token';

export interface BertStyleOptions {
  pooling?: PoolingName;
  /** Maximum tokens per input, [CLS] and [SEP] included (small, so tests can exceed it). */
  maxLength?: number;
  hidden?: number;
  seed?: number;
}

const WORDS = (
  'the a an and or of to in on at for with from by is are was were be been it this that these those he she ' +
  'they we you i my your his her their our cat dog kitten puppy mat rug sat sits sitting table chair house ' +
  'car train station city park tree river sea sky sun moon rain storm snow weather day night morning today ' +
  'man woman child children people team game match won lost play playing music guitar piano song food pizza ' +
  'cake bread water coffee tea book books read reading write code computer phone password reset login email ' +
  'market price prices stock oil money bank pay new old big small good bad fast slow hot cold happy sad'
).split(' ');

function vocabulary(): string[] {
  const letters = 'abcdefghijklmnopqrstuvwxyz0123456789'.split('');
  const punctuation = '.,!?;:\'"-()[]{}/\\@#$%&*+=<>_~`^|'.split('');
  return ['[PAD]', '[UNK]', '[CLS]', '[SEP]', ...letters, ...punctuation, ...letters.map((l) => `##${l}`), ...WORDS];
}

/** Small deterministic generator (mulberry32) for the weights. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function weights(n: number, scale: number, next: () => number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (next() * 2 - 1) * scale;
  return out;
}

/** Writes model.onnx, tokenizer.json, tokenizer_config.json and config.json into dir. */
export async function buildBertStyle(dir: string, options: BertStyleOptions = {}): Promise<string[]> {
  const pooling = options.pooling ?? 'cls';
  const maxLength = options.maxLength ?? 24;
  const hidden = options.hidden ?? 32;
  const positions = 64;
  const next = random(options.seed ?? 7);
  const vocab = vocabulary();

  const g = new GraphBuilder('bert_style_encoder');
  const ids = g.input('input_ids', DataType.INT64, ['batch', 'sequence']);
  const mask = g.input('attention_mask', DataType.INT64, ['batch', 'sequence']);
  const types = g.input('token_type_ids', DataType.INT64, ['batch', 'sequence']);
  const wordEmb = g.floats('word_embeddings', [vocab.length, hidden], weights(vocab.length * hidden, 1, next));
  const posEmb = g.floats('position_embeddings', [positions, hidden], weights(positions * hidden, 0.5, next));
  const typeEmb = g.floats('token_type_embeddings', [2, hidden], weights(2 * hidden, 0.5, next));
  const dense = g.floats('dense_weight', [hidden, hidden], weights(hidden * hidden, 1 / Math.sqrt(hidden), next));
  const bias = g.floats('dense_bias', [hidden], weights(hidden, 0.1, next));
  const zero = g.int64s('zero', [], [0]);
  const one = g.int64s('one', [], [1]);
  const axis1 = g.int64s('axis_1', [1], [1]);
  const axis2 = g.int64s('axis_2', [1], [2]);
  const tiny = g.floats('epsilon', [], new Float32Array([1e-9]));

  // Positions 0..sequence-1, shared by the batch.
  const seqLen = g.op('Gather', [g.op('Shape', [ids]), one], { axis: 0 });
  const positionIds = g.op('Range', [zero, seqLen, one]);
  const embedded = g.op('Add', [
    g.op('Add', [g.op('Gather', [wordEmb, ids], { axis: 0 }), g.op('Gather', [posEmb, positionIds], { axis: 0 })]),
    g.op('Gather', [typeEmb, types], { axis: 0 }),
  ]);
  // Context: the masked mean of the sequence, added to every position (padding never leaks into it).
  const mask3 = g.op('Unsqueeze', [g.op('Cast', [mask], { to: DataType.FLOAT }), axis2]);
  const summed = g.op('ReduceSum', [g.op('Mul', [embedded, mask3]), axis1], { keepdims: 1 });
  const count = g.op('Max', [g.op('ReduceSum', [mask3, axis1], { keepdims: 1 }), tiny]);
  const mixed = g.op('Add', [embedded, g.op('Div', [summed, count])]);
  g.op('Tanh', [g.op('Add', [g.op('MatMul', [mixed, dense]), bias])], {}, 'last_hidden_state');
  g.output('last_hidden_state', DataType.FLOAT, ['batch', 'sequence', hidden]);
  const onnx = g.encode({ opset: 15, producer: 'maas build-bert-style', docString: 'random BERT-style encoder for tests' });

  const tokenizer = wordPieceTokenizerJson({
    vocab,
    special: ['[PAD]', '[UNK]', '[CLS]', '[SEP]'],
    unk: '[UNK]',
    lowercase: true,
    template: { cls: '[CLS]', sep: '[SEP]' },
  });
  const config = {
    model_type: 'bert',
    architectures: ['BertModel'],
    hidden_size: hidden,
    vocab_size: vocab.length,
    max_position_embeddings: positions,
    type_vocab_size: 2,
    pooling,
    max_length: maxLength,
  };
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'model.onnx'), onnx);
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
  await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify({ model_max_length: maxLength, do_lower_case: true }));
  await writeFile(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  return ['model.onnx', 'tokenizer.json', 'tokenizer_config.json', 'config.json'];
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const dir = process.argv[2];
  if (!dir) throw new Error('usage: build-bert-style.ts <dir> [cls|mean|last_token]');
  await buildBertStyle(dir, { pooling: (process.argv[3] as PoolingName | undefined) ?? 'cls' });
  process.stdout.write(`${dir}\n`);
}
