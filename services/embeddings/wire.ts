// Encoding of the embedding responses, the service's largest messages (dimensions × inputs floats). The
// generated encoder writes a packed float field one value at a time; a packed float field is the values'
// little-endian IEEE bytes after a length, which on a little-endian host are a Float32Array's own bytes, so
// here each vector goes out in one copy, and each Embedding is written field by field after its counted length.
// The response's other fields are left to the generated encoders, and the bytes are exactly the generated
// encoding's (wire.test.ts checks both ways). Big-endian hosts use the generated encoders unchanged.
import { endianness } from 'node:os';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import {
  EmbeddingServiceService,
  type Embedding,
  EmbedResponse,
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

/**
 * One Embedding, length-prefixed as a field of EmbedResponse, its fields in the generated encoder's order and
 * form. Its length is counted first, so no nested writer (a fork per embedding) and no copy of the message are
 * needed: a response carries one per input.
 */
function encodeEmbedding(e: Embedding, w: BinaryWriter): void {
  const floats = e.values.length * 4;
  const index = e.index >>> 0;
  const tokens = e.tokens >>> 0;
  let size = 0;
  if (floats !== 0) size += 1 + varintSize(floats) + floats;
  if (index !== 0) size += 1 + varintSize(index);
  if (tokens !== 0) size += 1 + varintSize(tokens);
  if (e.truncated) size += 2;
  w.uint32(EMBEDDINGS_TAG).uint32(size);
  if (floats !== 0) w.uint32(VALUES_TAG).bytes(floatBytes(e.values));
  if (index !== 0) w.uint32(INDEX_TAG).uint32(index);
  if (tokens !== 0) w.uint32(TOKENS_TAG).uint32(tokens);
  if (e.truncated) w.uint32(TRUNCATED_TAG).bool(true);
}

export function encodeEmbedResponse(m: EmbedResponse, w: BinaryWriter = new BinaryWriter()): BinaryWriter {
  if (!LITTLE_ENDIAN) return EmbedResponse.encode(m, w);
  for (const e of m.embeddings) encodeEmbedding(e, w);
  return EmbedResponse.encode({ ...m, embeddings: [] }, w);
}

export function encodeEmbedStreamResponse(m: EmbedStreamResponse, w: BinaryWriter = new BinaryWriter()): BinaryWriter {
  if (!LITTLE_ENDIAN || m.response === undefined) return EmbedStreamResponse.encode(m, w);
  // Field order as generated: tag (1), then response (2); error (3) is unset when response is set (oneof).
  EmbedStreamResponse.encode({ ...m, response: undefined }, w);
  encodeEmbedResponse(m.response, w.uint32(RESPONSE_TAG).fork());
  return w.join();
}

/** The bytes of a finished writer as a Buffer, without copying them again. */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * One writer for every response (serialization is synchronous, so calls never interleave): its buffer keeps
 * the size of the largest response so far, so writing does not grow and copy it again for each response, and
 * finish() copies the bytes out once. After a response over KEEP_BYTES the writer is let go, so one huge
 * answer does not pin its buffer.
 */
const KEEP_BYTES = 1 << 20;
let shared = new BinaryWriter();

function serialize(write: (w: BinaryWriter) => BinaryWriter): Buffer {
  const bytes = write(shared).finish();
  if (bytes.byteLength > KEEP_BYTES) shared = new BinaryWriter();
  return asBuffer(bytes);
}

/** The generated service definition with the fast response encoders on Embed and EmbedStream. */
export const EmbeddingServiceDefinition = {
  ...EmbeddingServiceService,
  embed: { ...EmbeddingServiceService.embed, responseSerialize: (m: EmbedResponse): Buffer => serialize((w) => encodeEmbedResponse(m, w)) },
  embedStream: { ...EmbeddingServiceService.embedStream, responseSerialize: (m: EmbedStreamResponse): Buffer => serialize((w) => encodeEmbedStreamResponse(m, w)) },
} as const;
