// The small set of errors the domain throws. They are plain: no gRPC or HTTP types here. One function
// (grpc-status.ts) turns them into gRPC statuses; the gateway turns those into HTTP statuses.

/** A request field that is wrong, and why: becomes a google.rpc.BadRequest field violation. */
export interface FieldViolation {
  /** Path to the field in the request, in the proto's snake_case: `inputs[3]`, `parameters.top_p`. */
  field: string;
  description: string;
}

export type ErrorKind =
  | 'invalid_argument'
  | 'not_found'
  | 'already_exists'
  | 'failed_precondition'
  | 'overloaded'
  | 'unavailable'
  | 'cancelled'
  | 'deadline_exceeded'
  | 'unauthenticated'
  | 'permission_denied'
  | 'data_loss'
  | 'out_of_range';

export interface MaasErrorOptions {
  /** Machine-readable reason, UPPER_SNAKE_CASE, unique within maas (google.rpc.ErrorInfo.reason). */
  reason?: string;
  /** Extra facts for the caller (google.rpc.ErrorInfo.metadata), such as the model name. */
  metadata?: Record<string, string>;
  cause?: unknown;
}

/** The base of every error the domain throws on purpose. Its message is shown to the caller. */
export class MaasError extends Error {
  readonly kind: ErrorKind;
  readonly reason: string;
  readonly metadata: Record<string, string>;

  constructor(kind: ErrorKind, message: string, options: MaasErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.kind = kind;
    this.reason = options.reason ?? kind.toUpperCase();
    this.metadata = options.metadata ?? {};
  }
}

/** The request is malformed: a value out of range, a missing field. Fixing the request fixes it. */
export class InvalidArgumentError extends MaasError {
  readonly violations: FieldViolation[];
  constructor(message: string, violations: FieldViolation[] = [], options: MaasErrorOptions = {}) {
    super('invalid_argument', message, { reason: 'INVALID_ARGUMENT', ...options });
    this.violations = violations;
  }

  /** One bad field: the message names it. */
  static field(field: string, description: string, options: MaasErrorOptions = {}): InvalidArgumentError {
    return new InvalidArgumentError(`${field}: ${description}`, [{ field, description }], options);
  }
}

/** A named thing (model, version, alias, file) does not exist. */
export class NotFoundError extends MaasError {
  readonly resourceType: string;
  readonly resourceName: string;
  constructor(resourceType: string, resourceName: string, message?: string, options: MaasErrorOptions = {}) {
    super('not_found', message ?? `${resourceType} "${resourceName}" was not found`, { reason: `${upper(resourceType)}_NOT_FOUND`, ...options });
    this.resourceType = resourceType;
    this.resourceName = resourceName;
  }
}

export class AlreadyExistsError extends MaasError {
  readonly resourceType: string;
  readonly resourceName: string;
  constructor(resourceType: string, resourceName: string, message?: string, options: MaasErrorOptions = {}) {
    super('already_exists', message ?? `${resourceType} "${resourceName}" already exists`, { reason: `${upper(resourceType)}_ALREADY_EXISTS`, ...options });
    this.resourceType = resourceType;
    this.resourceName = resourceName;
  }
}

/** The request is well formed but the system is not in a state to do it (an alias still points at a version). */
export class FailedPreconditionError extends MaasError {
  /** google.rpc.PreconditionFailure violations: type, subject, description. */
  readonly violations: { type: string; subject: string; description: string }[];
  constructor(message: string, violations: { type: string; subject: string; description: string }[] = [], options: MaasErrorOptions = {}) {
    super('failed_precondition', message, { reason: 'FAILED_PRECONDITION', ...options });
    this.violations = violations;
  }
}

/** A bounded queue or limit is full. The caller should retry after retryAfterMs (google.rpc.RetryInfo). */
export class OverloadedError extends MaasError {
  readonly retryAfterMs: number;
  constructor(message: string, retryAfterMs: number, options: MaasErrorOptions = {}) {
    super('overloaded', message, { reason: 'OVERLOADED', ...options });
    this.retryAfterMs = Math.max(1, Math.round(retryAfterMs));
  }
}

/** A dependency or the service itself cannot serve right now (draining, no healthy replica). Retryable. */
export class UnavailableError extends MaasError {
  readonly retryAfterMs: number | undefined;
  constructor(message: string, retryAfterMs?: number, options: MaasErrorOptions = {}) {
    super('unavailable', message, { reason: 'UNAVAILABLE', ...options });
    this.retryAfterMs = retryAfterMs;
  }
}

/** The caller cancelled. Thrown by code that notices an aborted signal. */
export class CancelledError extends MaasError {
  constructor(message = 'the request was cancelled by the caller', options: MaasErrorOptions = {}) {
    super('cancelled', message, { reason: 'CANCELLED', ...options });
  }
}

/** The caller's deadline passed before the work finished. */
export class DeadlineExceededError extends MaasError {
  constructor(message = 'the request deadline passed before the work finished', options: MaasErrorOptions = {}) {
    super('deadline_exceeded', message, { reason: 'DEADLINE_EXCEEDED', ...options });
  }
}

export class UnauthenticatedError extends MaasError {
  constructor(message: string, options: MaasErrorOptions = {}) {
    super('unauthenticated', message, { reason: 'UNAUTHENTICATED', ...options });
  }
}

export class PermissionDeniedError extends MaasError {
  constructor(message: string, options: MaasErrorOptions = {}) {
    super('permission_denied', message, { reason: 'PERMISSION_DENIED', ...options });
  }
}

/** Stored or transferred bytes do not match what was declared (a digest mismatch). */
export class DataLossError extends MaasError {
  constructor(message: string, options: MaasErrorOptions = {}) {
    super('data_loss', message, { reason: 'DATA_LOSS', ...options });
  }
}

/** A position past the end (a download offset beyond the file's size). */
export class OutOfRangeError extends MaasError {
  constructor(message: string, options: MaasErrorOptions = {}) {
    super('out_of_range', message, { reason: 'OUT_OF_RANGE', ...options });
  }
}

/**
 * Throws the signal's reason when it is aborted. The runtime aborts call signals with a CancelledError or a
 * DeadlineExceededError, so domain loops can call this between steps.
 */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortReason(signal);
}

/** The error that an aborted signal stands for (a CancelledError when the reason is not a MaasError). */
export function abortReason(signal: AbortSignal): MaasError {
  const r: unknown = signal.reason;
  if (r instanceof MaasError) return r;
  if (r instanceof Error && r.name === 'TimeoutError') return new DeadlineExceededError();
  return new CancelledError();
}

function upper(s: string): string {
  return s.replace(/[^A-Za-z0-9]+/g, '_').toUpperCase();
}
