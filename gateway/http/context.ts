// What the HTTP routes share: the pools, the model directory and the routed caller (the gateway's), and per
// request an AbortSignal (the client went away) and the deadline of the gRPC method it calls.
import type { ModelDirectory } from '../clients/model-directory.js';
import type { RoutedCaller } from '../clients/routed-calls.js';
import type { ServicePool } from '../clients/service-pool.js';
import { serverStreamCall, unaryCall, type MethodDefinition } from '../clients/typed-calls.js';

export interface ApiContext {
  pools: Map<string, ServicePool>;
  directory: ModelDirectory;
  caller: RoutedCaller;
}

export interface RequestContext {
  /** Aborted when the HTTP client disconnects before the answer is complete. */
  signal: AbortSignal;
  /** The deadline of a call to the method: the request's timeout, or the method's default. */
  deadline(path: string): number | undefined;
}

/** Where one call of a route goes: the pool, the method (from the generated service definition), the routing key. */
export interface ServiceTarget<Req, Res> {
  pool: string;
  method: MethodDefinition<Req, Res>;
  affinity: string | undefined;
}

/**
 * One unary call from a route, through the gateway's routing (replica choice, retries of idempotent calls),
 * with the HTTP request's signal and the method's deadline.
 */
export function callService<Req, Res>(api: ApiContext, rc: RequestContext, target: ServiceTarget<Req, Res>, request: Req): Promise<Res> {
  const pool = api.pools.get(target.pool);
  const deadline = rc.deadline(target.method.path);
  return api.caller.unary({ pool, affinity: target.affinity, idempotent: true, deadline, signal: rc.signal }, (replica) =>
    unaryCall(replica.handle.upstream, target.method, request, { signal: rc.signal, deadline }),
  );
}

/** A server-streaming call from a route, retried on another replica only while nothing has been received. */
export function streamService<Req, Res>(api: ApiContext, rc: RequestContext, target: ServiceTarget<Req, Res>, request: Req): AsyncIterable<Res> {
  const pool = api.pools.get(target.pool);
  const deadline = rc.deadline(target.method.path);
  return api.caller.stream({ pool, affinity: target.affinity, idempotent: true, deadline, signal: rc.signal }, (replica) =>
    serverStreamCall(replica.handle.upstream, target.method, request, { signal: rc.signal, deadline }),
  );
}
