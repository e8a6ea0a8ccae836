// Calls any gRPC method with bytes as they are (identity serializers), whatever its kind, and reports the
// final status: how the hostile-input and fuzz tests reach every method without the generated codecs.
import * as grpc from '@grpc/grpc-js';

export type MethodKind = 'unary' | 'server' | 'client' | 'bidi';

export interface MethodInfo {
  /** /package.Service/Method */
  path: string;
  kind: MethodKind;
}

/** Every method of a generated grpc-js service definition. */
export function methodsOf(definition: Record<string, { path: string; requestStream: boolean; responseStream: boolean }>): MethodInfo[] {
  return Object.values(definition).map((m) => ({
    path: m.path,
    kind: m.requestStream ? (m.responseStream ? 'bidi' : 'client') : m.responseStream ? 'server' : 'unary',
  }));
}

export interface RawResult {
  code: number;
  details: string;
  messages: number;
}

const identity = (b: Buffer) => b;

/** Sends `messages` (one for unary and server-streaming methods) and resolves with the call's final status. */
export function callRaw(client: grpc.Client, method: MethodInfo, messages: Buffer[], options: { deadlineMs: number; metadata?: grpc.Metadata }): Promise<RawResult> {
  const metadata = options.metadata ?? new grpc.Metadata();
  const callOptions = { deadline: Date.now() + options.deadlineMs };
  return new Promise((resolve) => {
    let received = 0;
    const done = (s: { code: number; details: string }) => resolve({ code: s.code, details: s.details, messages: received });
    switch (method.kind) {
      case 'unary': {
        const call = client.makeUnaryRequest(method.path, identity, identity, messages[0] ?? Buffer.alloc(0), metadata, callOptions, () => undefined);
        call.on('status', done);
        return;
      }
      case 'server': {
        const call = client.makeServerStreamRequest(method.path, identity, identity, messages[0] ?? Buffer.alloc(0), metadata, callOptions);
        call.on('data', () => received++);
        call.on('error', () => undefined);
        call.on('status', done);
        return;
      }
      case 'client': {
        const call = client.makeClientStreamRequest(method.path, identity, identity, metadata, callOptions, () => undefined);
        call.on('status', done);
        call.on('error', () => undefined);
        for (const m of messages) call.write(m);
        call.end();
        return;
      }
      case 'bidi': {
        const call = client.makeBidiStreamRequest(method.path, identity, identity, metadata, callOptions);
        call.on('data', () => received++);
        call.on('error', () => undefined);
        call.on('status', done);
        for (const m of messages) call.write(m);
        call.end();
        return;
      }
    }
  });
}
