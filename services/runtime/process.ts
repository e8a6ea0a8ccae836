// The life of a component process: read config (failing fast), start, serve metrics, and on SIGTERM or
// SIGINT (unless `maas up` supervises it) drain and exit 0. Every main.ts goes through here.
import { createServer, type Server } from 'node:http';
import { metrics } from '@opentelemetry/api';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { ConfigError, describeConfig, loadConfig, type ConfigOf, type ConfigSpec, type ServerSettings } from './config.js';
import { createLogger, type Logger } from './logger.js';
import type { MeshServer } from './server.js';
import { tracingHandle } from './telemetry/tracing-sdk.js';

/** Loads the config or prints the problem (naming the variable) and exits with status 2. */
export function loadConfigOrExit<S extends ConfigSpec>(spec: S, env: NodeJS.ProcessEnv = process.env): ConfigOf<S> {
  try {
    return loadConfig(spec, env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}

export interface Running {
  server: MeshServer;
  /** Releases what the component holds (stores, sessions, clients), after the server has drained. */
  close?: () => Promise<void>;
}

export interface ComponentOptions<S extends ConfigSpec> {
  component: string;
  spec: S;
  start: (config: ConfigOf<S>, log: Logger) => Promise<Running>;
}

/** Runs a component until SIGTERM/SIGINT. */
export async function runComponent<S extends ConfigSpec>(options: ComponentOptions<S>): Promise<void> {
  const config = loadConfigOrExit(options.spec);
  const settings = config as unknown as ServerSettings;
  const log = createLogger(options.component, settings.logLevel);
  log.info({ config: describeConfig(options.spec, config) }, `${options.component} starting`);
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled promise rejection'));

  const metricsServer = settings.metricsEnabled ? await serveMetrics(settings, log) : undefined;
  let running: Running;
  try {
    running = await options.start(config, log);
    await running.server.start();
  } catch (err) {
    log.fatal({ err }, `${options.component} failed to start`);
    await new Promise((r) => setTimeout(r, 50));
    process.exit(1);
  }

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    const { completed } = await running.server.drain();
    try {
      await running.close?.();
    } catch (err) {
      log.error({ err }, 'error while closing');
    }
    metricsServer?.close();
    await tracingHandle()?.shutdown().catch(() => undefined);
    log.info({ completed }, 'stopped');
    // Give pino a tick to flush before exiting.
    setImmediate(() => process.exit(0));
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  // Ctrl-C in a terminal signals every process of the foreground job at once. Under `maas up` that would drain
  // the registry while the model services still watch it; maas up answers the same Ctrl-C by stopping the
  // components in order (gateway first, registry last) with SIGTERM, so a supervised component leaves SIGINT
  // to it. The handler stays either way: without one, SIGINT would end the process undrained.
  process.on('SIGINT', () => {
    if (!settings.supervised) void stop('SIGINT');
  });
}

async function serveMetrics(settings: ServerSettings, log: Logger): Promise<Server> {
  const exporter = new PrometheusExporter({ preventServerStart: true });
  const provider = new MeterProvider({ readers: [exporter] });
  metrics.setGlobalMeterProvider(provider);
  const server = createServer((req, res) => {
    if (req.url?.startsWith('/metrics')) exporter.getMetricsRequestHandler(req, res);
    else {
      res.statusCode = 404;
      res.end('see /metrics\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(settings.metricsPort, settings.host, () => resolve());
  });
  const address = server.address();
  log.info({ port: typeof address === 'object' && address ? address.port : settings.metricsPort }, 'metrics on /metrics');
  return server;
}
