// A closed-loop load driver: `workers` callers each send one request after the other until the time or the
// request budget runs out, and every outcome is counted by gRPC status code (or HTTP status), with latencies.
import { status as Status } from '@grpc/grpc-js';

export interface Outcome {
  /** 'OK' or a gRPC status name (RESOURCE_EXHAUSTED …) or `HTTP 429` … */
  kind: string;
  ms: number;
  /** Whatever the caller wants to keep about a failure (first few only). */
  detail?: string;
}

export interface LoadReport {
  sent: number;
  byKind: Record<string, number>;
  /** Latencies of the OK requests and of the rejected ones, in ms. */
  okMs: number[];
  rejectedMs: number[];
  /** A few failure details (other than the expected rejections). */
  failures: string[];
}

export function statusName(code: number): string {
  return (Status as unknown as Record<number, string>)[code] ?? `CODE_${code}`;
}

/**
 * Runs `call(worker, i)` from `workers` concurrent loops until `durationMs` passes, `maxRequests` were sent,
 * or `stop()` returns true. `call` resolves with an Outcome (it catches its own errors).
 */
export async function drive(options: {
  workers: number;
  durationMs: number;
  maxRequests: number;
  call: (worker: number, i: number) => Promise<Outcome>;
  stop?: () => boolean;
  rejectedKinds?: string[];
}): Promise<LoadReport> {
  const rejectedKinds = new Set(options.rejectedKinds ?? ['RESOURCE_EXHAUSTED', 'HTTP 429']);
  const report: LoadReport = { sent: 0, byKind: {}, okMs: [], rejectedMs: [], failures: [] };
  const end = Date.now() + options.durationMs;
  const loop = async (w: number) => {
    for (let i = 0; Date.now() < end && report.sent < options.maxRequests && !options.stop?.(); i++) {
      report.sent++;
      const o = await options.call(w, i);
      report.byKind[o.kind] = (report.byKind[o.kind] ?? 0) + 1;
      if (o.kind === 'OK') report.okMs.push(o.ms);
      else if (rejectedKinds.has(o.kind)) report.rejectedMs.push(o.ms);
      else if (report.failures.length < 10) report.failures.push(`${o.kind}: ${o.detail ?? ''}`);
    }
  };
  await Promise.all(Array.from({ length: options.workers }, (_, w) => loop(w)));
  return report;
}

/** Times a promise and turns a gRPC error into its status name. */
export async function timed(run: () => Promise<string | undefined>): Promise<Outcome> {
  const t0 = performance.now();
  try {
    const wrong = await run();
    return wrong === undefined ? { kind: 'OK', ms: performance.now() - t0 } : { kind: 'WRONG', ms: performance.now() - t0, detail: wrong };
  } catch (err) {
    const e = err as { code?: number; details?: string; message?: string };
    return { kind: typeof e.code === 'number' ? statusName(e.code) : 'ERROR', ms: performance.now() - t0, detail: e.details ?? e.message };
  }
}

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

/** Latencies of `n` requests sent one after the other. */
export async function sequentialLatencies(n: number, call: () => Promise<Outcome>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const o = await call();
    if (o.kind !== 'OK') throw new Error(`an idle request failed: ${o.kind} ${o.detail ?? ''}`);
    out.push(o.ms);
  }
  return out;
}
