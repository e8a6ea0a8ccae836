// JSON logs (pino) that carry the active trace and span ids, so a log line leads to its trace in Jaeger.
import { trace } from '@opentelemetry/api';
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export function createLogger(component: string, level: LevelWithSilent = 'info'): Logger {
  return pino({
    level,
    base: { component },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    mixin() {
      const ctx = trace.getActiveSpan()?.spanContext();
      return ctx && ctx.traceFlags !== undefined && ctx.traceId !== '00000000000000000000000000000000'
        ? { trace_id: ctx.traceId, span_id: ctx.spanId }
        : {};
    },
  });
}

/** A logger that drops everything (tests, library code called without one). */
export const silentLogger: Logger = pino({ level: 'silent' });
