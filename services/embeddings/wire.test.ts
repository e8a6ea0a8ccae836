import { describe, expect, it } from 'vitest';
import { EmbedRequest, EmbedResponse, EmbedStreamRequest, EmbedStreamResponse, TruncationDirection } from '../../gen/maas/embeddings/v1/embeddings.js';
import { grpcFrame } from '../runtime/unary-stream.js';
import { vectorAt, type VectorBlock } from './domain/vectors.js';
import {
  decodeEmbedRequest,
  decodeEmbedStreamRequest,
  decodeUtf8,
  EmbeddingServiceDefinition,
  embedResponseBytes,
  embedResponseFrame,
  embedStreamResponseBytes,
  replyMessage,
  splitFields,
  type EmbedCall,
  type EmbedReply,
  type EmbedStreamCall,
  type EmbedStreamReply,
} from './wire.js';

/**
 * A reply of `inputs` vectors of `dimensions` values in blocks of at most `block` rows, each block a view into a
 * larger buffer, rows `stride` floats apart: tokens sometimes 0, every other input truncated.
 */
function reply(seed: number, inputs: number, dimensions: number, { block = 64, stride = dimensions } = {}): EmbedReply {
  let a = seed;
  const next = () => ((a = (a * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  const blocks: VectorBlock[] = [];
  for (let done = 0; done < inputs; done += block) {
    const count = Math.min(block, inputs - done);
    const first = 1 + (done % 3);
    const values = Float32Array.from({ length: (first + count + 1) * stride + 5 }, next).subarray(5);
    blocks.push({ values, first, count });
  }
  const tokens = Int32Array.from({ length: inputs }, (_, i) => (i % 3 === 0 ? 0 : 7 + i * 40));
  const truncated = Uint8Array.from({ length: inputs }, (_, i) => i % 2);
  return {
    embeddings: { dimensions, stride, blocks, tokens, truncated },
    dimensions,
    usage: { inputTokens: 99, outputTokens: 0, totalTokens: 99 },
    model: { name: 'glove-100d', version: 3, alias: 'default', executionProvider: 'cpu' },
    timings: { queueMs: 0.25, inferenceMs: 1.5, timeToFirstTokenMs: 0, totalMs: 2 },
  };
}

const generated = (m: EmbedReply) => Buffer.from(EmbedResponse.encode(replyMessage(m)).finish());

describe('embedding response encoding', () => {
  it('writes exactly the bytes of the generated encoder, rows back to back or apart, in one block or several', () => {
    const shapes: [number, number, { block?: number; stride?: number }][] = [
      [0, 100, {}],
      [1, 100, {}],
      [32, 100, {}],
      [32, 100, { block: 5 }],
      [200, 100, { block: 64 }],
      [3, 768, { block: 2 }],
      [32, 7, { stride: 100 }],
      [9, 3, { stride: 8, block: 4 }],
      [2, 1, {}],
    ];
    for (const [inputs, dimensions, layout] of shapes) {
      const m = reply(inputs * 1000 + dimensions, inputs, dimensions, layout);
      expect(Buffer.from(embedResponseBytes(m))).toEqual(generated(m));
      expect(embedResponseFrame(m)).toEqual(grpcFrame(generated(m)));
    }
  });

  it('answers each input with its own vector, wherever its block lies in its buffer', () => {
    const m = reply(11, 70, 16, { block: 30 });
    const decoded = EmbedResponse.decode(embedResponseBytes(m));
    expect(decoded.embeddings).toHaveLength(70);
    decoded.embeddings.forEach((e, i) => {
      expect(e.index).toBe(i);
      expect(Float32Array.from(e.values)).toEqual(vectorAt(m.embeddings, i));
    });
  });

  it('encodes stream responses with a result or an error like the generated encoder, and round-trips them', () => {
    const ok: EmbedStreamReply = { tag: 'page-7', response: reply(5, 4, 16) };
    const failed: EmbedStreamReply = { tag: 'page-8', error: { code: 3, message: 'inputs[0] is empty', details: [] } };
    const untagged: EmbedStreamReply = { tag: '', response: reply(1, 1, 8) };
    for (const m of [ok, failed, untagged]) {
      const expected = EmbedStreamResponse.encode({ ...m, response: m.response && replyMessage(m.response) }).finish();
      const bytes = embedStreamResponseBytes(m);
      expect(Buffer.from(bytes)).toEqual(Buffer.from(expected));
      expect(EmbedStreamResponse.decode(bytes)).toEqual(EmbedStreamResponse.decode(expected));
    }
  });

  it('serves the definition with the fast serializers and the generated ones everywhere else', () => {
    const m = reply(9, 2, 4);
    expect(EmbeddingServiceDefinition.embed.responseSerialize(m)).toEqual(generated(m));
    expect(EmbeddingServiceDefinition.embed.responseFrame(m)).toEqual(grpcFrame(generated(m)));
    expect(EmbeddingServiceDefinition.embed.path).toBe('/maas.embeddings.v1.EmbeddingService/Embed');
    expect(EmbeddingServiceDefinition.tokenize).toBeDefined();
  });

  it('gives each response its own bytes, of exactly its length, after small, large and huge answers', () => {
    const serialize = EmbeddingServiceDefinition.embed.responseSerialize;
    const messages = [reply(1, 32, 100), reply(2, 1, 4), reply(3, 3, 100_000), reply(4, 2, 8), reply(5, 32, 100)];
    const buffers = messages.map((m) => serialize(m));
    messages.forEach((m, i) => expect(buffers[i]).toEqual(generated(m)));
  });
});

describe('embedding request decoding', () => {
  it('turns every byte sequence into the text TextDecoder gives, valid UTF-8 or not, and throws when strict on bad bytes', () => {
    const decoder = new TextDecoder();
    let a = 7;
    const next = () => (a = (a * 1103515245 + 12345) >>> 0) / 2 ** 32;
    // Bytes around the UTF-8 boundaries: continuation bytes alone, overlong leads, surrogates, beyond U+10FFFF.
    const edges = [0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff];
    for (let t = 0; t < 20_000; t++) {
      const bytes = Buffer.from(Array.from({ length: 1 + Math.floor(next() * 12) }, () => (next() < 0.5 ? edges[Math.floor(next() * edges.length)]! : Math.floor(next() * 256))));
      expect(decodeUtf8(bytes)).toBe(decoder.decode(bytes));
      expect(decodeUtf8(new Uint8Array(bytes))).toBe(decoder.decode(bytes));
    }
    expect(decodeUtf8(Buffer.from('é 日本 🙂'), true)).toBe('é 日本 🙂');
    expect(() => decodeUtf8(Buffer.from([0xc3]), true)).toThrow();
  });

  it('decodes requests as the generated decoders do, inputs kept as UTF-8, and refuses what they refuse', () => {
    const long = 'The river rose in the night and the town slept on, unaware of the water at its doors.';
    const request = EmbedRequest.fromPartial({
      model: { name: 'glove-100d', alias: 'default' },
      inputs: ['cat', long, 'é 日本 🙂 '.repeat(9), '', 'x'.repeat(5000)],
      normalize: false,
      truncate: true,
      truncationDirection: TruncationDirection.TRUNCATION_DIRECTION_LEFT,
      dimensions: 7,
    });
    const bytes = Buffer.from(EmbedRequest.encode(request).finish());
    expect(read(decodeEmbedRequest(bytes))).toEqual(EmbedRequest.decode(bytes));
    expect(read(EmbeddingServiceDefinition.embed.requestDeserialize(bytes))).toEqual(request);
    // Kept as bytes, not decoded: sizes are UTF-8 bytes ('é 日本 🙂 ' is 15).
    const call = decodeEmbedRequest(bytes);
    expect([call.inputs.size(0), call.inputs.size(2), call.inputs.size(4)]).toEqual([3, 135, 5000]);
    // Invalid UTF-8 inside a text (field 2, 40 bytes): the same replacement characters.
    const head = Buffer.from(EmbedRequest.encode({ ...request, inputs: ['ok'] }).finish());
    const withBad = Buffer.concat([head, Buffer.from([0x12, 40, ...Buffer.from('a'.repeat(36)), 0xff, 0xc3, 0x28, 0xe2])]);
    expect(read(decodeEmbedRequest(withBad))).toEqual(EmbedRequest.decode(withBad));
    expect(decodeEmbedRequest(withBad).inputs.text(1)).toContain('\ufffd');
    const stream = Buffer.from(EmbedStreamRequest.encode({ tag: 'page-7', request }).finish());
    expect(readStream(decodeEmbedStreamRequest(stream))).toEqual(EmbedStreamRequest.decode(stream));
    expect(readStream(EmbeddingServiceDefinition.embedStream.requestDeserialize(stream))).toEqual(EmbedStreamRequest.decode(stream));
    // Truncated and malformed messages throw, as with the generated decoder.
    for (const broken of [bytes.subarray(0, bytes.length - 3), Buffer.from([0x12, 0x7f, 0x41]), Buffer.from([0x0f])]) {
      expect(() => EmbedRequest.decode(broken)).toThrow();
      expect(() => decodeEmbedRequest(broken)).toThrow();
    }
  });

  it('reads any mix of fields, known or not, in any order, as the generated decoders do', () => {
    let a = 7;
    const next = (n: number) => ((a = (a * 1103515245 + 12345) >>> 0) >>> 8) % n;
    const varint = (v: number) => {
      const out: number[] = [];
      while (v > 0x7f) {
        out.push((v & 0x7f) | 0x80);
        v = Math.floor(v / 128);
      }
      out.push(v);
      return out;
    };
    const text = () => {
      const pick = ['a', 'The ', 'é', '日本', '🙂', ' ', '\t'];
      const bytes = [...Buffer.from(Array.from({ length: next(12) }, () => pick[next(pick.length)]).join(''))];
      if (next(5) === 0) bytes.splice(next(bytes.length + 1), 0, [0xff, 0xc3, 0xe2, 0x80][next(4)]!);
      return bytes;
    };
    const len = (key: number[], body: number[]) => [...key, ...varint(body.length), ...body];
    const field = (): number[] => {
      switch (next(11)) {
        case 0:
        case 1:
        case 2:
          return len([0x12], text());
        case 3:
          return len([0x0a], [...EmbedRequest.encode({ ...EmbedRequest.fromPartial({}), model: { name: `m${next(3)}`, version: next(4), alias: '' } }).finish()].slice(2));
        case 4:
          return [0x18, next(2)];
        case 5:
          return [0x20, next(2)];
        case 6:
          return [0x28, next(3)];
        case 7:
          return [0x30, ...varint(next(5000))];
        case 8:
          return [0x78, ...varint(next(2 ** 30)), ...(next(2) ? [0x81, 0x01, 1, 2, 3, 4, 5, 6, 7, 8] : [0x8d, 0x01, 1, 2, 3, 4])];
        case 9:
          return len([0x92, 0x01], text());
        default:
          // A group (field 19), which only the generated decoder reads.
          return next(4) === 0 ? [0x9b, 0x01, 0x78, 1, 0x9c, 0x01] : [0x18, 1];
      }
    };
    let checked = 0;
    let split = 0;
    for (let k = 0; k < 3000; k++) {
      let bytes = Buffer.from(Array.from({ length: next(9) }, field).flat());
      // Now and then cut short, or a bad byte where a key should be.
      if (next(8) === 0) bytes = bytes.subarray(0, next(bytes.length + 1));
      if (next(20) === 0) bytes = Buffer.concat([bytes, Buffer.from([[0x0f, 0x07, 0x80][next(3)]!])]);
      let expected: EmbedRequest | undefined;
      try {
        expected = EmbedRequest.decode(bytes);
      } catch {
        expect(() => decodeEmbedRequest(bytes)).toThrow();
        continue;
      }
      expect(read(decodeEmbedRequest(bytes))).toEqual(expected);
      if (splitFields(bytes, 0x12)) split++;
      // The same bytes as the request of an EmbedStreamRequest, once or twice, before or after its tag.
      const inner = len([0x0a], [...bytes]);
      const tag = len([0x12], [...Buffer.from(`t${k}`)]);
      const stream = Buffer.from([...(next(2) ? [...inner, ...tag] : [...tag, ...inner]), ...(next(6) === 0 ? inner : [])]);
      expect(readStream(decodeEmbedStreamRequest(stream))).toEqual(EmbedStreamRequest.decode(stream));
      checked++;
    }
    // Most read field by field; the rest (groups) whole, by the generated decoder.
    expect(checked).toBeGreaterThan(1500);
    expect(split).toBeGreaterThan(1000);
    expect(checked - split).toBeGreaterThan(100);
  });
});

/** A decoded call with its inputs as strings, to compare with the generated decoder's message. */
function read(call: EmbedCall): EmbedRequest {
  return { ...call, inputs: Array.from({ length: call.inputs.length }, (_, i) => call.inputs.text(i)) };
}

function readStream(call: EmbedStreamCall): EmbedStreamRequest {
  return { tag: call.tag, request: call.request && read(call.request) };
}
