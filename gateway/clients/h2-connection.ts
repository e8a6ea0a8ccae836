// A client HTTP/2 connection written for the gateway's pass-through (RFC 9113), used instead of `node:http2`'s
// client. Measured on the gateway bench, `node:http2`'s client half (a `ClientHttp2Stream` — a Duplex with its
// native handle — per call) cost about as much CPU per call as the whole echo service it fronted; this one
// frames, parses and keeps flow control in a few plain objects. It does what a gRPC pass-through needs and no
// more: no server push (disabled in SETTINGS), no priorities, no TLS (the mesh's hops are plaintext inside the
// cluster, as before). The streams it returns keep the small part of `ClientHttp2Stream`'s API the gateway uses
// (events response/trailers/data/end/close/drain, write/end/pause/resume/close, id, rstCode, closed).
//
// What leaves in one turn of the event loop goes out in one socket write at the next tick, so a burst of calls
// costs one syscall; requests are sent as soon as the turn that made them ends rather than when the loop next
// comes round (which `node:http2` does), so the replica can start on them while the gateway reads the rest.
import { EventEmitter } from 'node:events';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2';
import type { Socket } from 'node:net';
import { HpackDecoder, HpackEncoder, HpackError } from './hpack.js';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

const enum Frame {
  DATA = 0x0,
  HEADERS = 0x1,
  PRIORITY = 0x2,
  RST_STREAM = 0x3,
  SETTINGS = 0x4,
  PUSH_PROMISE = 0x5,
  PING = 0x6,
  GOAWAY = 0x7,
  WINDOW_UPDATE = 0x8,
  CONTINUATION = 0x9,
}
const END_STREAM = 0x1;
const ACK = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY_FLAG = 0x20;

/** HTTP/2 error codes (RFC 9113 §7), the same numbers as `http2.constants.NGHTTP2_*`. */
export const H2Error = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  ENHANCE_YOUR_CALM: 0xb,
} as const;

const MAX_WINDOW = 2 ** 31 - 1;
const DEFAULT_WINDOW = 65_535;
const MIN_FRAME_SIZE = 16_384;
const MAX_FRAME_SIZE_LIMIT = 2 ** 24 - 1;
const MAX_STREAM_ID = 2 ** 31 - 1;
/** Bytes a stream may have queued for sending before `write` asks its caller to wait for 'drain'. */
const STREAM_HIGH_WATER = 64 * 1024;
/** Above this many bytes in the socket's buffer, DATA waits for the socket to drain. */
const SOCKET_HIGH_WATER = 1024 * 1024;

export interface H2ConnectionOptions {
  /** Our receive window per stream (SETTINGS_INITIAL_WINDOW_SIZE); bounds what a paused stream buffers. */
  initialWindowSize?: number;
  /** Our receive window for the whole connection. */
  connectionWindowSize?: number;
  /**
   * Bytes that paused streams may hold in all before what they receive is given back to the connection's
   * window only as it is taken (which then slows every stream on the connection, and bounds the memory).
   */
  maxHeldBytes?: number;
  /** The largest frame we accept (SETTINGS_MAX_FRAME_SIZE). */
  maxFrameSize?: number;
  /** Streams opened at once before the peer's SETTINGS say how many it allows. */
  assumedMaxConcurrentStreams?: number;
  /** A response header block larger than this (RFC 9113 size) resets its stream. */
  maxHeaderListSize?: number;
}

/**
 * One connection. Events: 'connect' (the socket connected and our preface went out), 'goaway' (code,
 * lastStreamId: no new streams here), 'error' (err: the connection failed), 'close' (every stream has closed).
 */
export class H2Connection extends EventEmitter {
  private readonly encoder = new HpackEncoder();
  private readonly decoder: HpackDecoder;
  private readonly streams = new Map<number, H2Stream>();
  /** Streams waiting for the socket to connect or for a free place among the peer's concurrent streams. */
  private readonly waiting: H2Stream[] = [];
  /** Streams with DATA to send that wait for the connection's window or the socket. */
  private readonly blocked = new Set<H2Stream>();
  private readonly pings: (() => void)[] = [];
  private readonly localWindow: number;
  private readonly localMaxFrame: number;
  private readonly maxHeaderListSize: number;

  private nextId = 1;
  private connected = false;
  private goneAway = false;
  private isClosed = false;
  private isDestroyed = false;

  private peerMaxConcurrent: number;
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrame = MIN_FRAME_SIZE;
  private sendWindow = DEFAULT_WINDOW;
  private recvWindow: number;
  private recvUnacked = 0;
  private readonly fullRecvWindow: number;
  private readonly maxHeld: number;
  /** What paused streams hold now. */
  heldBytes = 0;

  private out: Buffer[] = [];
  private outBytes = 0;
  private flushQueued = false;

  private input: Buffer | undefined;
  private prefaceDone = false;
  /** A header block arriving in CONTINUATION frames: its stream, flags and parts so far. */
  private continuing: { id: number; flags: number; parts: Buffer[]; size: number } | undefined;

  constructor(
    private readonly socket: Socket,
    options: H2ConnectionOptions = {},
  ) {
    super();
    this.localWindow = options.initialWindowSize ?? 4 * 1024 * 1024;
    this.localMaxFrame = options.maxFrameSize ?? MIN_FRAME_SIZE;
    this.recvWindow = this.fullRecvWindow = options.connectionWindowSize ?? 16 * 1024 * 1024;
    this.maxHeld = options.maxHeldBytes ?? 32 * 1024 * 1024;
    this.peerMaxConcurrent = options.assumedMaxConcurrentStreams ?? 1000;
    this.maxHeaderListSize = options.maxHeaderListSize ?? 64 * 1024;
    this.decoder = new HpackDecoder(4096, this.maxHeaderListSize);
    socket.on('connect', () => this.onConnect());
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('drain', () => this.unblock());
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => this.onSocketClose());
    if (!socket.connecting && !socket.destroyed) queueMicrotask(() => this.onConnect());
  }

  /** The socket is still connecting. */
  get connecting(): boolean {
    return !this.connected && !this.isDestroyed;
  }

  get closed(): boolean {
    return this.isClosed || this.isDestroyed;
  }

  get destroyed(): boolean {
    return this.isDestroyed;
  }

  /** New streams may be opened here (not closing, no GOAWAY, stream ids left). */
  get usable(): boolean {
    return !this.isClosed && !this.isDestroyed && !this.goneAway && this.nextId <= MAX_STREAM_ID;
  }

  /** Opens a stream with these request headers; it is sent once the socket is up and a stream place is free. */
  request(headers: OutgoingHttpHeaders): H2Stream {
    if (!this.usable) throw new Error('the HTTP/2 connection is closed');
    const stream = new H2Stream(this, headerList(headers));
    this.waiting.push(stream);
    if (this.connected) this.openWaiting();
    return stream;
  }

  /** Sends a PING; `onAck` runs when the peer answers it. */
  ping(onAck: () => void): void {
    if (this.isDestroyed) return;
    this.pings.push(onAck);
    this.frame(Frame.PING, 0, 0, Buffer.alloc(8));
  }

  /** Stops new streams and closes the connection once the streams open now have finished. */
  close(): void {
    if (this.isClosed || this.isDestroyed) return;
    this.isClosed = true;
    for (const s of this.waiting.splice(0)) s.closeNow(undefined);
    if (this.connected) this.frame(Frame.GOAWAY, 0, 0, goawayPayload(H2Error.NO_ERROR));
    this.maybeEnd();
  }

  /** Closes the socket now; every stream closes (those never sent with no id). */
  destroy(err?: Error): void {
    if (this.isDestroyed) return;
    this.isDestroyed = true;
    this.flush();
    this.socket.destroy();
    this.closeAllStreams();
    if (err) this.emit('error', err);
  }

  // ---- sending ----

  /** Queues one frame; everything queued in this turn leaves in one write at the next tick. */
  frame(type: number, flags: number, id: number, payload: Buffer | undefined): void {
    if (this.isDestroyed) return;
    const length = payload ? payload.length : 0;
    const head = Buffer.allocUnsafe(9);
    head[0] = length >>> 16;
    head[1] = (length >>> 8) & 0xff;
    head[2] = length & 0xff;
    head[3] = type;
    head[4] = flags;
    head.writeUInt32BE(id, 5);
    this.out.push(head);
    this.outBytes += 9;
    if (payload && length) {
      this.out.push(payload);
      this.outBytes += length;
    }
    if (!this.flushQueued && this.connected) {
      this.flushQueued = true;
      process.nextTick(flushConnection, this);
    }
  }

  flush(): void {
    this.flushQueued = false;
    if (!this.out.length || this.socket.destroyed || !this.connected) return;
    const out = this.out;
    this.out = [];
    const bytes = this.outBytes;
    this.outBytes = 0;
    if (out.length === 1) this.socket.write(out[0]!);
    else if (bytes <= 64 * 1024) this.socket.write(Buffer.concat(out, bytes));
    else {
      // Large DATA: hand the buffers over as they are instead of copying them into one.
      this.socket.cork();
      for (const b of out) this.socket.write(b);
      this.socket.uncork();
    }
  }

  /** DATA may go out now on the socket (its buffer is not full). */
  get socketWritable(): boolean {
    return this.socket.writableLength + this.outBytes < SOCKET_HIGH_WATER;
  }

  /** Takes up to `want` bytes of the connection's send window and the peer's frame size. */
  takeSendWindow(want: number, streamWindow: number): number {
    const n = Math.min(want, streamWindow, this.sendWindow, this.peerMaxFrame);
    if (n > 0) this.sendWindow -= n;
    return n;
  }

  block(stream: H2Stream): void {
    this.blocked.add(stream);
  }

  private unblock(): void {
    if (!this.blocked.size) return;
    const streams = [...this.blocked];
    this.blocked.clear();
    for (const s of streams) {
      if (this.sendWindow <= 0 || !this.socketWritable) {
        this.blocked.add(s);
        continue;
      }
      s.sendQueued();
    }
  }

  private onConnect(): void {
    if (this.connected || this.isDestroyed) return;
    this.connected = true;
    const settings = Buffer.alloc(18);
    settings.writeUInt16BE(0x2, 0); // ENABLE_PUSH
    settings.writeUInt32BE(0, 2);
    settings.writeUInt16BE(0x4, 6); // INITIAL_WINDOW_SIZE
    settings.writeUInt32BE(this.localWindow, 8);
    settings.writeUInt16BE(0x5, 12); // MAX_FRAME_SIZE
    settings.writeUInt32BE(this.localMaxFrame, 14);
    // Our preface and SETTINGS go first, before anything queued while the socket was connecting.
    const queued = this.out;
    this.out = [];
    this.outBytes = 0;
    this.out.push(PREFACE);
    this.outBytes += PREFACE.length;
    this.frame(Frame.SETTINGS, 0, 0, settings);
    if (this.fullRecvWindow > DEFAULT_WINDOW) this.frame(Frame.WINDOW_UPDATE, 0, 0, u32(this.fullRecvWindow - DEFAULT_WINDOW));
    for (const b of queued) {
      this.out.push(b);
      this.outBytes += b.length;
    }
    this.flush();
    this.emit('connect');
    this.openWaiting();
  }

  private openWaiting(): void {
    while (this.waiting.length && this.streams.size < this.peerMaxConcurrent && this.usable) {
      const stream = this.waiting.shift()!;
      if (stream.closed) continue;
      const id = this.nextId;
      this.nextId += 2;
      this.streams.set(id, stream);
      stream.open(id, this.peerInitialWindow, this.localWindow);
      this.sendHeaders(id, stream.requestHeaders);
      stream.sendQueued();
    }
    if (!this.usable && !this.goneAway) for (const s of this.waiting.splice(0)) s.closeNow(undefined);
  }

  private sendHeaders(id: number, fields: string[]): void {
    const block = this.encoder.encode(fields);
    const max = this.peerMaxFrame;
    if (block.length <= max) {
      this.frame(Frame.HEADERS, END_HEADERS, id, block);
      return;
    }
    this.frame(Frame.HEADERS, 0, id, block.subarray(0, max));
    for (let at = max; at < block.length; at += max) {
      const end = Math.min(block.length, at + max);
      this.frame(Frame.CONTINUATION, end === block.length ? END_HEADERS : 0, id, block.subarray(at, end));
    }
  }

  /** A stream finished (both sides ended, or reset): its place is free. */
  forget(stream: H2Stream): void {
    if (stream.id !== undefined && this.streams.get(stream.id) === stream) this.streams.delete(stream.id);
    this.blocked.delete(stream);
    if (this.waiting.length) this.openWaiting();
    this.maybeEnd();
  }

  /** Stream-level receive window: the caller consumed `n` bytes of stream `id`. */
  consumed(id: number, n: number): void {
    this.frame(Frame.WINDOW_UPDATE, 0, id, u32(n));
  }

  private maybeEnd(): void {
    if ((this.isClosed || this.goneAway) && this.streams.size === 0 && this.waiting.length === 0 && !this.isDestroyed) {
      this.isDestroyed = true;
      this.flush();
      // Some peers keep their half of a connection open after GOAWAY; ours is done once our bytes are out.
      this.socket.end(() => this.socket.destroy());
      this.closeAllStreams();
    }
  }

  // ---- receiving ----

  private onData(chunk: Buffer): void {
    if (this.isDestroyed) return;
    let buf = this.input ? Buffer.concat([this.input, chunk]) : chunk;
    this.input = undefined;
    let at = 0;
    try {
      while (buf.length - at >= 9) {
        const length = (buf[at]! << 16) | (buf[at + 1]! << 8) | buf[at + 2]!;
        if (length > this.localMaxFrame) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, `a frame of ${length} bytes is over the limit of ${this.localMaxFrame}`);
        if (buf.length - at - 9 < length) break;
        const type = buf[at + 3]!;
        const flags = buf[at + 4]!;
        const id = buf.readUInt32BE(at + 5) & 0x7fffffff;
        const payload = buf.subarray(at + 9, at + 9 + length);
        at += 9 + length;
        this.onFrame(type, flags, id, payload);
        if (this.isDestroyed) return;
      }
    } catch (err) {
      if (err instanceof ConnectionError) this.connectionError(err.code, err.message);
      else if (err instanceof HpackError) this.connectionError(H2Error.COMPRESSION_ERROR, `undecodable header block: ${err.message}`);
      // A throw from a listener is the gateway's own fault, not the peer's; the connection still cannot go on
      // from a half-handled frame, and failing it (the calls on it fail over) beats taking the process down.
      else this.connectionError(H2Error.INTERNAL_ERROR, `the gateway failed while handling a frame: ${(err as Error)?.stack ?? String(err)}`);
      return;
    }
    // A read's buffer is ours (the socket does not reuse it), so the partial frame at its end is kept as it is.
    if (at < buf.length) this.input = at === 0 ? buf : buf.subarray(at);
  }

  private onFrame(type: number, flags: number, id: number, payload: Buffer): void {
    if (this.continuing && type !== Frame.CONTINUATION) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'a header block was interrupted by another frame');
    if (!this.prefaceDone) {
      if (type !== Frame.SETTINGS || flags & ACK) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'the peer did not start with SETTINGS');
      this.prefaceDone = true;
    }
    switch (type) {
      case Frame.DATA:
        return this.onDataFrame(flags, id, payload);
      case Frame.HEADERS:
        return this.onHeadersFrame(flags, id, payload);
      case Frame.CONTINUATION:
        return this.onContinuation(flags, id, payload);
      case Frame.RST_STREAM: {
        if (id === 0 || payload.length !== 4) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'malformed RST_STREAM');
        this.streams.get(id)?.onReset(payload.readUInt32BE(0));
        return;
      }
      case Frame.SETTINGS:
        return this.onSettings(flags, id, payload);
      case Frame.PING: {
        if (id !== 0 || payload.length !== 8) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'malformed PING');
        if (flags & ACK) this.pings.shift()?.();
        else this.frame(Frame.PING, ACK, 0, payload);
        return;
      }
      case Frame.GOAWAY: {
        if (id !== 0 || payload.length < 8) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'malformed GOAWAY');
        return this.onGoaway(payload.readUInt32BE(0) & 0x7fffffff, payload.readUInt32BE(4));
      }
      case Frame.WINDOW_UPDATE: {
        if (payload.length !== 4) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'malformed WINDOW_UPDATE');
        const inc = payload.readUInt32BE(0) & 0x7fffffff;
        if (id === 0) {
          if (inc === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'a WINDOW_UPDATE of 0');
          if (this.sendWindow + inc > MAX_WINDOW) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'the connection window grew past 2^31-1');
          this.sendWindow += inc;
          this.unblock();
        } else this.streams.get(id)?.onWindowUpdate(inc);
        return;
      }
      case Frame.PUSH_PROMISE:
        throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'PUSH_PROMISE although push is disabled');
      default:
        // PRIORITY and unknown frame types are ignored (RFC 9113 §5.5).
        return;
    }
  }

  private onDataFrame(flags: number, id: number, payload: Buffer): void {
    if (id === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'DATA on stream 0');
    const size = payload.length;
    if (size > this.recvWindow) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'the peer sent more than the connection window');
    this.recvWindow -= size;
    const stream = this.streams.get(id);
    if (!stream) {
      if (id >= this.nextId) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `DATA on stream ${id}, which was never opened`);
      this.credit(size); // a stream we reset or finished: its bytes only count for the connection
      return;
    }
    let data = payload;
    if (flags & PADDED) {
      const pad = payload[0];
      if (pad === undefined || pad >= payload.length) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'DATA padding longer than the frame');
      data = payload.subarray(1, payload.length - pad);
    }
    // The connection window is given back as data arrives (each stream's own window bounds what it holds),
    // unless paused streams already hold more than maxHeldBytes: then when it is taken.
    const held = stream.onData(data, size, (flags & END_STREAM) !== 0);
    if (held && this.heldBytes > this.maxHeld) stream.deferCredit(size);
    else this.credit(size);
  }

  /** `n` received bytes no longer count against the connection's receive window. */
  credit(n: number): void {
    this.recvUnacked += n;
    if (this.recvUnacked >= this.fullRecvWindow / 2 && !this.isDestroyed) {
      this.frame(Frame.WINDOW_UPDATE, 0, 0, u32(this.recvUnacked));
      this.recvWindow += this.recvUnacked;
      this.recvUnacked = 0;
    }
  }

  private onHeadersFrame(flags: number, id: number, payload: Buffer): void {
    if (id === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'HEADERS on stream 0');
    let start = 0;
    let end = payload.length;
    if (flags & PADDED) {
      const pad = payload[0];
      start = 1;
      if (pad === undefined || pad > payload.length - 1) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'HEADERS padding longer than the frame');
      end -= pad;
    }
    if (flags & PRIORITY_FLAG) start += 5;
    if (start > end) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'HEADERS shorter than its fields');
    const part = payload.subarray(start, end);
    if (flags & END_HEADERS) this.onHeaderBlock(id, flags, part);
    else this.continuing = { id, flags, parts: [part], size: part.length };
  }

  private onContinuation(flags: number, id: number, payload: Buffer): void {
    const c = this.continuing;
    if (!c || c.id !== id) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'CONTINUATION without its HEADERS');
    c.parts.push(payload);
    c.size += payload.length;
    // The decoder bounds the decoded list; this bounds what a peer can make us hold before decoding.
    if (c.size > 4 * this.maxHeaderListSize + 16_384) throw new ConnectionError(H2Error.ENHANCE_YOUR_CALM, 'a header block too large to accept');
    if (flags & END_HEADERS) {
      this.continuing = undefined;
      this.onHeaderBlock(id, c.flags, Buffer.concat(c.parts, c.size));
    }
  }

  private onHeaderBlock(id: number, flags: number, block: Buffer): void {
    // Decoded even for a stream we no longer track: the peer's compression state moved either way.
    const { fields, tooLarge } = this.decoder.decode(block);
    const stream = this.streams.get(id);
    if (!stream) {
      if (id >= this.nextId) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `HEADERS on stream ${id}, which was never opened`);
      return;
    }
    if (tooLarge) {
      stream.close(H2Error.ENHANCE_YOUR_CALM);
      return;
    }
    stream.onHeaders(headerObject(fields), flags);
  }

  private onSettings(flags: number, id: number, payload: Buffer): void {
    if (id !== 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'SETTINGS on a stream');
    if (flags & ACK) return;
    if (payload.length % 6) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'malformed SETTINGS');
    let windowDelta = 0;
    for (let at = 0; at < payload.length; at += 6) {
      const key = payload.readUInt16BE(at);
      const value = payload.readUInt32BE(at + 2);
      if (key === 0x3) this.peerMaxConcurrent = value;
      else if (key === 0x4) {
        if (value > MAX_WINDOW) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1');
        windowDelta += value - this.peerInitialWindow;
        this.peerInitialWindow = value;
      } else if (key === 0x5) {
        if (value < MIN_FRAME_SIZE || value > MAX_FRAME_SIZE_LIMIT) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'SETTINGS_MAX_FRAME_SIZE out of range');
        this.peerMaxFrame = value;
      }
      // HEADER_TABLE_SIZE does not matter: our encoder never uses the dynamic table. The rest is advisory.
    }
    // The peer applies its new values when our ACK arrives: DATA that uses a larger window must follow it.
    this.frame(Frame.SETTINGS, ACK, 0, undefined);
    if (windowDelta) for (const s of [...this.streams.values()]) s.adjustWindow(windowDelta);
    this.openWaiting();
  }

  private onGoaway(lastId: number, code: number): void {
    this.goneAway = true;
    // Streams the peer never processed may be sent again elsewhere: they close as refused.
    for (const [id, s] of this.streams) if (id > lastId) s.onReset(H2Error.REFUSED_STREAM);
    for (const s of this.waiting.splice(0)) s.closeNow(undefined);
    this.emit('goaway', code, lastId);
    this.maybeEnd();
  }

  private connectionError(code: number, message: string): void {
    if (this.isDestroyed) return;
    // The peer hears what it broke; never the gateway's own stack.
    this.frame(Frame.GOAWAY, 0, 0, goawayPayload(code, code === H2Error.INTERNAL_ERROR ? '' : message));
    this.destroy(new Error(`HTTP/2 connection error (code ${code}): ${message}`));
  }

  private onSocketClose(): void {
    if (!this.isDestroyed) {
      this.isDestroyed = true;
      this.closeAllStreams();
    }
    this.emit('close');
  }

  private closeAllStreams(): void {
    for (const s of this.waiting.splice(0)) s.closeNow(undefined);
    for (const s of [...this.streams.values()]) s.closeNow(undefined);
    this.streams.clear();
    this.blocked.clear();
    this.pings.length = 0;
  }
}

function flushConnection(c: H2Connection): void {
  c.flush();
}

/**
 * One request/response exchange. Events: 'response' (headers, flags; flags has END_STREAM for a
 * trailers-only answer), 'data' (chunk), 'trailers' (headers), 'end' (the response is complete), 'drain',
 * 'close' (always last, on a later tick). `id` stays undefined for a stream never sent; `rstCode` is set when
 * the stream was reset (by either side; REFUSED_STREAM also when the peer's GOAWAY said it never saw it).
 */
export class H2Stream extends EventEmitter {
  id: number | undefined;
  rstCode: number | undefined;
  private sendWindow = 0;
  private recvSize = 0;
  private recvUnacked = 0;
  /** Consumed bytes are given back to the peer in steps of this size (not per message). */
  private recvStep = 0;
  /** Connection-window credit for held bytes, returned when they are taken (see maxHeldBytes). */
  private deferred = 0;
  private queue: Buffer[] = [];
  private queued = 0;
  private endRequested = false;
  private localEnded = false;
  private remoteEnded = false;
  private gotResponse = false;
  private paused = false;
  private buffered: Buffer[] | undefined;
  private endPending = false;
  private needDrain = false;
  private isClosed = false;

  constructor(
    private readonly conn: H2Connection,
    readonly requestHeaders: string[],
  ) {
    super();
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Queues request bytes; false when the caller should wait for 'drain' before writing more. */
  write(chunk: Buffer): boolean {
    if (this.isClosed || this.endRequested) return false;
    if (chunk.length) {
      this.queue.push(chunk);
      this.queued += chunk.length;
    }
    this.sendQueued();
    const ok = this.queued < STREAM_HIGH_WATER && this.conn.socketWritable;
    if (!ok) {
      this.needDrain = true;
      // With nothing of its own queued, the stream still hears when the socket drains.
      if (!this.queued) this.conn.block(this);
    }
    return ok;
  }

  /** Ends the request, after `chunk` if given. */
  end(chunk?: Buffer): void {
    if (this.isClosed || this.endRequested) return;
    if (chunk?.length) {
      this.queue.push(chunk);
      this.queued += chunk.length;
    }
    this.endRequested = true;
    this.sendQueued();
  }

  /** Stops 'data' events; the peer is held back by this stream's window once it is used up. */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    // A listener may pause or close the stream again; what is still held then stays in `buffered`.
    const held = this.buffered;
    while (held?.length && !this.paused && !this.isClosed) {
      const chunk = held.shift()!;
      this.conn.heldBytes -= chunk.length;
      this.deliver(chunk);
    }
    if (this.paused || this.isClosed) return;
    this.buffered = undefined;
    this.returnDeferred();
    if (this.endPending) this.finishResponse();
  }

  /** Resets the stream (RST_STREAM with `code`, NO_ERROR by default); 'close' follows on a later tick. */
  close(code: number = H2Error.NO_ERROR): void {
    if (this.isClosed) return;
    if (this.id !== undefined && !(this.localEnded && this.remoteEnded)) this.conn.frame(Frame.RST_STREAM, 0, this.id, u32(code));
    this.closeNow(code);
  }

  // ---- called by the connection ----

  open(id: number, sendWindow: number, recvWindow: number): void {
    this.id = id;
    this.sendWindow = sendWindow;
    this.recvSize = recvWindow;
    this.recvStep = Math.max(1, Math.min(64 * 1024, recvWindow >> 1));
  }

  /** Sends what the windows allow of the queued request bytes (and END_STREAM once all is out). */
  sendQueued(): void {
    if (this.id === undefined || this.localEnded || this.isClosed) return;
    while (this.queue.length) {
      if (!this.conn.socketWritable) {
        this.conn.block(this);
        return;
      }
      const head = this.queue[0]!;
      const n = this.conn.takeSendWindow(head.length, this.sendWindow);
      if (n <= 0) {
        if (this.sendWindow > 0) this.conn.block(this);
        return;
      }
      this.sendWindow -= n;
      const part = n === head.length ? head : head.subarray(0, n);
      if (n === head.length) this.queue.shift();
      else this.queue[0] = head.subarray(n);
      this.queued -= n;
      const last = this.endRequested && this.queue.length === 0;
      this.conn.frame(Frame.DATA, last ? END_STREAM : 0, this.id, part);
      if (last) this.localEnded = true;
    }
    if (this.endRequested && !this.localEnded) {
      this.conn.frame(Frame.DATA, END_STREAM, this.id, undefined);
      this.localEnded = true;
    }
    if (this.needDrain && this.queued < STREAM_HIGH_WATER) {
      this.needDrain = false;
      process.nextTick(emitDrain, this);
    }
    if (this.localEnded && this.remoteEnded) this.closeNow(undefined);
  }

  onWindowUpdate(inc: number): void {
    if (inc === 0) {
      this.close(H2Error.PROTOCOL_ERROR);
      return;
    }
    this.adjustWindow(inc);
  }

  /** The send window moves by `delta` (a WINDOW_UPDATE, or a new SETTINGS_INITIAL_WINDOW_SIZE: may be negative). */
  adjustWindow(delta: number): void {
    if (this.sendWindow + delta > MAX_WINDOW) {
      this.close(H2Error.FLOW_CONTROL_ERROR);
      return;
    }
    this.sendWindow += delta;
    if (this.queue.length || (this.endRequested && !this.localEnded)) this.sendQueued();
  }

  onHeaders(headers: IncomingHttpHeaders, flags: number): void {
    if (this.isClosed || this.remoteEnded) return;
    const end = (flags & END_STREAM) !== 0;
    if (this.gotResponse && !end) {
      this.close(H2Error.PROTOCOL_ERROR);
      return;
    }
    const first = !this.gotResponse;
    if (first) {
      const status = Number(headers[':status']);
      // Informational answers (100, 103) come before the real one.
      if (status >= 100 && status < 200 && !end) return;
      this.gotResponse = true;
    }
    // Ended before the listeners run, so one that closes the stream does not reset a stream the peer ended.
    if (end) this.remoteEnded = true;
    this.emit(first ? 'response' : 'trailers', headers, flags);
    if (end) this.onRemoteEnd();
  }

  /** Returns true when the bytes were kept for later (the stream is paused). */
  onData(data: Buffer, frameSize: number, end: boolean): boolean {
    if (this.isClosed || this.remoteEnded) return false;
    if (!this.gotResponse) {
      this.close(H2Error.PROTOCOL_ERROR);
      return false;
    }
    if (frameSize > this.recvSize) {
      this.close(H2Error.FLOW_CONTROL_ERROR);
      return false;
    }
    this.recvSize -= frameSize;
    // Padding is consumed at once; the data when the caller takes it.
    this.recvUnacked += frameSize - data.length;
    let held = false;
    if (data.length) {
      if (this.paused) {
        // A copy, so that a small piece held for a while does not keep a whole read's buffer alive.
        (this.buffered ??= []).push(Buffer.from(data));
        this.conn.heldBytes += data.length;
        held = true;
      } else this.deliver(data);
    }
    if (end) {
      this.remoteEnded = true;
      this.onRemoteEnd();
    }
    return held;
  }

  deferCredit(n: number): void {
    this.deferred += n;
  }

  private returnDeferred(): void {
    if (!this.deferred) return;
    const n = this.deferred;
    this.deferred = 0;
    this.conn.credit(n);
  }

  onReset(code: number): void {
    if (this.isClosed) return;
    // A reset with NO_ERROR after a complete response only tells us to stop sending.
    if (code === H2Error.NO_ERROR && this.remoteEnded) {
      this.localEnded = true;
      this.closeNow(undefined);
      return;
    }
    this.closeNow(code);
  }

  /** Closes without sending anything; 'close' follows on a later tick. */
  closeNow(rstCode: number | undefined): void {
    if (this.isClosed) return;
    this.isClosed = true;
    if (rstCode !== undefined) this.rstCode = rstCode;
    this.queue = [];
    // What it held is dropped: the connection gets its window back.
    if (this.buffered) for (const b of this.buffered) this.conn.heldBytes -= b.length;
    this.buffered = undefined;
    this.returnDeferred();
    this.conn.forget(this);
    process.nextTick(emitClose, this);
  }

  private deliver(data: Buffer): void {
    this.emit('data', data);
    this.recvUnacked += data.length;
    if (this.recvUnacked >= this.recvStep && !this.remoteEnded && !this.isClosed) {
      this.conn.consumed(this.id!, this.recvUnacked);
      this.recvSize += this.recvUnacked;
      this.recvUnacked = 0;
    }
  }

  private onRemoteEnd(): void {
    if (this.paused && this.buffered?.length) {
      this.endPending = true;
      return;
    }
    this.finishResponse();
  }

  private finishResponse(): void {
    this.endPending = false;
    if (this.isClosed) return;
    this.emit('end');
    if (this.isClosed) return;
    // The answer is complete while the request is not: the call is over, so the peer is told to stop waiting
    // for the rest (the stream itself ended well: no rstCode).
    if (!this.localEnded) this.conn.frame(Frame.RST_STREAM, 0, this.id!, u32(H2Error.CANCEL));
    this.closeNow(undefined);
  }
}

function emitClose(s: H2Stream): void {
  s.emit('close');
}

function emitDrain(s: H2Stream): void {
  s.emit('drain');
}

class ConnectionError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

/** A client's GOAWAY: the last stream it took from the peer is always 0 (push is disabled). */
function goawayPayload(code: number, debug = ''): Buffer {
  const d = Buffer.from(debug.slice(0, 200), 'utf8');
  const b = Buffer.allocUnsafe(8 + d.length);
  b.writeUInt32BE(0, 0);
  b.writeUInt32BE(code, 4);
  d.copy(b, 8);
  return b;
}

/** Request headers as a flat [name, value, ...] list, pseudo-headers first (RFC 9113 §8.3). */
function headerList(headers: OutgoingHttpHeaders): string[] {
  const pseudo: string[] = [];
  const rest: string[] = [];
  for (const name in headers) {
    const v = headers[name];
    if (v === undefined) continue;
    const into = name.charCodeAt(0) === 58 /* : */ ? pseudo : rest;
    if (Array.isArray(v)) for (const x of v) into.push(name, String(x));
    else into.push(name, String(v));
  }
  return pseudo.length ? pseudo.concat(rest) : rest;
}

/** A decoded header list as Node's http2 gives it: repeated names become arrays. */
function headerObject(fields: string[]): IncomingHttpHeaders {
  const h: Record<string, string | string[] | number> = {};
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]!;
    const value = fields[i + 1]!;
    if (name === ':status') {
      h[name] = Number(value);
      continue;
    }
    const had = h[name];
    if (had === undefined) h[name] = value;
    else if (Array.isArray(had)) had.push(value);
    else h[name] = [String(had), value];
  }
  return h as IncomingHttpHeaders;
}
