// One trace per OCR request: the server span, the decode, each pipeline stage and the batches the page ran in,
// with the model and version on them, exported over OTLP from the vision process.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RecognizeTextRequest, VisionServiceClient } from '../gen/maas/vision/v1/vision.js';
import { launch, ROOT, type Launched } from '../cli/launch.js';
import { createClient, unary } from '../services/runtime/client.js';
import { writeDefaultRepository } from '../services/vision/defaults/model-repository.js';
import { renderPage, requireFonts } from './fixtures/vision/render.js';
import { OtlpReceiver } from './support/otlp-receiver.js';

let dir: string;
let receiver: OtlpReceiver;
let vision: Launched;
let client: VisionServiceClient;

beforeAll(async () => {
  requireFonts();
  dir = await mkdtemp(join(tmpdir(), 'maas-vision-tracing-'));
  await writeDefaultRepository(join(dir, 'models'), join(ROOT, '.maas', 'cache'));
  receiver = new OtlpReceiver();
  await receiver.start();
  vision = launch('vision', 'services/vision/main.ts', {
    env: { MAAS_PORT: '0', MAAS_METRICS_PORT: '0', MAAS_VISION_MODEL_DIR: join(dir, 'models'), OTEL_SERVICE_NAME: 'maas-vision', ...receiver.env() },
  });
  client = createClient(VisionServiceClient, `127.0.0.1:${await vision.port}`);
});

afterAll(async () => {
  client?.close();
  await vision?.stop();
  receiver?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('vision tracing', () => {
  it('records decode, detection, crop, orientation and recognition spans with the model, and the batches', async () => {
    const page = await renderPage({
      width: 600,
      height: 120,
      lines: [
        { text: 'Traced from end to end', font: 'DejaVu Sans', size: 26, left: 20, top: 16 },
        { text: 'one span per stage', font: 'DejaVu Sans', size: 26, left: 20, top: 66 },
      ],
    });
    const traceId = '0af7651916cd43dd8448eb211c80319c';
    const md = new grpc.Metadata();
    md.set('traceparent', `00-${traceId}-b7ad6b7169203331-01`);
    await unary(client.recognizeText.bind(client), RecognizeTextRequest.fromPartial({ image: page.bytes }), { metadata: md });
    const wanted = ['maas.vision.v1.VisionService/RecognizeText', 'image decode', 'ocr detection', 'ocr crop', 'ocr orientation', 'ocr recognition', 'ocr recognition batch'];
    await receiver.waitFor(() => wanted.every((n) => receiver.trace(traceId).some((s) => s.name === n)));
    const spans = receiver.trace(traceId);
    const server = spans.find((s) => s.name === wanted[0])!;
    expect(server.attributes['maas.model']).toBe('ppocr-v4');
    expect(server.attributes['maas.model_version']).toBe(1);
    for (const name of wanted.slice(1)) {
      const span = spans.find((s) => s.name === name)!;
      expect(span.attributes['maas.model'], name).toBe('ppocr-v4');
      expect(span.attributes['maas.model_version'], name).toBe(1);
    }
    const batch = spans.find((s) => s.name === 'ocr recognition batch')!;
    expect(batch.attributes['maas.batch_size']).toBeGreaterThanOrEqual(1);
  });
});
