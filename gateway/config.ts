// The gateway's configuration: the common server settings, the HTTP port, where the registry and each model
// service's replicas are, how calls are balanced, retried and timed out, per-method size limits, and auth
// and rate limits (off by default).
import { z } from 'zod';
import { bool, list, nonNegativeInt, port, positiveInt, serverSettings, setting, type ConfigOf } from '../services/runtime/config.js';
import { parseDuration, parseMethodTable, parseSize } from './domain/method-policy.js';
import { parseTargets } from './domain/targets.js';

/** A comma list of host:port, or one `dns:///name:port` (re-resolved periodically); empty: not served. */
const targets = () =>
  z.string().transform((v, ctx) => {
    try {
      return parseTargets(v);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
      return z.NEVER;
    }
  });

/** `key=value,key=value` where the value is a duration (`30s`, `500ms`, `5m`, `0` for none). */
const durations = () =>
  z.string().transform((v, ctx) => {
    try {
      return parseMethodTable(v, parseDuration);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
      return z.NEVER;
    }
  });

/** `key=value,key=value` where the value is a size (`4MiB`, `512KiB`, bytes). */
const sizes = () =>
  z.string().transform((v, ctx) => {
    try {
      return parseMethodTable(v, parseSize);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
      return z.NEVER;
    }
  });

export const spec = {
  ...serverSettings({ port: 50051, metricsPort: 9460 }),
  httpPort: setting('MAAS_GATEWAY_HTTP_PORT', port(), '8080', 'port of the OpenAI-compatible HTTP API (0 picks a free port)'),
  httpEnabled: setting('MAAS_GATEWAY_HTTP_ENABLED', bool(), 'true', 'serve the OpenAI-compatible HTTP API on MAAS_GATEWAY_HTTP_PORT'),

  registryTargets: setting('MAAS_REGISTRY_ADDRESS', targets(), '127.0.0.1:50052', 'the model registry: host:port (a comma list for several), or dns:///name:port'),
  embeddingsTargets: setting('MAAS_GATEWAY_EMBEDDINGS_TARGETS', targets(), '', 'embeddings replicas: comma list of host:port, or dns:///name:port (a headless Service); empty: not served'),
  generationTargets: setting('MAAS_GATEWAY_GENERATION_TARGETS', targets(), '', 'generation replicas: comma list of host:port, or dns:///name:port; empty: not served'),
  visionTargets: setting('MAAS_GATEWAY_VISION_TARGETS', targets(), '', 'vision replicas: comma list of host:port, or dns:///name:port; empty: not served'),
  dnsRefreshMs: setting('MAAS_GATEWAY_DNS_REFRESH_MS', positiveInt(), '5000', 'how often dns:/// targets are resolved again'),

  balancing: setting('MAAS_GATEWAY_BALANCING', z.enum(['least-outstanding', 'round-robin']), 'least-outstanding', 'how a healthy replica is chosen'),
  ejectMs: setting('MAAS_GATEWAY_EJECT_MS', positiveInt(), '2000', 'a replica whose connection failed is left out this long (or until its health watch says SERVING again)'),
  retryMaxAttempts: setting('MAAS_GATEWAY_RETRY_MAX_ATTEMPTS', positiveInt(), '3', 'attempts of one retryable call, the first included'),
  retryBudgetRatio: setting('MAAS_GATEWAY_RETRY_BUDGET_RATIO', z.coerce.number().min(0).max(10), '0.2', 'retries allowed per call made (over a 10 s window), beyond the minimum'),
  retryBudgetMinPerSecond: setting('MAAS_GATEWAY_RETRY_BUDGET_MIN_PER_SECOND', nonNegativeInt(), '10', 'retries per second always allowed, whatever the ratio'),
  retryBackoffMs: setting('MAAS_GATEWAY_RETRY_BACKOFF_MS', positiveInt(), '20', 'base of the jittered exponential backoff between attempts'),
  retryBackoffMaxMs: setting('MAAS_GATEWAY_RETRY_BACKOFF_MAX_MS', positiveInt(), '250', 'ceiling of the backoff between attempts'),
  defaultDeadlines: setting(
    'MAAS_GATEWAY_DEFAULT_DEADLINES',
    durations(),
    '*=30s,Generate=120s,GenerateStream=300s,EmbedStream=600s,RecognizeTextStream=600s,UploadVersion=30m,DownloadVersion=30m,WatchModels=0',
    'deadline used when the caller sets none, by method: `Method=30s`, `Service/Method=…`, `Service/*=…`, `*=…` (0: none)',
  ),
  maxRequestBytes: setting(
    'MAAS_GATEWAY_MAX_REQUEST_BYTES',
    sizes(),
    'maas.registry.v1.ModelRegistryService/*=4MiB,maas.embeddings.v1.EmbeddingService/*=8MiB,maas.generation.v1.GenerationService/*=4MiB,maas.vision.v1.VisionService/*=16MiB',
    'largest request message, by method (same keys as the deadlines); methods not listed use MAAS_MAX_RECEIVE_MESSAGE_BYTES',
  ),
  maxConcurrentCalls: setting('MAAS_GATEWAY_MAX_CONCURRENT_CALLS', nonNegativeInt(), '2048', 'calls in flight through the gateway (gRPC and HTTP, watch streams excluded) before RESOURCE_EXHAUSTED; 0: no limit'),
  longLived: setting('MAAS_GATEWAY_LONG_LIVED_METHODS', list(), 'WatchModels', 'methods whose calls may last forever: no concurrency slot, ended with UNAVAILABLE at drain'),

  auth: setting('MAAS_GATEWAY_AUTH', bool(), 'false', 'require credentials (API keys and/or JWT bearer tokens) on every call except health and reflection'),
  apiKeys: setting(
    'MAAS_GATEWAY_API_KEYS',
    list(),
    '',
    'API keys as `name:sha256hex:scope scope`, comma separated (the sha256 of the key, never the key); scopes: infer, registry:read, registry:write',
  ),
  apiKeysFile: setting('MAAS_GATEWAY_API_KEYS_FILE', z.string(), '', 'a YAML or JSON file of API keys: `keys: [{ name, sha256, scopes: [...], rate_limit_rps?, rate_limit_burst? }]`'),
  jwtSecret: setting('MAAS_GATEWAY_JWT_SECRET', z.string(), '', 'HMAC secret that signs JWT bearer tokens (HS256/384/512)', { secret: true }),
  jwtJwksFile: setting('MAAS_GATEWAY_JWT_JWKS_FILE', z.string(), '', 'a JWKS JSON file of public keys that sign JWT bearer tokens (RS*/ES*/EdDSA)'),
  jwtIssuer: setting('MAAS_GATEWAY_JWT_ISSUER', z.string(), '', 'required `iss` of JWTs (empty: not checked)'),
  jwtAudience: setting('MAAS_GATEWAY_JWT_AUDIENCE', z.string(), '', 'required `aud` of JWTs (empty: not checked)'),
  rateLimitRps: setting('MAAS_GATEWAY_RATE_LIMIT_RPS', z.coerce.number().min(0), '0', 'calls per second per API key or JWT subject (token bucket); 0: no limit'),
  rateLimitBurst: setting('MAAS_GATEWAY_RATE_LIMIT_BURST', nonNegativeInt(), '0', 'bucket size of the per-key limit (0: one second of MAAS_GATEWAY_RATE_LIMIT_RPS)'),
  registryToken: setting(
    'MAAS_GATEWAY_REGISTRY_TOKEN',
    z.string(),
    '',
    "the registry's admin token, sent on registry writes by callers with registry:write when gateway auth is on (with auth off the caller's own authorization passes through)",
    { secret: true },
  ),
  resolveCacheMs: setting('MAAS_GATEWAY_RESOLVE_CACHE_MS', positiveInt(), '5000', 'how long a ResolveModel answer is kept while the registry watch is not in sync'),
};

export type GatewayConfig = ConfigOf<typeof spec>;
