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
  /** Token type (segment) ids, aligned with ids. */
  typeIds: number[];
  /** Tokens before truncation, special tokens included. */
  fullLength: number;
  /** True when tokens were cut (or, without truncate, when fullLength exceeds the maximum). */
  truncated: boolean;
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

  /** tokenizerJson: the parsed tokenizer.json; tokenizerConfig: tokenizer_config.json (or {}). */
  constructor(tokenizerJson: object, tokenizerConfig: object, maxLength: number) {
    this.hf = new Tokenizer(tokenizerJson, tokenizerConfig);
    this.fast = FastWordPiece.for(tokenizerJson, tokenizerConfig);
    this.vocab = this.hf.get_vocab(true);
    this.vocabSize = this.vocab.size;
    const json = tokenizerJson as { added_tokens?: { content: string; special?: boolean }[]; model?: { unk_token?: string } };
    this.specialTokens = new Set((json.added_tokens ?? []).filter((t) => t.special).map((t) => t.content));
    const config = tokenizerConfig as { pad_token?: string | { content: string } };
    const pad = typeof config.pad_token === 'string' ? config.pad_token : config.pad_token?.content;
    this.padId = this.vocab.get(pad ?? '[PAD]') ?? this.vocab.get('<pad>') ?? 0;
    this.unkId = this.vocab.get(json.model?.unk_token ?? '[UNK]') ?? 0;
    this.specialCount = this.postProcess([]).tokens.length;
    if (maxLength <= this.specialCount) throw new Error(`maximum length ${maxLength} leaves no room for text after ${this.specialCount} special tokens`);
    this.maxLength = maxLength;
  }

  encode(text: string, options: EncodeOptions): Encoded {
    const { tokens, typeIds, fullLength, truncated } = this.tokens(text, options);
    const ids = new Array<number>(tokens.length);
    for (let i = 0; i < tokens.length; i++) ids[i] = this.vocab.get(tokens[i]!) ?? this.unkId;
    return { ids, typeIds, fullLength, truncated };
  }

  /** Tokens with their ids, for the Tokenize RPC. */
  view(text: string, options: EncodeOptions): { tokens: TokenView[]; truncated: boolean } {
    const { tokens, truncated } = this.tokens(text, options);
    return {
      tokens: tokens.map((t) => ({ id: this.vocab.get(t) ?? this.unkId, text: t, special: this.specialTokens.has(t) })),
      truncated,
    };
  }

  /** Tokens before truncation, special tokens included. */
  count(text: string): number {
    return this.textTokens(text).length + this.specialCount;
  }

  private tokens(text: string, options: EncodeOptions): { tokens: string[]; typeIds: number[]; fullLength: number; truncated: boolean } {
    const special = options.addSpecialTokens ?? true;
    let tokens = this.textTokens(text);
    const room = this.maxLength - (special ? this.specialCount : 0);
    const fullLength = tokens.length + (special ? this.specialCount : 0);
    const truncated = tokens.length > room;
    if (truncated && options.truncate) tokens = options.side === 'left' ? tokens.slice(tokens.length - room) : tokens.slice(0, room);
    if (!special) return { tokens, typeIds: new Array<number>(tokens.length).fill(0), fullLength, truncated };
    const out = this.postProcess(tokens);
    return { tokens: out.tokens, typeIds: out.token_type_ids ?? new Array<number>(out.tokens.length).fill(0), fullLength, truncated };
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

  private postProcess(tokens: string[]): { tokens: string[]; token_type_ids?: number[] } {
    const pp = this.hf.post_processor;
    return pp ? pp.post_process(tokens) : { tokens };
  }
}
