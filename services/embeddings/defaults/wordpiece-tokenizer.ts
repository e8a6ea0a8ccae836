// Writes `tokenizer.json` files in the Hugging Face format for the project's own models. A whole-word
// vocabulary goes in as WordPiece (tokenizers.js has no WordLevel model): a word not in the vocabulary has no
// `##` pieces to fall back on, so it becomes [UNK], exactly as a word-level tokenizer would do.

export interface WordPieceSpec {
  /** Vocabulary in id order; special tokens are taken from it by name. */
  vocab: string[];
  /** Special tokens present in vocab (e.g. [PAD], [UNK], [CLS], [SEP]). */
  special: string[];
  unk: string;
  lowercase: boolean;
  /** Wrap every input as `[CLS] … [SEP]` (BERT-style) when set. */
  template?: { cls: string; sep: string };
}

export function wordPieceTokenizerJson(spec: WordPieceSpec): Record<string, unknown> {
  const ids = new Map(spec.vocab.map((w, i) => [w, i]));
  const id = (t: string) => {
    const v = ids.get(t);
    if (v === undefined) throw new Error(`special token ${t} is not in the vocabulary`);
    return v;
  };
  const vocab: Record<string, number> = {};
  spec.vocab.forEach((w, i) => (vocab[w] = i));
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: spec.special.map((t) => ({ id: id(t), content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: false, lowercase: spec.lowercase },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: spec.template
      ? {
          type: 'TemplateProcessing',
          single: [{ SpecialToken: { id: spec.template.cls, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: spec.template.sep, type_id: 0 } }],
          pair: [
            { SpecialToken: { id: spec.template.cls, type_id: 0 } },
            { Sequence: { id: 'A', type_id: 0 } },
            { SpecialToken: { id: spec.template.sep, type_id: 0 } },
            { Sequence: { id: 'B', type_id: 1 } },
            { SpecialToken: { id: spec.template.sep, type_id: 1 } },
          ],
          special_tokens: Object.fromEntries(
            [spec.template.cls, spec.template.sep].map((t) => [t, { id: t, ids: [id(t)], tokens: [t] }]),
          ),
        }
      : null,
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: spec.unk, continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab },
  };
}

/** Characters the BERT pre-tokenizer splits off as tokens of their own (BERT's `_is_punctuation`). */
const PUNCTUATION = /[\p{P}\x21-\x2f\x3a-\x40\x5b-\x60\x7b-\x7e]/u;
const CJK = /[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u{20000}-\u{2fa1f}]/u;

/** True when the BERT normalizer and pre-tokenizer can produce this word as one token. */
export function isBertWord(word: string, lowercase = true): boolean {
  if (word.length === 0 || /\s/u.test(word)) return false;
  if (lowercase && word !== word.toLowerCase()) return false;
  if (CJK.test(word)) return [...word].length === 1;
  if (PUNCTUATION.test(word)) return [...word].length === 1;
  return true;
}
