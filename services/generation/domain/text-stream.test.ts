import { describe, expect, it } from 'vitest';
import { gpt2TokenizerConfig, gpt2TokenizerJson } from '../defaults/gpt2-tokenizer.js';
import { TextTokenizer } from './tokenizer.js';

describe('token text streams', () => {
  it('release Chinese text split inside characters only as whole characters', async () => {
    const tok = new TextTokenizer(await gpt2TokenizerJson(), gpt2TokenizerConfig(1024), [50256], 50257);
    const text = '你好，世界！流式输出 🎉 done';
    const ids = tok.encode(text);
    const stream = tok.textStream();
    const chunks = ids.map((id) => stream.push(id));
    chunks.push(stream.flush());
    expect(chunks.join('')).toBe(text);
    expect(chunks.some((c) => c === '')).toBe(true);
    for (const c of chunks) {
      expect(c).not.toContain('\uFFFD');
      expect(Buffer.from(c, 'utf8').toString('utf8')).toBe(c);
    }
  });

  it('turn an unfinished character at the end into a replacement character', async () => {
    const tok = new TextTokenizer(await gpt2TokenizerJson(), gpt2TokenizerConfig(1024), [50256], 50257);
    const stream = tok.textStream();
    expect(stream.push(19526)).toBe('');
    expect(stream.flush()).toBe('\uFFFD');
  });
});
