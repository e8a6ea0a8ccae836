// The gateway's model catalog follows the registry's WatchModels stream over the gateway's own connection to
// the registry: killed and started again on its port, the registry is watched again, and what it commits after
// the restart reaches the catalog (seen through the HTTP API's /v1/models, which lists the catalog).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launch, type Launched } from '../cli/launch.js';
import { pushVersion } from '../services/registry/client/push.js';
import { ModelTask } from '../services/runtime/models/types.js';
import { waitFor } from '../services/runtime/testing/wait.js';
import { launchRegistry, type RegistryProcess } from './registry-process.js';
import { tinyOnnx } from './support/registry-fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'maas-gateway-registry-'));
const onnx = join(dir, 'model.onnx');
let registry: RegistryProcess;
let gateway: Launched;
let http = '';

const registryEnv = (port: string) => ({ MAAS_REGISTRY_DATA_DIR: join(dir, 'registry'), MAAS_PORT: port, OTEL_SDK_DISABLED: 'true' });
const push = (model: string) => pushVersion(registry.address, { model, task: ModelTask.EMBEDDING, files: [{ name: 'model.onnx', path: onnx }], aliases: ['default'] });
const listed = async () => ((await (await fetch(`http://${http}/v1/models`)).json()) as { data: { id: string }[] }).data.map((m) => m.id);

beforeAll(async () => {
  writeFileSync(onnx, tinyOnnx());
  registry = await launchRegistry(registryEnv('0'));
  gateway = launch('gateway', 'gateway/main.ts', {
    env: {
      MAAS_PORT: '0',
      MAAS_METRICS_PORT: '0',
      MAAS_LOG_LEVEL: 'info',
      OTEL_SDK_DISABLED: 'true',
      MAAS_REGISTRY_ADDRESS: registry.address,
      // No embeddings replica is needed: /v1/models lists the catalog's models of the tasks the gateway serves.
      MAAS_GATEWAY_EMBEDDINGS_TARGETS: '127.0.0.1:1',
      MAAS_GATEWAY_HTTP_PORT: '0',
    },
    onLine: (line) => {
      const bound = /"httpPort":(\d+)/.exec(line);
      if (bound) http = `127.0.0.1:${bound[1]}`;
    },
  });
  await gateway.port;
}, 120_000);

afterAll(async () => {
  await gateway?.stop('SIGTERM', 10_000);
  await registry?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('the gateway and a restarted registry', () => {
  it('watches the registry again after it is killed and restarted, and learns what it commits then', async () => {
    await push('before-restart');
    await waitFor(async () => (await listed()).includes('before-restart'), 20_000, 'the catalog to list the first model');
    const port = registry.address.slice(registry.address.lastIndexOf(':') + 1);
    await registry.kill();
    registry = await launchRegistry(registryEnv(port));
    await push('after-restart');
    await waitFor(async () => (await listed()).includes('after-restart'), 30_000, 'the catalog to list the model pushed after the restart');
    expect(await listed()).toEqual(expect.arrayContaining(['before-restart', 'after-restart']));
  });
});
