// Builds the gateway from its configuration: the replica pools (registry and each model service), the model
// directory, admission (auth, rate and concurrency limits), the routing table, the gRPC front, the HTTP API,
// and the server that ties them to the process lifecycle. main.ts and the tests both build it here.
import { readFileSync } from 'node:fs';
import type { PackageDefinition } from '@grpc/proto-loader';
import { parse as parseYaml } from 'yaml';
import type { Logger } from '../services/runtime/logger.js';
import { tracingHandle } from '../services/runtime/telemetry/tracing-sdk.js';
import { ServicePool } from './clients/service-pool.js';
import { ModelDirectory } from './clients/model-directory.js';
import type { GatewayConfig } from './config.js';
import { Admission } from './domain/admission.js';
import { Authenticator, parseApiKeyFile, parseApiKeyList, type ApiKey } from './domain/auth.js';
import { RetryBudget } from './domain/retry.js';
import type { TargetSpec } from './domain/targets.js';
import { GrpcFront, type RetrySettings } from './grpc/front.js';
import { createHttpApi } from './http/app.js';
import { buildMethodTable, loadDescriptors, PUBLIC_SERVICES, type MethodRoute, type PublicService } from './routes/method-table.js';
import { GatewayServer } from './server.js';

const INTERNAL_POOL = '__gateway';

export interface GatewayOptions {
  config: GatewayConfig;
  log: Logger;
  /** More services to front beyond the mesh's own (tests front the echo service). */
  extraServices?: { service: PublicService; targets: TargetSpec }[];
  extraDescriptors?: PackageDefinition;
}

export interface Gateway {
  server: GatewayServer;
  pools: Map<string, ServicePool>;
  directory: ModelDirectory;
  table: Map<string, MethodRoute>;
  admission: Admission;
  /** Releases pools and watches (after the server has stopped). */
  close(): Promise<void>;
}

export function createGateway(options: GatewayOptions): Gateway {
  const { config, log } = options;
  const descriptors = loadDescriptors(options.extraDescriptors);
  const targetsByPool: Record<string, TargetSpec> = {
    registry: config.registryTargets,
    embeddings: config.embeddingsTargets,
    generation: config.generationTargets,
    vision: config.visionTargets,
  };
  const services: PublicService[] = [];
  for (const s of PUBLIC_SERVICES) if (targetsByPool[s.pool]?.kind !== 'none' && descriptors[s.service]) services.push(s);
  for (const e of options.extraServices ?? []) {
    services.push(e.service);
    targetsByPool[e.service.pool] = e.targets;
  }

  let server: GatewayServer | undefined;
  const pools = new Map<string, ServicePool>();
  for (const s of services) {
    if (pools.has(s.pool)) continue;
    pools.set(
      s.pool,
      new ServicePool({
        name: s.pool,
        healthService: s.service,
        targets: targetsByPool[s.pool]!,
        balancing: config.balancing,
        ejectMs: config.ejectMs,
        dnsRefreshMs: config.dnsRefreshMs,
        keepaliveTimeMs: config.keepaliveTimeMs,
        keepaliveTimeoutMs: config.keepaliveTimeoutMs,
        log,
        onAvailability: (available) => {
          for (const x of services) if (x.pool === s.pool) server?.setServiceHealth(x.service, available);
        },
      }),
    );
  }
  // The registry pool exists even when nothing else does: the model directory reads from it.
  const registryPool =
    pools.get('registry') ??
    new ServicePool({
      name: 'registry',
      healthService: 'maas.registry.v1.ModelRegistryService',
      targets: config.registryTargets,
      balancing: config.balancing,
      ejectMs: config.ejectMs,
      dnsRefreshMs: config.dnsRefreshMs,
      log,
    });
  const directory = new ModelDirectory(registryPool, log, config.resolveCacheMs);

  const table = buildMethodTable(descriptors, services, {
    defaultDeadlines: config.defaultDeadlines,
    maxRequestBytes: config.maxRequestBytes,
    fallbackMaxRequestBytes: config.maxReceiveMessageBytes,
    longLived: config.longLived,
  });

  const admission = new Admission({
    authenticator: config.auth ? buildAuthenticator(config) : undefined,
    rate: { rps: config.rateLimitRps, burst: config.rateLimitBurst || Math.max(1, Math.ceil(config.rateLimitRps)) },
    maxConcurrentCalls: config.maxConcurrentCalls,
  });
  const retry: RetrySettings = {
    maxAttempts: config.retryMaxAttempts,
    backoffMs: config.retryBackoffMs,
    backoffMaxMs: config.retryBackoffMaxMs,
    budget: new RetryBudget(config.retryBudgetRatio, config.retryBudgetMinPerSecond),
  };
  const tracing = tracingHandle() !== undefined;
  const upstreamAuthorization = (route: MethodRoute, _principal: unknown, incoming: string | undefined): string | undefined => {
    // With auth off the gateway is transparent; with it on, the caller's credential is the gateway's business,
    // and registry writes carry the registry's own admin token.
    if (!admission.authEnabled) return incoming;
    if (route.scope === 'registry:write' && config.registryToken) return `Bearer ${config.registryToken}`;
    return undefined;
  };

  const front = new GrpcFront({
    table,
    internalPool: INTERNAL_POOL,
    maxInternalRequestBytes: config.maxReceiveMessageBytes,
    context: {
      admission,
      retry,
      log,
      tracing: () => tracing,
      pool: (name) => pools.get(name),
      resolve: (ref) => directory.resolve(ref),
      upstreamAuthorization,
    },
  });

  // JSON carries a message in about twice its protobuf size (floats and base64 images as text).
  const largest = Math.max(...[...table.values()].filter((r) => r.pool !== 'registry').map((r) => r.maxRequestBytes), 1024 * 1024);
  const http = config.httpEnabled
    ? createHttpApi({ host: config.host, port: config.httpPort, log, admission, directory, pools, retry, table, bodyLimit: 2 * largest, tracing })
    : undefined;

  server = new GatewayServer({
    settings: config,
    log,
    front,
    http,
    publicServices: services.map((s) => ({ name: s.service, definition: descriptors[s.service] as Record<string, unknown> })),
    extraDescriptors: options.extraDescriptors,
    onInternalPort: (port) => {
      pools.set(
        INTERNAL_POOL,
        new ServicePool({
          name: 'gateway',
          healthService: '',
          targets: { kind: 'static', addresses: [`127.0.0.1:${port}`] },
          balancing: 'round-robin',
          ejectMs: 100,
          dnsRefreshMs: config.dnsRefreshMs,
          watchHealth: false,
          log,
        }),
      );
      // Until a replica's health is known, its service is reported as not serving.
      for (const s of services) server!.setServiceHealth(s.service, (pools.get(s.pool)?.usable ?? 0) > 0);
    },
  });

  return {
    server,
    pools,
    directory,
    table,
    admission,
    async close() {
      directory.close();
      for (const p of pools.values()) p.close();
      if (!pools.has('registry')) registryPool.close();
    },
  };
}

function buildAuthenticator(config: GatewayConfig): Authenticator {
  const keys: ApiKey[] = parseApiKeyList(config.apiKeys);
  if (config.apiKeysFile) keys.push(...parseApiKeyFile(parseYaml(readFileSync(config.apiKeysFile, 'utf8'))));
  const jwks = config.jwtJwksFile ? (JSON.parse(readFileSync(config.jwtJwksFile, 'utf8')) as { keys: object[] }) : undefined;
  if (keys.length === 0 && !config.jwtSecret && !jwks) {
    throw new Error('MAAS_GATEWAY_AUTH is on but no credentials are configured: set MAAS_GATEWAY_API_KEYS, MAAS_GATEWAY_API_KEYS_FILE, MAAS_GATEWAY_JWT_SECRET or MAAS_GATEWAY_JWT_JWKS_FILE');
  }
  return new Authenticator(keys, { secret: config.jwtSecret || undefined, jwks, issuer: config.jwtIssuer, audience: config.jwtAudience });
}
