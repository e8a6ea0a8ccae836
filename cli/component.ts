// How the local mesh runner (`maas up`) knows a component: where its entry file is, its default ports, what
// environment it needs given the others' addresses, and how to prepare its default models. Each component
// exports one of these from services/<name>/component.ts (gateway/component.ts); cli/components.ts lists them.
import type { ConfigSpec } from '../services/runtime/config.js';
import type { Logger } from '../services/runtime/logger.js';

export interface MeshAddresses {
  /** name → host:port of every component started so far (registry first). */
  grpc: Record<string, string>;
  /** name → its other ports' addresses as it bound them, by port name (`gateway` → `http` → host:port). */
  other: Record<string, Record<string, string>>;
}

export interface PrepareContext {
  /** host:port of the running registry. */
  registryAddress: string;
  /** The mesh's data folder (.maas/ by default, MAAS_DATA_DIR). */
  dataDir: string;
  /**
   * Where built default models are cached (MAAS_CACHE_DIR, default <project>/.maas/cache): shared by every data
   * folder, so tests and benches with their own data folders do not rebuild them. Key entries by a hash of the
   * build's inputs.
   */
  cacheDir: string;
  log: Logger;
}

export interface ComponentSpec {
  name: string;
  /** Entry file relative to the project root, e.g. services/registry/main.ts. */
  entry: string;
  /** The component's configuration spec (services/<name>/config.ts): the variables it reads. */
  spec: ConfigSpec;
  /** Default gRPC port (MAAS_PORT). */
  port: number;
  /** Default Prometheus port (MAAS_METRICS_PORT). */
  metricsPort: number;
  /**
   * Other ports the component listens on, by name (the gateway's HTTP port): the default, the variable that sets
   * it, and the field of the component's "serving" log line that says the port it bound (so 0 works).
   */
  extraPorts?: Record<string, { port: number; variable: string; logField: string }>;
  /** Extra environment for the process, given the addresses of the components started before it. */
  env?(mesh: MeshAddresses, dataDir: string): Record<string, string>;
  /**
   * Runs after the registry is serving and before this component starts: builds (cached) and pushes the
   * component's default models when the registry does not have them yet.
   */
  prepareDefaults?(ctx: PrepareContext): Promise<void>;
  /** One line for the table: the models this component serves (asked once it is SERVING). */
  describe?(address: string): Promise<string>;
}
