// The components `maas up` starts, in order: the registry first (the others resolve models through it),
// then the model services, then the gateway.
import type { ComponentSpec } from './component.js';

export const components: ComponentSpec[] = [];
