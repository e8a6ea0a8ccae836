import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOnnxSession } from '../../runtime/models/onnx-session.js';
import { Texts } from '../domain/texts.js';
import { TextTokenizer } from '../domain/tokenizer.js';
import { createModelFolder, type ModelFolder } from '../testing/model-folder.js';
import { OnnxEncoder } from './onnx-encoder.js';
import { packTexts, pieces, TokenizingEncoder } from './tokenizing-encoder.js';

describe('pieces', () => {
  it('splits rows into consecutive runs whose longest row times their count stays within the cap', () => {
    expect(pieces([3, 3, 3, 3], 12)).toEqual([[0, 4]]);
    expect(pieces([3, 3, 3, 3], 11)).toEqual([[0, 3], [3, 4]]);
    // A long row widens its run: the rows before it go on their own.
    expect(pieces([2, 2, 2, 8, 2], 16)).toEqual([[0, 3], [3, 5]]);
    // A row as long as the cap runs alone.
    expect(pieces([16, 1, 1], 16)).toEqual([[0, 1], [1, 3]]);
    expect(pieces([], 16)).toEqual([]);
  });
});

describe('TokenizingEncoder', () => {
  const session = { executionProviders: ['cpu'], intraOpThreads: 1, interOpThreads: 1 };
  let folder: ModelFolder;
  beforeAll(async () => {
    folder = await createModelFolder({ bert: true });
  });
  afterAll(() => folder?.remove());

  it.each(['glove-100d', 'bert-mean'])('tokenizes where it runs, cuts each row from the end it names, and splits a batch over the token cap (%s)', async (model) => {
    const dir = join(folder.root, model, '1');
    const tokenizer = new TextTokenizer(JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as object, {}, 10);
    const texts = ['cat', 'The quick brown fox jumps over the lazy dog near the river bank.', 'hello world', 'Where is the train station?', 'rain'];
    const rows = texts.map((text, i) => ({ text, shape: { side: i === 1 ? ('left' as const) : ('right' as const), dimensions: 0, normalize: false } }));
    const batch = packTexts(rows.map(({ shape }, i) => ({ texts: Texts.of(texts), start: i, end: i + 1, shape })));
    const { session: s } = await createOnnxSession(join(dir, 'model.onnx'), session);
    try {
      const encoder = new OnnxEncoder(s, { name: model, version: 1, pooling: 'mean', padId: tokenizer.padId });
      const [probe] = await encoder.run([{ ids: [tokenizer.padId], typeIds: [0] }]);
      const dimensions = probe!.length;
      const whole = await new TokenizingEncoder(tokenizer, encoder, dimensions, 1000).run(batch);
      // 20 padded tokens per run at most: rows of up to 10 tokens run two or one at a time.
      const split = await new TokenizingEncoder(tokenizer, encoder, dimensions, 20).run(batch);
      expect(whole.runs).toBe(1);
      expect(split.runs).toBeGreaterThan(1);
      expect(Array.from(split.counts)).toEqual(Array.from(whole.counts));
      for (let i = 0; i < whole.values.length; i++) expect(Math.abs(split.values[i]! - whole.values[i]!)).toBeLessThan(1e-6);
      // Each row: what encode gives alone, truncated at 10 tokens, and its length before.
      for (const [r, row] of rows.entries()) {
        const e = tokenizer.encode(row.text, { truncate: true, side: row.shape.side });
        expect([whole.counts[r], whole.counts[rows.length + r]]).toEqual([e.ids.length, e.fullLength]);
        const [alone] = await encoder.run([e]);
        for (let d = 0; d < dimensions; d++) expect(Math.abs(whole.values[r * dimensions + d]! - alone![d]!)).toBeLessThan(1e-5);
      }
      // Shaped as the row asks: the first 7 values, at unit length.
      const shaped = await new TokenizingEncoder(tokenizer, encoder, dimensions, 1000).run(packTexts([{ texts: Texts.of(texts), start: 0, end: 1, shape: { side: 'right', dimensions: 7, normalize: true } }]));
      const first = Array.from(whole.values.subarray(0, 7));
      const norm = Math.hypot(...first);
      for (let d = 0; d < 7; d++) expect(Math.abs(shaped.values[d]! - first[d]! / norm)).toBeLessThan(1e-6);
      expect(whole.counts[1]).toBe(10);
      expect(whole.counts[rows.length + 1]).toBeGreaterThan(10);
      expect(whole.width).toBe(10);
      expect(whole.tokenizeMs).toBeGreaterThanOrEqual(0);
      expect(whole.runMs).toBeGreaterThanOrEqual(0);
    } finally {
      await s.release();
    }
  });
});
