// A fast path for the commonest embedding tokenizer: BERT normalizer (or plain lowercasing), BERT
// pre-tokenizer and WordPiece, on ASCII text. It gives exactly the tokens @huggingface/tokenizers gives (the
// tests compare the two on generated and real text) at a fraction of the cost: one pass over the characters
// instead of several regular expressions and arrays per call, and a cache of words already split into pieces
// (with their ids, so the model's input needs no vocabulary lookup per token). Anything else — other tokenizer
// shapes, text with non-ASCII characters or with an added token's text in it — is left to the library
// (tokenize and ids return undefined).

interface TokenizerJson {
  normalizer?: { type?: string; clean_text?: boolean; lowercase?: boolean } | null;
  pre_tokenizer?: { type?: string } | null;
  model?: { type?: string; vocab?: Record<string, number>; unk_token?: string; continuing_subword_prefix?: string; max_input_chars_per_word?: number };
  added_tokens?: { content: string }[];
}

interface TokenizerConfig {
  remove_space?: boolean;
  do_lowercase_and_remove_accent?: boolean;
}

const WORD = 0;
const SPACE = 1;
const PUNCT = 2;
const DROP = 3;

const CACHE_LIMIT = 100_000;

/** A word split into WordPiece tokens, and their ids. */
interface Pieces {
  tokens: string[];
  ids: number[];
}

export class FastWordPiece {
  /** Character class per ASCII code, after normalization. */
  private readonly classes = new Uint8Array(128);
  /** ASCII codes that start an added token (either case): only texts holding one are searched for them. */
  private readonly addedStarts = new Uint8Array(128);
  private readonly cache = new Map<string, Pieces>();
  private readonly lowercase: boolean;
  private readonly vocab: Set<string>;
  private readonly unk: string;
  private readonly prefix: string;
  private readonly maxChars: number;
  private readonly added: string[];

  private constructor(
    json: TokenizerJson,
    lowercase: boolean,
    cleanText: boolean,
    private readonly idOf: (token: string) => number,
  ) {
    const model = json.model!;
    this.vocab = new Set(Object.keys(model.vocab ?? {}));
    this.unk = model.unk_token ?? '[UNK]';
    this.prefix = model.continuing_subword_prefix ?? '##';
    this.maxChars = model.max_input_chars_per_word ?? 100;
    this.lowercase = lowercase;
    this.added = (json.added_tokens ?? []).map((t) => t.content).filter((c) => c.length > 0);
    for (const a of this.added) {
      for (const c of [a.charCodeAt(0), a.toLowerCase().charCodeAt(0), a.toUpperCase().charCodeAt(0)]) if (c < 128) this.addedStarts[c] = 1;
    }
    for (let c = 0; c < 128; c++) {
      const control = c < 32 || c === 127;
      const whitespace = c === 32 || (c >= 9 && c <= 13);
      const punct = (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
      // BERT's clean_text drops NUL and control characters (tab, newline and return excepted), then maps
      // whitespace to a space; without it, control characters stay part of words.
      if (cleanText && (c === 0 || (control && c !== 9 && c !== 10 && c !== 13))) this.classes[c] = DROP;
      else if (whitespace) this.classes[c] = SPACE;
      else if (punct) this.classes[c] = PUNCT;
      else this.classes[c] = WORD;
    }
  }

  /**
   * A fast path for this tokenizer, or undefined when its shape is not the one handled here. idOf gives a
   * token's id (the caller's vocabulary, so ids are the ones the library's would be).
   */
  static for(tokenizerJson: object, tokenizerConfig: object, idOf: (token: string) => number): FastWordPiece | undefined {
    const json = tokenizerJson as TokenizerJson;
    const config = tokenizerConfig as TokenizerConfig;
    if (config.remove_space === true || config.do_lowercase_and_remove_accent === true) return undefined;
    if (json.model?.type !== 'WordPiece' || json.pre_tokenizer?.type !== 'BertPreTokenizer') return undefined;
    if ((json.added_tokens ?? []).length > 64) return undefined;
    const n = json.normalizer;
    if (n === null || n === undefined) return new FastWordPiece(json, false, false, idOf);
    if (n.type === 'Lowercase') return new FastWordPiece(json, true, false, idOf);
    // Missing flags are off, as the library reads them.
    if (n.type === 'BertNormalizer') return new FastWordPiece(json, n.lowercase === true, n.clean_text === true, idOf);
    return undefined;
  }

  /** The tokens of text (no special tokens), or undefined when the library must do it. */
  tokenize(text: string): string[] | undefined {
    return this.joined(text, (p) => p.tokens);
  }

  /** The ids of tokenize's tokens, or undefined when the library must do it. */
  ids(text: string): number[] | undefined {
    return this.joined(text, (p) => p.ids);
  }

  /** One field of every word's pieces, end to end. */
  private joined<T>(text: string, field: (p: Pieces) => T[]): T[] | undefined {
    const words = this.words(text);
    if (!words) return undefined;
    const out: T[] = [];
    for (const w of words) for (const x of field(w)) out.push(x);
    return out;
  }

  /** The text's words (and punctuation marks), each split into pieces; undefined for the library. */
  private words(text: string): Pieces[] | undefined {
    let mayHoldAdded = false;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c > 127) return undefined;
      if (this.addedStarts[c] === 1) mayHoldAdded = true;
    }
    const lower = this.lowercase ? text.toLowerCase() : text;
    if (mayHoldAdded) for (const a of this.added) if (text.includes(a) || lower.includes(a)) return undefined;
    const out: Pieces[] = [];
    let start = -1;
    for (let i = 0; i < lower.length; i++) {
      const cls = this.classes[lower.charCodeAt(i)]!;
      if (cls === WORD) {
        if (start < 0) start = i;
        continue;
      }
      // A dropped control character inside a word joins its two halves: rare, so done the slow way.
      if (cls === DROP) return this.wordsWithDrops(lower);
      if (start >= 0) {
        out.push(this.pieces(lower.slice(start, i)));
        start = -1;
      }
      if (cls === PUNCT) out.push(this.pieces(lower[i]!));
    }
    if (start >= 0) out.push(this.pieces(lower.slice(start)));
    return out;
  }

  private wordsWithDrops(lower: string): Pieces[] {
    const out: Pieces[] = [];
    let word = '';
    for (let i = 0; i < lower.length; i++) {
      const cls = this.classes[lower.charCodeAt(i)]!;
      if (cls === WORD) {
        word += lower[i];
        continue;
      }
      if (cls === DROP) continue;
      if (word.length > 0) {
        out.push(this.pieces(word));
        word = '';
      }
      if (cls === PUNCT) out.push(this.pieces(lower[i]!));
    }
    if (word.length > 0) out.push(this.pieces(word));
    return out;
  }

  /** WordPiece: the longest known prefix, then the longest known `##` continuations; [UNK] if one is missing. */
  private pieces(word: string): Pieces {
    let cached = this.cache.get(word);
    if (!cached) {
      const tokens = this.split(word);
      cached = { tokens, ids: tokens.map(this.idOf) };
      if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
      this.cache.set(word, cached);
    }
    return cached;
  }

  private split(word: string): string[] {
    if (word.length > this.maxChars) return [this.unk];
    const pieces: string[] = [];
    let start = 0;
    while (start < word.length) {
      let end = word.length;
      let found: string | undefined;
      while (start < end) {
        const sub = start > 0 ? this.prefix + word.slice(start, end) : word.slice(start, end);
        if (this.vocab.has(sub)) {
          found = sub;
          break;
        }
        end--;
      }
      if (found === undefined) return [this.unk];
      pieces.push(found);
      start = end;
    }
    return pieces;
  }
}
