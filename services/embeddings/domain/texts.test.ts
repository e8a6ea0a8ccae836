import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import { heldTexts } from '../testing/held-texts.js';
import { Texts } from './texts.js';

const STRINGS = ['cat', '', '   ', '\t\n ', ' \u00a0 ', '\u3000', '\ufeff x', 'é 日本 🙂', '  leading', 'trailing \u2028'];

describe('Texts', () => {
  it('reads the same held as strings or as UTF-8: text, blank, size at least the length', () => {
    for (const texts of [Texts.of(STRINGS), heldTexts(STRINGS)]) {
      expect(texts.length).toBe(STRINGS.length);
      expect(Array.from({ length: texts.length }, (_, i) => texts.text(i))).toEqual(STRINGS);
      STRINGS.forEach((s, i) => {
        expect(texts.text(i)).toBe(s);
        expect(texts.isBlank(i)).toBe(s.trim().length === 0);
        expect(texts.size(i)).toBeGreaterThanOrEqual(s.length);
      });
    }
    // Held as UTF-8, the size is the bytes.
    expect(heldTexts(STRINGS).size(7)).toBe(Buffer.byteLength('é 日本 🙂'));
  });

  it('reads bytes that are not UTF-8 as U+FFFD, as the generated decoder does, and never sizes them under their length', () => {
    let a = 3;
    const next = (n: number) => ((a = (a * 1103515245 + 12345) >>> 0) >>> 8) % n;
    for (let k = 0; k < 2000; k++) {
      const bytes = Array.from({ length: next(12) }, () => [0x20, 0x41, 0x09, 0xc3, 0xa9, 0xe2, 0x80, 0xa8, 0xf0, 0x9f, 0xff, 0xa0][next(12)]!);
      const texts = heldTexts([bytes]);
      // What a TextDecoder, the generated protobuf decoder's, reads from the same bytes (Texts uses Buffer's).
      const expected = new TextDecoder().decode(Uint8Array.from(bytes));
      expect(texts.text(0)).toBe(expected);
      expect(texts.isBlank(0)).toBe(expected.trim().length === 0);
      expect(texts.size(0)).toBeGreaterThanOrEqual(expected.length);
    }
  });

  it('writes a run of texts as UTF-8 with where each one lies, held or not', () => {
    for (const texts of [Texts.of(STRINGS), heldTexts(STRINGS)]) {
      const size = texts.utf8Size(6, 9);
      const out = new Uint8Array(4 + size);
      const spans = new Int32Array(8);
      expect(texts.writeUtf8(6, 9, out, 4, spans, 2)).toBe(4 + size);
      const view = Buffer.from(out.buffer);
      expect([0, 1, 2].map((k) => view.toString('utf8', spans[2 + 2 * k], spans[3 + 2 * k]))).toEqual(STRINGS.slice(6, 9));
      expect(spans[2]).toBe(4);
      expect(texts.utf8Size(3, 3)).toBe(0);
    }
    // Held, the bytes between the texts come along (two per text here); as strings, only the texts.
    expect(heldTexts(STRINGS).utf8Size(0, 2)).toBe(3 + 2);
    expect(Texts.of(STRINGS).utf8Size(0, 2)).toBe(3);
  });
});
