// A gRPC load client written straight on a TCP socket, the way the native load tools h2load and ghz are:
// the HTTP/2 framing it needs and nothing more. On a two-core machine the clients share the cores with the
// server they measure, and node:http2's client spends ~200 µs of CPU per call (a session stream object, header
// objects, events) — more than the server it loads. This one spends a few µs: the request's header block is
// encoded once (HPACK literals from the static table, no dynamic table, no Huffman), and responses are framed
// but their headers never decoded. Unary calls (call) are not split into messages either; server-streaming
// ones (stream) hand each response message to the caller as it arrives.
//
// A call succeeds when a response message (a DATA payload of at least the 5-byte gRPC prefix) arrives and the
// stream then ends with trailers. That is how a unary call that grpc-js answers with OK ends; every error it
// answers is trailers-only, without a message, and counts as a failure here, as does a reset stream or a
// connection that goes away. grpc-status itself is not decoded, so a server that sent a message and then an
// error status would be counted as a success: a unary call of the servers this loads never does, and a
// stream's caller checks its last message (a finish reason, say).
import net from 'node:net';

const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8 } as const;
const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4, PADDED: 0x8 } as const;
const SETTING = { MAX_CONCURRENT_STREAMS: 0x3, INITIAL_WINDOW_SIZE: 0x4, MAX_FRAME_SIZE: 0x5 } as const;
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const MAX_WINDOW = 2 ** 31 - 1;
const EMPTY = Buffer.alloc(0);
const DEFAULT_WINDOW = 65_535;

interface Pending {
  resolve(bytes: number): void;
  reject(err: Error): void;
  received: number;
  /** For streams: called with each whole response message (without its 5-byte prefix). */
  onMessage?: (message: Buffer) => void;
  /** For streams: the start of a message whose end has not arrived yet. */
  partial?: Buffer;
  /** Bytes the server still lets this stream send (its window for us). */
  sendWindow: number;
}

interface Outgoing {
  stream: number;
  data: Buffer;
}

export class H2GrpcClient {
  private socket: net.Socket | undefined;
  private input: Buffer = Buffer.alloc(0);
  private readonly streams = new Map<number, Pending>();
  private nextStream = 1;
  private connectionSendWindow = DEFAULT_WINDOW;
  private initialSendWindow = DEFAULT_WINDOW;
  private maxFrame = 16_384;
  private maxStreams = Infinity;
  private consumed = 0;
  /** Request bodies waiting for flow-control window or a free stream slot, in order. */
  private readonly waiting: Outgoing[] = [];
  private readonly queued: { path: string; body: Buffer; pending: Pending }[] = [];
  private readonly headerBlocks = new Map<string, Buffer>();

  constructor(private readonly address: string) {}

  /**
   * Sends one gRPC-framed request message; resolves, with the bytes of the response's messages (their 5-byte
   * prefixes included), when the response message and trailers arrived.
   */
  call(path: string, frame: Buffer): Promise<number> {
    return this.send(path, frame, undefined);
  }

  /**
   * A server-streaming call: sends one gRPC-framed request message and calls onMessage with each response
   * message as it arrives (a view valid during the call only); resolves, as call does, when the trailers came.
   * If onMessage throws, the stream is reset (CANCEL) and the call rejects with what it threw.
   */
  stream(path: string, frame: Buffer, onMessage: (message: Buffer) => void): Promise<number> {
    return this.send(path, frame, onMessage);
  }

  private send(path: string, frame: Buffer, onMessage: ((message: Buffer) => void) | undefined): Promise<number> {
    return new Promise((resolve, reject) => {
      this.queued.push({ path, body: frame, pending: { resolve, reject, received: 0, sendWindow: 0, onMessage } });
      this.open();
    });
  }

  close(): void {
    this.fail(new Error('client closed'));
    this.socket?.destroy();
    this.socket = undefined;
  }

  private connect(): net.Socket {
    if (this.socket && !this.socket.destroyed) return this.socket;
    const [host, port] = splitAddress(this.address);
    const socket = net.connect({ host, port, noDelay: true });
    this.socket = socket;
    this.input = Buffer.alloc(0);
    this.nextStream = 1;
    this.connectionSendWindow = DEFAULT_WINDOW;
    this.initialSendWindow = DEFAULT_WINDOW;
    this.maxFrame = 16_384;
    this.maxStreams = Infinity;
    this.consumed = 0;
    // Push off; per-stream windows as large as allowed, and the connection's window widened to match, so the
    // server never waits for this client to grant more.
    const settings = Buffer.alloc(12);
    settings.writeUInt16BE(0x2, 0);
    settings.writeUInt32BE(0, 2);
    settings.writeUInt16BE(SETTING.INITIAL_WINDOW_SIZE, 6);
    settings.writeUInt32BE(MAX_WINDOW, 8);
    socket.write(Buffer.concat([PREFACE, frame(FRAME.SETTINGS, 0, 0, settings), windowUpdate(0, MAX_WINDOW - DEFAULT_WINDOW)]));
    socket.on('data', (chunk: Buffer) => this.read(chunk));
    socket.on('error', (err) => this.drop(socket, err));
    socket.on('close', () => this.drop(socket, new Error('connection closed')));
    return socket;
  }

  private drop(socket: net.Socket, err: Error): void {
    if (this.socket !== socket) return;
    this.socket = undefined;
    this.fail(err);
  }

  private fail(err: Error): void {
    const all = [...this.streams.values(), ...this.queued.map((q) => q.pending)];
    this.streams.clear();
    this.queued.length = 0;
    this.waiting.length = 0;
    for (const p of all) p.reject(err);
  }

  /** Opens streams for queued calls while the server's stream limit allows. */
  private open(): void {
    const socket = this.connect();
    // Calls started in one turn (the callers a read just answered) go out in one write.
    if (!socket.writableCorked) {
      socket.cork();
      process.nextTick(() => socket.uncork());
    }
    while (this.queued.length > 0 && this.streams.size < this.maxStreams) {
      const { path, body, pending } = this.queued.shift()!;
      const id = this.nextStream;
      this.nextStream += 2;
      pending.sendWindow = this.initialSendWindow;
      this.streams.set(id, pending);
      socket.write(frame(FRAME.HEADERS, FLAG.END_HEADERS, id, this.headerBlock(path)));
      this.waiting.push({ stream: id, data: body });
    }
    this.flush();
  }

  /** Sends request bodies in order, as far as the connection's and each stream's windows allow. */
  private flush(): void {
    const socket = this.socket;
    if (!socket) return;
    while (this.waiting.length > 0) {
      const out = this.waiting[0]!;
      const pending = this.streams.get(out.stream);
      if (!pending) {
        this.waiting.shift();
        continue;
      }
      const size = Math.min(out.data.length, this.maxFrame);
      if (size > this.connectionSendWindow || size > pending.sendWindow) return;
      const last = size === out.data.length;
      socket.write(frame(FRAME.DATA, last ? FLAG.END_STREAM : 0, out.stream, out.data.subarray(0, size)));
      this.connectionSendWindow -= size;
      pending.sendWindow -= size;
      if (last) this.waiting.shift();
      else out.data = out.data.subarray(size);
    }
  }

  private read(chunk: Buffer): void {
    let data = chunk;
    // A frame begun in an earlier chunk: copy in only what it still lacks (not the whole chunk, which would copy
    // most of every read once more), and handle it.
    while (this.input.length > 0 && data.length > 0) {
      const want = this.input.length < 9 ? 9 : 9 + this.input.readUIntBE(0, 3);
      const take = Math.min(want - this.input.length, data.length);
      this.input = Buffer.concat([this.input, data.subarray(0, take)]);
      data = data.subarray(take);
      if (this.input.length >= 9 && this.input.length === 9 + this.input.readUIntBE(0, 3)) {
        this.frameAt(this.input, 0);
        this.input = EMPTY;
      }
    }
    let at = 0;
    while (data.length - at >= 9 && data.length - at >= 9 + data.readUIntBE(at, 3)) at = this.frameAt(data, at);
    // What is left is the start of a frame: a view of this chunk, kept until the rest arrives.
    if (at < data.length) this.input = data.subarray(at);
    this.flush();
  }

  /** Handles the whole frame at `at` in `buffer`; returns where the next one starts. */
  private frameAt(buffer: Buffer, at: number): number {
    const length = buffer.readUIntBE(at, 3);
    this.onFrame(buffer[at + 3]!, buffer[at + 4]!, buffer.readUInt32BE(at + 5) & 0x7fffffff, buffer.subarray(at + 9, at + 9 + length));
    return at + 9 + length;
  }

  private onFrame(type: number, flags: number, stream: number, payload: Buffer): void {
    switch (type) {
      case FRAME.DATA: {
        this.consumed += payload.length;
        if (this.consumed > MAX_WINDOW / 2) {
          this.socket?.write(windowUpdate(0, this.consumed));
          this.consumed = 0;
        }
        const pending = this.streams.get(stream);
        if (pending) {
          const data = flags & FLAG.PADDED ? payload.subarray(1, payload.length - payload[0]!) : payload;
          pending.received += data.length;
          if (pending.onMessage) {
            try {
              split(pending, data);
            } catch (err) {
              // The caller wants no more of this stream: the server is told to stop sending it.
              this.socket?.write(frame(FRAME.RST_STREAM, 0, stream, Buffer.from([0, 0, 0, 8])));
              return this.finish(stream, pending, err instanceof Error ? err : new Error(String(err)));
            }
          }
          if (flags & FLAG.END_STREAM) this.end(stream, pending);
        }
        return;
      }
      case FRAME.HEADERS: {
        const pending = this.streams.get(stream);
        if (pending && flags & FLAG.END_STREAM) this.end(stream, pending);
        return;
      }
      case FRAME.RST_STREAM: {
        const pending = this.streams.get(stream);
        if (pending) this.finish(stream, pending, new Error(`stream reset (HTTP/2 error ${payload.readUInt32BE(0)})`));
        return;
      }
      case FRAME.SETTINGS: {
        if (flags & FLAG.ACK) return;
        for (let i = 0; i + 6 <= payload.length; i += 6) {
          const id = payload.readUInt16BE(i);
          const value = payload.readUInt32BE(i + 2);
          if (id === SETTING.INITIAL_WINDOW_SIZE) {
            for (const p of this.streams.values()) p.sendWindow += value - this.initialSendWindow;
            this.initialSendWindow = value;
          } else if (id === SETTING.MAX_FRAME_SIZE) this.maxFrame = value;
          else if (id === SETTING.MAX_CONCURRENT_STREAMS) this.maxStreams = value;
        }
        this.socket?.write(frame(FRAME.SETTINGS, FLAG.ACK, 0, Buffer.alloc(0)));
        return;
      }
      case FRAME.PING:
        if (!(flags & FLAG.ACK)) this.socket?.write(frame(FRAME.PING, FLAG.ACK, 0, payload));
        return;
      case FRAME.WINDOW_UPDATE: {
        const increment = payload.readUInt32BE(0) & 0x7fffffff;
        if (stream === 0) this.connectionSendWindow += increment;
        else {
          const pending = this.streams.get(stream);
          if (pending) pending.sendWindow += increment;
        }
        return;
      }
      case FRAME.GOAWAY: {
        // Streams above the last one the server took were never processed; the rest may still finish.
        const last = payload.readUInt32BE(0) & 0x7fffffff;
        for (const [id, p] of this.streams) if (id > last) this.finish(id, p, new Error('connection going away'));
        this.socket?.end();
        return;
      }
      default:
        return; // PRIORITY, CONTINUATION (END_STREAM rides on HEADERS), unknown types: nothing to do
    }
  }

  private end(stream: number, pending: Pending): void {
    this.finish(stream, pending, pending.received >= 5 ? undefined : new Error('call ended without a response message'));
  }

  private finish(stream: number, pending: Pending, err: Error | undefined): void {
    this.streams.delete(stream);
    if (err) pending.reject(err);
    else pending.resolve(pending.received);
    if (this.queued.length > 0) this.open();
  }

  /** The request's header block, the same bytes for every call to one path. */
  private headerBlock(path: string): Buffer {
    let block = this.headerBlocks.get(path);
    if (!block) {
      block = Buffer.concat([
        Buffer.from([0x83, 0x86]), // :method POST, :scheme http (static table 3 and 6)
        literal(4, path), // :path
        literal(1, this.address), // :authority
        literal(31, 'application/grpc'), // content-type
        literalName('te', 'trailers'),
      ]);
      this.headerBlocks.set(path, block);
    }
    return block;
  }
}

/** Hands every whole gRPC message in what has arrived of a stream to its caller, keeping a partial one. */
function split(pending: Pending, data: Buffer): void {
  let buffer = pending.partial ? Buffer.concat([pending.partial, data]) : data;
  pending.partial = undefined;
  while (buffer.length >= 5) {
    const length = buffer.readUInt32BE(1);
    if (buffer.length < 5 + length) break;
    pending.onMessage!(buffer.subarray(5, 5 + length));
    buffer = buffer.subarray(5 + length);
  }
  if (buffer.length > 0) pending.partial = Buffer.from(buffer);
}

function splitAddress(address: string): [string, number] {
  const colon = address.lastIndexOf(':');
  return [address.slice(0, colon).replace(/^\[|\]$/g, ''), Number(address.slice(colon + 1))];
}

/** One HTTP/2 frame: the 9-octet header and its payload (tests that speak HTTP/2 by hand use it too). */
export function frame(type: number, flags: number, stream: number, payload: Buffer = EMPTY): Buffer {
  const out = Buffer.allocUnsafe(9 + payload.length);
  out.writeUIntBE(payload.length, 0, 3);
  out[3] = type;
  out[4] = flags;
  out.writeUInt32BE(stream, 5);
  payload.copy(out, 9);
  return out;
}

function windowUpdate(stream: number, increment: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(increment, 0);
  return frame(FRAME.WINDOW_UPDATE, 0, stream, payload);
}

/** An HPACK integer with an N-bit prefix, the prefix's other bits set to `high`. */
export function integer(value: number, prefixBits: number, high: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [high | value];
  const out = [high | max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest & 0x7f) | 0x80);
    rest >>>= 7;
  }
  out.push(rest);
  return out;
}

function string(value: string): Buffer {
  const bytes = Buffer.from(value, 'utf8');
  return Buffer.concat([Buffer.from(integer(bytes.length, 7, 0)), bytes]);
}

/** A literal header field without indexing, its name from the static table. */
function literal(nameIndex: number, value: string): Buffer {
  return Buffer.concat([Buffer.from(integer(nameIndex, 4, 0)), string(value)]);
}

/** A literal header field without indexing, with a literal name. */
function literalName(name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0]), string(name), string(value)]);
}
