import { once } from 'node:events';
import http2 from 'node:http2';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { frame, integer } from '../../services/runtime/testing/h2-client.js';
import { HpackDecoder, HpackEncoder, HpackError, HUFFMAN_CODE_LENGTHS, HUFFMAN_CODES } from './hpack.js';

type Pair = readonly [string, string];

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const flat = (pairs: readonly Pair[]) => pairs.flatMap(([n, v]) => [n, v]);
const bytes = (...parts: (number | number[] | string | Buffer)[]) =>
  Buffer.concat(parts.map((p) => (typeof p === 'number' ? Buffer.of(p) : typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p))));


/** Huffman-codes octets with the table under test, padding with ones. */
function huffman(input: Uint8Array | string): Buffer {
  const src = typeof input === 'string' ? Buffer.from(input, 'latin1') : input;
  const out: number[] = [];
  let acc = 0;
  let bits = 0;
  for (const octet of src) {
    acc = acc * 2 ** HUFFMAN_CODE_LENGTHS[octet] + HUFFMAN_CODES[octet];
    bits += HUFFMAN_CODE_LENGTHS[octet];
    while (bits >= 8) {
      bits -= 8;
      out.push(Math.floor(acc / 2 ** bits) & 0xff);
      acc %= 2 ** bits;
    }
  }
  if (bits > 0) out.push(((acc << (8 - bits)) | ((1 << (8 - bits)) - 1)) & 0xff);
  return Buffer.from(out);
}

/** String literal (RFC 7541 section 5.2), raw or Huffman-coded. */
const str = (s: string, huff = false) => {
  const body = huff ? huffman(s) : Buffer.from(s, 'latin1');
  return bytes(integer(body.length, 7, huff ? 0x80 : 0), body);
};

/** Literal with incremental indexing, new name. */
const indexedLiteral = (name: string, value: string) => bytes(0x40, str(name), str(value));

const request1Pairs: Pair[] = [
  [':method', 'GET'],
  [':scheme', 'http'],
  [':path', '/'],
  [':authority', 'www.example.com'],
];

/** The dynamic table's first n entries, newest first, read back with indexed fields (which do not change it). */
const dynamicEntries = (decoder: HpackDecoder, n: number) =>
  decoder.decode(Uint8Array.from({ length: n }, (_, i) => 0x80 | (62 + i))).fields;

describe('Huffman code table (RFC 7541 Appendix B)', () => {
  it('is the canonical code of its code lengths', () => {
    expect(HUFFMAN_CODES).toHaveLength(257);
    expect(HUFFMAN_CODE_LENGTHS).toHaveLength(257);
    // Canonical: by increasing length, then by symbol, each code is the previous one plus one, shifted left to
    // the new length; the first is all zeros.
    const order = [...Array(257).keys()].sort((a, b) => HUFFMAN_CODE_LENGTHS[a] - HUFFMAN_CODE_LENGTHS[b] || a - b);
    let code = 0;
    let length = HUFFMAN_CODE_LENGTHS[order[0]];
    for (const [k, sym] of order.entries()) {
      if (k > 0) {
        code = (code + 1) * 2 ** (HUFFMAN_CODE_LENGTHS[sym] - length);
        length = HUFFMAN_CODE_LENGTHS[sym];
      }
      expect(HUFFMAN_CODES[sym], `code of symbol ${sym}`).toBe(code);
    }
    // The code is complete (Kraft sum exactly 1) and ends with EOS, 30 ones.
    expect(HUFFMAN_CODE_LENGTHS.reduce((sum, l) => sum + 2 ** -l, 0)).toBe(1);
    expect([HUFFMAN_CODES[256], HUFFMAN_CODE_LENGTHS[256]]).toEqual([2 ** 30 - 1, 30]);
    expect(Math.min(...HUFFMAN_CODE_LENGTHS)).toBe(5);
  });

  it('matches spot checks from the RFC', () => {
    // ' ' = 010100, '0' = 00000, 'a' = 00011, 'z' = 1111011, 0 = 11111111|11000, 255 = 11111111|11111111|11111011|10
    expect([HUFFMAN_CODES[0x20], HUFFMAN_CODE_LENGTHS[0x20]]).toEqual([0x14, 6]);
    expect([HUFFMAN_CODES[0x30], HUFFMAN_CODE_LENGTHS[0x30]]).toEqual([0x0, 5]);
    expect([HUFFMAN_CODES[0x61], HUFFMAN_CODE_LENGTHS[0x61]]).toEqual([0x3, 5]);
    expect([HUFFMAN_CODES[0x7a], HUFFMAN_CODE_LENGTHS[0x7a]]).toEqual([0x7b, 7]);
    expect([HUFFMAN_CODES[0], HUFFMAN_CODE_LENGTHS[0]]).toEqual([0x1ff8, 13]);
    expect([HUFFMAN_CODES[255], HUFFMAN_CODE_LENGTHS[255]]).toEqual([0x3ffffee, 26]);
  });

  it('decodes every octet, alone and in a long string, back to itself', () => {
    const decoder = new HpackDecoder();
    for (let octet = 0; octet < 256; octet++) {
      const value = String.fromCharCode(octet);
      expect(decoder.decode(bytes(0x00, str('x'), str(value, true))).fields).toEqual(['x', value]);
    }
    let all = '';
    for (let i = 0; i < 4096; i++) all += String.fromCharCode((i * 167 + (i >> 8)) & 0xff);
    expect(decoder.decode(bytes(0x00, str(all, true), str(all, true))).fields).toEqual([all, all]);
    expect(decoder.decode(bytes(0x00, str('', true), str('', true))).fields).toEqual(['', '']);
  });
});

describe('HpackDecoder on the RFC 7541 Appendix C examples', () => {
  interface Step {
    input: string;
    fields: Pair[];
    /** Dynamic table after the step, newest first. */
    table: Pair[];
  }

  function run(decoder: HpackDecoder, steps: Step[]): void {
    for (const step of steps) {
      expect(decoder.decode(hex(step.input))).toEqual({ fields: flat(step.fields), tooLarge: false });
      expect(dynamicEntries(decoder, step.table.length)).toEqual(flat(step.table));
    }
    const size = steps[steps.length - 1].table.length;
    expect(() => decoder.decode(Buffer.of(0x80 | (62 + size)))).toThrow(HpackError);
  }

  it('C.1: reads integers with 5-bit and longer encodings', () => {
    // 1337 with a 5-bit prefix is 1f 9a 0a (C.1.2); here as a table size update, then a 10 (C.1.1).
    const decoder = new HpackDecoder();
    expect(decoder.decode(hex('3f9a0a 2a'))).toEqual({ fields: [], tooLarge: false });
    expect(integer(1337, 5, 0)).toEqual([0x1f, 0x9a, 0x0a]);
    expect(integer(42, 8, 0)).toEqual([0x2a]);
  });

  it('C.2: decodes each kind of literal field and an indexed field', () => {
    run(new HpackDecoder(), [
      {
        input: '400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572',
        fields: [['custom-key', 'custom-header']],
        table: [['custom-key', 'custom-header']],
      },
    ]);
    run(new HpackDecoder(), [{ input: '040c 2f73 616d 706c 652f 7061 7468', fields: [[':path', '/sample/path']], table: [] }]);
    run(new HpackDecoder(), [{ input: '1008 7061 7373 776f 7264 0673 6563 7265 74', fields: [['password', 'secret']], table: [] }]);
    run(new HpackDecoder(), [{ input: '82', fields: [[':method', 'GET']], table: [] }]);
  });

  const request1: Pair[] = [
    [':method', 'GET'],
    [':scheme', 'http'],
    [':path', '/'],
    [':authority', 'www.example.com'],
  ];
  const request2: Pair[] = [...request1, ['cache-control', 'no-cache']];
  const request3: Pair[] = [
    [':method', 'GET'],
    [':scheme', 'https'],
    [':path', '/index.html'],
    [':authority', 'www.example.com'],
    ['custom-key', 'custom-value'],
  ];
  const requestTables: Pair[][] = [
    [[':authority', 'www.example.com']],
    [
      ['cache-control', 'no-cache'],
      [':authority', 'www.example.com'],
    ],
    [
      ['custom-key', 'custom-value'],
      ['cache-control', 'no-cache'],
      [':authority', 'www.example.com'],
    ],
  ];

  it('C.3: decodes three requests without Huffman coding on one connection', () => {
    run(new HpackDecoder(), [
      { input: '8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d', fields: request1, table: requestTables[0] },
      { input: '8286 84be 5808 6e6f 2d63 6163 6865', fields: request2, table: requestTables[1] },
      { input: '8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65', fields: request3, table: requestTables[2] },
    ]);
  });

  it('C.4: decodes three requests with Huffman coding on one connection', () => {
    run(new HpackDecoder(), [
      { input: '8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff', fields: request1, table: requestTables[0] },
      { input: '8286 84be 5886 a8eb 1064 9cbf', fields: request2, table: requestTables[1] },
      { input: '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf', fields: request3, table: requestTables[2] },
    ]);
  });

  const date1 = 'Mon, 21 Oct 2013 20:13:21 GMT';
  const date2 = 'Mon, 21 Oct 2013 20:13:22 GMT';
  const cookie = 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1';
  const response1: Pair[] = [
    [':status', '302'],
    ['cache-control', 'private'],
    ['date', date1],
    ['location', 'https://www.example.com'],
  ];
  const response2: Pair[] = [[':status', '307'], ...response1.slice(1)];
  const response3: Pair[] = [
    [':status', '200'],
    ['cache-control', 'private'],
    ['date', date2],
    ['location', 'https://www.example.com'],
    ['content-encoding', 'gzip'],
    ['set-cookie', cookie],
  ];
  const responseTables: Pair[][] = [
    [['location', 'https://www.example.com'], ['date', date1], ['cache-control', 'private'], [':status', '302']],
    [[':status', '307'], ['location', 'https://www.example.com'], ['date', date1], ['cache-control', 'private']],
    [['set-cookie', cookie], ['content-encoding', 'gzip'], ['date', date2]],
  ];

  it('C.5: decodes three responses without Huffman coding, evicting from a 256-octet table', () => {
    run(new HpackDecoder(256), [
      {
        input:
          '4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d' +
          '546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d',
        fields: response1,
        table: responseTables[0],
      },
      { input: '4803 3330 37c1 c0bf', fields: response2, table: responseTables[1] },
      {
        input:
          '88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 7738 666f' +
          '6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b' +
          '2076 6572 7369 6f6e 3d31',
        fields: response3,
        table: responseTables[2],
      },
    ]);
  });

  it('C.6: decodes three responses with Huffman coding, evicting from a 256-octet table', () => {
    run(new HpackDecoder(256), [
      {
        input:
          '4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7' +
          '8f0b 97c8 e9ae 82ae 43d3',
        fields: response1,
        table: responseTables[0],
      },
      { input: '4883 640e ffc1 c0bf', fields: response2, table: responseTables[1] },
      {
        input:
          '88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335' +
          'dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07',
        fields: response3,
        table: responseTables[2],
      },
    ]);
  });
});

describe('HpackDecoder dynamic table', () => {
  it('evicts the oldest entries to make room, and indexes the rest newest first', () => {
    // Each entry is 1 + 1 + 32 = 34 octets; a 100-octet table holds two.
    const decoder = new HpackDecoder(100);
    decoder.decode(bytes(indexedLiteral('a', '1'), indexedLiteral('b', '2'), indexedLiteral('c', '3')));
    expect(dynamicEntries(decoder, 2)).toEqual(['c', '3', 'b', '2']);
    expect(() => decoder.decode(Buffer.of(0x80 | 64))).toThrow(HpackError);
  });

  it('refers to a dynamic entry by name for a new literal, even when adding it evicts that entry', () => {
    const decoder = new HpackDecoder(40);
    decoder.decode(indexedLiteral('name', 'v1'));
    // 01 111110 = incremental indexing with the name of index 62, the only dynamic entry, which is evicted on insertion.
    expect(decoder.decode(bytes(0x7e, str('v2'))).fields).toEqual(['name', 'v2']);
    expect(dynamicEntries(decoder, 1)).toEqual(['name', 'v2']);
  });

  it('empties the table on a size update to 0 and can grow again up to the advertised size', () => {
    const decoder = new HpackDecoder(4096);
    decoder.decode(bytes(indexedLiteral('a', '1'), indexedLiteral('b', '2')));
    expect(decoder.decode(bytes(0x20, 0x82)).fields).toEqual([':method', 'GET']);
    expect(() => decoder.decode(Buffer.of(0x80 | 62))).toThrow(HpackError);
    const decoder2 = new HpackDecoder(4096);
    decoder2.decode(bytes(indexedLiteral('a', '1')));
    // Two updates in a row (lower, then raise) are how a peer signals a shrink and a new size.
    expect(decoder2.decode(bytes(0x20, integer(4096, 5, 0x20), indexedLiteral('b', '2'))).fields).toEqual(['b', '2']);
    expect(dynamicEntries(decoder2, 1)).toEqual(['b', '2']);
    expect(() => decoder2.decode(Buffer.of(0x80 | 63))).toThrow(HpackError);
  });

  it('shrinking the table with a size update evicts down to the new size', () => {
    const decoder = new HpackDecoder();
    decoder.decode(bytes(indexedLiteral('a', '1'), indexedLiteral('b', '2'), indexedLiteral('c', '3')));
    decoder.decode(bytes(integer(70, 5, 0x20)));
    expect(dynamicEntries(decoder, 2)).toEqual(['c', '3', 'b', '2']);
    expect(() => decoder.decode(Buffer.of(0x80 | 64))).toThrow(HpackError);
  });

  it('an entry larger than the table empties it and is not added, but is still returned', () => {
    const decoder = new HpackDecoder(100);
    decoder.decode(indexedLiteral('a', '1'));
    const big = 'x'.repeat(70);
    expect(decoder.decode(indexedLiteral('big', big)).fields).toEqual(['big', big]);
    expect(() => decoder.decode(Buffer.of(0x80 | 62))).toThrow(HpackError);
    // Exactly the table size fits.
    const exact = 'y'.repeat(100 - 32 - 3);
    decoder.decode(indexedLiteral('big', exact));
    expect(dynamicEntries(decoder, 1)).toEqual(['big', exact]);
  });

  it('keeps working past many insertions and evictions (the ring wraps and grows)', () => {
    const decoder = new HpackDecoder(4096);
    const added: Pair[] = [];
    for (let i = 0; i < 1000; i++) {
      const pair: Pair = [`n${i}`, 'v'.repeat(i % 50)];
      added.push(pair);
      decoder.decode(indexedLiteral(...pair));
      if (i % 97 === 0) decoder.decode(bytes(integer(i % 2 ? 4096 : 1000, 5, 0x20)));
    }
    // The last update (after entry 970) set the limit to 1000 octets; eviction keeps the longest run of newest
    // entries that fits.
    let size = 0;
    const expected: Pair[] = [];
    for (let i = added.length - 1; i >= 0; i--) {
      const s = added[i][0].length + added[i][1].length + 32;
      if (size + s > 1000) break;
      size += s;
      expected.push(added[i]);
    }
    expect(dynamicEntries(decoder, expected.length)).toEqual(flat(expected));
    expect(() => decoder.decode(Buffer.of(0x80 | (62 + expected.length)))).toThrow(HpackError);
  });

  it('accepts a Uint8Array view at an offset into a larger buffer', () => {
    const backing = new Uint8Array(64).fill(0xff);
    const block = hex('828684418cf1e3c2e5f23a6ba0ab90f4ff');
    backing.set(block, 10);
    const view = new Uint8Array(backing.buffer, 10, block.length);
    expect(new HpackDecoder().decode(view).fields).toEqual(flat(request1Pairs));
  });
});

describe('HpackDecoder header list size', () => {
  it('reports tooLarge, drops the fields, and still adds the entries to the dynamic table', () => {
    const decoder = new HpackDecoder(4096, 200);
    const big = 'b'.repeat(150);
    // 'x-big' + 150 + 32 = 187, with ':method: GET' (42) = 229 > 200.
    const block = bytes(0x82, indexedLiteral('x-big', big), indexedLiteral('x-after', 'a'));
    expect(decoder.decode(block)).toEqual({ fields: [], tooLarge: true });
    // The next block refers to both entries added by the oversized one.
    expect(decoder.decode(Buffer.of(0x80 | 63))).toEqual({ fields: ['x-big', big], tooLarge: false });
    expect(decoder.decode(Buffer.of(0x80 | 62))).toEqual({ fields: ['x-after', 'a'], tooLarge: false });
  });

  it('counts name + value + 32 per field and allows exactly the limit', () => {
    const decoder = new HpackDecoder(4096, 42 + 43);
    expect(decoder.decode(Buffer.of(0x82, 0x83))).toEqual({ fields: [':method', 'GET', ':method', 'POST'], tooLarge: false });
    expect(decoder.decode(Buffer.of(0x82, 0x83, 0x82)).tooLarge).toBe(true);
  });

  it('checks malformed input even after the limit is exceeded', () => {
    const decoder = new HpackDecoder(4096, 10);
    expect(() => decoder.decode(Buffer.of(0x82, 0x80))).toThrow(HpackError);
  });
});

describe('HpackDecoder rejects malformed blocks with HpackError', () => {
  const cases: [string, Buffer, number?][] = [
    ['an indexed field with index 0', Buffer.of(0x80)],
    ['an index beyond the static table when the dynamic table is empty', Buffer.of(0x80 | 62)],
    ['an index far beyond the table', bytes(integer(100000, 7, 0x80))],
    ['a literal name index beyond the table', bytes(0x40 | 62, str('v'))],
    ['a never-indexed literal with a name index beyond the table', bytes(integer(62, 4, 0x10), str('v'))],
    ['an integer cut off by the end of the block', Buffer.of(0xff)],
    ['an integer whose continuation is cut off', Buffer.of(0xff, 0x80, 0x80)],
    ['an integer above 2^31', Buffer.of(0xff, 0xff, 0xff, 0xff, 0xff, 0x0f)],
    ['an over-long integer padded with zero continuation octets', Buffer.of(0x3f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00)],
    ['a string length past the end of the block', bytes(0x40, 0x05, 'ab')],
    ['a string length past the end, Huffman-coded', bytes(0x00, str('a'), 0x85, 0xff)],
    ['a huge string length', bytes(0x00, integer(2 ** 31 - 1, 7, 0), 'a')],
    ['a literal with the name but no value', bytes(0x40, str('name'))],
    ['a literal with an indexed name but no value', Buffer.of(0x04)],
    ['a Huffman string containing EOS', bytes(0x00, str('a'), 0x84, 0xff, 0xff, 0xff, 0xff)],
    ['a Huffman string containing EOS after a symbol', bytes(0x00, str('a'), 0x85, 0x1f, 0xff, 0xff, 0xff, 0xff)],
    ['Huffman padding of 8 bits', bytes(0x00, str('a'), 0x81, 0xff)],
    ['Huffman padding of 8 bits or more after a symbol', bytes(0x00, str('a'), 0x82, 0x1f, 0xff)],
    ['Huffman padding that is not all ones', bytes(0x00, str('a'), 0x81, 0x18)],
    ['Huffman padding with a zero at its end', bytes(0x00, str('a'), 0x81, 0x1e)],
    ['a table size update above the advertised maximum', bytes(integer(4097, 5, 0x20))],
    ['a table size update above a smaller advertised maximum', bytes(integer(257, 5, 0x20)), 256],
    ['a table size update after a field', Buffer.of(0x82, 0x20)],
    ['a table size update after a literal', bytes(0x00, str('a'), str('b'), 0x3f, 0x01)],
  ];

  it.each(cases)('%s', (_name, block, maxTableSize) => {
    const decoder = new HpackDecoder(maxTableSize ?? 4096);
    expect(() => decoder.decode(block)).toThrow(HpackError);
  });

  it('accepts the limits just inside each rule', () => {
    expect(new HpackDecoder().decode(bytes(integer(4096, 5, 0x20))).fields).toEqual([]);
    expect(new HpackDecoder().decode(bytes(0x00, str('a'), 0x81, 0x1f)).fields).toEqual(['a', 'a']); // 3 ones of padding
    expect(new HpackDecoder().decode(bytes(0x00, str('a'), 0x80)).fields).toEqual(['a', '']); // empty Huffman string
    // '0' is 5 zero bits, so 00000111 is '0' plus 3 ones of padding; 0xfe 0x3f is '!' (10 bits) + 6 ones.
    expect(new HpackDecoder().decode(bytes(0x00, str('a'), 0x81, 0x07)).fields).toEqual(['a', '0']);
    expect(new HpackDecoder().decode(bytes(0x00, str('a'), 0x82, 0xfe, 0x3f)).fields).toEqual(['a', '!']);
    const long = bytes(0x00, str('a'), integer(2 ** 16, 7, 0), 'x'.repeat(2 ** 16));
    expect(new HpackDecoder(4096, 1 << 20).decode(long).fields[1]).toHaveLength(2 ** 16);
  });

  it('throws only HpackError, never hangs, on truncated, mutated and random blocks', () => {
    // Deterministic PRNG (mulberry32) so a failure is reproducible.
    let seed = 0x5eed;
    const random = () => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
    };
    const valid = [
      hex('828684418cf1e3c2e5f23a6ba0ab90f4ff'),
      hex('8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf'),
      hex('4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7'),
      bytes(0x20, indexedLiteral('x', 'y'), 0x10, str('secret', true), str('value', true), 0xbe),
    ];
    const blocks: Buffer[] = [];
    for (const block of valid) {
      for (let cut = 0; cut < block.length; cut++) blocks.push(block.subarray(0, cut));
      for (let i = 0; i < 300; i++) {
        const mutated = Buffer.from(block);
        mutated[Math.floor(random() * mutated.length)] ^= 1 << Math.floor(random() * 8);
        if (random() < 0.5) mutated[Math.floor(random() * mutated.length)] = Math.floor(random() * 256);
        blocks.push(mutated);
      }
    }
    for (let i = 0; i < 2000; i++) {
      blocks.push(Buffer.from(Array.from({ length: 1 + Math.floor(random() * 40) }, () => Math.floor(random() * 256))));
    }
    let rejected = 0;
    for (const block of blocks) {
      try {
        const { fields } = new HpackDecoder(4096, 1 << 20).decode(block);
        expect(fields.length % 2).toBe(0);
      } catch (err) {
        if (!(err instanceof HpackError)) throw new Error(`${block.toString('hex')} threw ${String(err)}`);
        rejected++;
      }
    }
    expect(rejected).toBeGreaterThan(blocks.length / 4);
  });

  it('names its errors HpackError', () => {
    try {
      new HpackDecoder().decode(Buffer.of(0x80));
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(HpackError);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).name).toBe('HpackError');
    }
  });
});

describe('HpackEncoder', () => {
  const encoder = new HpackEncoder();

  it('encodes a name and value found together in the static table as a 1-octet indexed field', () => {
    const fields = [':method', 'GET', ':method', 'POST', ':status', '200', 'accept-charset', '', 'accept-encoding', 'gzip, deflate'];
    expect(encoder.encode(fields)).toEqual(Buffer.of(0x82, 0x83, 0x88, 0x8f, 0x90));
  });

  it('encodes a static name with another value as a literal without indexing with the indexed name (C.2.2)', () => {
    expect(encoder.encode([':path', '/sample/path'])).toEqual(hex('040c 2f73 616d 706c 652f 7061 7468'));
    // content-type is static index 31: 0000 1111, then 31 - 15.
    expect(encoder.encode(['content-type', 'application/grpc'])).toEqual(bytes(0x0f, 16, 16, 'application/grpc'));
    expect(encoder.encode(['www-authenticate', 'x'])).toEqual(bytes(0x0f, 61 - 15, 1, 'x'));
  });

  it('encodes other names as literals without indexing with a new name', () => {
    expect(encoder.encode(['custom-key', 'custom-header'])).toEqual(hex('000a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572'));
    expect(encoder.encode(['x-empty', ''])).toEqual(bytes(0x00, 7, 'x-empty', 0));
  });

  it('writes values as latin1 octets, short and long', () => {
    expect(encoder.encode(['x', 'é\u00ff\u0080'])).toEqual(bytes(0x00, 1, 'x', 3, 0xe9, 0xff, 0x80));
    const long = Array.from({ length: 1337 }, (_, i) => String.fromCharCode(0x80 + (i % 128))).join('');
    // 1337 with a 7-bit prefix: 7f, then 1210 = 0x3a | 0x80, 9.
    expect(encoder.encode(['x', long])).toEqual(bytes(0x00, 1, 'x', 0x7f, 0xba, 0x09, Buffer.from(long, 'latin1')));
  });

  it('writes string lengths at the 127 boundary', () => {
    for (const n of [126, 127, 128, 254, 255, 16383, 16384 + 127]) {
      const value = 'v'.repeat(n);
      expect(encoder.encode(['x', value])).toEqual(bytes(0x00, 1, 'x', integer(n, 7, 0), value));
    }
  });

  it('encodes an empty list as an empty block, and rejects an odd-length list', () => {
    expect(encoder.encode([])).toHaveLength(0);
    expect(() => encoder.encode(['x'])).toThrow(TypeError);
  });

  it('round-trips through the decoder without touching its dynamic table', () => {
    const fields: string[] = [];
    for (let i = 0; i < 200; i++) {
      const value = String.fromCharCode(...Array.from({ length: i }, (_, j) => 0x20 + ((i * j) % 224)));
      fields.push(i % 3 ? `x-h${i}` : 'content-type', value);
    }
    fields.push(':status', '200', 'cookie', '', 'x', '');
    const decoder = new HpackDecoder(4096, 1 << 20);
    expect(decoder.decode(encoder.encode(fields))).toEqual({ fields, tooLarge: false });
    expect(() => decoder.decode(Buffer.of(0x80 | 62))).toThrow(HpackError);
  });
});

// Against Node's HTTP/2 implementation (nghttp2's HPACK): a node:http2 server and a client speaking HTTP/2 by hand
// over a socket, so the header blocks are exactly what the peer's encoder produced.

const FRAME_DATA = 0x0;
const FRAME_HEADERS = 0x1;
const FRAME_RST_STREAM = 0x3;
const FRAME_SETTINGS = 0x4;
const FRAME_PING = 0x6;
const FRAME_GOAWAY = 0x7;
const FRAME_CONTINUATION = 0x9;
const FLAG_END_STREAM = 0x1;
const FLAG_ACK = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;
const SETTINGS_HEADER_TABLE_SIZE = 0x1;


interface ReceivedBlock {
  streamId: number;
  block: Buffer;
  /** HEADERS plus CONTINUATION frames the block came in. */
  frames: number;
  endStream: boolean;
}

class RawH2Client {
  private input = Buffer.alloc(0);
  private readonly blocks: ReceivedBlock[] = [];
  private partial: { streamId: number; parts: Buffer[]; endStream: boolean } | undefined;
  private wake: (() => void) | undefined;
  private failure: Error | undefined;
  private nextStreamId = 1;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      try {
        this.onData(chunk);
      } catch (err) {
        this.fail(err as Error);
      }
    });
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('connection closed')));
  }

  static async connect(port: number, settings: Buffer, sockets: net.Socket[]): Promise<RawH2Client> {
    const socket = net.connect({ host: '127.0.0.1', port });
    sockets.push(socket);
    await once(socket, 'connect');
    const client = new RawH2Client(socket);
    socket.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'), frame(FRAME_SETTINGS, 0, 0, settings)]));
    return client;
  }

  /** Sends a request with no body; returns its stream id. */
  request(block: Buffer): number {
    const streamId = this.nextStreamId;
    this.nextStreamId += 2;
    this.socket.write(frame(FRAME_HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, streamId, block));
    return streamId;
  }

  /** The next complete header block, in the order the connection delivered them. */
  async nextBlock(): Promise<ReceivedBlock> {
    for (;;) {
      const block = this.blocks.shift();
      if (block) return block;
      if (this.failure) throw this.failure;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.wake?.();
  }

  private onData(chunk: Buffer): void {
    this.input = Buffer.concat([this.input, chunk]);
    while (this.input.length >= 9) {
      const length = this.input.readUIntBE(0, 3);
      if (this.input.length < 9 + length) break;
      const type = this.input[3];
      const flags = this.input[4];
      const streamId = this.input.readUInt32BE(5) & 0x7fffffff;
      const payload = this.input.subarray(9, 9 + length);
      this.input = this.input.subarray(9 + length);
      this.onFrame(type, flags, streamId, payload);
    }
  }

  private onFrame(type: number, flags: number, streamId: number, payload: Buffer): void {
    if (this.partial && type !== FRAME_CONTINUATION) throw new Error(`frame type ${type} inside a header block`);
    switch (type) {
      case FRAME_SETTINGS:
        if (!(flags & FLAG_ACK)) this.socket.write(frame(FRAME_SETTINGS, FLAG_ACK, 0));
        break;
      case FRAME_PING:
        if (!(flags & FLAG_ACK)) this.socket.write(frame(FRAME_PING, FLAG_ACK, 0, payload));
        break;
      case FRAME_HEADERS: {
        let fragment = payload;
        if (flags & FLAG_PADDED) fragment = fragment.subarray(1, fragment.length - fragment[0]);
        if (flags & FLAG_PRIORITY) fragment = fragment.subarray(5);
        this.partial = { streamId, parts: [fragment], endStream: (flags & FLAG_END_STREAM) !== 0 };
        if (flags & FLAG_END_HEADERS) this.endBlock();
        break;
      }
      case FRAME_CONTINUATION:
        if (!this.partial || this.partial.streamId !== streamId) throw new Error('unexpected CONTINUATION');
        this.partial.parts.push(payload);
        if (flags & FLAG_END_HEADERS) this.endBlock();
        break;
      case FRAME_RST_STREAM:
        throw new Error(`stream ${streamId} reset with code ${payload.readUInt32BE(0)}`);
      case FRAME_GOAWAY:
        if (payload.readUInt32BE(4) !== 0) throw new Error(`GOAWAY with code ${payload.readUInt32BE(4)}: ${payload.subarray(8).toString()}`);
        break;
      case FRAME_DATA:
      default:
        break;
    }
  }

  private endBlock(): void {
    const { streamId, parts, endStream } = this.partial!;
    this.partial = undefined;
    this.blocks.push({ streamId, block: Buffer.concat(parts), frames: parts.length, endStream });
    this.wake?.();
  }
}

interface Plan {
  headers: http2.OutgoingHttpHeaders;
  trailers?: http2.OutgoingHttpHeaders;
}

/** The header list Node should put on the wire for an OutgoingHttpHeaders object, as [name, values in order] sorted by name. */
function expectedList(headers: http2.OutgoingHttpHeaders): [string, string[]][] {
  const byName = new Map<string, string[]>();
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    byName.set(name, (Array.isArray(value) ? value : [value]).map(String));
  }
  return [...byName].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** A decoded flat list in the same shape: field order across names is Node's business, values of one name keep theirs. */
function decodedList(fields: string[]): [string, string[]][] {
  const byName = new Map<string, string[]>();
  for (let i = 0; i < fields.length; i += 2) byName.set(fields[i], [...(byName.get(fields[i]) ?? []), fields[i + 1]]);
  return [...byName].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

// Every octet Node sends in a value: tab and 0x20-0xff, inside the value (RFC 9113 forbids leading and trailing
// whitespace).
const ALL_OCTETS = 'a\t' + Array.from({ length: 0xff - 0x20 + 1 }, (_, i) => String.fromCharCode(0x20 + i)).join('') + 'z';
// On receipt, Node (nghttp2) silently drops a field whose value holds DEL (0x7f), so requests leave it out.
const ALL_OCTETS_BUT_DEL = ALL_OCTETS.replace('\x7f', '');
const DATE = 'Tue, 01 Jul 2025 12:00:00 GMT';

describe('against Node http2 (nghttp2 HPACK)', () => {
  let server: http2.Http2Server | undefined;
  const sessions = new Set<http2.ServerHttp2Session>();
  const sockets: net.Socket[] = [];
  /** Raw headers each request arrived with, in order. */
  let received: string[][] = [];
  let plans: Plan[] = [];

  afterEach(async () => {
    for (const socket of sockets.splice(0)) socket.destroy();
    for (const session of sessions) session.destroy();
    sessions.clear();
    const s = server;
    server = undefined;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
    received = [];
    plans = [];
  });

  async function startServer(): Promise<number> {
    const s = http2.createServer();
    server = s;
    s.on('session', (session) => {
      sessions.add(session);
      session.on('close', () => sessions.delete(session));
    });
    s.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
      received.push(rawHeaders);
      const plan = plans[Number(String(headers[':path']).slice(1))];
      if (!plan) {
        stream.respond({ ':status': 404 });
        stream.end();
        return;
      }
      stream.respond(plan.headers, { waitForTrailers: plan.trailers !== undefined });
      if (plan.trailers) stream.on('wantTrailers', () => stream.sendTrailers(plan.trailers!));
      stream.end('x');
    });
    s.listen(0, '127.0.0.1');
    await once(s, 'listening');
    return (s.address() as net.AddressInfo).port;
  }

  const encoder = new HpackEncoder();
  const requestFor = (i: number) => encoder.encode([':method', 'GET', ':scheme', 'http', ':path', `/${i}`, ':authority', '127.0.0.1']);

  /** Requests plan i and decodes its response headers (and trailers, if planned), checking them against the plan. */
  async function exchange(client: RawH2Client, decoder: HpackDecoder, i: number): Promise<ReceivedBlock> {
    const streamId = client.request(requestFor(i));
    const headers = await client.nextBlock();
    expect(headers.streamId).toBe(streamId);
    const decoded = decoder.decode(headers.block);
    expect(decoded.tooLarge).toBe(false);
    expect(decoded.fields[0]).toBe(':status');
    expect(decodedList(decoded.fields)).toEqual(expectedList(plans[i].headers));
    if (plans[i].trailers) {
      const trailers = await client.nextBlock();
      expect([trailers.streamId, trailers.endStream]).toEqual([streamId, true]);
      const decodedTrailers = decoder.decode(trailers.block);
      expect(decodedList(decodedTrailers.fields)).toEqual(expectedList(plans[i].trailers!));
    }
    return headers;
  }

  function responsePlans(): Plan[] {
    const out: Plan[] = [];
    // 0: every octet, a set-cookie-like repeated name, a never-indexed field, empty values, static-table names.
    out.push({
      headers: {
        ':status': 200,
        date: DATE,
        'content-type': 'application/grpc',
        'x-all-octets': ALL_OCTETS,
        'x-high-octets': Array.from({ length: 128 }, (_, i) => String.fromCharCode(0x80 + i)).join(''),
        'set-cookie': ['a=1; Path=/', 'b=2', `c=${ALL_OCTETS}`],
        'x-secret': 'token-1234',
        'x-empty': '',
        [http2.sensitiveHeaders]: ['x-secret'],
      },
      trailers: { 'grpc-status': '0', 'grpc-message': ALL_OCTETS, 'x-trailer-empty': '' },
    });
    // 1: long values, so that the blocks need CONTINUATION frames (Node sends frames of at most 16 KiB).
    let text = '';
    for (let i = 0; text.length < 20000; i++) text += `word${i} `;
    text += 'end';
    const binary = Array.from({ length: 17000 }, (_, i) => String.fromCharCode(0x80 + ((i * 31) % 128))).join('');
    out.push({
      headers: { ':status': 200, date: DATE, 'x-long-text': text, 'x-long-binary': binary },
      trailers: { 'grpc-status': '0', 'grpc-status-details-bin': binary.slice(0, 16500) },
    });
    // 2-7: many distinct fields per response (more than the default table holds over two responses), plus
    // fields repeated in every response.
    for (let r = 0; r < 6; r++) {
      const headers: http2.OutgoingHttpHeaders = {
        ':status': r % 2 ? 200 : 404,
        date: DATE,
        'content-type': 'application/grpc',
        'x-repeated': 'the same value in every response',
        'set-cookie': [`session=${r}`, 'common=1'],
      };
      for (let j = 0; j < 40; j++) headers[`x-r${r}-h${j}`] = `value ${r}.${j} ${'~'.repeat(j % 7)}`;
      out.push({ headers, trailers: { 'grpc-status': String(r), 'x-repeated': 'the same value in every response' } });
    }
    return out;
  }

  it.each([
    ['the default 4096-octet table', undefined],
    ['a 256-octet table (size update in the first block)', 256],
    ['a 0-octet table (no indexing)', 0],
  ])('decodes what Node sends with %s', async (_name, tableSize) => {
    plans = responsePlans();
    const port = await startServer();
    const settings = Buffer.alloc(tableSize === undefined ? 0 : 6);
    if (tableSize !== undefined) {
      settings.writeUInt16BE(SETTINGS_HEADER_TABLE_SIZE, 0);
      settings.writeUInt32BE(tableSize, 2);
    }
    const client = await RawH2Client.connect(port, settings, sockets);
    const decoder = new HpackDecoder(tableSize ?? 4096);

    const first: ReceivedBlock[] = [];
    for (let i = 0; i < plans.length; i++) first.push(await exchange(client, decoder, i));
    // Node sends frames of at most 16 KiB unless told otherwise.
    expect(first[1].block.length).toBeGreaterThan(16384);
    expect(first[1].frames).toBeGreaterThan(1);
    // The 20000-octet text went Huffman-coded (the two long values alone are 37000 octets raw).
    expect(first[1].block.length).toBeLessThan(35000);
    // The same responses again, in another order: with a table, Node now refers to what is still in it.
    for (const i of [7, 7, 6, 2, 0, 1, 5]) await exchange(client, decoder, i);
    if (tableSize === undefined) {
      // Sent just before: its fields are all still in the dynamic table, so most are now 1-octet indices.
      const again = await exchange(client, decoder, 5);
      expect(again.block.length).toBeLessThan(first[5].block.length / 3);
    }
  });

  it('reports tooLarge for a response over the limit and stays in step for the next one', async () => {
    const fields: http2.OutgoingHttpHeaders = { ':status': 200, date: DATE };
    for (let j = 0; j < 10; j++) fields[`x-big-${j}`] = `${j}`.repeat(150);
    const small: http2.OutgoingHttpHeaders = { ':status': 200, date: DATE, 'x-big-3': '3'.repeat(150), 'x-big-9': '9'.repeat(150) };
    plans = [{ headers: fields }, { headers: small }];
    const port = await startServer();
    const client = await RawH2Client.connect(port, Buffer.alloc(0), sockets);
    const decoder = new HpackDecoder(4096, 1000);
    client.request(requestFor(0));
    expect(decoder.decode((await client.nextBlock()).block)).toEqual({ fields: [], tooLarge: true });
    client.request(requestFor(1));
    const next = await client.nextBlock();
    // Node indexed the fields of the first response, so the second refers to them instead of sending 300 octets.
    expect(next.block.length).toBeLessThan(100);
    const decoded = decoder.decode(next.block);
    expect(decoded.tooLarge).toBe(false);
    expect(decodedList(decoded.fields)).toEqual(expectedList(small));
  });

  it('Node receives exactly the header list HpackEncoder encoded', async () => {
    plans = [{ headers: { ':status': 200 } }];
    const port = await startServer();
    const client = await RawH2Client.connect(port, Buffer.alloc(0), sockets);
    const request = [
      ':method', 'POST',
      ':scheme', 'http',
      ':path', '/0',
      ':authority', 'backend.internal:50051',
      'content-type', 'application/grpc',
      'te', 'trailers',
      'user-agent', 'maas-gateway/0.1',
      'accept-encoding', 'gzip, deflate',
      'accept-charset', '',
      'grpc-timeout', '5S',
      'x-empty', '',
      'x-high-octets', Array.from({ length: 128 }, (_, i) => String.fromCharCode(0x80 + i)).join(''),
      'x-all-octets', ALL_OCTETS_BUT_DEL,
      'x-long', 'l'.repeat(5000),
      'x-repeated', 'one',
      'x-repeated', 'two',
    ];
    client.request(encoder.encode(request));
    const response = await client.nextBlock();
    expect(new HpackDecoder().decode(response.block).fields).toEqual([':status', '200', 'date', expect.any(String)]);
    expect(received).toHaveLength(1);
    expect(received[0]).toEqual(request);
  });
});
