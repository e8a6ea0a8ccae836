// A call's deadline and the client's cancellation, as ONE AbortSignal that handlers pass into the domain.
// The signal's reason is a DeadlineExceededError or a CancelledError, so domain code can rethrow it as is.
import type { Deadline } from '@grpc/grpc-js';
import { CancelledError, DeadlineExceededError } from './errors.js';

export interface CallSignal {
  signal: AbortSignal;
  /** Absolute deadline in epoch milliseconds, or undefined when the caller set none. */
  deadline: number | undefined;
  /** Aborts the signal with a reason of the server's own (drain, shutdown). */
  abort(reason: Error): void;
  /** Releases the timer; call when the call ends. */
  dispose(): void;
}

export interface Cancellable {
  cancelled: boolean;
  on(event: 'cancelled', listener: () => void): unknown;
  removeListener(event: 'cancelled', listener: () => void): unknown;
  getDeadline(): Deadline;
}

export function callSignal(call: Cancellable): CallSignal {
  const controller = new AbortController();
  const deadline = toEpochMs(call.getDeadline());
  let timer: NodeJS.Timeout | undefined;
  const onCancel = () => {
    // grpc-js reports an expired deadline as a cancellation too; tell the two apart by the clock.
    const expired = deadline !== undefined && Date.now() >= deadline - 1;
    if (!controller.signal.aborted) controller.abort(expired ? new DeadlineExceededError() : new CancelledError());
  };
  if (call.cancelled) onCancel();
  else call.on('cancelled', onCancel);
  if (deadline !== undefined && !controller.signal.aborted) {
    const ms = deadline - Date.now();
    if (ms <= 0) controller.abort(new DeadlineExceededError());
    else if (ms < 2 ** 31 - 1) {
      timer = setTimeout(() => controller.abort(new DeadlineExceededError()), ms);
      timer.unref();
    }
  }
  return {
    signal: controller.signal,
    deadline,
    abort(reason) {
      if (!controller.signal.aborted) controller.abort(reason);
    },
    dispose() {
      if (timer) clearTimeout(timer);
      call.removeListener('cancelled', onCancel);
    },
  };
}

function toEpochMs(d: Deadline): number | undefined {
  if (d instanceof Date) return d.getTime();
  if (typeof d === 'number' && Number.isFinite(d)) return d;
  return undefined;
}

/**
 * A signal of its own for one piece of work among several in flight on one call (a request of a stream, a
 * page): aborted when the call's is, with its reason, and adding no listener to it (AbortSignal.any). Each
 * piece's own listeners (queue entry, model lease) go on this one; all on the call's signal, a window of more
 * than ~10 pieces made Node print a MaxListenersExceededWarning ("possible EventTarget memory leak").
 */
export function childSignal(call: AbortSignal): AbortSignal {
  return AbortSignal.any([call]);
}
