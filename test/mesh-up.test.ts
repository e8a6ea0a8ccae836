// The README's contract: `maas up` brings up every registered component with its default models, `maas health`
// shows each SERVING, and Ctrl-C drains and stops them all with exit code 0.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { components } from '../cli/components.js';
import { ROOT } from '../cli/launch.js';

const dataDir = mkdtempSync(join(tmpdir(), 'maas-up-'));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

describe('maas up', () => {
  it('starts every component SERVING, reports it in maas health, and stops cleanly on Ctrl-C', async () => {
    const ports = components.flatMap((c) => [`--${c.name}-port`, '0']);
    // A process group of its own, as a terminal's foreground job is: Ctrl-C signals the whole group.
    const child = spawn(process.execPath, ['bin/maas.js', 'up', '--data-dir', dataDir, ...ports], {
      cwd: ROOT,
      env: { ...process.env, MAAS_GATEWAY_HTTP_PORT: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const out: string[] = [];
    const serving = new Map<string, string>();
    let tablePrinted!: () => void;
    const ready = new Promise<void>((r) => (tablePrinted = r));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      out.push(line);
      const m = /^(\S+) SERVING on (\S+)$/.exec(line);
      if (m) serving.set(m[1]!, m[2]!);
      if (line.startsWith('logs in ')) tablePrinted();
    });
    createInterface({ input: child.stderr! }).on('line', (line) => out.push(line));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      await Promise.race([ready, exited.then((code) => Promise.reject(new Error(`maas up exited with ${code}:\n${out.join('\n')}`)))]);
      expect([...serving.keys()]).toEqual(components.map((c) => c.name));
      const addresses = [...serving].flatMap(([name, address]) => ['--address', `${name}=${address}`]);
      const health = spawnSync(process.execPath, ['bin/maas.js', 'health', ...addresses], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
      expect(health.stdout).not.toMatch(/NOT_SERVING|UNREACHABLE|UNKNOWN/);
      expect(health.status).toBe(0);
      // The HTTP API took a free port; the table says which, and it answers there.
      const http = /^gateway .* http (127\.0\.0\.1:\d+) /m.exec(out.join('\n'))?.[1];
      expect(http, 'the HTTP address in the table').toBeDefined();
      const models = (await (await fetch(`http://${http}/v1/models`)).json()) as { data: { id: string }[] };
      expect(models.data.map((m) => m.id)).toContain('glove-100d');
    } finally {
      // What Ctrl-C in a terminal does: SIGINT to maas up and to every component at once.
      process.kill(-child.pid!, 'SIGINT');
    }
    expect(await exited).toBe(0);
    expect(out).toContain('stopped');
    // maas up stops them in order (gateway first, registry last), so nothing complains on the way down (a
    // model service whose registry went first would warn that its watch broke).
    const logs = join(dataDir, 'logs');
    for (const file of readdirSync(logs)) {
      const complaints = readFileSync(join(logs, file), 'utf8').split('\n').filter((l) => /"level":"(warn|error|fatal)"/.test(l));
      expect(complaints, file).toEqual([]);
    }
  }, 900_000);

  it('starts nothing when a port it needs is taken, and says which and how to choose another', async () => {
    const holder = createServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
    const taken = (holder.address() as AddressInfo).port;
    try {
      const ports = components.flatMap((c) => [`--${c.name}-port`, c.name === 'embeddings' ? String(taken) : '0']);
      const run = spawnSync(process.execPath, ['bin/maas.js', 'up', '--data-dir', dataDir, ...ports], {
        cwd: ROOT,
        env: { ...process.env, MAAS_GATEWAY_HTTP_PORT: '0' },
        encoding: 'utf8',
        timeout: 60_000,
      });
      expect(run.status).toBe(1);
      expect(run.stderr).toContain(`127.0.0.1:${taken}  embeddings gRPC  (another port: --embeddings-port N)`);
      expect(run.stdout).not.toMatch(/SERVING/);
    } finally {
      holder.close();
    }
  });
});
