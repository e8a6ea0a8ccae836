// Two echo replicas as their own processes behind the gateway: one is killed with SIGKILL under steady unary
// load, and no call fails (in-flight calls are retried on the other replica); once it is back on its port,
// the gateway's health watch puts it back and it serves calls again.
import { afterAll, describe, expect, it } from 'vitest';
import { launch, type Launched } from '../cli/launch.js';
import { echoCall, echoClient, startGateway, waitFor } from './gateway-support.js';

const processes: Launched[] = [];
afterAll(async () => {
  for (const p of processes) await p.stop('SIGKILL');
});

function echoProcess(port: number): Launched {
  const p = launch('echo', 'test/fixtures/echo-main.ts', { env: { MAAS_PORT: String(port), MAAS_METRICS_PORT: '0', OTEL_SDK_DISABLED: 'true' } });
  processes.push(p);
  return p;
}

describe('gateway failover', () => {
  it('loses no call when a replica is SIGKILLed under load, and uses it again once it is back', async () => {
    const a = echoProcess(0);
    const b = echoProcess(0);
    const [portA, portB] = await Promise.all([a.port, b.port]);
    const addressA = `127.0.0.1:${portA}`;
    const gw = await startGateway({}, { echoTargets: [addressA, `127.0.0.1:${portB}`] });
    const client = echoClient(gw.address);
    try {
      const pool = gw.gateway.pools.get('echo')!;
      const replicaA = () => pool.set.replicas.find((r) => r.address === addressA)!;
      await waitFor(() => pool.usable === 2, 20_000, 'both replicas healthy');

      let ok = 0;
      const failures: string[] = [];
      let running = true;
      const worker = async (w: number) => {
        for (let i = 0; running; i++) {
          try {
            const text = `${w}-${i}`;
            const res = await echoCall(client, 'Echo', { text }, { deadline: Date.now() + 10_000 });
            if (res.text !== text) failures.push(`wrong answer ${res.text} for ${text}`);
            else ok++;
          } catch (err) {
            failures.push((err as Error).message);
          }
        }
      };
      const load = Promise.all(Array.from({ length: 8 }, (_, w) => worker(w)));

      await waitFor(() => replicaA().answered > 50 && ok > 200, 20_000, 'steady load on both replicas');
      a.child.kill('SIGKILL');
      await a.exited;
      const okAtKill = ok;
      await waitFor(() => ok > okAtKill + 300, 20_000, 'load to go on with one replica');
      expect(replicaA().usable(Date.now())).toBe(false);

      const again = echoProcess(portA);
      await again.port;
      await waitFor(() => replicaA().health === 'serving', 20_000, 'the restarted replica to be healthy again');
      const answeredAtReturn = replicaA().answered;
      await waitFor(() => replicaA().answered > answeredAtReturn + 50, 20_000, 'the restarted replica to serve calls');

      running = false;
      await load;
      expect(failures).toEqual([]);
      expect(ok).toBeGreaterThan(600);
    } finally {
      client.close();
      await gw.close();
    }
  });
});
