// Checks a request's sampling parameters against the service's limits and fills in defaults. Every
// violation names the request field (proto snake_case, as the caller wrote it) and the allowed range.
import { InvalidArgumentError, type FieldViolation } from '../../runtime/errors.js';

/** Parameters as a caller sent them: unset fields are undefined. */
export interface RawParameters {
  maxNewTokens?: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  seed?: number | bigint;
  stop?: string[];
  logprobs?: number;
  ignoreEos?: boolean;
}

/** Checked parameters with defaults filled in. */
export interface SamplingParameters {
  /** Upper bound on generated tokens; the context length may end a sequence earlier (finish reason length). */
  maxNewTokens: number;
  /** 0 means greedy. */
  temperature: number;
  /** 0 means no top-k cut. */
  topK: number;
  /** 1 means no nucleus cut. */
  topP: number;
  repetitionPenalty: number;
  presencePenalty: number;
  frequencyPenalty: number;
  /** The seed actually used (drawn at random when the request had none), so a result can be reproduced. */
  seed: bigint;
  stop: string[];
  /** undefined: no logprobs; 0: the chosen token's only; n: also the n most likely alternatives. */
  logprobs: number | undefined;
  ignoreEos: boolean;
}

export interface ParameterLimits {
  /** Largest max_new_tokens a request may ask for. */
  maxNewTokens: number;
  /** max_new_tokens when the request leaves it unset (also capped by the room left in the context). */
  defaultMaxNewTokens: number;
  maxStopSequences: number;
  maxStopLength: number;
  maxLogprobs: number;
}

export const RANGES = {
  temperature: { min: 0, max: 100 },
  topP: { min: 0, max: 1 },
  repetitionPenalty: { min: 0, max: 10 },
  presencePenalty: { min: -2, max: 2 },
  frequencyPenalty: { min: -2, max: 2 },
} as const;

/** Validates and fills defaults. `prefix` is the path of the parameters message in the request. */
export function checkParameters(raw: RawParameters, limits: ParameterLimits, vocabSize: number, prefix = 'parameters.'): SamplingParameters {
  const violations: FieldViolation[] = [];
  const bad = (field: string, description: string) => violations.push({ field: prefix + field, description });
  const finite = (field: string, v: number | undefined, def: number, check: (v: number) => boolean, range: string): number => {
    if (v === undefined) return def;
    if (!Number.isFinite(v)) bad(field, `must be a finite number ${range} (got ${v})`);
    else if (!check(v)) bad(field, `must be ${range} (got ${v})`);
    return v;
  };

  const temperature = finite('temperature', raw.temperature, 1, (v) => v >= RANGES.temperature.min && v <= RANGES.temperature.max, 'between 0 and 100 (0 means greedy)');
  const topP = finite('top_p', raw.topP, 1, (v) => v > 0 && v <= 1, 'in (0, 1]');
  const repetitionPenalty = finite('repetition_penalty', raw.repetitionPenalty, 1, (v) => v > 0 && v <= RANGES.repetitionPenalty.max, 'in (0, 10] (1 means none)');
  const presencePenalty = finite('presence_penalty', raw.presencePenalty, 0, (v) => v >= -2 && v <= 2, 'between -2 and 2');
  const frequencyPenalty = finite('frequency_penalty', raw.frequencyPenalty, 0, (v) => v >= -2 && v <= 2, 'between -2 and 2');

  let topK = 0;
  if (raw.topK !== undefined) {
    if (!Number.isInteger(raw.topK) || raw.topK < 0 || raw.topK > vocabSize) bad('top_k', `must be an integer from 0 (no cut) to the vocabulary size ${vocabSize} (got ${raw.topK})`);
    else topK = raw.topK;
  }

  let maxNewTokens = limits.defaultMaxNewTokens;
  if (raw.maxNewTokens !== undefined) {
    if (!Number.isInteger(raw.maxNewTokens) || raw.maxNewTokens < 1 || raw.maxNewTokens > limits.maxNewTokens) {
      bad('max_new_tokens', `must be an integer from 1 to ${limits.maxNewTokens} (got ${raw.maxNewTokens})`);
    } else maxNewTokens = raw.maxNewTokens;
  }

  const stop = raw.stop ?? [];
  if (stop.length > limits.maxStopSequences) bad('stop', `at most ${limits.maxStopSequences} stop sequences (got ${stop.length})`);
  stop.forEach((s, i) => {
    if (s.length === 0) bad(`stop[${i}]`, 'must not be empty');
    else if (s.length > limits.maxStopLength) bad(`stop[${i}]`, `must be at most ${limits.maxStopLength} characters (got ${s.length})`);
  });

  let logprobs: number | undefined;
  if (raw.logprobs !== undefined) {
    if (!Number.isInteger(raw.logprobs) || raw.logprobs < 0 || raw.logprobs > limits.maxLogprobs) bad('logprobs', `must be an integer from 0 to ${limits.maxLogprobs} (got ${raw.logprobs})`);
    else logprobs = raw.logprobs;
  }

  let seed: bigint;
  if (raw.seed === undefined) seed = randomSeed();
  else if (typeof raw.seed === 'bigint') seed = BigInt.asUintN(64, raw.seed);
  else if (!Number.isSafeInteger(raw.seed) || raw.seed < 0) {
    bad('seed', `must be an unsigned 64-bit integer (got ${raw.seed})`);
    seed = 0n;
  } else seed = BigInt(raw.seed);

  if (violations.length > 0) {
    const first = violations[0]!;
    const message = violations.length === 1 ? `${first.field}: ${first.description}` : `${violations.length} invalid parameters; ${first.field}: ${first.description}`;
    throw new InvalidArgumentError(message, violations);
  }
  return { maxNewTokens, temperature, topK, topP, repetitionPenalty, presencePenalty, frequencyPenalty, seed, stop: [...stop], logprobs, ignoreEos: raw.ignoreEos ?? false };
}

/** A random seed below 2^53, so that it survives clients that read uint64 as a double. */
function randomSeed(): bigint {
  const words = crypto.getRandomValues(new Uint32Array(2));
  return (BigInt(words[0]! & 0x1fffff) << 32n) | BigInt(words[1]!);
}
