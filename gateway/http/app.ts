// The OpenAI-compatible HTTP API (fastify): /v1/embeddings, /v1/completions, /v1/chat/completions (with
// server-sent events), /v1/models, vLLM's /tokenize, plus /healthz and /readyz. Every API request (/v1 and
// /tokenize) passes the same admission as gRPC calls (credentials, scope `infer`, rate and concurrency
// limits), continues the caller's W3C trace context, and calls the services through the gateway's routing;
// errors come back in OpenAI's shape.
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { ModelRegistryServiceService } from '../../gen/maas/registry/v1/registry.js';
import { NotFoundError, UnavailableError } from '../../services/runtime/errors.js';
import type { Logger } from '../../services/runtime/logger.js';
import { tracer } from '../../services/runtime/telemetry/tracing.js';
import type { ModelDirectory } from '../clients/model-directory.js';
import { taskName } from '../clients/model-directory.js';
import { RoutedCaller } from '../clients/routed-calls.js';
import type { ServicePool } from '../clients/service-pool.js';
import { unaryCall } from '../clients/typed-calls.js';
import type { Admission } from '../domain/admission.js';
import type { ModelTaskName } from '../domain/catalog.js';
import type { RetrySettings } from '../grpc/front.js';
import type { MethodRoute } from '../routes/method-table.js';
import type { HttpListener } from '../server.js';
import { complete, completeStreaming, completionsFieldName } from './completions.js';
import type { ApiContext, RequestContext } from './context.js';
import { createEmbeddings, embeddingsFieldName } from './embeddings.js';
import { tokenize, tokenizeFieldName } from './tokenize.js';
import { parseModelName } from './models.js';
import { invalidRequest, openAiError, type OpenAiError } from './openai-errors.js';
import { EventStream } from './sse.js';

export interface HttpApiOptions {
  host: string;
  port: number;
  log: Logger;
  admission: Admission;
  directory: ModelDirectory;
  pools: Map<string, ServicePool>;
  retry: RetrySettings;
  table: Map<string, MethodRoute>;
  /** Largest JSON body accepted, in bytes. */
  bodyLimit: number;
  tracing: boolean;
}

/** Per route: the name the caller sent for a field of the gRPC request a service names in its error. */
const FIELD_NAMES: Record<string, (name: string) => string> = {
  '/v1/embeddings': embeddingsFieldName,
  '/v1/completions': (name) => completionsFieldName(name, false),
  '/v1/chat/completions': (name) => completionsFieldName(name, true),
  '/tokenize': tokenizeFieldName,
};

/** The routes that take admission (auth, scope `infer`, the concurrency limit): the API, not the probes. */
function isApiUrl(url: string): boolean {
  return url.startsWith('/v1/') || url === '/tokenize' || url.startsWith('/tokenize?');
}

/** Tasks each pool serves, for /v1/models. */
const POOL_TASKS: Record<string, ModelTaskName[]> = { embeddings: ['embedding'], generation: ['generation'], vision: ['ocr', 'image_classification'] };

declare module 'fastify' {
  interface FastifyRequest {
    maas?: RequestContext & { release?: () => void };
  }
}

export function createHttpApi(options: HttpApiOptions): HttpListener & { app: FastifyInstance } {
  const { log, admission, table } = options;
  const app = Fastify({ logger: false, bodyLimit: options.bodyLimit, return503OnClosing: true });
  const api: ApiContext = { pools: options.pools, directory: options.directory, caller: new RoutedCaller(options.retry) };
  let draining = false;
  let inFlight = 0;
  const idle = new Set<() => void>();

  const send = (reply: FastifyReply, e: OpenAiError) => reply.code(e.status).headers(e.headers).send(e.body);

  app.setErrorHandler((err: FastifyError, req, reply) => {
    if (err.statusCode && err.statusCode < 500 && err.code?.startsWith('FST_')) {
      return send(reply, { ...invalidRequest(err.message), status: err.statusCode });
    }
    if (err instanceof SyntaxError) return send(reply, invalidRequest(`the body is not valid JSON: ${err.message}`));
    return send(reply, openAiError(err, log, FIELD_NAMES[req.routeOptions.url ?? '']));
  });
  app.setNotFoundHandler((req, reply) => send(reply, { status: 404, headers: {}, body: { error: { message: `Unknown request URL: ${req.method} ${req.url}`, type: 'invalid_request_error', param: null, code: 'unknown_url' } } }));

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => (draining ? reply.code(503).send({ status: 'draining' }) : { status: 'ready' }));

  // Admission and per-request context for the API routes.
  app.addHook('onRequest', async (req, reply) => {
    if (!isApiUrl(req.url)) return;
    if (draining) throw new UnavailableError('the gateway is draining; retry on another gateway replica', 0);
    const principal = await admission.authenticate(req.headers.authorization);
    admission.check(principal, 'infer');
    admission.acquire();
    inFlight++;
    const abort = new AbortController();
    const timeoutMs = requestTimeoutMs(req);
    const started = Date.now();
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      admission.release();
      if (--inFlight === 0) for (const w of [...idle]) w();
    };
    reply.raw.on('close', () => {
      if (!reply.raw.writableFinished) abort.abort();
      release();
    });
    req.maas = {
      signal: abort.signal,
      deadline: (path) => {
        const ms = timeoutMs ?? table.get(path)?.defaultDeadlineMs ?? 0;
        return ms > 0 ? started + ms : undefined;
      },
      release,
    };
  });

  /** Runs a route inside a SERVER span that continues the caller's trace (the gRPC clients inject it). */
  const traced = <T>(req: FastifyRequest, name: string, run: () => Promise<T>): Promise<T> => {
    if (!options.tracing) return run();
    const parent = propagation.extract(ROOT_CONTEXT, req.headers);
    const span = tracer().startSpan(`POST ${name}`, { kind: SpanKind.SERVER, attributes: { 'http.request.method': req.method, 'url.path': name } }, parent);
    return context.with(trace.setSpan(parent, span), async () => {
      try {
        return await run();
      } catch (err) {
        span.setStatus({ code: SpanStatusCode.ERROR });
        throw err;
      } finally {
        span.end();
      }
    });
  };

  app.post('/v1/embeddings', async (req) => traced(req, '/v1/embeddings', () => createEmbeddings(body(req), api, req.maas!)));
  app.post('/tokenize', async (req) => traced(req, '/tokenize', () => tokenize(body(req), api, req.maas!)));

  for (const [path, chat] of [
    ['/v1/completions', false],
    ['/v1/chat/completions', true],
  ] as const) {
    app.post(path, async (req, reply) =>
      traced(req, path, async () => {
        const b = body(req);
        if (b.stream !== true) return complete(b, api, req.maas!, chat);
        let events: EventStream | undefined;
        try {
          await completeStreaming(b, api, req.maas!, chat, () => {
            void reply.hijack();
            events = new EventStream(reply.raw);
            return events;
          });
        } catch (err) {
          if (events) throw err;
          return send(reply, openAiError(err, log, FIELD_NAMES[path]));
        }
        return reply;
      }),
    );
  }

  app.get('/v1/models', async (req) => traced(req, '/v1/models', () => listModels(api, options.pools)));
  app.get<{ Params: { model: string } }>('/v1/models/:model', async (req) =>
    traced(req, '/v1/models/{model}', async () => {
      const ref = parseModelName(req.params.model);
      const r = await api.directory.resolve(ref);
      if (r.status === 'not_found') throw new NotFoundError('model', r.name, r.message);
      return { id: req.params.model, object: 'model', created: 0, owned_by: 'maas', ...(r.status === 'found' ? { maas: { task: r.task, version: r.version } } : {}) };
    }),
  );

  return {
    app,
    async listen() {
      await app.listen({ host: options.host, port: options.port });
      const a = app.server.address();
      const port = typeof a === 'object' && a ? a.port : options.port;
      log.info({ httpPort: port }, 'OpenAI-compatible HTTP API listening');
      return port;
    },
    async drain(graceMs: number) {
      draining = true;
      if (inFlight === 0) return true;
      return new Promise<boolean>((resolve) => {
        const done = () => {
          clearTimeout(t);
          idle.delete(done);
          resolve(true);
        };
        const t = setTimeout(() => {
          idle.delete(done);
          resolve(false);
        }, graceMs);
        idle.add(done);
      });
    },
    async close() {
      draining = true;
      await app.close();
    },
  };
}

function body(req: FastifyRequest): Record<string, unknown> {
  if (typeof req.body !== 'object' || req.body === null || Array.isArray(req.body)) {
    throw Object.assign(new SyntaxError('expected a JSON object'), {});
  }
  return req.body as Record<string, unknown>;
}

/** `x-stainless-timeout` (seconds; the official OpenAI clients send it) or `x-request-timeout-ms`. */
function requestTimeoutMs(req: FastifyRequest): number | undefined {
  const ms = Number(req.headers['x-request-timeout-ms']);
  if (Number.isFinite(ms) && ms > 0) return ms;
  const s = Number(req.headers['x-stainless-timeout']);
  if (Number.isFinite(s) && s > 0) return s * 1000;
  return undefined;
}

/** The models of the tasks this gateway serves: from the watched catalog, or the registry while it is not in sync. */
async function listModels(api: ApiContext, pools: Map<string, ServicePool>): Promise<object> {
  const tasks = new Set<ModelTaskName>();
  for (const [pool, t] of Object.entries(POOL_TASKS)) if (pools.has(pool)) for (const x of t) tasks.add(x);
  let models: { name: string; task: ModelTaskName; aliases: Record<string, number>; created: number }[];
  if (api.directory.catalog.synced) {
    models = api.directory.catalog.list().map((m) => ({ name: m.name, task: m.task, aliases: Object.fromEntries(m.aliases), created: 0 }));
  } else {
    const registry = pools.get('registry');
    const deadline = Date.now() + 5000;
    const res = await api.caller.unary({ pool: registry, affinity: undefined, idempotent: true, deadline, signal: new AbortController().signal }, (replica) =>
      unaryCall(replica.handle.upstream, ModelRegistryServiceService.listModels, { pageSize: 1000, pageToken: '', task: 0, tags: {} }, { deadline }),
    );
    models = res.models.map((m) => ({ name: m.name, task: taskName(m.task), aliases: m.aliases, created: m.createTime ? Math.floor(m.createTime.getTime() / 1000) : 0 }));
  }
  return {
    object: 'list',
    data: models.filter((m) => tasks.has(m.task)).map((m) => ({ id: m.name, object: 'model', created: m.created, owned_by: 'maas', maas: { task: m.task, aliases: m.aliases } })),
  };
}
