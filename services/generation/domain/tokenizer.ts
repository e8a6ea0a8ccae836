// A model version's tokenizer as the engine uses it: encoding prompts, rendering chat messages with the
// version's chat template (tokenizer_config.json, through @huggingface/jinja) or a plain default one,
// streaming generated tokens back to text, and knowing which ids end a sequence.
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { FailedPreconditionError, InvalidArgumentError } from '../../runtime/errors.js';
import { byteLevelTable, ByteLevelTextStream, WindowTextStream, type TextStream } from './text-stream.js';

export interface ChatMessage {
  role: string;
  content: string;
}

/** Used when the version's tokenizer_config.json has no chat_template. */
export const DEFAULT_CHAT_TEMPLATE =
  "{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}";

export class TextTokenizer {
  private readonly tokenizer: Tokenizer;
  private readonly template: Template;
  /** Ids that end a sequence. */
  readonly eosIds: ReadonlySet<number>;
  readonly vocabSize: number;
  readonly hasChatTemplate: boolean;
  private readonly byteTable: Uint8Array[] | undefined;
  private readonly specialIds: Set<number>;
  private readonly specialTokens: { bos: string; eos: string };

  constructor(tokenizerJson: Record<string, unknown>, tokenizerConfig: Record<string, unknown>, eosIds: number[], modelVocabSize: number) {
    try {
      this.tokenizer = new Tokenizer(tokenizerJson, tokenizerConfig);
    } catch (err) {
      throw new FailedPreconditionError(`the tokenizer cannot be loaded: ${String(err)}`, [], { reason: 'UNSUPPORTED_TOKENIZER', cause: err });
    }
    const vocab = this.tokenizer.get_vocab(true);
    this.vocabSize = Math.max(...vocab.values()) + 1;
    if (this.vocabSize > modelVocabSize) {
      throw new FailedPreconditionError(`the tokenizer has ${this.vocabSize} tokens but the model only ${modelVocabSize} logits`, [], { reason: 'TOKENIZER_MISMATCH' });
    }
    this.specialIds = new Set([...this.tokenizer.get_added_tokens_decoder()].filter(([, t]) => t.special).map(([id]) => id));
    const eos = new Set(eosIds);
    const eosToken = tokenString(tokenizerConfig.eos_token);
    if (eos.size === 0 && eosToken !== undefined) {
      const id = this.tokenizer.token_to_id(eosToken);
      if (id !== undefined) eos.add(id);
    }
    this.eosIds = eos;
    this.specialTokens = { bos: tokenString(tokenizerConfig.bos_token) ?? '', eos: eosToken ?? '' };
    const decoder = tokenizerJson.decoder as { type?: string } | null | undefined;
    this.byteTable = decoder?.type === 'ByteLevel' ? byteLevelTable(vocab, modelVocabSize, this.specialIds) : undefined;
    const chatTemplate = typeof tokenizerConfig.chat_template === 'string' ? tokenizerConfig.chat_template : undefined;
    this.hasChatTemplate = chatTemplate !== undefined;
    try {
      this.template = new Template(chatTemplate ?? DEFAULT_CHAT_TEMPLATE);
    } catch (err) {
      throw new FailedPreconditionError(`the chat template in tokenizer_config.json does not parse: ${String(err)}`, [], { reason: 'BAD_CHAT_TEMPLATE', cause: err });
    }
  }

  encode(text: string): number[] {
    return this.tokenizer.encode(text).ids;
  }

  /** Ids with their vocabulary spelling. */
  tokenize(text: string): { id: number; text: string; special: boolean }[] {
    const e = this.tokenizer.encode(text);
    return e.ids.map((id: number, i: number) => ({ id, text: e.tokens[i] ?? '', special: this.specialIds.has(id) }));
  }

  /** Text of a token list (special tokens skipped). */
  decode(ids: number[]): string {
    return this.tokenizer.decode(ids, { skip_special_tokens: true });
  }

  /** The text one token stands for on its own (partial characters show as U+FFFD). */
  tokenText(id: number): string {
    if (this.byteTable) return new TextDecoder().decode(this.byteTable[id] ?? new Uint8Array(0));
    return this.tokenizer.decode([id], { skip_special_tokens: false });
  }

  textStream(): TextStream {
    return this.byteTable ? new ByteLevelTextStream(this.byteTable) : new WindowTextStream((ids) => this.decode(ids));
  }

  /** Renders chat messages into a prompt with the version's chat template, ready for the assistant's turn. */
  renderChat(messages: ChatMessage[]): string {
    try {
      return this.template.render({
        messages,
        add_generation_prompt: true,
        bos_token: this.specialTokens.bos,
        eos_token: this.specialTokens.eos,
      });
    } catch (err) {
      // Templates refuse messages with raise_exception (roles out of order, say): the caller's to fix.
      throw InvalidArgumentError.field('messages', `the model's chat template could not render them: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
}

function tokenString(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}
