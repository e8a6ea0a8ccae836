// Encoding of the embedding responses, the service's largest messages (dimensions × inputs floats). The
// generated encoder writes a packed float field one value at a time; a packed float field is the values'
// little-endian IEEE bytes after a length, which on a little-endian host are a Float32Array's own bytes, so
// here each vector goes out in one copy. Every other field is left to the generated encoders, so the bytes
// are exactly the generated encoding's (wire.test.ts checks both ways). Big-endian hosts use the generated
// encoders unchanged.
import { endianness } from 'node:os';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import {
  EmbeddingServiceService,
  Embedding,
  EmbedResponse,
  EmbedStreamResponse,
} from '../../gen/maas/embeddings/v1/embeddings.js';

const LITTLE_ENDIAN = endianness() === 'LE';

// Tags (field number << 3 | wire type 2, length-delimited) of the fields written here.
/** Embedding.values: the packed floats. */
const VALUES_TAG = (1 << 3) | 2;
/** EmbedResponse.embeddings: one Embedding. */
const EMBEDDINGS_TAG = (1 << 3) | 2;
/** EmbedStreamResponse.response: one EmbedResponse. */
const RESPONSE_TAG = (2 << 3) | 2;

/** The values' bytes as packed floats (the values themselves when they are a Float32Array). */
function floatBytes(values: ArrayLike<number>): Uint8Array {
  const floats = values instanceof Float32Array ? values : Float32Array.from(values);
  return new Uint8Array(floats.buffer, floats.byteOffset, floats.byteLength);
}

function encodeEmbedding(e: Embedding, w: BinaryWriter): void {
  if (e.values.length !== 0) w.uint32(VALUES_TAG).bytes(floatBytes(e.values));
  Embedding.encode({ ...e, values: [] }, w);
}

export function encodeEmbedResponse(m: EmbedResponse, w: BinaryWriter = new BinaryWriter()): BinaryWriter {
  if (!LITTLE_ENDIAN) return EmbedResponse.encode(m, w);
  for (const e of m.embeddings) {
    encodeEmbedding(e, w.uint32(EMBEDDINGS_TAG).fork());
    w.join();
  }
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
