// The generation service's instruments (OpenTelemetry, exported on /metrics by the runtime):
//   maas_generation_time_to_first_token_ms    histogram  arrival → first token
//   maas_generation_inter_token_latency_ms    histogram  between two tokens of one sequence
//   maas_generation_queue_time_ms             histogram  arrival → a place in the batch
//   maas_generation_step_ms                   histogram  one decode step of a lane
//   maas_generation_prefill_ms                histogram  one prompt's prefill
//   maas_generation_batch_size                histogram  rows in one decode step of a lane
//   maas_generation_tokens_per_second         histogram  per finished sequence, decode tokens / decode time
//   maas_generation_output_tokens_total       counter    generated tokens (rate() gives tokens/s)
//   maas_generation_prompt_tokens_total       counter    prefilled prompt tokens
//   maas_generation_requests_total            counter    finished sequences by finish reason
//   maas_generation_rejected_total            counter    requests refused with RESOURCE_EXHAUSTED
//   maas_generation_sequences_running         gauge      sequences in the batch now
//   maas_generation_sequences_waiting         gauge      requests waiting for the batch now
// Every series carries `model` and `version`.
import { counter, histogram, latencyHistogram, observableGauge } from '../runtime/telemetry/metrics.js';
import type { EngineMetrics } from './domain/scheduler.js';
import type { EngineStats, FinishReason } from './domain/types.js';

type Instruments = ReturnType<typeof create>;

function create() {
  return {
    ttft: latencyHistogram('maas_generation_time_to_first_token_ms', 'time from a request arriving to its first generated token, in ms'),
    itl: latencyHistogram('maas_generation_inter_token_latency_ms', 'time between two consecutive tokens of one sequence, in ms'),
    queue: latencyHistogram('maas_generation_queue_time_ms', 'time a request waited for a place in the batch, in ms'),
    step: latencyHistogram('maas_generation_step_ms', 'duration of one decode step of a lane, in ms'),
    prefill: latencyHistogram('maas_generation_prefill_ms', 'duration of one prompt prefill, in ms'),
    batch: histogram('maas_generation_batch_size', 'rows decoded together in one step of a lane', [1, 2, 4, 8, 16, 32, 64, 128]),
    tps: histogram('maas_generation_tokens_per_second', 'decode speed of one finished sequence, tokens per second', [1, 5, 10, 25, 50, 100, 200, 400, 800]),
    outputTokens: counter('maas_generation_output_tokens_total', 'tokens generated'),
    promptTokens: counter('maas_generation_prompt_tokens_total', 'prompt tokens prefilled'),
    requests: counter('maas_generation_requests_total', 'finished sequences, by finish reason'),
    rejected: counter('maas_generation_rejected_total', 'requests refused because the waiting queue was full'),
  };
}

/** One per process: instruments are created once, gauges read every live engine. */
export class GenerationMetrics {
  private instruments: Instruments | undefined;
  private readonly engines = new Map<string, { model: string; version: number; stats: () => EngineStats }>();
  private gauges = false;

  /** The EngineMetrics of one model version. */
  forModel(model: string, version: number): EngineMetrics {
    const m = (this.instruments ??= create());
    const attrs = { model, version: String(version) };
    return {
      queueTime: (ms) => m.queue.record(ms, attrs),
      timeToFirstToken: (ms) => m.ttft.record(ms, attrs),
      interTokenLatency: (ms) => m.itl.record(ms, attrs),
      step: (ms, batchSize) => {
        m.step.record(ms, attrs);
        m.batch.record(batchSize, attrs);
      },
      prefill: (ms, tokens) => {
        m.prefill.record(ms, attrs);
        m.promptTokens.add(tokens, attrs);
      },
      outputTokens: (n) => m.outputTokens.add(n, attrs),
      finished: (reason: FinishReason, tps) => {
        m.requests.add(1, { ...attrs, reason });
        if (tps !== undefined) m.tps.record(tps, attrs);
      },
      rejected: () => m.rejected.add(1, attrs),
    };
  }

  /** Reports a loaded engine's running/waiting counts until untracked. */
  track(model: string, version: number, stats: () => EngineStats): () => void {
    if (!this.gauges) {
      this.gauges = true;
      observableGauge('maas_generation_sequences_running', 'sequences in the running batch', () =>
        [...this.engines.values()].map((e) => ({ value: e.stats().running, attributes: { model: e.model, version: String(e.version) } })),
      );
      observableGauge('maas_generation_sequences_waiting', 'requests waiting for a place in the batch', () =>
        [...this.engines.values()].map((e) => ({ value: e.stats().waiting, attributes: { model: e.model, version: String(e.version) } })),
      );
    }
    const key = `${model}:${version}`;
    this.engines.set(key, { model, version, stats });
    return () => this.engines.delete(key);
  }
}
