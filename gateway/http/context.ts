// What the HTTP routes share: the pools, the model directory and the routed caller (the gateway's), and per
// request an AbortSignal (the client went away) and the deadline of the gRPC method it calls.
import type * as grpc from '@grpc/grpc-js';
import type { CallOptions } from '../../services/runtime/client.js';
import type { ModelDirectory } from '../clients/model-directory.js';
import type { RoutedCaller } from '../clients/routed-calls.js';
import type { ServicePool } from '../clients/service-pool.js';

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

/** Where one call of a route goes: the pool, its generated client, the method's path (for its deadline), the routing key. */
export interface ServiceTarget<C extends grpc.Client> {
  pool: string;
  client: new (address: string, credentials: grpc.ChannelCredentials, options?: Partial<grpc.ClientOptions>) => C;
  method: string;
  affinity: string | undefined;
}

/**
 * One unary call from a route, through the gateway's routing (replica choice, retries of idempotent calls),
 * with the HTTP request's signal and the method's deadline.
 */
export function callService<C extends grpc.Client, T>(api: ApiContext, rc: RequestContext, target: ServiceTarget<C>, call: (client: C, options: CallOptions) => Promise<T>): Promise<T> {
  const pool = api.pools.get(target.pool);
  const deadline = rc.deadline(target.method);
  return api.caller.unary({ pool, affinity: target.affinity, idempotent: true, deadline, signal: rc.signal }, (replica) =>
    call(pool!.client(replica, target.client), { signal: rc.signal, deadline }),
  );
}
