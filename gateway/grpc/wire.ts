// The little of gRPC's wire format the gateway reads: the 5-byte message prefix (to check sizes and find the
// first message), the model reference inside a request's protobuf bytes (read by field number, nothing else
// decoded), the grpc-timeout header, and status headers for the gateway's own errors.
import { gunzipSync, inflateSync } from 'node:zlib';
import { Metadata } from '@grpc/grpc-js';
import { ErrorInfo } from '../../gen/google/rpc/error_details.js';
import { Status as RpcStatus } from '../../gen/google/rpc/status.js';
import { ERROR_DOMAIN } from '../../services/runtime/grpc-status.js';
import type { ModelRefLike } from '../domain/catalog.js';

/** Reads varint at `pos`; returns [value, next position] or undefined when the buffer ends first. */
function varint(buf: Uint8Array, pos: number, end: number): [number, number] | undefined {
  let result = 0;
  let shift = 0;
  while (pos < end) {
    const b = buf[pos++]!;
    // Beyond 2^53 precision is lost; model versions and lengths stay far below.
    result += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) return [result, pos];
    shift += 7;
    if (shift > 63) return undefined;
  }
  return undefined;
}

/** Skips one field's value of the wire type; returns the next position or -1 when malformed. */
function skip(buf: Uint8Array, pos: number, end: number, wireType: number): number {
  switch (wireType) {
    case 0: {
      const v = varint(buf, pos, end);
      return v ? v[1] : -1;
    }
    case 1:
      return pos + 8 <= end ? pos + 8 : -1;
    case 2: {
      const v = varint(buf, pos, end);
      return v && v[1] + v[0] <= end ? v[1] + v[0] : -1;
    }
    case 5:
      return pos + 4 <= end ? pos + 4 : -1;
    default:
      return -1;
  }
}

/**
 * Calls `visit(start, end)` for every length-delimited occurrence of field `field` in buf[start, end).
 * Returns false when the bytes are not valid protobuf.
 */
function eachLengthDelimited(buf: Uint8Array, start: number, end: number, field: number, visit: (s: number, e: number) => void): boolean {
  let pos = start;
  while (pos < end) {
    const tag = varint(buf, pos, end);
    if (!tag) return false;
    pos = tag[1];
    const wireType = tag[0] % 8;
    const number = Math.floor(tag[0] / 8);
    if (number === field && wireType === 2) {
      const len = varint(buf, pos, end);
      if (!len || len[1] + len[0] > end) return false;
      visit(len[1], len[1] + len[0]);
      pos = len[1] + len[0];
    } else {
      pos = skip(buf, pos, end, wireType);
      if (pos < 0) return false;
    }
  }
  return true;
}

/**
 * The ModelRef at `path` (field numbers from the request message down to the ModelRef field) inside one
 * serialized message. Repeated occurrences merge, as protobuf parsing does. Undefined when the message has
 * none or is not valid protobuf (the replica will say why).
 */
export function readModelRef(message: Uint8Array, path: readonly number[]): ModelRefLike | undefined {
  let ranges: [number, number][] = [[0, message.length]];
  for (const field of path) {
    const next: [number, number][] = [];
    for (const [s, e] of ranges) if (!eachLengthDelimited(message, s, e, field, (a, b) => next.push([a, b]))) return undefined;
    if (next.length === 0) return undefined;
    ranges = next;
  }
  const ref: ModelRefLike = { name: '' };
  for (const [s, e] of ranges) if (!mergeModelRef(message, s, e, ref)) return undefined;
  return ref;
}

const utf8 = new TextDecoder();

function mergeModelRef(buf: Uint8Array, start: number, end: number, ref: ModelRefLike): boolean {
  let pos = start;
  while (pos < end) {
    const tag = varint(buf, pos, end);
    if (!tag) return false;
    pos = tag[1];
    const wireType = tag[0] % 8;
    const number = Math.floor(tag[0] / 8);
    if ((number === 1 || number === 3) && wireType === 2) {
      const len = varint(buf, pos, end);
      if (!len || len[1] + len[0] > end) return false;
      const text = utf8.decode(buf.subarray(len[1], len[1] + len[0]));
      if (number === 1) ref.name = text;
      else {
        ref.alias = text;
        delete ref.version;
      }
      pos = len[1] + len[0];
    } else if (number === 2 && wireType === 0) {
      const v = varint(buf, pos, end);
      if (!v) return false;
      ref.version = v[0];
      delete ref.alias;
      pos = v[1];
    } else {
      pos = skip(buf, pos, end, wireType);
      if (pos < 0) return false;
    }
  }
  return true;
}

export const PREFIX_BYTES = 5;

/**
 * Follows the length-prefixed messages of one direction of a call as bytes pass, without keeping them:
 * reports each message's declared size as soon as its prefix is complete, and can hold on to the first
 * message (for routing).
 */
export class MessageScanner {
  /** Bytes still to skip of the current message's body. */
  private remaining = 0;
  /** The prefix read so far when it spans chunks (flag byte and big-endian length). */
  private prefixHave = 0;
  private prefixFlag = 0;
  private prefixLength = 0;
  messages = 0;
  private firstParts: Buffer[] | undefined;
  private firstNeed = 0;
  first: { compressed: boolean; body: Buffer } | undefined;
  private firstCompressed = false;

  constructor(
    /** Called with each message's size; return false to stop scanning (the size is over the limit). */
    private readonly onMessage: (size: number) => boolean,
    private readonly keepFirst: boolean,
  ) {}

  /** Feeds bytes; returns false when onMessage refused a message. */
  push(chunk: Buffer): boolean {
    let pos = 0;
    const n = chunk.length;
    while (pos < n) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, n - pos);
        if (this.firstParts) {
          this.firstParts.push(chunk.subarray(pos, pos + take));
          this.firstNeed -= take;
          if (this.firstNeed === 0) this.finishFirst();
        }
        this.remaining -= take;
        pos += take;
        continue;
      }
      let flag: number;
      let size: number;
      if (this.prefixHave === 0 && n - pos >= PREFIX_BYTES) {
        // The usual case: the whole prefix is in this chunk.
        flag = chunk[pos]!;
        size = chunk.readUInt32BE(pos + 1);
        pos += PREFIX_BYTES;
      } else {
        while (this.prefixHave < PREFIX_BYTES && pos < n) {
          const b = chunk[pos++]!;
          if (this.prefixHave === 0) this.prefixFlag = b;
          else this.prefixLength = this.prefixLength * 256 + b;
          this.prefixHave++;
        }
        if (this.prefixHave < PREFIX_BYTES) break;
        flag = this.prefixFlag;
        size = this.prefixLength;
        this.prefixHave = 0;
        this.prefixLength = 0;
      }
      this.messages++;
      if (!this.onMessage(size)) return false;
      if (this.keepFirst && this.messages === 1) {
        this.firstCompressed = flag === 1;
        this.firstParts = [];
        this.firstNeed = size;
        if (size === 0) this.finishFirst();
      }
      this.remaining = size;
    }
    return true;
  }

  private finishFirst(): void {
    const parts = this.firstParts!;
    this.first = { compressed: this.firstCompressed, body: parts.length === 1 ? parts[0]! : Buffer.concat(parts) };
    this.firstParts = undefined;
  }
}

/** The first message's protobuf bytes, decompressed when the caller compressed it (gzip or deflate). */
export function plainMessage(first: { compressed: boolean; body: Buffer }, encoding: string | undefined): Buffer | undefined {
  if (!first.compressed) return first.body;
  try {
    if (encoding === 'gzip') return gunzipSync(first.body);
    if (encoding === 'deflate') return inflateSync(first.body);
  } catch {
    return undefined;
  }
  return undefined;
}

const TIMEOUT_UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };

/** grpc-timeout (`100m`, `5S`, ...) in milliseconds; undefined when absent or malformed. */
export function parseGrpcTimeout(value: string | string[] | undefined): number | undefined {
  if (typeof value !== 'string') return undefined;
  const m = /^(\d{1,8})([HMSmun])$/.exec(value);
  return m ? Number(m[1]) * TIMEOUT_UNITS[m[2]!]! : undefined;
}

/** Milliseconds as a grpc-timeout value (at most 8 digits, as the spec allows). */
export function formatGrpcTimeout(ms: number): string {
  const v = Math.max(0, ms);
  if (v < 100_000) return `${Math.max(1, Math.round(v * 1000))}u`;
  if (v < 1e8) return `${Math.ceil(v)}m`;
  if (v < 1e11) return `${Math.ceil(v / 1000)}S`;
  return `${Math.min(99_999_999, Math.ceil(v / 3_600_000))}H`;
}

/** Percent-encodes a status message as grpc-message requires (bytes outside printable ASCII, and %). */
export function encodeGrpcMessage(message: string): string {
  if (/^[\x20-\x24\x26-\x7e]*$/.test(message)) return message;
  let out = '';
  for (const b of Buffer.from(message, 'utf8')) out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}

/** A grpc-message as received: percent-decoded (left as it came when it is not valid percent-encoding). */
export function decodeGrpcMessage(value: string | string[] | undefined): string {
  const s = Array.isArray(value) ? value.join(',') : (value ?? '');
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** Trailers (or a trailers-only response) for a status the gateway produces itself. */
export function statusHeaders(status: { code: number; details: string; metadata?: Metadata }): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  if (status.metadata) {
    for (const [k, v] of Object.entries(status.metadata.toHttp2Headers())) if (v !== undefined) out[k] = v as string | string[];
  }
  out['grpc-status'] = String(status.code);
  out['grpc-message'] = encodeGrpcMessage(status.details);
  return out;
}

/**
 * RESOURCE_EXHAUSTED for a message over the size limit, as grpc itself reports it, with an ErrorInfo
 * (reason MESSAGE_TOO_LARGE) but no RetryInfo: sending the same message again cannot succeed. The runtime's
 * OverloadedError always carries a retry delay, hence this one status built here.
 */
export function messageTooLarge(message: string, facts: Record<string, string>): { code: number; details: string; metadata: Metadata } {
  const info = ErrorInfo.encode({ reason: 'MESSAGE_TOO_LARGE', domain: ERROR_DOMAIN, metadata: facts }).finish();
  const md = new Metadata();
  md.set(
    'grpc-status-details-bin',
    Buffer.from(RpcStatus.encode({ code: 8, message, details: [{ typeUrl: 'type.googleapis.com/google.rpc.ErrorInfo', value: Buffer.from(info) }] }).finish()),
  );
  return { code: 8, details: message, metadata: md };
}
