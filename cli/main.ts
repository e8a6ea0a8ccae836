// The maas command line: `maas up`, `maas health`, `maas models …`.
import { parseArgs } from 'node:util';
import { components } from './components.js';
import { checkHealth } from './health.js';
import { table } from './table.js';
import { defaultDataDir, up } from './up.js';

const USAGE = `usage: maas <command>

  up [--only a,b] [--data-dir DIR] [--skip-defaults] [--<component>-port N]
        start the mesh on this machine (registry, model services, gateway) and wait until every part is SERVING
  health [--address name=host:port ...]
        print each component's grpc.health.v1 status (exit 1 unless all are SERVING)
  models ls | show | push | pull | alias | rm ...
        manage the model registry (maas models --help)

Environment: MAAS_DATA_DIR (default ./.maas), MAAS_REGISTRY_ADDRESS for \`models\`, MAAS_REGISTRY_ADMIN_TOKEN.`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'up':
      return upCommand(rest);
    case 'health':
      return healthCommand(rest);
    case 'models':
      return modelsCommand(rest);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`${USAGE}\n`);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`unknown command "${command}"\n${USAGE}\n`);
      return 2;
  }
}

async function upCommand(args: string[]): Promise<number> {
  const portOptions = Object.fromEntries(components.map((c) => [`${c.name}-port`, { type: 'string' as const }]));
  const { values } = parseArgs({
    args,
    options: { only: { type: 'string' }, 'data-dir': { type: 'string' }, 'skip-defaults': { type: 'boolean' }, ...portOptions },
  });
  const ports: Record<string, number> = {};
  for (const c of components) {
    const v = (values as Record<string, string | undefined>)[`${c.name}-port`];
    if (v !== undefined) {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0 || n > 65535) {
        process.stderr.write(`--${c.name}-port must be a port number (got "${v}")\n`);
        return 2;
      }
      ports[c.name] = n;
    }
  }
  const only = values.only?.split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = only?.filter((n) => !components.some((c) => c.name === n)) ?? [];
  if (unknown.length > 0) {
    process.stderr.write(`unknown component(s): ${unknown.join(', ')}; known: ${components.map((c) => c.name).join(', ')}\n`);
    return 2;
  }
  try {
    return await up({ dataDir: values['data-dir'] ?? defaultDataDir(), only, ports, skipDefaults: values['skip-defaults'] });
  } catch (err) {
    process.stderr.write(`maas up failed: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

async function healthCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { address: { type: 'string', multiple: true } } });
  const overrides = Object.fromEntries((values.address ?? []).map((a) => a.split('=', 2) as [string, string]));
  const rows: string[][] = [];
  let ok = true;
  for (const c of components) {
    const address = overrides[c.name] ?? `127.0.0.1:${c.port}`;
    const status = await checkHealth(address);
    ok &&= status === 'SERVING';
    rows.push([c.name, address, status]);
  }
  process.stdout.write(`${table(['component', 'address', 'health'], rows)}\n`);
  return ok ? 0 : 1;
}

async function modelsCommand(args: string[]): Promise<number> {
  let mod: { modelsCommand?: (a: string[], o: { registryAddress: string; token?: string }) => Promise<number> };
  try {
    mod = await import('./models.js');
  } catch {
    process.stderr.write('maas models: the registry commands are not available in this build\n');
    return 2;
  }
  const registry = components.find((c) => c.name === 'registry');
  return mod.modelsCommand!(args, {
    registryAddress: process.env.MAAS_REGISTRY_ADDRESS || `127.0.0.1:${registry?.port ?? 50052}`,
    token: process.env.MAAS_REGISTRY_ADMIN_TOKEN || undefined,
  });
}
