// The components `maas up` starts, in order: the registry first (the others resolve models through it),
// then the model services, then the gateway.
import { gatewayComponent } from '../gateway/component.js';
import { embeddingsComponent } from '../services/embeddings/component.js';
import { generationComponent } from '../services/generation/component.js';
import { registryComponent } from '../services/registry/component.js';
import { visionComponent } from '../services/vision/component.js';
import type { ComponentSpec } from './component.js';

export const components: ComponentSpec[] = [registryComponent, embeddingsComponent, generationComponent, visionComponent, gatewayComponent];
