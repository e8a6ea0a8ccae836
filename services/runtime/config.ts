// Typed configuration from environment variables. Every setting names its variable, has a default and a
// one-line description; a bad value stops the process at start with a message that names the variable.
import { z } from 'zod';

export interface Setting<T> {
  /** The environment variable, e.g. MAAS_PORT. */
  env: string;
  schema: z.ZodType<T>;
  /** The default as it would be written in the environment; undefined means "unset is allowed". */
  default: string | undefined;
  description: string;
  /** Secrets are never printed (describeConfig shows them as "<set>"). */
  secret: boolean;
}

export type ConfigSpec = Record<string, Setting<unknown>>;
export type ConfigOf<S extends ConfigSpec> = { [K in keyof S]: S[K] extends Setting<infer T> ? T : never };

export function setting<T>(env: string, schema: z.ZodType<T>, defaultValue: string | undefined, description: string, options: { secret?: boolean } = {}): Setting<T> {
  return { env, schema, default: defaultValue, description, secret: options.secret ?? false };
}

export class ConfigError extends Error {
  constructor(readonly env: string, problem: string) {
    super(`configuration: ${env} ${problem}`);
    this.name = 'ConfigError';
  }
}

/** Reads and checks every setting of the spec; throws a ConfigError naming the first bad variable. */
export function loadConfig<S extends ConfigSpec>(spec: S, env: NodeJS.ProcessEnv = process.env): ConfigOf<S> {
  const out: Record<string, unknown> = {};
  for (const [field, s] of Object.entries(spec)) {
    const raw = env[s.env] === undefined || env[s.env] === '' ? s.default : env[s.env];
    const parsed = s.schema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]?.message ?? 'is invalid';
      const shown = s.secret || raw === undefined ? '' : ` (got "${raw}")`;
      throw new ConfigError(s.env, `is invalid${shown}: ${issue}. ${s.description}`);
    }
    out[field] = parsed.data;
  }
  return out as ConfigOf<S>;
}

/** The effective configuration as printable lines, secrets hidden. */
export function describeConfig<S extends ConfigSpec>(spec: S, config: ConfigOf<S>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [field, s] of Object.entries(spec)) {
    const v = (config as Record<string, unknown>)[field];
    out[s.env] = s.secret ? (v === undefined || v === '' ? '<unset>' : '<set>') : v;
  }
  return out;
}

/** Every variable of a spec with its default and description (for docs and for checking manifests). */
export function listSettings(spec: ConfigSpec): { env: string; default: string | undefined; description: string }[] {
  return Object.values(spec).map((s) => ({ env: s.env, default: s.default, description: s.description }));
}

// Common value shapes.
export const port = () => z.coerce.number().int().min(0).max(65535);
export const positiveInt = () => z.coerce.number().int().positive();
export const nonNegativeInt = () => z.coerce.number().int().min(0);
export const bool = () =>
  z
    .string()
    .transform((v) => v.trim().toLowerCase())
    .pipe(z.enum(['true', 'false', '1', '0', 'yes', 'no']))
    .transform((v) => v === 'true' || v === '1' || v === 'yes');
/** A comma-separated list; empty items are dropped. */
export const list = () => z.string().transform((v) => v.split(',').map((s) => s.trim()).filter((s) => s.length > 0));
export const optionalString = () => z.string().optional();
export const logLevel = () => z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

/** Settings every gRPC server of the mesh reads (the gateway and each service). */
export function serverSettings(defaults: { port: number; metricsPort: number }) {
  return {
    host: setting('MAAS_HOST', z.string().min(1), '0.0.0.0', 'address the gRPC server binds to'),
    port: setting('MAAS_PORT', port(), String(defaults.port), 'gRPC port (0 picks a free port)'),
    metricsPort: setting('MAAS_METRICS_PORT', port(), String(defaults.metricsPort), 'Prometheus /metrics HTTP port (0 picks a free port)'),
    metricsEnabled: setting('MAAS_METRICS_ENABLED', bool(), 'true', 'serve Prometheus metrics on MAAS_METRICS_PORT'),
    drainGraceMs: setting('MAAS_DRAIN_GRACE_MS', nonNegativeInt(), '20000', 'on SIGTERM, how long in-flight calls may run before they are cut off'),
    maxReceiveMessageBytes: setting('MAAS_MAX_RECEIVE_MESSAGE_BYTES', positiveInt(), String(16 * 1024 * 1024), 'largest request message accepted, in bytes'),
    maxSendMessageBytes: setting('MAAS_MAX_SEND_MESSAGE_BYTES', positiveInt(), String(64 * 1024 * 1024), 'largest response message sent, in bytes'),
    keepaliveTimeMs: setting('MAAS_KEEPALIVE_TIME_MS', positiveInt(), '30000', 'interval of HTTP/2 keepalive pings to clients'),
    keepaliveTimeoutMs: setting('MAAS_KEEPALIVE_TIMEOUT_MS', positiveInt(), '10000', 'how long a keepalive ping may go unanswered before the connection is closed'),
    logLevel: setting('MAAS_LOG_LEVEL', logLevel(), 'info', 'log level (fatal, error, warn, info, debug, trace, silent)'),
    supervised: setting(
      'MAAS_SUPERVISED',
      bool(),
      'false',
      'started by `maas up`, which stops the components in order on Ctrl-C: SIGINT is left to it (SIGTERM drains as always)',
    ),
  };
}
export type ServerSettings = ConfigOf<ReturnType<typeof serverSettings>>;

/**
 * Settings every model service (embeddings, generation, vision) reads under its own prefix: where its models
 * come from (a local model folder, else the registry), where downloaded versions are kept, how much memory
 * loaded versions may take, and how onnxruntime runs them.
 */
export function modelServiceSettings(service: 'embeddings' | 'generation' | 'vision') {
  const p = `MAAS_${service.toUpperCase()}_`;
  return {
    registryAddress: setting('MAAS_REGISTRY_ADDRESS', z.string(), '127.0.0.1:50052', `host:port of the model registry (ignored when ${p}MODEL_DIR is set)`),
    modelDir: setting(
      `${p}MODEL_DIR`,
      z.string(),
      '',
      'a local model folder (<model>/model.json and <model>/<version>/ files) to serve instead of the registry; empty: use the registry',
    ),
    cacheDir: setting(`${p}CACHE_DIR`, z.string().min(1), `.maas/${service}/models`, 'where versions downloaded from the registry are kept'),
    memoryBudgetMb: setting(`${p}MEMORY_BUDGET_MB`, positiveInt(), '2048', 'loaded versions beyond this many MB are unloaded, least recently used first'),
    executionProviders: setting(`${p}EXECUTION_PROVIDERS`, list(), 'cpu', 'onnxruntime execution providers in order of preference (e.g. cuda,cpu); falls back to cpu with a warning'),
    intraOpThreads: setting(`${p}INTRA_OP_THREADS`, nonNegativeInt(), '1', 'onnxruntime threads within one operator (0: onnxruntime default)'),
    interOpThreads: setting(`${p}INTER_OP_THREADS`, nonNegativeInt(), '1', 'onnxruntime threads across operators (0: onnxruntime default)'),
  };
}
export type ModelServiceSettings = ConfigOf<ReturnType<typeof modelServiceSettings>>;

/** The onnxruntime session settings of a model service's configuration. */
export function sessionSettings(config: Pick<ModelServiceSettings, 'executionProviders' | 'intraOpThreads' | 'interOpThreads'>) {
  return { executionProviders: config.executionProviders, intraOpThreads: config.intraOpThreads, interOpThreads: config.interOpThreads };
}
