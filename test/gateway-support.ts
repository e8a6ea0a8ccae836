// Helpers for the gateway's tests: a gateway built in process from environment-style settings, echo-service
// replicas with handlers that report what reached them, and promise wrappers for untyped echo calls.
import * as grpc from '@grpc/grpc-js';
import { createGateway, type Gateway } from '../gateway/gateway.js';
import { spec } from '../gateway/config.js';
import type { TargetSpec } from '../gateway/domain/targets.js';
import { loadConfig } from '../services/runtime/config.js';
import { silentLogger, type Logger } from '../services/runtime/logger.js';
import { defineService, MeshServer, type CallContext } from '../services/runtime/server.js';
import { throwIfAborted } from '../services/runtime/errors.js';
import { EchoClient, echoProto, errorsByKind } from './fixtures/echo-service.js';
export { waitFor } from '../services/runtime/testing/wait.js';

export const ECHO_SERVICE = 'maas.testing.v1.EchoService';

export interface StartedGateway {
  gateway: Gateway;
  address: string;
  httpPort: number | undefined;
  close(): Promise<void>;
}

/** A gateway in this process on port 0, fronting the echo service at `echoTargets` as well as the mesh's services. */
export async function startGateway(env: Record<string, string>, options: { echoTargets?: string[]; log?: Logger } = {}): Promise<StartedGateway> {
  const config = loadConfig(spec, {
    MAAS_HOST: '127.0.0.1',
    MAAS_PORT: '0',
    MAAS_METRICS_PORT: '0',
    MAAS_GATEWAY_HTTP_PORT: '0',
    MAAS_REGISTRY_ADDRESS: '127.0.0.1:1',
    ...env,
  });
  const echoTargets: TargetSpec = options.echoTargets ? { kind: 'static', addresses: options.echoTargets } : { kind: 'none' };
  const gateway = createGateway({
    config,
    log: options.log ?? silentLogger,
    extraDescriptors: echoProto,
    extraServices: options.echoTargets
      ? [{ service: { service: ECHO_SERVICE, pool: 'echo', scope: () => 'infer' }, targets: echoTargets }]
      : [],
  });
  const port = await gateway.server.start();
  return {
    gateway,
    address: `127.0.0.1:${port}`,
    httpPort: gateway.server.boundHttpPort,
    async close() {
      await gateway.server.close();
      await gateway.close();
    },
  };
}

/** What an echo replica saw. */
export interface EchoRecord {
  calls: number;
  /** Milliseconds left until the deadline, as the replica saw it, per Echo call. */
  remainingMs: (number | undefined)[];
  metadata: grpc.Metadata[];
  /** Count streams whose handler saw the cancel. */
  countAborted: number;
  /** Messages each Count stream produced. */
  countProduced: number[];
}

/** An echo replica in this process whose handlers record what reaches them. */
export async function startEchoReplica(port = 0): Promise<{ server: MeshServer; address: string; port: number; record: EchoRecord }> {
  const record: EchoRecord = { calls: 0, remainingMs: [], metadata: [], countAborted: 0, countProduced: [] };
  const definition = EchoClient.service as unknown as Record<string, never>;
  const sleep = (ms: number, signal: AbortSignal) =>
    new Promise<void>((resolve, reject) => {
      // The listener goes when the sleep ends: a Count stream sleeps once per message on the same signal.
      const onAbort = () => {
        clearTimeout(t);
        reject(signal.reason);
      };
      const t = setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  const server = new MeshServer({
    component: 'echo',
    settings: { host: '127.0.0.1', port, drainGraceMs: 2000, maxReceiveMessageBytes: 64 * 1024 * 1024, maxSendMessageBytes: 64 * 1024 * 1024, keepaliveTimeMs: 30_000, keepaliveTimeoutMs: 10_000 },
    log: silentLogger,
    extraDescriptors: echoProto,
    services: [
      defineService(definition, {
        Echo: async (req: { text: string }, ctx: CallContext) => {
          record.calls++;
          record.remainingMs.push(ctx.deadline === undefined ? undefined : ctx.deadline - Date.now());
          record.metadata.push(ctx.metadata);
          return { text: req.text };
        },
        Slow: async (req: { ms: number }, ctx: CallContext) => {
          record.calls++;
          await sleep(req.ms, ctx.signal);
          return { text: `slept ${req.ms}` };
        },
        Fail: async (req: { kind: string }) => {
          record.calls++;
          throw (errorsByKind[req.kind] ?? errorsByKind.bug!)();
        },
        Count: async function* (req: { ms: number }, ctx: CallContext) {
          record.calls++;
          const slot = record.countProduced.push(0) - 1;
          try {
            for (let i = 0; ; i++) {
              throwIfAborted(ctx.signal);
              yield { text: String(i) };
              record.countProduced[slot]!++;
              await sleep(req.ms, ctx.signal);
            }
          } finally {
            if (ctx.signal.aborted) record.countAborted++;
          }
        },
        Collect: async (reqs: AsyncIterable<{ text: string }>) => {
          record.calls++;
          const parts: string[] = [];
          for await (const r of reqs) parts.push(r.text);
          return { text: parts.join(',') };
        },
      } as never),
    ],
  });
  const bound = await server.start();
  return { server, address: `127.0.0.1:${bound}`, port: bound, record };
}

export type EchoStub = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

export function echoClient(address: string): EchoStub {
  return new EchoClient(address, grpc.credentials.createInsecure()) as unknown as EchoStub;
}

export function echoCall<T = { text: string }>(client: EchoStub, method: string, req: unknown, options: { deadline?: number; metadata?: grpc.Metadata } = {}): Promise<T> {
  return new Promise((resolve, reject) =>
    client[method]!(req, options.metadata ?? new grpc.Metadata(), options.deadline ? { deadline: options.deadline } : {}, (err: Error | null, res: T) => (err ? reject(err) : resolve(res))),
  );
}

