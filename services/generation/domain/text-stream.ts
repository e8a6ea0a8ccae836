// Turns generated token ids into text as they arrive, releasing only complete characters. Byte-level BPE
// tokens (GPT-2 and most decoders) often end in the middle of a UTF-8 character; such bytes are held back
// until the character is complete, so every chunk the caller sees is valid UTF-8.

/** One sequence's incremental decoder. */
export interface TextStream {
  /** Adds a token; returns the text that became complete (often ''). */
  push(token: number): string;
  /** At the end: what is still held (an unfinished character becomes U+FFFD). */
  flush(): string;
}

/** The byte each character of a byte-level BPE vocabulary stands for (GPT-2's bytes_to_unicode). */
export function byteLevelAlphabet(): Map<string, number> {
  const bytes: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bytes.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bytes.push(b);
  for (let b = 0xae; b <= 0xff; b++) bytes.push(b);
  const chars = bytes.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bytes.includes(b)) {
      bytes.push(b);
      chars.push(256 + n++);
    }
  }
  const map = new Map<string, number>();
  bytes.forEach((b, i) => map.set(String.fromCodePoint(chars[i]!), b));
  return map;
}

/** Byte tables of a byte-level vocabulary: token id → the bytes it stands for (empty for skipped tokens). */
export function byteLevelTable(vocab: Map<string, number>, size: number, special: Set<number>): Uint8Array[] {
  const alphabet = byteLevelAlphabet();
  const encoder = new TextEncoder();
  const table: Uint8Array[] = new Array(size).fill(new Uint8Array(0));
  for (const [piece, id] of vocab) {
    if (id < 0 || id >= size) continue;
    if (special.has(id)) continue;
    const out: number[] = [];
    let ok = true;
    for (const ch of piece) {
      const b = alphabet.get(ch);
      if (b === undefined) {
        ok = false;
        break;
      }
      out.push(b);
    }
    // Added (non-special) tokens are written as plain text rather than in the byte alphabet.
    table[id] = ok ? Uint8Array.from(out) : encoder.encode(piece);
  }
  return table;
}

export class ByteLevelTextStream implements TextStream {
  private readonly decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

  constructor(private readonly table: readonly Uint8Array[]) {}

  push(token: number): string {
    const bytes = this.table[token];
    if (!bytes || bytes.length === 0) return '';
    return this.decoder.decode(bytes, { stream: true });
  }

  flush(): string {
    return this.decoder.decode();
  }
}

/**
 * For tokenizers whose decoder is not byte-level (SentencePiece and others): decodes a sliding window of
 * tokens and releases the new text once it no longer ends in a replacement character (TGI's approach).
 */
export class WindowTextStream implements TextStream {
  private readonly tokens: number[] = [];
  private prefixOffset = 0;
  private readOffset = 0;

  constructor(private readonly decode: (ids: number[]) => string) {}

  push(token: number): string {
    this.tokens.push(token);
    const before = this.decode(this.tokens.slice(this.prefixOffset, this.readOffset));
    const after = this.decode(this.tokens.slice(this.prefixOffset));
    if (after.length > before.length && !after.endsWith('\uFFFD')) {
      this.prefixOffset = this.readOffset;
      this.readOffset = this.tokens.length;
      return after.slice(before.length);
    }
    return '';
  }

  flush(): string {
    const before = this.decode(this.tokens.slice(this.prefixOffset, this.readOffset));
    const after = this.decode(this.tokens.slice(this.prefixOffset));
    this.prefixOffset = this.readOffset = this.tokens.length;
    return after.slice(before.length);
  }
}
