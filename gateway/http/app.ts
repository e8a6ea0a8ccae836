// The OpenAI-compatible HTTP API (fastify).
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from '../../services/runtime/logger.js';
import type { ModelDirectory } from '../clients/model-directory.js';
import type { ServicePool } from '../clients/service-pool.js';
import type { Admission } from '../domain/admission.js';
import type { RetrySettings } from '../grpc/front.js';
import type { MethodRoute } from '../routes/method-table.js';
import type { HttpListener } from '../server.js';

export interface HttpApiOptions {
  host: string;
  port: number;
  log: Logger;
  admission: Admission;
  directory: ModelDirectory;
  pools: Map<string, ServicePool>;
  retry: RetrySettings;
  table: Map<string, MethodRoute>;
  isDraining(): boolean;
}

export function createHttpApi(options: HttpApiOptions): HttpListener & { app: FastifyInstance } {
  const app = Fastify({ logger: false });
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => (options.isDraining() ? reply.code(503).send({ status: 'draining' }) : { status: 'ready' }));
  return {
    app,
    async listen() {
      await app.listen({ host: options.host, port: options.port });
      const a = app.server.address();
      return typeof a === 'object' && a ? a.port : options.port;
    },
    async drain() {
      return true;
    },
    async close() {
      await app.close();
    },
  };
}
