import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildGlove } from '../defaults/build-glove.js';
import { wordPieceTokenizerJson } from '../defaults/wordpiece-tokenizer.js';
import { sentences } from '../testing/load.js';
import { sharedCacheDir } from '../testing/model-folder.js';
import { TextTokenizer } from './tokenizer.js';

/** Random ASCII text that stresses the edges: case, punctuation, every whitespace and control character. */
function randomTexts(count: number, seed = 1): string[] {
  let a = seed;
  const next = () => ((a = (a * 1103515245 + 12345) >>> 0), a / 4294967296);
  const parts = ['the', 'The', 'CAT', 'cats', 'running', 'unbelievable', "don't", 'U.S.', 'e-mail', '3.14', '1990s', 'x'.repeat(120), '[UNK]', '[unk]', '[CLS]', '##s'];
  return Array.from({ length: count }, () => {
    let s = '';
    const n = 1 + Math.floor(next() * 12);
    for (let i = 0; i < n; i++) {
      const r = next();
      if (r < 0.5) s += parts[Math.floor(next() * parts.length)];
      else if (r < 0.8) s += String.fromCharCode(Math.floor(next() * 128));
      else s += ' \t\n\r\v\f'[Math.floor(next() * 6)];
      if (next() < 0.6) s += ' ';
    }
    return s;
  });
}

const samples = [...randomTexts(3000), ...sentences(500), '', '   ', 'Ünïcödé café naïve', '東京 is big', 'emoji 😀 here', 'NUL\u0000inside', 'tab\tand\u007fdel'];

describe('the fast WordPiece path', () => {
  it('gives exactly the tokens of @huggingface/tokenizers for the GloVe tokenizer', async () => {
    const glove = await buildGlove(sharedCacheDir());
    const t = new TextTokenizer(JSON.parse(readFileSync(join(glove.dir, 'tokenizer.json'), 'utf8')) as object, {}, 512);
    expect(t.hasFastPath).toBe(true);
    for (const s of samples) expect(t.textTokens(s), JSON.stringify(s)).toEqual(t.libraryTokens(s));
  });

  it('gives exactly the library tokens for a BERT-style tokenizer with ## pieces, with and without lowercasing and cleaning', () => {
    const vocab = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', 'the', 'cat', 'run', '##ning', '##s', 'un', '##believ', '##able', 'e', '-', 'mail', '.', "'", 'don', 't', 'u', 's', '3', '##1', '##4', '1990', 'x', '##x'];
    for (const lowercase of [true, false]) {
      const json = wordPieceTokenizerJson({ vocab, special: ['[PAD]', '[UNK]', '[CLS]', '[SEP]'], unk: '[UNK]', lowercase, template: { cls: '[CLS]', sep: '[SEP]' } });
      for (const normalizer of [json.normalizer, { type: 'Lowercase' }, null, { type: 'BertNormalizer' }]) {
        const t = new TextTokenizer({ ...json, normalizer }, {}, 64);
        expect(t.hasFastPath).toBe(true);
        for (const s of samples) expect(t.textTokens(s), `${JSON.stringify(normalizer)} ${JSON.stringify(s)}`).toEqual(t.libraryTokens(s));
      }
    }
  });

  it('gives the ids, type ids and truncation of the library path, for plain and templated post-processors', async () => {
    const vocab = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', 'the', 'cat', 'run', '##ning', '##s', 'un', '##believ', '##able', 'e', '-', 'mail', '.', "'", 'don', 't'];
    const special = ['[PAD]', '[UNK]', '[CLS]', '[SEP]'];
    const templated = wordPieceTokenizerJson({ vocab, special, unk: '[UNK]', lowercase: true, template: { cls: '[CLS]', sep: '[SEP]' } });
    // Type ids other than 0, so that a mix-up would show.
    const typed = {
      ...templated,
      post_processor: {
        type: 'TemplateProcessing',
        single: [{ SpecialToken: { id: '[CLS]', type_id: 2 } }, { Sequence: { id: 'A', type_id: 1 } }, { SpecialToken: { id: '[SEP]', type_id: 3 } }],
        pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
        special_tokens: { '[CLS]': { id: '[CLS]', ids: [2], tokens: ['[CLS]'] }, '[SEP]': { id: '[SEP]', ids: [3], tokens: ['[SEP]'] } },
      },
    };
    const glove = await buildGlove(sharedCacheDir());
    const jsons = [
      wordPieceTokenizerJson({ vocab, special, unk: '[UNK]', lowercase: true }),
      templated,
      typed,
      JSON.parse(readFileSync(join(glove.dir, 'tokenizer.json'), 'utf8')) as Record<string, unknown>,
    ];
    const texts = [...sentences(300), 'The cats running, unbelievable e-mail.', "Don't run", 'the '.repeat(40), ...randomTexts(300, 7)];
    for (const json of jsons) {
      for (const maxLength of [6, 512]) {
        const fast = new TextTokenizer({ ...json, normalizer: { type: 'Lowercase' } }, {}, maxLength);
        // The same tokenizer, but with a normalizer shape the fast path leaves to the library.
        const library = new TextTokenizer({ ...json, normalizer: { type: 'Sequence', normalizers: [{ type: 'Lowercase' }] } }, {}, maxLength);
        expect(fast.hasFastPath).toBe(true);
        expect(library.hasFastPath).toBe(false);
        for (const text of texts) {
          for (const options of [
            { truncate: true, side: 'right' as const },
            { truncate: true, side: 'left' as const },
            { truncate: false, side: 'right' as const },
          ]) {
            expect(fast.encode(text, options), JSON.stringify(text)).toEqual(library.encode(text, options));
          }
        }
      }
    }
  });

  it('leaves other tokenizer shapes to the library', () => {
    const json = wordPieceTokenizerJson({ vocab: ['[UNK]', 'a'], special: ['[UNK]'], unk: '[UNK]', lowercase: true });
    expect(new TextTokenizer({ ...json, normalizer: { type: 'NFKC' } }, {}, 8).hasFastPath).toBe(false);
    expect(new TextTokenizer({ ...json, pre_tokenizer: { type: 'Whitespace' } }, {}, 8).hasFastPath).toBe(false);
  });
});
