// A unary call read and answered straight on the HTTP/2 stream grpc-js accepted, without its per-call machinery
// (interceptor chain, stream decoder, listener objects, event emitters per call). On a small call that machinery
// is a fifth to a quarter of the event loop's work. Only the plain case is taken here — content-type application/grpc,
// no compression, a well-formed grpc-timeout or none, headers grpc-js can read; acceptUnary answers undefined for
// anything else and grpc-js serves that call as it serves every other. Statuses and their wording are grpc-js's
// own, so a client cannot tell which path served it.
import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import { Metadata, status as Status } from '@grpc/grpc-js';

export interface UnaryLimits {
  maxReceiveMessageBytes: number;
  maxSendMessageBytes: number;
}

export interface UnaryStatus {
  code: Status;
  details: string;
  metadata?: Metadata | null;
}

// Stricter than grpc-js's (unanchored) pattern: a value this does not match goes to grpc-js, which answers it.
const TIMEOUT = /^(\d{1,8})([HMSmun])$/;
const UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };
// Headers grpc-js keeps out of the metadata a handler sees.
const TRANSPORT_HEADERS = ['grpc-timeout', 'grpc-encoding', 'grpc-accept-encoding', 'accept-encoding', 'te', 'content-type'];
const RESPONSE_HEADERS = {
  ':status': 200,
  'content-type': 'application/grpc+proto',
  'grpc-accept-encoding': 'identity,deflate,gzip',
  'grpc-encoding': 'identity',
};
const STATUS_OK = { 'grpc-status': '0', 'grpc-message': 'OK' };
const ignore = () => undefined;

/** Bytes before a gRPC message in its frame: a flag byte (1: compressed) and the message's length. */
export const FRAME_HEADER_BYTES = 5;

/** Writes the header of `frame`, a whole uncompressed gRPC frame whose message follows the header's bytes. */
export function writeFrameHeader(frame: Buffer): void {
  frame[0] = 0;
  frame.writeUInt32BE(frame.length - FRAME_HEADER_BYTES, 1);
}

/** A message as a gRPC frame: no compression, its length, the message. */
export function grpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(message.length + FRAME_HEADER_BYTES);
  writeFrameHeader(frame);
  frame.set(message, FRAME_HEADER_BYTES);
  return frame;
}

/** The call on `stream` if it is one this path serves, else undefined (grpc-js serves it). */
export function acceptUnary(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, limits: UnaryLimits): UnaryStream | undefined {
  const type = headers['content-type'];
  if (typeof type !== 'string' || !type.startsWith('application/grpc')) return undefined;
  const encoding = headers['grpc-encoding'];
  if (encoding !== undefined && encoding !== 'identity') return undefined;
  const timeout = headers['grpc-timeout'];
  let deadline: number | undefined;
  if (timeout !== undefined) {
    const m = typeof timeout === 'string' ? TIMEOUT.exec(timeout) : null;
    if (!m) return undefined;
    deadline = Date.now() + ((Number(m[1]) * UNIT_MS[m[2]!]!) | 0);
  }
  let metadata: Metadata;
  try {
    metadata = Metadata.fromHttp2Headers(headers);
  } catch {
    return undefined;
  }
  for (const key of TRANSPORT_HEADERS) metadata.remove(key);
  return new UnaryStream(stream, String(headers[':path']), metadata, deadline, limits);
}

/**
 * One unary call: read() delivers its one request message; sendFrame() or sendStatus() answers it, once.
 * It is Cancellable in callSignal's sense: 'cancelled' fires when the stream closes before the handler's answer
 * was sent (the client reset it, the connection went, or the deadline passed and DEADLINE_EXCEEDED was sent).
 */
export class UnaryStream {
  cancelled = false;
  private answered = false;
  private handlerAnswered = false;
  /** The status this call was answered with, if it was answered without a message. */
  private sent: UnaryStatus | undefined;
  private onCancel: (() => void) | undefined;
  private readonly timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly stream: ServerHttp2Stream,
    private readonly path: string,
    readonly metadata: Metadata,
    readonly deadline: number | undefined,
    private readonly limits: UnaryLimits,
  ) {
    // Errors on the stream come with its close, which is what the call acts on.
    stream.on('error', ignore);
    stream.once('close', () => {
      if (this.timer) clearTimeout(this.timer);
      if (this.handlerAnswered) return;
      this.cancelled = true;
      this.onCancel?.();
    });
    if (deadline !== undefined) {
      this.timer = setTimeout(() => this.status({ code: Status.DEADLINE_EXCEEDED, details: 'Deadline exceeded' }), Math.max(0, deadline - Date.now()));
    }
  }

  /** Calls `onMessage` with the request's bytes once the client has sent them all; bad framing is answered here. */
  read(onMessage: (bytes: Buffer) => void): void {
    const chunks: Buffer[] = [];
    let size = 0;
    let length = -1;
    const max = this.limits.maxReceiveMessageBytes;
    this.stream.on('data', (chunk: Buffer) => {
      if (this.answered) return;
      size += chunk.length;
      chunks.push(chunk);
      if (length < 0 && size >= FRAME_HEADER_BYTES) {
        length = (chunks.length === 1 ? chunk : Buffer.concat(chunks, size)).readUInt32BE(1);
        if (max !== -1 && length > max) {
          this.status({ code: Status.RESOURCE_EXHAUSTED, details: `Received message larger than max (${length} vs ${max})` });
          return;
        }
      }
      if (length >= 0 && size > length + FRAME_HEADER_BYTES) this.status({ code: Status.UNIMPLEMENTED, details: `Received a second request message for server streaming method ${this.path}` });
    });
    this.stream.once('end', () => {
      if (this.answered) return;
      if (length < 0 || size < length + FRAME_HEADER_BYTES) {
        this.status({ code: Status.UNIMPLEMENTED, details: `Received no request message for server streaming method ${this.path}` });
        return;
      }
      onMessage((chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)).subarray(FRAME_HEADER_BYTES));
    });
  }

  on(_event: 'cancelled', listener: () => void): void {
    this.onCancel = listener;
  }

  removeListener(_event: 'cancelled', listener: () => void): void {
    if (this.onCancel === listener) this.onCancel = undefined;
  }

  getDeadline(): number {
    return this.deadline ?? Infinity;
  }

  /**
   * Answers with one message (a whole frame, see grpcFrame) and OK. Returns what the caller got instead, if not
   * that — RESOURCE_EXHAUSTED for a message over the send limit, the DEADLINE_EXCEEDED already sent, CANCELLED
   * when the caller went — so that the call's span and metrics say what the caller got.
   */
  sendFrame(frame: Buffer): UnaryStatus | undefined {
    this.handlerAnswered = true;
    const max = this.limits.maxSendMessageBytes;
    const length = frame.length - FRAME_HEADER_BYTES;
    if (max !== -1 && length > max) {
      const refused = { code: Status.RESOURCE_EXHAUSTED, details: `Sent message larger than max (${length} vs. ${max})` };
      this.status(refused);
      return refused;
    }
    if (!this.open()) return this.sent ?? (this.cancelled ? { code: Status.CANCELLED, details: 'the caller cancelled the call' } : undefined);
    this.send(() => {
      this.stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
      this.stream.once('wantTrailers', () => this.stream.sendTrailers(STATUS_OK));
      this.stream.end(frame);
    });
    return undefined;
  }

  /** Answers with a status and no message (trailers only). */
  sendStatus(status: UnaryStatus): void {
    this.handlerAnswered = true;
    this.status(status);
  }

  private status(status: UnaryStatus): void {
    if (!this.open()) return;
    this.sent = status;
    const { code, details, metadata } = status;
    const trailers = { ...RESPONSE_HEADERS, 'grpc-status': String(code), 'grpc-message': encodeURI(details), ...metadata?.toHttp2Headers() };
    this.send(() => this.stream.respond(trailers, { endStream: true }));
  }

  /** Runs `write`; if node:http2 refuses it (the session went away between the check and the write), resets the stream. */
  private send(write: () => void): void {
    try {
      write();
    } catch {
      this.stream.destroy();
    }
  }

  private open(): boolean {
    if (this.answered || this.stream.destroyed || this.stream.closed) return false;
    this.answered = true;
    if (this.timer) clearTimeout(this.timer);
    return true;
  }
}
