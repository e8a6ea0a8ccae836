// grpc-js has no public way to let something else serve a stream its server accepted: it hands every new HTTP/2
// stream to one of two methods of its Server (_streamHandler, or _channelzHandler when channelz is on), bound
// when a port is bound. Wrapping them on the instance before then lets `take` look at each stream first. When
// `take` declines one, or a grpc-js version names these methods otherwise (takeStreamsFirst answers false), grpc-js
// serves every call exactly as it would have: slower, not different. server.test.ts checks the hook is in place.
import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { Server } from '@grpc/grpc-js';

type StreamHandler = (this: unknown, extraInterceptors: unknown, stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void;
const DISPATCHERS = ['_streamHandler', '_channelzHandler'] as const;

export function takeStreamsFirst(server: Server, take: (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => boolean): boolean {
  const internals = server as unknown as Record<string, unknown> & { onStreamOpened?: (stream: ServerHttp2Stream) => void };
  if (!DISPATCHERS.every((name) => typeof internals[name] === 'function')) return false;
  for (const name of DISPATCHERS) {
    const dispatch = internals[name] as StreamHandler;
    internals[name] = function (this: typeof internals, extraInterceptors: unknown, stream: ServerHttp2Stream, headers: IncomingHttpHeaders) {
      if (take(stream, headers)) {
        // What grpc-js does for every stream it serves: count it against the connection's idle timer.
        this.onStreamOpened?.(stream);
        return;
      }
      dispatch.call(this, extraInterceptors, stream, headers);
    };
  }
  return true;
}
