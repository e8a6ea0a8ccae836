// The ONE mapping from domain errors to gRPC statuses, with google.rpc details in `grpc-status-details-bin`
// (the rich error model that grpc-go, grpc-java and connect clients decode). Its inverse, decodeStatus, is
// what clients (the gateway, the CLI, tests) use to read those details back.
import { Metadata, status as Status, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { Any } from '../../gen/google/protobuf/any.js';
import { BadRequest, ErrorInfo, PreconditionFailure, ResourceInfo, RetryInfo } from '../../gen/google/rpc/error_details.js';
import { Status as RpcStatus } from '../../gen/google/rpc/status.js';
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  MaasError,
  NotFoundError,
  OverloadedError,
  UnavailableError,
  type ErrorKind,
} from './errors.js';

export const ERROR_DOMAIN = 'maas.dev';
const DETAILS_KEY = 'grpc-status-details-bin';
const TYPE_PREFIX = 'type.googleapis.com/';

const CODES: Record<ErrorKind, Status> = {
  invalid_argument: Status.INVALID_ARGUMENT,
  not_found: Status.NOT_FOUND,
  already_exists: Status.ALREADY_EXISTS,
  failed_precondition: Status.FAILED_PRECONDITION,
  overloaded: Status.RESOURCE_EXHAUSTED,
  unavailable: Status.UNAVAILABLE,
  cancelled: Status.CANCELLED,
  deadline_exceeded: Status.DEADLINE_EXCEEDED,
  unauthenticated: Status.UNAUTHENTICATED,
  permission_denied: Status.PERMISSION_DENIED,
  data_loss: Status.DATA_LOSS,
  out_of_range: Status.OUT_OF_RANGE,
};

/**
 * Turns anything a handler threw into a gRPC status. MaasErrors keep their message and gain details;
 * a status-shaped error from a downstream gRPC call passes through unchanged; anything else is INTERNAL
 * with a generic message, and its cause goes to the log only. A message is sent percent-encoded by
 * encodeURI, which throws on a lone surrogate (a message may quote what a caller sent): those become U+FFFD.
 */
export function toStatus(err: unknown, log?: Logger): Partial<StatusObject> & { code: Status; details: string } {
  if (err instanceof MaasError) {
    const code = CODES[err.kind];
    return { code, details: wellFormed(err.message), metadata: detailsMetadata(code, err) };
  }
  if (isServiceError(err)) {
    return { code: err.code, details: wellFormed(err.details), metadata: err.metadata };
  }
  log?.error({ err }, 'unexpected error while handling a call');
  return { code: Status.INTERNAL, details: 'internal error; the server logged the cause' };
}

const LONE_SURROGATE = /\p{Cs}/gu;
const wellFormed = (text: string) => text.replace(LONE_SURROGATE, '\uFFFD');

function detailsMetadata(code: Status, err: MaasError): Metadata {
  const details: Any[] = [pack('google.rpc.ErrorInfo', ErrorInfo.encode({ reason: err.reason, domain: ERROR_DOMAIN, metadata: err.metadata }).finish())];
  if (err instanceof InvalidArgumentError && err.violations.length > 0) {
    details.push(pack('google.rpc.BadRequest', BadRequest.encode({ fieldViolations: err.violations.map((v) => ({ ...v, reason: '' })) }).finish()));
  }
  if (err instanceof FailedPreconditionError && err.violations.length > 0) {
    details.push(pack('google.rpc.PreconditionFailure', PreconditionFailure.encode({ violations: err.violations }).finish()));
  }
  if (err instanceof NotFoundError || err instanceof AlreadyExistsError) {
    details.push(pack('google.rpc.ResourceInfo', ResourceInfo.encode({ resourceType: err.resourceType, resourceName: err.resourceName, owner: '', description: err.message }).finish()));
  }
  const retryMs = err instanceof OverloadedError ? err.retryAfterMs : err instanceof UnavailableError ? err.retryAfterMs : undefined;
  if (retryMs !== undefined) {
    details.push(pack('google.rpc.RetryInfo', RetryInfo.encode({ retryDelay: { seconds: Math.floor(retryMs / 1000), nanos: (retryMs % 1000) * 1e6 } }).finish()));
  }
  const md = new Metadata();
  md.set(DETAILS_KEY, Buffer.from(RpcStatus.encode({ code, message: err.message, details }).finish()));
  return md;
}

function pack(typeName: string, value: Uint8Array): Any {
  return { typeUrl: TYPE_PREFIX + typeName, value: Buffer.from(value) };
}

/** What a client can read from a failed call: the code, the message and the decoded google.rpc details. */
export interface DecodedStatus {
  code: Status;
  message: string;
  errorInfo?: ErrorInfo;
  badRequest?: BadRequest;
  preconditionFailure?: PreconditionFailure;
  resourceInfo?: ResourceInfo;
  /** From google.rpc.RetryInfo, in milliseconds. */
  retryAfterMs?: number;
}

export function decodeStatus(err: ServiceError | { code: Status; details: string; metadata?: Metadata }): DecodedStatus {
  const out: DecodedStatus = { code: err.code, message: err.details };
  const raw = err.metadata?.get(DETAILS_KEY)[0];
  if (!raw || typeof raw === 'string') return out;
  let status: RpcStatus;
  try {
    status = RpcStatus.decode(raw);
  } catch {
    return out;
  }
  for (const any of status.details) {
    const name = any.typeUrl.slice(any.typeUrl.lastIndexOf('/') + 1);
    if (name === 'google.rpc.ErrorInfo') out.errorInfo = ErrorInfo.decode(any.value);
    else if (name === 'google.rpc.BadRequest') out.badRequest = BadRequest.decode(any.value);
    else if (name === 'google.rpc.PreconditionFailure') out.preconditionFailure = PreconditionFailure.decode(any.value);
    else if (name === 'google.rpc.ResourceInfo') out.resourceInfo = ResourceInfo.decode(any.value);
    else if (name === 'google.rpc.RetryInfo') {
      const d = RetryInfo.decode(any.value).retryDelay;
      if (d) out.retryAfterMs = d.seconds * 1000 + Math.round(d.nanos / 1e6);
    }
  }
  return out;
}

/** A gRPC error as grpc-js's client makes it ("<code> <NAME>: <details>"), for clients that are not grpc-js. */
export function serviceError(code: Status, details: string, metadata = new Metadata()): ServiceError {
  return Object.assign(new Error(`${code} ${Status[code]}: ${details}`), { code, details, metadata });
}

export function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as Partial<ServiceError>).code === 'number' && 'details' in err;
}
