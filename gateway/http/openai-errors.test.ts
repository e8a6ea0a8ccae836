import { Metadata } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, NotFoundError, OverloadedError, PermissionDeniedError, UnauthenticatedError, UnavailableError } from '../../services/runtime/errors.js';
import { silentLogger } from '../../services/runtime/logger.js';
import { parseModelName } from './models.js';
import { openAiError } from './openai-errors.js';

describe('openAiError', () => {
  it('maps each gRPC status to its HTTP status and OpenAI error type', () => {
    const cases: [Error, number, string][] = [
      [InvalidArgumentError.field('inputs[1]', 'must not be empty'), 400, 'invalid_request_error'],
      [new UnauthenticatedError('no key'), 401, 'authentication_error'],
      [new PermissionDeniedError('no scope'), 403, 'permission_error'],
      [new NotFoundError('model', 'x'), 404, 'not_found_error'],
      [new OverloadedError('busy', 1500), 429, 'rate_limit_error'],
      [new UnavailableError('draining'), 503, 'service_unavailable'],
      [new TypeError('secret detail'), 500, 'server_error'],
    ];
    for (const [err, status, type] of cases) {
      const e = openAiError(err, silentLogger);
      expect([e.status, e.body.error.type]).toEqual([status, type]);
    }
  });

  it('names the bad field, the missing model, and when to retry', () => {
    expect(openAiError(InvalidArgumentError.field('inputs[1]', 'must not be empty'), silentLogger).body.error.param).toBe('inputs[1]');
    expect(openAiError(new NotFoundError('model', 'x'), silentLogger).body.error.code).toBe('model_not_found');
    expect(openAiError(new OverloadedError('busy', 1500), silentLogger).headers['retry-after']).toBe('2');
    expect(openAiError(new TypeError('secret detail'), silentLogger).body.error.message).not.toContain('secret');
  });

  it("renames the gRPC request's field to the one the caller sent, in param and message", () => {
    const e = openAiError(InvalidArgumentError.field('parameters.max_new_tokens', 'must be at most 2048'), silentLogger, (f) => (f === 'parameters.max_new_tokens' ? 'max_tokens' : f));
    expect(e.body.error.param).toBe('max_tokens');
    expect(e.body.error.message).toBe('max_tokens: must be at most 2048');
  });

  it('answers a request over the gRPC message limit with 413, not a 429 that invites a retry', () => {
    const err = Object.assign(new Error('8 RESOURCE_EXHAUSTED: Received message larger than max (20400014 vs 16777216)'), {
      code: 8,
      details: 'Received message larger than max (20400014 vs 16777216)',
      metadata: new Metadata(),
    });
    const e = openAiError(err, silentLogger);
    expect(e.status).toBe(413);
    expect(e.headers['retry-after']).toBeUndefined();
    expect(e.body.error).toMatchObject({ type: 'invalid_request_error', code: 'request_too_large' });
    expect(e.body.error.message).toMatch(/20400014 bytes .* 16777216 bytes/);
    expect(openAiError(new OverloadedError('busy', 1500), silentLogger).status).toBe(429);
  });
});

describe('parseModelName', () => {
  it('reads name, name:alias and name@version', () => {
    expect(parseModelName('glove-100d')).toEqual({ name: 'glove-100d' });
    expect(parseModelName('glove-100d:prod')).toEqual({ name: 'glove-100d', alias: 'prod' });
    expect(parseModelName('glove-100d@3')).toEqual({ name: 'glove-100d', version: 3 });
    expect(parseModelName(undefined)).toEqual({ name: '' });
    expect(() => parseModelName('a:b:c')).toThrow(/name:alias/);
    expect(() => parseModelName(42)).toThrow(/string/);
  });
});
