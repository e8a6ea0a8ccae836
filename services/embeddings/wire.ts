// Encoding of the embedding responses, the service's largest messages (dimensions × inputs floats). The
// generated encoder writes a packed float field one value at a time, through a writer that gathers varints in
// arrays and copies every part once more at the end. A packed float field is the values' little-endian IEEE
// bytes after a length, which on a little-endian host are a Float32Array's own bytes; so here the response is
// sized first and written into one buffer of exactly its length, straight from the engine's Vectors (the batch
// buffers the vectors lie in, no object per input): each Embedding field by field after its length, and the
// vectors of a request's run of inputs in one copy. The response's other (small) fields are left to the generated
// encoder, and the bytes are exactly the generated encoding's of the same message (wire.test.ts). Big-endian
// hosts use the generated encoders.
// Embed requests (alone or in EmbedStream) are read field by field only as far as finding each input's bytes:
// the inputs stay UTF-8 where they arrived (Texts), to be decoded where the model runs, and the request's other
// fields are decoded by the generated decoder from their own bytes. Any other bytes (a group, a bad varint, a
// length past the end) go to the generated decoder whole, which reads or refuses them as it always did; so every
// request reads as the generated decoder reads it, its texts included (wire.test.ts). The generated decoders
// turn text from UTF-8 by Buffer's native slice instead of a TextDecoder call each: the same strings for every
// byte sequence, valid or not, in about half the time.
import { endianness } from 'node:os';
import { BinaryReader } from '@bufbuild/protobuf/wire';
import {
  EmbeddingServiceService,
  EmbedRequest,
  EmbedResponse,
  EmbedStreamRequest,
  EmbedStreamResponse,
} from '../../gen/maas/embeddings/v1/embeddings.js';
import { FRAME_HEADER_BYTES, writeFrameHeader } from '../runtime/unary-stream.js';
import { Texts } from './domain/texts.js';
import { vectorAt, type Vectors } from './domain/vectors.js';

const LITTLE_ENDIAN = endianness() === 'LE';

// Tags (field number << 3 | wire type 2, length-delimited) of the fields written here.
/** Embedding.values: the packed floats. */
const VALUES_TAG = (1 << 3) | 2;
/** Embedding.index, .tokens (varints) and .truncated (bool). */
const INDEX_TAG = 2 << 3;
const TOKENS_TAG = 3 << 3;
const TRUNCATED_TAG = 4 << 3;
/** EmbedResponse.embeddings: one Embedding. */
const EMBEDDINGS_TAG = (1 << 3) | 2;
/** EmbedStreamResponse.response: one EmbedResponse. */
const RESPONSE_TAG = (2 << 3) | 2;

/** An EmbedResponse as the service writes it: its embeddings the engine's Vectors, as they came. */
export type EmbedReply = Omit<EmbedResponse, 'embeddings'> & { embeddings: Vectors };

/** An EmbedStreamResponse as the service writes it: its response an EmbedReply. */
export type EmbedStreamReply = Omit<EmbedStreamResponse, 'response'> & { response?: EmbedReply | undefined };

/** The message a reply stands for, its vectors copied out as numbers (for big-endian hosts, and tests). */
export function replyMessage(m: EmbedReply): EmbedResponse {
  const v = m.embeddings;
  const embeddings = Array.from({ length: v.tokens.length }, (_, index) => ({
    values: Array.from(vectorAt(v, index)),
    index,
    tokens: v.tokens[index]!,
    truncated: v.truncated[index] === 1,
  }));
  return { ...m, embeddings };
}

/** Bytes of v as a varint. */
function varintSize(v: number): number {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x20_0000 ? 3 : v < 0x1000_0000 ? 4 : 5;
}

/** Writes v (an unsigned 32-bit value) as a varint at pos; returns the position after it. */
function writeVarint(out: Uint8Array, pos: number, v: number): number {
  while (v > 0x7f) {
    out[pos++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  out[pos++] = v;
  return pos;
}

/** Bytes of one Embedding message's fields: `floats` bytes of values, and input `index`'s facts. */
function embeddingSize(v: Vectors, index: number, floats: number): number {
  const tokens = v.tokens[index]! >>> 0;
  let size = 0;
  if (floats !== 0) size += 1 + varintSize(floats) + floats;
  if (index !== 0) size += 1 + varintSize(index);
  if (tokens !== 0) size += 1 + varintSize(tokens);
  if (v.truncated[index]) size += 2;
  return size;
}

/** Bytes of input `index`'s Embedding as a field of EmbedResponse (tag, length, message). */
function fieldSize(v: Vectors, index: number, floats: number): number {
  const s = embeddingSize(v, index, floats);
  return 1 + varintSize(s) + s;
}

/** An Embedding's tag, length and values' tag and length; returns where its floats go. */
function writeHead(v: Vectors, index: number, floats: number, out: Uint8Array, pos: number): number {
  out[pos++] = EMBEDDINGS_TAG;
  pos = writeVarint(out, pos, embeddingSize(v, index, floats));
  if (floats !== 0) {
    out[pos++] = VALUES_TAG;
    pos = writeVarint(out, pos, floats);
  }
  return pos;
}

/** An Embedding's fields after its values, in the generated encoder's order and form. */
function writeTail(v: Vectors, index: number, out: Uint8Array, pos: number): number {
  if (index !== 0) {
    out[pos++] = INDEX_TAG;
    pos = writeVarint(out, pos, index);
  }
  const tokens = v.tokens[index]! >>> 0;
  if (tokens !== 0) {
    out[pos++] = TOKENS_TAG;
    pos = writeVarint(out, pos, tokens);
  }
  if (v.truncated[index]) {
    out[pos++] = TRUNCATED_TAG;
    out[pos++] = 1;
  }
  return pos;
}

/** An EmbedResponse's bytes, in one Buffer of exactly their length. */
export function embedResponseBytes(m: EmbedReply): Buffer {
  return writeEmbedResponse(m, 0);
}

/**
 * The same bytes as a gRPC message frame (a flag byte and the length before them), written in place, so the
 * runtime's unary path sends them without copying the response into a frame of its own.
 */
export function embedResponseFrame(m: EmbedReply): Buffer {
  const out = writeEmbedResponse(m, FRAME_HEADER_BYTES);
  writeFrameHeader(out);
  return out;
}

/**
 * embedResponseBytes' bytes after `head` bytes left for the caller. A block whose rows lie back to back (the
 * request kept all of the model's dimensions) is copied in at once, to the end of the part of the buffer the
 * Embeddings take, and each row then moved down to its place (no view per row): a row's place is never past
 * where it was staged (the block's rows and whatever follows them take at least the staged bytes), so rows
 * move towards the start and none is overwritten before it has moved. Rows of other blocks are copied one by one.
 */
function writeEmbedResponse(m: EmbedReply, head: number): Buffer {
  if (!LITTLE_ENDIAN) {
    const bytes = EmbedResponse.encode(replyMessage(m)).finish();
    if (head === 0) return asBuffer(bytes);
    const out = Buffer.allocUnsafe(head + bytes.length);
    out.set(bytes, head);
    return out;
  }
  const v = m.embeddings;
  const floats = v.dimensions * 4;
  const rest = EmbedResponse.encode({ ...m, embeddings: [] }).finish();
  let end = head;
  for (let i = 0; i < v.tokens.length; i++) end += fieldSize(v, i, floats);
  const out = Buffer.allocUnsafe(end + rest.byteLength);
  let pos = head;
  let index = 0;
  for (const { values, first, count } of v.blocks) {
    if (v.stride === v.dimensions && floats !== 0) {
      const staged = end - count * floats;
      out.set(new Uint8Array(values.buffer, values.byteOffset + first * floats, count * floats), staged);
      for (let k = 0; k < count; k++, index++) {
        pos = writeHead(v, index, floats, out, pos);
        out.copyWithin(pos, staged + k * floats, staged + (k + 1) * floats);
        pos = writeTail(v, index, out, pos + floats);
      }
    } else {
      for (let k = 0; k < count; k++, index++) {
        pos = writeHead(v, index, floats, out, pos);
        if (floats !== 0) out.set(new Uint8Array(values.buffer, values.byteOffset + (first + k) * v.stride * 4, floats), pos);
        pos = writeTail(v, index, out, pos + floats);
      }
    }
  }
  out.set(rest, pos);
  return out;
}

/** An EmbedStreamResponse's bytes: its tag (field 1), then its response (field 2) as embedResponseBytes writes it. */
export function embedStreamResponseBytes(m: EmbedStreamReply): Buffer {
  if (m.response === undefined) return asBuffer(EmbedStreamResponse.encode({ ...m, response: undefined }).finish());
  if (!LITTLE_ENDIAN) return asBuffer(EmbedStreamResponse.encode({ ...m, response: replyMessage(m.response) }).finish());
  const w = EmbedStreamResponse.encode({ ...m, response: undefined });
  return asBuffer(w.uint32(RESPONSE_TAG).bytes(embedResponseBytes(m.response)).finish());
}

/** The bytes of a finished writer as a Buffer, without copying them again. */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });

/** UTF-8 to text for a BinaryReader: U+FFFD for what is not UTF-8 (an error when strict), as its default does. */
export function decodeUtf8(bytes: Uint8Array, strict?: boolean): string {
  if (strict) return STRICT_UTF8.decode(bytes);
  return (Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)).toString('utf8');
}

/** An EmbedRequest as the service reads it: its inputs as the UTF-8 they arrived in. */
export type EmbedCall = Omit<EmbedRequest, 'inputs'> & { inputs: Texts };

/** An EmbedStreamRequest as the service reads it: its request an EmbedCall. */
export type EmbedStreamCall = Omit<EmbedStreamRequest, 'request'> & { request: EmbedCall | undefined };

/** EmbedRequest.inputs (a string, so length-delimited). */
const INPUTS_TAG = (2 << 3) | 2;
/** EmbedStreamRequest.request (a message). */
const REQUEST_TAG = (1 << 3) | 2;

export function decodeEmbedRequest(bytes: Uint8Array): EmbedCall {
  const fields = splitFields(bytes, INPUTS_TAG);
  if (!fields) {
    const m = EmbedRequest.decode(new BinaryReader(bytes, decodeUtf8));
    return { ...m, inputs: Texts.of(m.inputs) };
  }
  // Every field but the inputs, as the generated decoder reads them (a field added later comes along too).
  const m = EmbedRequest.decode(new BinaryReader(fields.rest, decodeUtf8));
  return { ...m, inputs: Texts.utf8(bytes, fields.spans, fields.count) };
}

export function decodeEmbedStreamRequest(bytes: Uint8Array): EmbedStreamCall {
  const fields = splitFields(bytes, REQUEST_TAG);
  // One request field, the usual case; more than one (which the generated decoder reads as the last) or none,
  // as the generated decoder reads them.
  if (!fields || fields.count !== 1) {
    const m = EmbedStreamRequest.decode(new BinaryReader(bytes, decodeUtf8));
    return { tag: m.tag, request: m.request && { ...m.request, inputs: Texts.of(m.request.inputs) } };
  }
  const m = EmbedStreamRequest.decode(new BinaryReader(fields.rest, decodeUtf8));
  return { ...m, request: decodeEmbedRequest(bytes.subarray(fields.spans[0], fields.spans[1])) };
}

/**
 * A message's top-level fields split in two: where the values of the length-delimited fields with `tag` lie
 * (two numbers each, [start, end) in bytes, in order), and the bytes of all the others, in order (a view when
 * they are in one piece). Undefined when the bytes are not plain fields: a group, a wire type that does not
 * exist, field number 0, a varint over ten bytes, a length past the end.
 */
export function splitFields(bytes: Uint8Array, tag: number): { spans: Int32Array; count: number; rest: Uint8Array } | undefined {
  let spans = new Int32Array(64);
  let count = 0;
  const others: number[] = [];
  let p = 0;
  const n = bytes.length;
  /** The varint of at most five bytes at p, p moved past it; -1 when there is none. */
  const varint = (): number => {
    let v = 0;
    for (let shift = 0; shift <= 28; shift += 7) {
      if (p >= n) return -1;
      const b = bytes[p++]!;
      v += (b & 0x7f) * 2 ** shift;
      if (!(b & 0x80)) return v;
    }
    return -1;
  };
  while (p < n) {
    const fieldStart = p;
    const key = varint();
    if (key < 8) return undefined;
    switch (key & 7) {
      case 0: {
        let i = 0;
        do {
          if (p >= n || i++ === 10) return undefined;
        } while (bytes[p++]! & 0x80);
        break;
      }
      case 1:
        p += 8;
        break;
      case 5:
        p += 4;
        break;
      case 2: {
        const length = varint();
        if (length < 0 || length > n - p) return undefined;
        if (key === tag) {
          if (2 * count === spans.length) {
            const grown = new Int32Array(2 * spans.length);
            grown.set(spans);
            spans = grown;
          }
          spans[2 * count] = p;
          spans[2 * count + 1] = p + length;
          count++;
          p += length;
          continue;
        }
        p += length;
        break;
      }
      default:
        return undefined;
    }
    if (p > n) return undefined;
    // Consecutive other fields make one piece.
    if (others.length > 0 && others[others.length - 1] === fieldStart) others[others.length - 1] = p;
    else others.push(fieldStart, p);
  }
  let rest: Uint8Array;
  if (others.length === 0) rest = bytes.subarray(0, 0);
  else if (others.length === 2) rest = bytes.subarray(others[0], others[1]);
  else {
    let size = 0;
    for (let i = 0; i < others.length; i += 2) size += others[i + 1]! - others[i]!;
    rest = new Uint8Array(size);
    for (let i = 0, at = 0; i < others.length; i += 2) {
      rest.set(bytes.subarray(others[i], others[i + 1]), at);
      at += others[i + 1]! - others[i]!;
    }
  }
  return { spans, count, rest };
}

/** The generated service definition with the fast request decoders and response encoders on Embed and EmbedStream. */
export const EmbeddingServiceDefinition = {
  ...EmbeddingServiceService,
  embed: { ...EmbeddingServiceService.embed, requestDeserialize: decodeEmbedRequest, responseSerialize: embedResponseBytes, responseFrame: embedResponseFrame },
  embedStream: { ...EmbeddingServiceService.embedStream, requestDeserialize: decodeEmbedStreamRequest, responseSerialize: embedStreamResponseBytes },
} as const;
