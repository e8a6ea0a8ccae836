// Random protobuf-shaped bytes from a seeded PRNG: fields with small numbers (so they land on real fields)
// and every wire type, valid and broken encodings (lengths past the end, varints that never end, wrong wire
// types for a field, nested garbage), and sometimes plain random bytes.
import type { Prng } from './prng.js';

function varint(n: bigint): number[] {
  const out: number[] = [];
  let v = BigInt.asUintN(64, n);
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return out;
}

const INTERESTING_VARINTS = [0n, 1n, 127n, 128n, 255n, 65535n, 2n ** 31n - 1n, 2n ** 31n, 2n ** 32n - 1n, 2n ** 53n + 1n, 2n ** 63n, -1n, -(2n ** 31n)];
const INTERESTING_FLOATS = [NaN, Infinity, -Infinity, -0, 1e38, -1e38, 1e-45, 0.5, -1];

function field(r: Prng, depth: number): number[] {
  const number = r.next() < 0.9 ? 1 + r.int(12) : 1 + r.int(536_870_911);
  const wire = r.pick([0, 1, 2, 2, 2, 5, 3, 4, 6, 7]);
  const out = varint(BigInt(number) * 8n + BigInt(wire));
  switch (wire) {
    case 0:
      if (r.next() < 0.05) return [...out, 0xff, 0xff, 0xff]; // a varint that never ends
      return [...out, ...varint(r.next() < 0.6 ? r.pick(INTERESTING_VARINTS) : BigInt(r.int(2 ** 31)))];
    case 1: {
      const b = Buffer.alloc(8);
      b.writeDoubleLE(r.next() < 0.6 ? r.pick(INTERESTING_FLOATS) : r.next() * 1e6);
      return [...out, ...b];
    }
    case 5: {
      const b = Buffer.alloc(4);
      b.writeFloatLE(r.next() < 0.6 ? r.pick(INTERESTING_FLOATS) : r.next() * 1e3);
      return [...out, ...b];
    }
    case 2: {
      const kind = r.int(6);
      let body: number[];
      if (kind === 0 && depth < 3) body = message(r, depth + 1);
      else if (kind === 1) body = [...Buffer.from(r.pick(['../../../etc/passwd', 'glove-100d', 'gpt2-mini', 'default', '', 'a'.repeat(300), '\u0000', 'ppocr-v4', '🙂'.repeat(20)]))];
      else if (kind === 2) body = [0xff, 0xfe, 0xc0, 0x80, 0xed, 0xa0, 0x80]; // invalid UTF-8
      else if (kind === 3) return [...out, ...varint(BigInt(r.pick([2 ** 31 - 1, 2 ** 32 + 5, 1000]))), 1, 2, 3]; // length past the end
      else body = [...r.bytes(r.int(64))];
      return [...out, ...varint(BigInt(body.length)), ...body];
    }
    default:
      return out; // group markers and reserved wire types
  }
}

function message(r: Prng, depth: number): number[] {
  const n = r.int(6);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(...field(r, depth));
  return out;
}

/** One random request message. */
export function randomMessage(r: Prng): Buffer {
  if (r.next() < 0.1) return r.bytes(r.int(200));
  const bytes = message(r, 0);
  if (r.next() < 0.1 && bytes.length > 1) bytes.length = r.int(bytes.length); // truncated
  return Buffer.from(bytes);
}
