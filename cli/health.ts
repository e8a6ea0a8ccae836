// `maas health`: each component's grpc.health.v1 status, one line each.
import { HealthClient, HealthCheckResponse_ServingStatus as S } from '../gen/grpc/health/v1/health.js';
import { createClient, unary } from '../services/runtime/client.js';

export type HealthResult = 'SERVING' | 'NOT_SERVING' | 'UNKNOWN' | 'UNREACHABLE';

/** The overall health ("" service) of the server at address. */
export async function checkHealth(address: string, timeoutMs = 2000): Promise<HealthResult> {
  const client = createClient(HealthClient, address);
  try {
    const res = await unary(client.check.bind(client), { service: '' }, { deadline: Date.now() + timeoutMs });
    return res.status === S.SERVING ? 'SERVING' : res.status === S.NOT_SERVING ? 'NOT_SERVING' : 'UNKNOWN';
  } catch {
    return 'UNREACHABLE';
  } finally {
    client.close();
  }
}

/** Polls until the server reports SERVING; throws after timeoutMs. */
export async function waitServing(address: string, timeoutMs: number, isAlive: () => boolean = () => true): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if ((await checkHealth(address, 1000)) === 'SERVING') return;
    if (!isAlive()) throw new Error(`${address} exited before it was SERVING`);
    if (Date.now() > end) throw new Error(`${address} was not SERVING within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
