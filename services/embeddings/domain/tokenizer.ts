// A model version's tokenizer, from its Hugging Face `tokenizer.json` (through @huggingface/tokenizers), with
// what that library leaves out: truncation to the model's maximum length from either end, counted with the
// special tokens the post-processor adds ([CLS] … [SEP]), and token type ids for BERT-style inputs.
import { Tokenizer } from '@huggingface/tokenizers';
import { FastWordPiece } from './fast-wordpiece.js';

export type TruncationSide = 'right' | 'left';

export interface EncodeOptions {
  /** Cut to maxLength instead of returning more tokens (then `truncated` tells). */
  truncate: boolean;
  /** Which end to cut. */
  side: TruncationSide;
  /** Add the post-processor's special tokens (default true). */
  addSpecialTokens?: boolean;
}

/** One text as the model reads it. */
export interface Encoded {
  ids: number[];
  /** Token type (segment) ids, aligned with ids (read only: often one shared array of zeros). */
  typeIds: readonly number[];
  /** Tokens before truncation, special tokens included. */
  fullLength: number;
  /** True when tokens were cut (or, without truncate, when fullLength exceeds the maximum). */
  truncated: boolean;
}

/** A post-processor that only wraps the text: prefix + text + suffix, with their type ids. */
interface Template {
  prefixIds: number[];
  suffixIds: number[];
  prefixTypes: number[];
  suffixTypes: number[];
  textType: number;
  /** Every type id is 0 (single-segment BERT, or no post-processor). */
  allZero: boolean;
}

const ZEROS: (readonly number[])[] = [];

/**
 * A shared, frozen array of n zeros: the type ids of most inputs, which nothing writes, so one array per
 * length serves them all instead of one per input.
 */
function zeros(n: number): readonly number[] {
  return (ZEROS[n] ??= Object.freeze(new Array<number>(n).fill(0)));
}

export interface TokenView {
  id: number;
  text: string;
  special: boolean;
}

export class TextTokenizer {
  readonly maxLength: number;
  readonly vocabSize: number;
  readonly padId: number;
  private readonly hf: Tokenizer;
  /** The same tokens as hf for BERT-style WordPiece tokenizers on ASCII text, much faster. */
  private readonly fast: FastWordPiece | undefined;
  private readonly vocab: Map<string, number>;
  private readonly specialTokens: Set<string>;
  private readonly unkId: number;
  private readonly specialCount: number;
  /** The post-processor as plain prefix + text + suffix, when it is one (the fast path's ids use it). */
  private readonly template: Template | undefined;

  /** tokenizerJson: the parsed tokenizer.json; tokenizerConfig: tokenizer_config.json (or {}). */
  constructor(tokenizerJson: object, tokenizerConfig: object, maxLength: number) {
    this.hf = new Tokenizer(tokenizerJson, tokenizerConfig);
    this.vocab = this.hf.get_vocab(true);
    this.vocabSize = this.vocab.size;
    const json = tokenizerJson as { added_tokens?: { content: string; special?: boolean }[]; model?: { unk_token?: string } };
    this.specialTokens = new Set((json.added_tokens ?? []).filter((t) => t.special).map((t) => t.content));
    const config = tokenizerConfig as { pad_token?: string | { content: string } };
    const pad = typeof config.pad_token === 'string' ? config.pad_token : config.pad_token?.content;
    this.padId = this.vocab.get(pad ?? '[PAD]') ?? this.vocab.get('<pad>') ?? 0;
    this.unkId = this.vocab.get(json.model?.unk_token ?? '[UNK]') ?? 0;
    this.fast = FastWordPiece.for(tokenizerJson, tokenizerConfig, (token) => this.idOf(token));
    this.specialCount = this.postProcess([]).tokens.length;
    this.template = this.fast ? this.templateOf() : undefined;
    if (maxLength <= this.specialCount) throw new Error(`maximum length ${maxLength} leaves no room for text after ${this.specialCount} special tokens`);
    this.maxLength = maxLength;
  }

  encode(text: string, options: EncodeOptions): Encoded {
    const fastIds = this.template && this.fast?.ids(text);
    if (fastIds) return this.frame(fastIds, this.template!, options);
    const { tokens, typeIds, fullLength, truncated } = this.tokens(text, options);
    return { ids: tokens.map((t) => this.idOf(t)), typeIds, fullLength, truncated };
  }

  /** Tokens with their ids, for the Tokenize RPC. */
  view(text: string, options: EncodeOptions): { tokens: TokenView[]; truncated: boolean } {
    const { tokens, truncated } = this.tokens(text, options);
    return {
      tokens: tokens.map((t) => ({ id: this.idOf(t), text: t, special: this.specialTokens.has(t) })),
      truncated,
    };
  }

  /**
   * A guess, without tokenizing, at the tokens encode would give with truncation (special tokens included, at
   * most maxLength) for a text of `size` characters (or UTF-8 bytes: the same for English): about four a token,
   * as English runs under WordPiece and BPE vocabularies. Only the shape of batches depends on it (texts queue
   * with it; where they are tokenized, a batch over its token cap runs in pieces).
   */
  estimate(size: number): number {
    return Math.min(this.maxLength, Math.ceil(size / 4) + this.specialCount);
  }

  /** Tokens before truncation, special tokens included. */
  count(text: string): number {
    return this.textTokens(text).length + this.specialCount;
  }

  private tokens(text: string, options: EncodeOptions): { tokens: string[]; typeIds: readonly number[]; fullLength: number; truncated: boolean } {
    const { kept: tokens, special, fullLength, truncated } = this.cut(this.textTokens(text), options);
    if (!special) return { tokens, typeIds: zeros(tokens.length), fullLength, truncated };
    const out = this.postProcess(tokens);
    return { tokens: out.tokens, typeIds: out.token_type_ids ?? zeros(out.tokens.length), fullLength, truncated };
  }

  /**
   * The text's tokens (or ids) cut to the room the maximum length leaves next to the special tokens, when the
   * options say to truncate; fullLength and truncated count the special tokens too.
   */
  private cut<T>(text: T[], options: EncodeOptions): { kept: T[]; special: boolean; fullLength: number; truncated: boolean } {
    const special = options.addSpecialTokens ?? true;
    const room = this.maxLength - (special ? this.specialCount : 0);
    const truncated = text.length > room;
    let kept = text;
    if (truncated && options.truncate) kept = options.side === 'left' ? text.slice(text.length - room) : text.slice(0, room);
    return { kept, special, fullLength: text.length + (special ? this.specialCount : 0), truncated };
  }

  private idOf(token: string): number {
    return this.vocab.get(token) ?? this.unkId;
  }

  /** The text's tokens, without special tokens. */
  textTokens(text: string): string[] {
    return this.fast?.tokenize(text) ?? this.hf.tokenize(text, { add_special_tokens: false });
  }

  /** The library's tokens, bypassing the fast path (for tests that compare the two). */
  libraryTokens(text: string): string[] {
    return this.hf.tokenize(text, { add_special_tokens: false });
  }

  get hasFastPath(): boolean {
    return this.fast !== undefined;
  }

  /** Truncates the text's ids and adds the template's special tokens, as tokens() does with strings. */
  private frame(text: number[], template: Template, options: EncodeOptions): Encoded {
    const { kept, special, fullLength, truncated } = this.cut(text, options);
    if (!special) return { ids: kept, typeIds: zeros(kept.length), fullLength, truncated };
    const ids = template.prefixIds.length + template.suffixIds.length === 0 ? kept : [...template.prefixIds, ...kept, ...template.suffixIds];
    const typeIds = template.allZero
      ? zeros(ids.length)
      : [...template.prefixTypes, ...new Array<number>(kept.length).fill(template.textType), ...template.suffixTypes];
    return { ids, typeIds, fullLength, truncated };
  }

  /**
   * The post-processor seen from outside: if it turns any tokens into prefix + tokens + suffix (with one type
   * id for the text), as BERT's [CLS] … [SEP] and no post-processor at all do, that prefix and suffix as ids;
   * otherwise undefined, and every text goes through the library's post-processor.
   */
  private templateOf(): Template | undefined {
    const probe = (tokens: string[]) => {
      const out = this.postProcess(tokens);
      return { tokens: out.tokens, types: out.token_type_ids ?? new Array<number>(out.tokens.length).fill(0) };
    };
    const one = probe(['\u0001a']);
    const two = probe(['\u0001b', '\u0001c']);
    const at = one.tokens.indexOf('\u0001a');
    if (at < 0) return undefined;
    const prefix = one.tokens.slice(0, at);
    const suffix = one.tokens.slice(at + 1);
    const textType = one.types[at]!;
    const same = (a: unknown[], b: unknown[]) => a.length === b.length && a.every((x, i) => x === b[i]);
    if (!same(two.tokens, [...prefix, '\u0001b', '\u0001c', ...suffix])) return undefined;
    if (!same(two.types, [...one.types.slice(0, at), textType, textType, ...one.types.slice(at + 1)])) return undefined;
    if (prefix.length + suffix.length !== this.specialCount) return undefined;
    return {
      prefixIds: prefix.map((t) => this.idOf(t)),
      suffixIds: suffix.map((t) => this.idOf(t)),
      prefixTypes: one.types.slice(0, at),
      suffixTypes: one.types.slice(at + 1),
      textType,
      allZero: one.types.every((t) => t === 0),
    };
  }

  private postProcess(tokens: string[]): { tokens: string[]; token_type_ids?: number[] } {
    const pp = this.hf.post_processor;
    return pp ? pp.post_process(tokens) : { tokens };
  }
}
