// Encoding of the embedding responses, the service's largest messages (dimensions × inputs floats). The
// generated encoder writes a packed float field one value at a time, through a writer that gathers varints in
// arrays and copies every part once more at the end. A packed float field is the values' little-endian IEEE
// bytes after a length, which on a little-endian host are a Float32Array's own bytes; so here the response is
// sized first and written into one buffer of exactly its length: each Embedding field by field after its
// length, each vector in one copy. The response's other (small) fields are left to the generated encoder, and
// the bytes are exactly the generated encoding's (wire.test.ts checks both ways). Big-endian hosts use the
// generated encoders unchanged.
// Requests are decoded by the generated decoders, with their texts (dozens per request, most longer than the
// reader's 32-byte ASCII fast path) turned from UTF-8 by Buffer's native slice instead of a TextDecoder call each:
// the same strings for every byte sequence, valid or not (wire.test.ts), in about half the time.
import { endianness } from 'node:os';
import { BinaryReader } from '@bufbuild/protobuf/wire';
import {
  EmbeddingServiceService,
  type Embedding,
  EmbedRequest,
  EmbedResponse,
  EmbedStreamRequest,
  EmbedStreamResponse,
} from '../../gen/maas/embeddings/v1/embeddings.js';

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

/** The values' bytes as packed floats (the values themselves when they are a Float32Array). */
function floatBytes(values: ArrayLike<number>): Uint8Array {
  const floats = values instanceof Float32Array ? values : Float32Array.from(values);
  return new Uint8Array(floats.buffer, floats.byteOffset, floats.byteLength);
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

/** Bytes of one Embedding message's fields. */
function embeddingSize(e: Embedding): number {
  const floats = e.values.length * 4;
  const index = e.index >>> 0;
  const tokens = e.tokens >>> 0;
  let size = 0;
  if (floats !== 0) size += 1 + varintSize(floats) + floats;
  if (index !== 0) size += 1 + varintSize(index);
  if (tokens !== 0) size += 1 + varintSize(tokens);
  if (e.truncated) size += 2;
  return size;
}

/** One Embedding as a field of EmbedResponse (tag, length, fields in the generated encoder's order and form). */
function writeEmbedding(e: Embedding, out: Uint8Array, pos: number): number {
  out[pos++] = EMBEDDINGS_TAG;
  pos = writeVarint(out, pos, embeddingSize(e));
  const floats = e.values.length * 4;
  if (floats !== 0) {
    out[pos++] = VALUES_TAG;
    pos = writeVarint(out, pos, floats);
    out.set(floatBytes(e.values), pos);
    pos += floats;
  }
  if (e.index >>> 0 !== 0) {
    out[pos++] = INDEX_TAG;
    pos = writeVarint(out, pos, e.index >>> 0);
  }
  if (e.tokens >>> 0 !== 0) {
    out[pos++] = TOKENS_TAG;
    pos = writeVarint(out, pos, e.tokens >>> 0);
  }
  if (e.truncated) {
    out[pos++] = TRUNCATED_TAG;
    out[pos++] = 1;
  }
  return pos;
}

/** An EmbedResponse's bytes, in one Buffer of exactly their length. */
export function embedResponseBytes(m: EmbedResponse): Buffer {
  if (!LITTLE_ENDIAN) return asBuffer(EmbedResponse.encode(m).finish());
  const rest = EmbedResponse.encode({ ...m, embeddings: [] }).finish();
  let size = rest.byteLength;
  for (const e of m.embeddings) {
    const s = embeddingSize(e);
    size += 1 + varintSize(s) + s;
  }
  const out = Buffer.allocUnsafe(size);
  let pos = 0;
  for (const e of m.embeddings) pos = writeEmbedding(e, out, pos);
  out.set(rest, pos);
  return out;
}

/** An EmbedStreamResponse's bytes: its tag (field 1), then its response (field 2) as embedResponseBytes writes it. */
export function embedStreamResponseBytes(m: EmbedStreamResponse): Buffer {
  if (!LITTLE_ENDIAN || m.response === undefined) return asBuffer(EmbedStreamResponse.encode(m).finish());
  // Field order as generated: tag (1), then response (2); error (3) is unset when response is set (oneof).
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

export function decodeEmbedRequest(bytes: Uint8Array): EmbedRequest {
  return EmbedRequest.decode(new BinaryReader(bytes, decodeUtf8));
}

export function decodeEmbedStreamRequest(bytes: Uint8Array): EmbedStreamRequest {
  return EmbedStreamRequest.decode(new BinaryReader(bytes, decodeUtf8));
}

/** The generated service definition with the fast request decoders and response encoders on Embed and EmbedStream. */
export const EmbeddingServiceDefinition = {
  ...EmbeddingServiceService,
  embed: { ...EmbeddingServiceService.embed, requestDeserialize: decodeEmbedRequest, responseSerialize: embedResponseBytes },
  embedStream: { ...EmbeddingServiceService.embedStream, requestDeserialize: decodeEmbedStreamRequest, responseSerialize: embedStreamResponseBytes },
} as const;
