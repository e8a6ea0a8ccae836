import { describe, expect, it } from 'vitest';
import { wordPieceTokenizerJson } from '../defaults/wordpiece-tokenizer.js';
import { TextTokenizer } from './tokenizer.js';

const vocab = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', 'one', 'two', 'three', 'four', 'five', 'six', '##s', ','];
const bert = (maxLength: number) =>
  new TextTokenizer(wordPieceTokenizerJson({ vocab, special: ['[PAD]', '[UNK]', '[CLS]', '[SEP]'], unk: '[UNK]', lowercase: true, template: { cls: '[CLS]', sep: '[SEP]' } }), {}, maxLength);
const plain = (maxLength: number) => new TextTokenizer(wordPieceTokenizerJson({ vocab, special: ['[PAD]', '[UNK]'], unk: '[UNK]', lowercase: true }), {}, maxLength);

describe('TextTokenizer', () => {
  it('adds the special tokens of the post-processor, with token type ids', () => {
    const e = bert(16).encode('One TWO, ones', { truncate: false, side: 'right' });
    expect(e.ids).toEqual([2, 4, 5, 11, 4, 10, 3]);
    expect(e.typeIds).toEqual([0, 0, 0, 0, 0, 0, 0]);
    expect(e).toMatchObject({ fullLength: 7, truncated: false });
  });

  it('maps unknown words to [UNK]', () => {
    expect(plain(16).encode('one zebra', { truncate: false, side: 'right' }).ids).toEqual([4, 1]);
  });

  it('cuts from the right or the left, keeping the special tokens and the maximum length', () => {
    const t = bert(5);
    const text = 'one two three four five six';
    expect(t.encode(text, { truncate: true, side: 'right' })).toMatchObject({ ids: [2, 4, 5, 6, 3], fullLength: 8, truncated: true });
    expect(t.encode(text, { truncate: true, side: 'left' })).toMatchObject({ ids: [2, 7, 8, 9, 3], fullLength: 8, truncated: true });
    expect(plain(3).encode(text, { truncate: true, side: 'left' }).ids).toEqual([7, 8, 9]);
  });

  it('reports an over-long input without cutting it when truncate is off', () => {
    const e = bert(5).encode('one two three four five six', { truncate: false, side: 'right' });
    expect(e).toMatchObject({ fullLength: 8, truncated: true });
    expect(e.ids).toHaveLength(8);
  });

  it('counts tokens before truncation and shows tokens with their special flag', () => {
    const t = bert(5);
    expect(t.count('one two three four five six')).toBe(8);
    expect(t.view('one', { truncate: false, side: 'right' }).tokens).toEqual([
      { id: 2, text: '[CLS]', special: true },
      { id: 4, text: 'one', special: false },
      { id: 3, text: '[SEP]', special: true },
    ]);
    expect(t.view('one', { truncate: false, side: 'right', addSpecialTokens: false }).tokens).toEqual([{ id: 4, text: 'one', special: false }]);
  });

  it('refuses a maximum length that leaves no room for text', () => {
    expect(() => bert(2)).toThrow(/no room/);
  });
});
