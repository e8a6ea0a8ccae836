import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { EmbedRequest, EmbedStreamRequest } from '../../gen/maas/embeddings/v1/embeddings.js';
import { ResolveModelRequest } from '../../gen/maas/registry/v1/registry.js';
import { formatGrpcTimeout, MessageScanner, parseGrpcTimeout, plainMessage, readModelRef, encodeGrpcMessage } from './wire.js';

const bytes = (u: Uint8Array) => Buffer.from(u);
const frame = (body: Buffer, compressed = false) => {
  const prefix = Buffer.alloc(5);
  prefix[0] = compressed ? 1 : 0;
  prefix.writeUInt32BE(body.length, 1);
  return Buffer.concat([prefix, body]);
};

describe('readModelRef', () => {
  it('reads name and alias from a request without decoding the rest', () => {
    const msg = bytes(EmbedRequest.encode({ model: { name: 'glove-100d', alias: 'prod' }, inputs: ['a', 'b'], truncate: true, truncationDirection: 0 }).finish());
    expect(readModelRef(msg, [1])).toEqual({ name: 'glove-100d', alias: 'prod' });
  });

  it('reads a numeric version, large ones included', () => {
    const msg = bytes(EmbedRequest.encode({ model: { name: 'm', version: 300000 }, inputs: ['x'], truncate: false, truncationDirection: 0 }).finish());
    expect(readModelRef(msg, [1])).toEqual({ name: 'm', version: 300000 });
  });

  it('follows a path of field numbers into a nested message', () => {
    const msg = bytes(EmbedStreamRequest.encode({ request: { model: { name: 'nested', version: 2 }, inputs: ['x'], truncate: false, truncationDirection: 0 }, tag: 't' }).finish());
    expect(readModelRef(msg, [1, 1])).toEqual({ name: 'nested', version: 2 });
  });

  it('returns an empty name when the request names no model', () => {
    const msg = bytes(EmbedRequest.encode({ model: undefined, inputs: ['x'], truncate: false, truncationDirection: 0 }).finish());
    expect(readModelRef(msg, [1])).toBeUndefined();
    expect(readModelRef(bytes(ResolveModelRequest.encode({ ref: { name: '' } }).finish()), [1])).toEqual({ name: '' });
  });

  it('merges repeated occurrences as protobuf parsing does (last selector wins)', () => {
    const a = bytes(EmbedRequest.encode({ model: { name: 'first', version: 1 }, inputs: [], truncate: false, truncationDirection: 0 }).finish());
    const b = bytes(EmbedRequest.encode({ model: { name: '', alias: 'canary' }, inputs: [], truncate: false, truncationDirection: 0 }).finish());
    expect(readModelRef(Buffer.concat([a, b]), [1])).toEqual({ name: 'first', alias: 'canary' });
  });

  it('gives up on bytes that are not protobuf', () => {
    expect(readModelRef(Buffer.from([0x0a, 0xff, 0xff, 0xff]), [1])).toBeUndefined();
  });
});

describe('MessageScanner', () => {
  it('reports each message size across arbitrary chunk boundaries and keeps the first message', () => {
    const m1 = Buffer.from('hello world');
    const m2 = Buffer.alloc(1000, 7);
    const all = Buffer.concat([frame(m1), frame(m2), frame(Buffer.alloc(0))]);
    for (const step of [1, 3, 5, 7, 64, all.length]) {
      const sizes: number[] = [];
      const s = new MessageScanner((n) => (sizes.push(n), true), true);
      for (let i = 0; i < all.length; i += step) expect(s.push(all.subarray(i, i + step))).toBe(true);
      expect(sizes).toEqual([11, 1000, 0]);
      expect(s.first?.body.toString()).toBe('hello world');
    }
  });

  it('stops at a message over the limit as soon as its prefix is read', () => {
    const s = new MessageScanner((n) => n <= 10, false);
    expect(s.push(frame(Buffer.alloc(5)))).toBe(true);
    expect(s.push(frame(Buffer.alloc(50)).subarray(0, 5))).toBe(false);
  });

  it('decompresses a gzip-compressed first message for routing', () => {
    const body = bytes(EmbedRequest.encode({ model: { name: 'zipped' }, inputs: ['x'], truncate: false, truncationDirection: 0 }).finish());
    const s = new MessageScanner(() => true, true);
    s.push(frame(gzipSync(body), true));
    expect(readModelRef(plainMessage(s.first!, 'gzip')!, [1])).toEqual({ name: 'zipped' });
  });
});

describe('grpc-timeout', () => {
  it('parses every unit and rejects malformed values', () => {
    expect(parseGrpcTimeout('100m')).toBe(100);
    expect(parseGrpcTimeout('5S')).toBe(5000);
    expect(parseGrpcTimeout('2M')).toBe(120_000);
    expect(parseGrpcTimeout('1H')).toBe(3_600_000);
    expect(parseGrpcTimeout('1500u')).toBe(1.5);
    expect(parseGrpcTimeout('123456789m')).toBeUndefined();
    expect(parseGrpcTimeout('10x')).toBeUndefined();
    expect(parseGrpcTimeout(undefined)).toBeUndefined();
  });

  it('formats within eight digits and round-trips closely', () => {
    for (const ms of [0.5, 1, 999.9, 30_000, 86_400_000, 10 ** 10, 10 ** 13]) {
      const v = formatGrpcTimeout(ms);
      expect(v).toMatch(/^\d{1,8}[HMSmun]$/);
      expect(parseGrpcTimeout(v)!).toBeGreaterThanOrEqual(Math.min(ms, 99_999_999 * 3_600_000) * 0.999);
    }
  });
});

describe('encodeGrpcMessage', () => {
  it('percent-encodes non-ASCII and % only', () => {
    expect(encodeGrpcMessage('plain: text (ok)')).toBe('plain: text (ok)');
    expect(decodeURIComponent(encodeGrpcMessage('100% ünïcode ✓'))).toBe('100% ünïcode ✓');
    expect(encodeGrpcMessage('a%b')).toBe('a%25b');
  });
});
