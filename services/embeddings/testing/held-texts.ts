// For tests: texts held as UTF-8 the way an Embed request brings them, each after a tag byte and a length byte.
import { Buffer } from 'node:buffer';
import { Texts } from '../domain/texts.js';

/** Each part as text, or as raw bytes (which need not be UTF-8); each under 128 bytes. */
export function heldTexts(parts: readonly (string | number[])[]): Texts {
  const chunks: Buffer[] = [];
  const bounds = new Int32Array(2 * parts.length);
  let at = 0;
  parts.forEach((p, i) => {
    const bytes = typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p);
    chunks.push(Buffer.from([0x12, bytes.length]), bytes);
    bounds[2 * i] = at + 2;
    bounds[2 * i + 1] = at + 2 + bytes.length;
    at += 2 + bytes.length;
  });
  return Texts.utf8(Buffer.concat(chunks), bounds);
}
