// HPACK (RFC 7541) for the gateway's hand-written HTTP/2 client.
//
// The decoder is complete (static and dynamic tables, Huffman) because the peer's encoder decides what it sends.
// The encoder is deliberately stateless: it never inserts into the dynamic table and never Huffman-codes, so a
// block does not depend on connection state or on the peer's SETTINGS_HEADER_TABLE_SIZE, and there is no
// encoder table to keep in step with the peer. gRPC request headers are few and short, so little is lost.
//
// Strings are latin1 in both directions, as in Node's http2: one octet is one UTF-16 code unit.
import { Buffer } from 'node:buffer';

/**
 * Malformed header block. The caller treats it as a connection error (COMPRESSION_ERROR); the decoder that threw
 * is out of step with the peer and must not be used again.
 */
export class HpackError extends Error {
  override readonly name = 'HpackError';
}

// Buffer has had these natively-bound methods since Node's first versions (toString('latin1') and
// write(s, 'latin1') end up in them after argument juggling); @types/node does not declare them.
type Latin1Buffer = Buffer & {
  latin1Slice(start: number, end: number): string;
  latin1Write(s: string, offset: number, length: number): number;
};

// Far above any legitimate index, length or table size, and low enough that the arithmetic stays exact.
const MAX_INTEGER = 0x7fffffff;
// RFC 7541 section 4.1; RFC 7540 section 6.5.2 counts the header list the same way.
const ENTRY_OVERHEAD = 32;

// RFC 7541 Appendix A (transcribed by script, like the Huffman table below).
const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [':authority', ''],
  [':method', 'GET'],
  [':method', 'POST'],
  [':path', '/'],
  [':path', '/index.html'],
  [':scheme', 'http'],
  [':scheme', 'https'],
  [':status', '200'],
  [':status', '204'],
  [':status', '206'],
  [':status', '304'],
  [':status', '400'],
  [':status', '404'],
  [':status', '500'],
  ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'],
  ['accept-language', ''],
  ['accept-ranges', ''],
  ['accept', ''],
  ['access-control-allow-origin', ''],
  ['age', ''],
  ['allow', ''],
  ['authorization', ''],
  ['cache-control', ''],
  ['content-disposition', ''],
  ['content-encoding', ''],
  ['content-language', ''],
  ['content-length', ''],
  ['content-location', ''],
  ['content-range', ''],
  ['content-type', ''],
  ['cookie', ''],
  ['date', ''],
  ['etag', ''],
  ['expect', ''],
  ['expires', ''],
  ['from', ''],
  ['host', ''],
  ['if-match', ''],
  ['if-modified-since', ''],
  ['if-none-match', ''],
  ['if-range', ''],
  ['if-unmodified-since', ''],
  ['last-modified', ''],
  ['link', ''],
  ['location', ''],
  ['max-forwards', ''],
  ['proxy-authenticate', ''],
  ['proxy-authorization', ''],
  ['range', ''],
  ['referer', ''],
  ['refresh', ''],
  ['retry-after', ''],
  ['server', ''],
  ['set-cookie', ''],
  ['strict-transport-security', ''],
  ['transfer-encoding', ''],
  ['user-agent', ''],
  ['vary', ''],
  ['via', ''],
  ['www-authenticate', ''],
];

const STATIC_COUNT = STATIC_TABLE.length;
// 1-based, like HPACK indices, so lookups need no offset.
const STATIC_NAMES: readonly string[] = ['', ...STATIC_TABLE.map(([name]) => name)];
const STATIC_VALUES: readonly string[] = ['', ...STATIC_TABLE.map(([, value]) => value)];

// RFC 7541 Appendix B: the code of each symbol (octets 0-255, then EOS = 256) as an integer whose most
// significant bit is sent first, and its length in bits. Transcribed by script from the RFC's table (as quoted in
// the MIT-licensed hpack.js); the tests check that it is a complete canonical code. Exported only for those tests.
export const HUFFMAN_CODES: readonly number[] = [
  0x1ff8, 0x7fffd8, 0xfffffe2, 0xfffffe3, 0xfffffe4, 0xfffffe5, 0xfffffe6, 0xfffffe7, // 0-7
  0xfffffe8, 0xffffea, 0x3ffffffc, 0xfffffe9, 0xfffffea, 0x3ffffffd, 0xfffffeb, 0xfffffec, // 8-15
  0xfffffed, 0xfffffee, 0xfffffef, 0xffffff0, 0xffffff1, 0xffffff2, 0x3ffffffe, 0xffffff3, // 16-23
  0xffffff4, 0xffffff5, 0xffffff6, 0xffffff7, 0xffffff8, 0xffffff9, 0xffffffa, 0xffffffb, // 24-31
  0x14, 0x3f8, 0x3f9, 0xffa, 0x1ff9, 0x15, 0xf8, 0x7fa, // 32-39
  0x3fa, 0x3fb, 0xf9, 0x7fb, 0xfa, 0x16, 0x17, 0x18, // 40-47
  0x0, 0x1, 0x2, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, // 48-55
  0x1e, 0x1f, 0x5c, 0xfb, 0x7ffc, 0x20, 0xffb, 0x3fc, // 56-63
  0x1ffa, 0x21, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62, // 64-71
  0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, // 72-79
  0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72, // 80-87
  0xfc, 0x73, 0xfd, 0x1ffb, 0x7fff0, 0x1ffc, 0x3ffc, 0x22, // 88-95
  0x7ffd, 0x3, 0x23, 0x4, 0x24, 0x5, 0x25, 0x26, // 96-103
  0x27, 0x6, 0x74, 0x75, 0x28, 0x29, 0x2a, 0x7, // 104-111
  0x2b, 0x76, 0x2c, 0x8, 0x9, 0x2d, 0x77, 0x78, // 112-119
  0x79, 0x7a, 0x7b, 0x7ffe, 0x7fc, 0x3ffd, 0x1ffd, 0xffffffc, // 120-127
  0xfffe6, 0x3fffd2, 0xfffe7, 0xfffe8, 0x3fffd3, 0x3fffd4, 0x3fffd5, 0x7fffd9, // 128-135
  0x3fffd6, 0x7fffda, 0x7fffdb, 0x7fffdc, 0x7fffdd, 0x7fffde, 0xffffeb, 0x7fffdf, // 136-143
  0xffffec, 0xffffed, 0x3fffd7, 0x7fffe0, 0xffffee, 0x7fffe1, 0x7fffe2, 0x7fffe3, // 144-151
  0x7fffe4, 0x1fffdc, 0x3fffd8, 0x7fffe5, 0x3fffd9, 0x7fffe6, 0x7fffe7, 0xffffef, // 152-159
  0x3fffda, 0x1fffdd, 0xfffe9, 0x3fffdb, 0x3fffdc, 0x7fffe8, 0x7fffe9, 0x1fffde, // 160-167
  0x7fffea, 0x3fffdd, 0x3fffde, 0xfffff0, 0x1fffdf, 0x3fffdf, 0x7fffeb, 0x7fffec, // 168-175
  0x1fffe0, 0x1fffe1, 0x3fffe0, 0x1fffe2, 0x7fffed, 0x3fffe1, 0x7fffee, 0x7fffef, // 176-183
  0xfffea, 0x3fffe2, 0x3fffe3, 0x3fffe4, 0x7ffff0, 0x3fffe5, 0x3fffe6, 0x7ffff1, // 184-191
  0x3ffffe0, 0x3ffffe1, 0xfffeb, 0x7fff1, 0x3fffe7, 0x7ffff2, 0x3fffe8, 0x1ffffec, // 192-199
  0x3ffffe2, 0x3ffffe3, 0x3ffffe4, 0x7ffffde, 0x7ffffdf, 0x3ffffe5, 0xfffff1, 0x1ffffed, // 200-207
  0x7fff2, 0x1fffe3, 0x3ffffe6, 0x7ffffe0, 0x7ffffe1, 0x3ffffe7, 0x7ffffe2, 0xfffff2, // 208-215
  0x1fffe4, 0x1fffe5, 0x3ffffe8, 0x3ffffe9, 0xffffffd, 0x7ffffe3, 0x7ffffe4, 0x7ffffe5, // 216-223
  0xfffec, 0xfffff3, 0xfffed, 0x1fffe6, 0x3fffe9, 0x1fffe7, 0x1fffe8, 0x7ffff3, // 224-231
  0x3fffea, 0x3fffeb, 0x1ffffee, 0x1ffffef, 0xfffff4, 0xfffff5, 0x3ffffea, 0x7ffff4, // 232-239
  0x3ffffeb, 0x7ffffe6, 0x3ffffec, 0x3ffffed, 0x7ffffe7, 0x7ffffe8, 0x7ffffe9, 0x7ffffea, // 240-247
  0x7ffffeb, 0xffffffe, 0x7ffffec, 0x7ffffed, 0x7ffffee, 0x7ffffef, 0x7fffff0, 0x3ffffee, // 248-255
  0x3fffffff, // 256
];

export const HUFFMAN_CODE_LENGTHS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0-15
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 16-31
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, // 32-47
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, // 48-63
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, // 64-79
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, // 80-95
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, // 96-111
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, // 112-127
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 128-143
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 144-159
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 160-175
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 176-191
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 192-207
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 208-223
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 224-239
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 240-255
  30, // 256
];

// Huffman decoding is a state machine over 4-bit nibbles (as in nghttp2), built once here. A state is an internal
// node of the code tree (257 leaves make 256 internal nodes, so a state fits in 8 bits; the root is state 0).
// Every code is at least 5 bits long, so one nibble completes at most one symbol.
// A transition is: next state in bits 0-7, the completed symbol in bits 8-15 when HUFF_EMIT is set, HUFF_FAIL
// when the nibble completes EOS (which must never appear in a string, RFC 7541 section 5.2).
const HUFF_EMIT = 1 << 16;
const HUFF_FAIL = 1 << 17;
const HUFF_TRANSITIONS = new Uint32Array(256 * 16);
// States in which a string may end: the bits read since the last symbol are a run of at most 7 ones, i.e. a
// prefix of EOS that is short enough to be padding.
const HUFF_ACCEPTING = new Uint8Array(256);

function buildHuffmanDecoder(): void {
  // children[2 * node + bit]: > 0 an internal node, < 0 the leaf of symbol -1 - child, 0 not yet built (the root
  // is no one's child). A malformed table fails here, at module load, rather than mis-decoding.
  const children = new Int32Array(2 * 256);
  let nodes = 1;
  for (let sym = 0; sym <= 256; sym++) {
    const code = HUFFMAN_CODES[sym];
    const length = HUFFMAN_CODE_LENGTHS[sym];
    let node = 0;
    for (let bit = length - 1; bit >= 0; bit--) {
      const slot = 2 * node + ((code >>> bit) & 1);
      if (bit === 0) {
        if (children[slot] !== 0) throw new Error(`HPACK Huffman table: the code of symbol ${sym} is not a leaf`);
        children[slot] = -1 - sym;
      } else {
        if (children[slot] < 0) throw new Error(`HPACK Huffman table: the code of symbol ${sym} extends another code`);
        if (children[slot] === 0) {
          if (nodes === 256) throw new Error('HPACK Huffman table: too many internal nodes');
          children[slot] = nodes++;
        }
        node = children[slot];
      }
    }
  }
  if (nodes !== 256 || children.includes(0)) throw new Error('HPACK Huffman table: the code is not complete');

  for (let node = 0, depth = 0; depth <= 7; depth++, node = children[2 * node + 1]) HUFF_ACCEPTING[node] = 1;

  for (let state = 0; state < 256; state++) {
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = state;
      let transition = 0;
      for (let bit = 3; bit >= 0; bit--) {
        const child = children[2 * node + ((nibble >>> bit) & 1)];
        if (child > 0) {
          node = child;
          continue;
        }
        const sym = -1 - child;
        if (sym === 256) {
          transition |= HUFF_FAIL;
          break;
        }
        transition |= HUFF_EMIT | (sym << 8);
        node = 0;
      }
      HUFF_TRANSITIONS[(state << 4) | nibble] = transition | node;
    }
  }
}
buildHuffmanDecoder();

/** Decodes src[start, end) into out (which holds at least 8 * (end - start) / 5 octets); returns the octet count. */
function huffmanDecode(src: Buffer, start: number, end: number, out: Buffer): number {
  let state = 0;
  let n = 0;
  for (let i = start; i < end; i++) {
    const octet = src[i];
    let t = HUFF_TRANSITIONS[(state << 4) | (octet >>> 4)];
    if (t & HUFF_FAIL) throw new HpackError('Huffman-coded string contains EOS');
    if (t & HUFF_EMIT) out[n++] = (t >>> 8) & 0xff;
    t = HUFF_TRANSITIONS[((t & 0xff) << 4) | (octet & 0x0f)];
    if (t & HUFF_FAIL) throw new HpackError('Huffman-coded string contains EOS');
    if (t & HUFF_EMIT) out[n++] = (t >>> 8) & 0xff;
    state = t & 0xff;
  }
  if (!HUFF_ACCEPTING[state]) throw new HpackError('Huffman-coded string has invalid padding (not all ones, or 8 bits or more)');
  return n;
}

/**
 * The decoder's dynamic table: a ring of names and values, newest at head - 1. Every entry is at least 32 octets,
 * so the ring never holds more than maxTableSize / 32 entries; it starts small and doubles when full.
 */
class DynamicTable {
  names: string[] = new Array<string>(16).fill('');
  values: string[] = new Array<string>(16).fill('');
  private mask = 15;
  private head = 0;
  private count = 0;
  private size = 0;

  constructor(private limit: number) {}

  /** The ring slot of dynamic index i (1 = newest). */
  slot(i: number): number {
    if (i > this.count) throw new HpackError(`index ${i + STATIC_COUNT} is beyond the dynamic table (${this.count} entries)`);
    return (this.head - i) & this.mask;
  }

  add(name: string, value: string): void {
    const size = name.length + value.length + ENTRY_OVERHEAD;
    // RFC 7541 section 4.4: an entry larger than the table empties it and is not added.
    if (size > this.limit) {
      this.evictDownTo(0);
      return;
    }
    this.evictDownTo(this.limit - size);
    if (this.count > this.mask) this.grow();
    this.names[this.head] = name;
    this.values[this.head] = value;
    this.head = (this.head + 1) & this.mask;
    this.count++;
    this.size += size;
  }

  resize(limit: number): void {
    this.limit = limit;
    this.evictDownTo(limit);
  }

  private evictDownTo(size: number): void {
    while (this.size > size) {
      const oldest = (this.head - this.count) & this.mask;
      this.size -= this.names[oldest].length + this.values[oldest].length + ENTRY_OVERHEAD;
      // Drop the references so evicted strings can be collected.
      this.names[oldest] = '';
      this.values[oldest] = '';
      this.count--;
    }
  }

  private grow(): void {
    const capacity = 2 * (this.mask + 1);
    const names = new Array<string>(capacity).fill('');
    const values = new Array<string>(capacity).fill('');
    // Oldest first from slot 0, so that head = count afterwards.
    for (let i = 1; i <= this.count; i++) {
      const from = (this.head - i) & this.mask;
      names[this.count - i] = this.names[from];
      values[this.count - i] = this.values[from];
    }
    this.names = names;
    this.values = values;
    this.mask = capacity - 1;
    this.head = this.count;
  }
}

const NO_INPUT = Buffer.alloc(0) as Latin1Buffer;

export class HpackDecoder {
  private readonly table: DynamicTable;
  // Output of Huffman decoding, reused across strings and grown on demand.
  private scratch = Buffer.allocUnsafeSlow(256) as Latin1Buffer;
  // The block being decoded and the read position in it; the block is released when decode returns.
  private src: Latin1Buffer = NO_INPUT;
  private pos = 0;

  /**
   * @param maxTableSize the SETTINGS_HEADER_TABLE_SIZE we advertise (default 4096). The peer's table starts at
   *   this size, so the peer must have acknowledged the setting before it sends the first header block (or the
   *   value must be the protocol default, 4096).
   * @param maxHeaderListSize RFC 7540 size (sum of name + value + 32 octets) above which the block is reported
   *   tooLarge (default 65536).
   */
  constructor(
    private readonly maxTableSize = 4096,
    private readonly maxHeaderListSize = 65536,
  ) {
    if (!Number.isInteger(maxTableSize) || maxTableSize < 0 || maxTableSize > MAX_INTEGER) {
      throw new RangeError(`maxTableSize must be an integer from 0 to ${MAX_INTEGER}, got ${maxTableSize}`);
    }
    if (!(maxHeaderListSize >= 0)) throw new RangeError(`maxHeaderListSize must be >= 0, got ${maxHeaderListSize}`);
    this.table = new DynamicTable(maxTableSize);
  }

  /**
   * Decodes one complete header block (HEADERS plus CONTINUATION payloads already joined).
   * Returns a flat array [name0, value0, name1, value1, ...] in wire order, strings decoded as latin1, and
   * tooLarge=true when the list exceeded maxHeaderListSize; then the whole block has still been processed, so the
   * dynamic table stays in step with the peer, and fields is empty (a partial list could lack grpc-status or
   * similar and be mistaken for a complete one).
   * Throws HpackError for malformed input.
   */
  decode(block: Uint8Array): { fields: string[]; tooLarge: boolean } {
    this.src = (Buffer.isBuffer(block) ? block : Buffer.from(block.buffer, block.byteOffset, block.byteLength)) as Latin1Buffer;
    this.pos = 0;
    try {
      return this.decodeFields();
    } finally {
      this.src = NO_INPUT;
    }
  }

  private decodeFields(): { fields: string[]; tooLarge: boolean } {
    const src = this.src;
    const end = src.length;
    const table = this.table;
    const fields: string[] = [];
    let listSize = 0;
    let atStart = true;
    while (this.pos < end) {
      const first = src[this.pos];
      let name: string;
      let value: string;
      if (first & 0x80) {
        // Indexed field: 1xxxxxxx.
        const index = this.readInteger(0x7f);
        if (index === 0) throw new HpackError('indexed field with index 0');
        if (index <= STATIC_COUNT) {
          name = STATIC_NAMES[index];
          value = STATIC_VALUES[index];
        } else {
          const slot = table.slot(index - STATIC_COUNT);
          name = table.names[slot];
          value = table.values[slot];
        }
      } else if (first & 0x40) {
        // Literal with incremental indexing: 01xxxxxx.
        const index = this.readInteger(0x3f);
        name = index === 0 ? this.readString() : this.nameAt(index);
        value = this.readString();
        table.add(name, value);
      } else if (first & 0x20) {
        // Dynamic table size update: 001xxxxx. Allowed only before the first field (RFC 7541 section 4.2); a
        // peer lowering then raising the size sends two in a row, and there is no harm in accepting more.
        if (!atStart) throw new HpackError('dynamic table size update after a header field');
        const size = this.readInteger(0x1f);
        if (size > this.maxTableSize) {
          throw new HpackError(`dynamic table size update to ${size} exceeds SETTINGS_HEADER_TABLE_SIZE ${this.maxTableSize}`);
        }
        table.resize(size);
        continue;
      } else {
        // Literal without indexing (0000xxxx) or never indexed (0001xxxx): the same to a decoder that does not
        // re-encode.
        const index = this.readInteger(0x0f);
        name = index === 0 ? this.readString() : this.nameAt(index);
        value = this.readString();
      }
      atStart = false;
      // Once over the limit, keep decoding (the table must follow the peer's) but stop collecting.
      listSize += name.length + value.length + ENTRY_OVERHEAD;
      if (listSize <= this.maxHeaderListSize) fields.push(name, value);
    }
    return listSize > this.maxHeaderListSize ? { fields: [], tooLarge: true } : { fields, tooLarge: false };
  }

  private nameAt(index: number): string {
    if (index <= STATIC_COUNT) return STATIC_NAMES[index];
    return this.table.names[this.table.slot(index - STATIC_COUNT)];
  }

  /** RFC 7541 section 5.1, the prefix being the low bits of the octet at pos (which the caller knows exists). */
  private readInteger(prefixMask: number): number {
    const src = this.src;
    let pos = this.pos;
    let value = src[pos++] & prefixMask;
    if (value === prefixMask) {
      for (let shift = 0; ; shift += 7) {
        if (pos >= src.length) throw new HpackError('header block ends inside an integer');
        const octet = src[pos++];
        // Multiplication rather than << so that a large value cannot wrap around in 32 bits.
        value += (octet & 0x7f) * 2 ** shift;
        if (value > MAX_INTEGER) throw new HpackError('integer overflow');
        if ((octet & 0x80) === 0) break;
        // A sixth continuation octet could only add zeros (an over-long encoding) or overflow.
        if (shift === 28) throw new HpackError('integer overflow');
      }
    }
    this.pos = pos;
    return value;
  }

  /** RFC 7541 section 5.2. */
  private readString(): string {
    const src = this.src;
    if (this.pos >= src.length) throw new HpackError('header block ends where a string was expected');
    const huffman = (src[this.pos] & 0x80) !== 0;
    const length = this.readInteger(0x7f);
    const start = this.pos;
    if (length > src.length - start) throw new HpackError(`string of ${length} octets runs past the end of the header block`);
    this.pos = start + length;
    if (!huffman) return src.latin1Slice(start, start + length);
    // The shortest code is 5 bits, so n octets hold at most 8n/5 symbols.
    const maxOctets = Math.floor((length * 8) / 5);
    if (this.scratch.length < maxOctets) {
      this.scratch = Buffer.allocUnsafeSlow(Math.max(maxOctets, 2 * this.scratch.length)) as Latin1Buffer;
    }
    const n = huffmanDecode(src, start, start + length, this.scratch);
    return this.scratch.latin1Slice(0, n);
  }
}

interface StaticName {
  /** Lowest static index with this name. */
  index: number;
  /** Static index by value, for the names whose full entry is in the table. */
  byValue: Map<string, number>;
}

// Looking the name up first avoids building a name + value key for the many names not in the table.
const STATIC_BY_NAME = new Map<string, StaticName>();
for (let i = 1; i <= STATIC_COUNT; i++) {
  let entry = STATIC_BY_NAME.get(STATIC_NAMES[i]);
  if (entry === undefined) {
    entry = { index: i, byValue: new Map() };
    STATIC_BY_NAME.set(STATIC_NAMES[i], entry);
  }
  if (!entry.byValue.has(STATIC_VALUES[i])) entry.byValue.set(STATIC_VALUES[i], i);
}

// Below this length a JS loop is cheaper than the call into native code.
const SHORT_STRING = 32;

/** Raw (not Huffman-coded) string literal, RFC 7541 section 5.2; returns the position after it. */
function writeString(out: Latin1Buffer, pos: number, s: string): number {
  const length = s.length;
  if (length < 0x7f) {
    out[pos++] = length;
  } else {
    out[pos++] = 0x7f;
    let rest = length - 0x7f;
    while (rest >= 0x80) {
      out[pos++] = (rest & 0x7f) | 0x80;
      rest >>>= 7;
    }
    out[pos++] = rest;
  }
  // Both ways keep the low 8 bits of each code unit, as Buffer.from(s, 'latin1') does.
  if (length < SHORT_STRING) {
    for (let i = 0; i < length; i++) out[pos + i] = s.charCodeAt(i);
  } else {
    out.latin1Write(s, pos, length);
  }
  return pos + length;
}

export class HpackEncoder {
  /**
   * Encodes a flat [name, value, ...] list (names already lowercase). It never uses the dynamic table and never
   * Huffman-encodes, so its output is independent of any state or peer setting: a name+value pair exactly in the
   * static table → indexed field (1 byte); a name in the static table → literal without indexing with the indexed
   * name; otherwise literal without indexing, new name. Values are written as latin1 bytes (code units above 0xff
   * keep their low 8 bits, as with Buffer.from(s, 'latin1')).
   */
  encode(fields: string[]): Buffer {
    const count = fields.length;
    if (count % 2 !== 0) throw new TypeError(`HpackEncoder.encode takes name, value pairs; got ${count} strings`);
    // Upper bound: per string a length prefix of at most 6 octets (a 7-bit prefix and 5 continuation octets
    // cover any JS string) plus the octets, and one more per field for the representation's first octet.
    let bound = 0;
    for (let i = 0; i < count; i++) bound += fields[i].length + 7;
    const out = Buffer.allocUnsafe(bound) as Latin1Buffer;
    let pos = 0;
    for (let i = 0; i < count; i += 2) {
      const name = fields[i];
      const value = fields[i + 1];
      const known = STATIC_BY_NAME.get(name);
      if (known === undefined) {
        out[pos++] = 0x00;
        pos = writeString(out, pos, name);
      } else {
        const full = known.byValue.get(value);
        if (full !== undefined) {
          out[pos++] = 0x80 | full;
          continue;
        }
        // Literal without indexing, indexed name: 4-bit prefix.
        if (known.index < 0x0f) {
          out[pos++] = known.index;
        } else {
          out[pos++] = 0x0f;
          out[pos++] = known.index - 0x0f;
        }
      }
      pos = writeString(out, pos, value);
    }
    return out.subarray(0, pos);
  }
}
