// Errors in OpenAI's shape, `{ "error": { "message", "type", "param", "code" } }`, with the HTTP status that
// matches the gRPC status (decoded with the runtime's decodeStatus, so google.rpc details become the param,
// the code and Retry-After).
import { status as Code, type ServiceError } from '@grpc/grpc-js';
import { MaasError } from '../../services/runtime/errors.js';
import { decodeStatus, isServiceError, toStatus, type DecodedStatus } from '../../services/runtime/grpc-status.js';
import type { Logger } from '../../services/runtime/logger.js';

export interface OpenAiError {
  status: number;
  headers: Record<string, string>;
  body: { error: { message: string; type: string; param: string | null; code: string | null } };
}

const HTTP: Partial<Record<Code, [number, string]>> = {
  [Code.INVALID_ARGUMENT]: [400, 'invalid_request_error'],
  [Code.FAILED_PRECONDITION]: [400, 'invalid_request_error'],
  [Code.OUT_OF_RANGE]: [400, 'invalid_request_error'],
  [Code.UNAUTHENTICATED]: [401, 'authentication_error'],
  [Code.PERMISSION_DENIED]: [403, 'permission_error'],
  [Code.NOT_FOUND]: [404, 'not_found_error'],
  [Code.ALREADY_EXISTS]: [409, 'invalid_request_error'],
  [Code.RESOURCE_EXHAUSTED]: [429, 'rate_limit_error'],
  [Code.CANCELLED]: [499, 'request_cancelled'],
  [Code.UNIMPLEMENTED]: [501, 'not_implemented'],
  [Code.UNAVAILABLE]: [503, 'service_unavailable'],
  [Code.DEADLINE_EXCEEDED]: [504, 'timeout'],
};

/** grpc-js's words for a message over the size limit, on either side of the call. */
const TOO_LARGE = /message larger than max \((\d+) vs (\d+)\)/;

/**
 * The OpenAI-shaped error for anything a route threw: a domain error, a gRPC error from a service, or a bug.
 * `field` renames a field of the gRPC request to the route's own (`parameters.max_new_tokens` → `max_tokens`),
 * in `param` and at the head of the message, so that the caller reads the name it sent.
 */
export function openAiError(err: unknown, log: Logger, field: (name: string) => string = (name) => name): OpenAiError {
  let d: DecodedStatus;
  if (isServiceError(err)) d = decodeStatus(err);
  else if (err instanceof MaasError) d = decodeStatus(toStatus(err) as ServiceError);
  else {
    log.error({ err }, 'unexpected error in the HTTP API');
    d = { code: Code.INTERNAL, message: 'internal error; the gateway logged the cause' };
  }
  const tooLarge = d.code === Code.RESOURCE_EXHAUSTED && d.retryAfterMs === undefined ? TOO_LARGE.exec(d.message) : null;
  if (tooLarge) {
    // grpc-js's message-size limit, not an overload: retrying the same request cannot help, so not a 429.
    const message = `the request is ${tooLarge[1]} bytes as a protobuf message, over the ${tooLarge[2]} bytes the service accepts (MAAS_MAX_RECEIVE_MESSAGE_BYTES); send fewer or smaller inputs per request`;
    return { status: 413, headers: {}, body: { error: { message, type: 'invalid_request_error', param: null, code: 'request_too_large' } } };
  }
  const [status, type] = HTTP[d.code] ?? [500, 'server_error'];
  const headers: Record<string, string> = {};
  if (status === 429 || status === 503) headers['retry-after'] = String(Math.max(1, Math.ceil((d.retryAfterMs ?? 1000) / 1000)));
  const violated = d.badRequest?.fieldViolations[0]?.field;
  const param = violated === undefined ? null : field(violated);
  if (violated !== undefined && d.message.startsWith(`${violated}:`)) d = { ...d, message: param + d.message.slice(violated.length) };
  const code = d.code === Code.NOT_FOUND && d.resourceInfo?.resourceType === 'model' ? 'model_not_found' : d.errorInfo?.reason.toLowerCase() ?? Code[d.code]?.toLowerCase() ?? null;
  return { status, headers, body: { error: { message: d.message, type, param, code } } };
}

/** An error of the HTTP request itself (bad JSON, a missing field): 400 invalid_request_error. */
export function invalidRequest(message: string, param: string | null = null): OpenAiError {
  return { status: 400, headers: {}, body: { error: { message, type: 'invalid_request_error', param, code: null } } };
}
