import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../runtime/errors.js';
import { checkParameters, type RawParameters } from './params.js';

const limits = { maxNewTokens: 512, defaultMaxNewTokens: 64, maxStopSequences: 4, maxStopLength: 16, maxLogprobs: 5 };
const check = (raw: RawParameters) => checkParameters(raw, limits, 1000);
const violation = (raw: RawParameters) => {
  try {
    check(raw);
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidArgumentError);
    return (err as InvalidArgumentError).violations[0]!.field;
  }
  throw new Error('accepted');
};

describe('checkParameters', () => {
  it('fills in defaults', () => {
    expect(check({ seed: 7 })).toMatchObject({ maxNewTokens: 64, temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1, seed: 7n, stop: [], logprobs: undefined });
  });

  it.each([
    [{ temperature: -0.5 }, 'parameters.temperature'],
    [{ temperature: Number.NaN }, 'parameters.temperature'],
    [{ temperature: Number.POSITIVE_INFINITY }, 'parameters.temperature'],
    [{ topP: 0 }, 'parameters.top_p'],
    [{ topP: 1.01 }, 'parameters.top_p'],
    [{ topK: 1001 }, 'parameters.top_k'],
    [{ maxNewTokens: 0 }, 'parameters.max_new_tokens'],
    [{ maxNewTokens: 1_000_000 }, 'parameters.max_new_tokens'],
    [{ repetitionPenalty: 0 }, 'parameters.repetition_penalty'],
    [{ presencePenalty: 2.5 }, 'parameters.presence_penalty'],
    [{ frequencyPenalty: -3 }, 'parameters.frequency_penalty'],
    [{ stop: ['a', 'b', 'c', 'd', 'e'] }, 'parameters.stop'],
    [{ stop: ['ok', ''] }, 'parameters.stop[1]'],
    [{ logprobs: 6 }, 'parameters.logprobs'],
  ] as [RawParameters, string][])('rejects %o naming %s', (raw, field) => {
    expect(violation(raw)).toBe(field);
  });

  it('draws a seed below 2^53 when none is given', () => {
    const a = check({}).seed;
    expect(a).toBeLessThan(2n ** 53n);
  });
});
