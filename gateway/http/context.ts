// What the HTTP routes share: the pools, the model directory and the routed caller (the gateway's), and per
// request an AbortSignal (the client went away) and the deadline of the gRPC method it calls.
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
