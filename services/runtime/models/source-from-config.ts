// Which source a model service reads versions from, by its configuration: a local model folder when one is
// set (MAAS_<SERVICE>_MODEL_DIR), else the registry at MAAS_REGISTRY_ADDRESS.
import { resolve } from 'node:path';
import { ConfigError } from '../config.js';
import type { Logger } from '../logger.js';
import { DirectorySource } from './directory-source.js';
import { RegistrySource } from './registry-source.js';
import type { ModelSource } from './types.js';

export interface SourceSettings {
  modelDir?: string;
  registryAddress: string;
  cacheDir: string;
}

export function modelSourceFromConfig(config: SourceSettings, log: Logger, modelDirVariable: string): ModelSource {
  if (config.modelDir) return new DirectorySource(resolve(config.modelDir));
  if (config.registryAddress) return new RegistrySource({ address: config.registryAddress, cacheDir: resolve(config.cacheDir), log });
  throw new ConfigError('MAAS_REGISTRY_ADDRESS', `is empty and so is ${modelDirVariable}: set one of them so the service has models to serve`);
}
