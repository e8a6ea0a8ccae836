// The vision service as `maas up` runs it: the registry process, the component's default models pushed with
// prepareDefaults, the vision process resolving and downloading them from the registry, and an alias move
// followed without a restart or a failed request.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClassifyImageRequest, RecognizeTextRequest, VisionServiceClient } from '../gen/maas/vision/v1/vision.js';
import { launch, ROOT, type Launched } from '../cli/launch.js';
import { createClient, unary } from '../services/runtime/client.js';
import { silentLogger } from '../services/runtime/logger.js';
import { ModelTask } from '../services/runtime/models/types.js';
import { pushVersion } from '../services/registry/client/push.js';
import { buildColorClassifier, colorClassifierJson, COLORS } from '../services/vision/defaults/color-classifier.js';
import { visionComponent } from '../services/vision/component.js';
import { renderPage, requireFonts } from './fixtures/vision/render.js';
import { launchRegistry, type RegistryProcess } from './registry-process.js';

let dir: string;
let registry: RegistryProcess;
let vision: Launched;
let client: VisionServiceClient;
let address: string;

beforeAll(async () => {
  requireFonts();
  dir = await mkdtemp(join(tmpdir(), 'maas-vision-registry-'));
  registry = await launchRegistry({ MAAS_REGISTRY_DATA_DIR: join(dir, 'registry') });
  await visionComponent.prepareDefaults!({ registryAddress: registry.address, dataDir: dir, cacheDir: join(ROOT, '.maas', 'cache'), log: silentLogger });
  vision = launch('vision', visionComponent.entry, {
    env: { MAAS_PORT: '0', MAAS_METRICS_PORT: '0', ...visionComponent.env!({ grpc: { registry: registry.address }, other: {} }, dir) },
  });
  address = `127.0.0.1:${await vision.port}`;
  client = createClient(VisionServiceClient, address);
});

afterAll(async () => {
  client?.close();
  await vision?.stop();
  await registry?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('vision service with the registry', () => {
  it('pushes its default models once, and serves them from the registry', async () => {
    // A second prepare finds the defaults and pushes nothing.
    await visionComponent.prepareDefaults!({ registryAddress: registry.address, dataDir: dir, cacheDir: join(ROOT, '.maas', 'cache'), log: silentLogger });
    const page = await renderPage({ width: 520, height: 80, lines: [{ text: 'Served from the registry', font: 'DejaVu Serif', size: 28, left: 16, top: 18 }] });
    const res = await unary(client.recognizeText.bind(client), RecognizeTextRequest.fromPartial({ image: page.bytes }));
    expect(res.lines.map((l) => l.text)).toEqual(['Served from the registry']);
    expect(res.model).toMatchObject({ name: 'ppocr-v4', version: 1, alias: 'default' });
    expect(await visionComponent.describe!(address)).toMatch(/color-classifier v1.*ppocr-v4 v1|ppocr-v4 v1.*color-classifier v1/);
  });

  it('follows an alias move to a new classifier version without failing a request', async () => {
    const red = await sharp({ create: { width: 50, height: 40, channels: 3, background: '#ff0000' } }).png().toBuffer();
    const classify = () => unary(client.classifyImage.bind(client), ClassifyImageRequest.fromPartial({ image: red, topK: 1 }));
    expect((await classify()).labels[0].label).toBe('red');

    // Version 2: the same graph with labels in German.
    const v2 = join(dir, 'colors-v2');
    await writeFile(`${v2}.onnx`, buildColorClassifier());
    await writeFile(`${v2}.json`, JSON.stringify(colorClassifierJson()));
    const german: Record<string, string> = { red: 'rot', green: 'gruen', blue: 'blau', yellow: 'gelb', cyan: 'tuerkis', magenta: 'magenta', orange: 'orange', white: 'weiss', gray: 'grau', black: 'schwarz' };
    await writeFile(`${v2}.txt`, COLORS.map((c) => german[c.label]).join('\n'));
    let failures = 0;
    let swapped = false;
    const traffic = (async () => {
      for (let i = 0; i < 400 && !swapped; i++) {
        try {
          const label = (await classify()).labels[0].label;
          if (label === 'rot') swapped = true;
          else expect(label).toBe('red');
        } catch {
          failures++;
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    })();
    const pushed = await pushVersion(registry.address, {
      model: 'color-classifier',
      task: ModelTask.IMAGE_CLASSIFICATION,
      files: [
        { name: 'model.onnx', path: `${v2}.onnx` },
        { name: 'classifier.json', path: `${v2}.json` },
        { name: 'labels.txt', path: `${v2}.txt` },
      ],
      aliases: ['default'],
    });
    expect(pushed.version).toBe(2);
    await traffic;
    expect(swapped).toBe(true);
    expect(failures).toBe(0);
    const res = await classify();
    expect(res.labels[0].label).toBe('rot');
    expect(res.model).toMatchObject({ name: 'color-classifier', version: 2, alias: 'default' });
  });
});
