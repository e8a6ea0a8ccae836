// A component process's life: fail-fast config, SERVING health, and drain on SIGTERM (and on SIGINT unless
// `maas up` supervises it) with exit code 0.
import { spawnSync } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { checkHealth } from '../cli/health.js';
import { launch, nodeArgs, ROOT, type Launched } from '../cli/launch.js';
import { EchoClient } from './fixtures/echo-service.js';

const running: Launched[] = [];
afterEach(async () => {
  for (const p of running.splice(0)) await p.stop('SIGKILL');
});

function start(env: Record<string, string> = {}) {
  const p = launch('echo', 'test/fixtures/echo-main.ts', { env: { MAAS_PORT: '0', MAAS_METRICS_PORT: '0', ...env } });
  running.push(p);
  return p;
}

describe('a component process', () => {
  it('refuses to start on a bad configuration value and names the variable', () => {
    const r = spawnSync(process.execPath, nodeArgs('test/fixtures/echo-main.ts'), {
      cwd: ROOT,
      env: { ...process.env, MAAS_PORT: 'seventy', MAAS_METRICS_PORT: '0' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('MAAS_PORT');
    expect(r.stderr).toContain('seventy');
  });

  it('finishes a slow call after SIGTERM, refuses new calls, and exits 0', async () => {
    const p = start({ MAAS_DRAIN_GRACE_MS: '10000' });
    const address = `127.0.0.1:${await p.port}`;
    expect(await checkHealth(address)).toBe('SERVING');
    const client = new EchoClient(address, grpc.credentials.createInsecure()) as grpc.Client & Record<string, Function>;
    const call = (method: string, req: unknown) =>
      new Promise<{ text: string }>((resolve, reject) => client[method](req, (err: Error | null, res: { text: string }) => (err ? reject(err) : resolve(res))));
    const slow = call('Slow', { ms: 1500 });
    await new Promise((r) => setTimeout(r, 300));
    p.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    await expect(call('Echo', { text: 'late' })).rejects.toMatchObject({ code: expect.any(Number) });
    expect((await slow).text).toBe('slept 1500');
    expect((await p.exited).code).toBe(0);
    client.close();
  });

  it('drains on SIGINT when run alone, and leaves SIGINT to its supervisor when maas up runs it', async () => {
    const alone = start({ MAAS_SUPERVISED: 'false' });
    await alone.port;
    alone.child.kill('SIGINT');
    expect((await alone.exited).code).toBe(0);
    // Supervised (launch's default): a Ctrl-C that reaches it changes nothing; the supervisor's SIGTERM drains it.
    const supervised = start();
    const address = `127.0.0.1:${await supervised.port}`;
    supervised.child.kill('SIGINT');
    await new Promise((r) => setTimeout(r, 500));
    expect(await checkHealth(address)).toBe('SERVING');
    supervised.child.kill('SIGTERM');
    expect((await supervised.exited).code).toBe(0);
  });

  it('serves Prometheus metrics with per-method request counts', async () => {
    const lines: string[] = [];
    const p = launch('echo', 'test/fixtures/echo-main.ts', { env: { MAAS_PORT: '0', MAAS_METRICS_PORT: '0' }, onLine: (l) => lines.push(l) });
    running.push(p);
    const address = `127.0.0.1:${await p.port}`;
    await checkHealth(address);
    const metricsLine = lines.map((l) => JSON.parse(l) as { msg?: string; port?: number }).find((r) => r.msg === 'metrics on /metrics');
    const text = await (await fetch(`http://127.0.0.1:${metricsLine!.port}/metrics`)).text();
    expect(text).toContain('maas_rpc_server_requests');
    expect(text).toContain('method="grpc.health.v1.Health/Check"');
  });
});
