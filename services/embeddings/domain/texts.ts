// A request's texts, held either as strings or as the UTF-8 bytes they arrived in. Embedding never needs them
// as strings where the request is handled: the checks (blank, too long) and the batcher's length estimates read
// the bytes, and the texts cross to where the model runs as bytes, to be decoded there. Decoding every input on
// the event loop, then joining them into one string to send, was ~2 µs of its work per 32-input call and most of
// the strings it allocated.
import { Buffer } from 'node:buffer';

export class Texts {
  private constructor(
    private readonly strings: readonly string[] | undefined,
    /** The bytes the texts are in, and each text's [start, end) in them (two numbers per text). */
    private readonly utf8: Buffer | undefined,
    private readonly bounds: Int32Array | undefined,
    readonly length: number,
  ) {}

  static of(strings: readonly string[]): Texts {
    return new Texts(strings, undefined, undefined, strings.length);
  }

  /** Texts at bytes[bounds[2i], bounds[2i + 1]) (the bytes are kept, not copied). */
  static utf8(bytes: Uint8Array, bounds: Int32Array, count = bounds.length / 2): Texts {
    const buffer = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return new Texts(undefined, buffer, bounds, count);
  }

  /** Text i as a string (what is not UTF-8 in its bytes reads as U+FFFD). */
  text(i: number): string {
    if (this.strings) return this.strings[i]!;
    return this.utf8!.toString('utf8', this.bounds![2 * i], this.bounds![2 * i + 1]);
  }

  /**
   * Text i's size for estimates and limits: its length for a string, its UTF-8 bytes otherwise (never less
   * than its length as a string: a UTF-16 code unit takes at least one byte).
   */
  size(i: number): number {
    return this.strings ? this.strings[i]!.length : this.bounds![2 * i + 1]! - this.bounds![2 * i]!;
  }

  /** Text i is empty or only whitespace (as String.prototype.trim sees it). */
  isBlank(i: number): boolean {
    if (this.strings) return this.strings[i]!.trim().length === 0;
    const bytes = this.utf8!;
    for (let p = this.bounds![2 * i]!, end = this.bounds![2 * i + 1]!; p < end; p++) {
      const b = bytes[p]!;
      if (b === 0x20 || (b >= 0x09 && b <= 0x0d)) continue;
      // Anything else ASCII is text; beyond ASCII, Unicode's spaces (U+00A0, U+3000, ...) need the decoded string.
      return b < 0x80 ? false : this.text(i).trim().length === 0;
    }
    return true;
  }

  /** Bytes that texts [start, end) take when written by writeUtf8. */
  utf8Size(start: number, end: number): number {
    if (end <= start) return 0;
    if (this.strings) {
      let n = 0;
      for (let i = start; i < end; i++) n += Buffer.byteLength(this.strings[i]!, 'utf8');
      return n;
    }
    return this.bounds![2 * (end - 1) + 1]! - this.bounds![2 * start]!;
  }

  /**
   * Writes the UTF-8 of texts [start, end) into out from `at` (room for utf8Size(start, end) bytes), and where
   * each one now is into spans: text start + k at out[spans[slot + 2k], spans[slot + 2k + 1]). Bytes held are
   * copied in one piece, with whatever lay between the texts (never read). Returns where the writing ended.
   */
  writeUtf8(start: number, end: number, out: Uint8Array, at: number, spans: Int32Array, slot: number): number {
    if (this.strings) {
      const view = Buffer.from(out.buffer, out.byteOffset, out.byteLength);
      for (let i = start; i < end; i++, slot += 2) {
        spans[slot] = at;
        at += view.write(this.strings[i]!, at, 'utf8');
        spans[slot + 1] = at;
      }
      return at;
    }
    if (end <= start) return at;
    const bounds = this.bounds!;
    const from = bounds[2 * start]!;
    const to = bounds[2 * (end - 1) + 1]!;
    out.set(this.utf8!.subarray(from, to), at);
    const shift = at - from;
    for (let i = start; i < end; i++, slot += 2) {
      spans[slot] = bounds[2 * i]! + shift;
      spans[slot + 1] = bounds[2 * i + 1]! + shift;
    }
    return at + (to - from);
  }
}
