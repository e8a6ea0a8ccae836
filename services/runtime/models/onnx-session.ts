// onnxruntime sessions with execution providers from configuration (`cuda,cpu`): the first provider that
// works is used, falling back along the list with a logged warning. Thread counts are configuration too:
// on a 2-core machine shared with the gRPC event loop, one intra-op thread is often the fastest.
import * as ort from 'onnxruntime-node';

/** Where a session's warnings go (a Logger; on a worker thread, a list that the main thread logs). */
export interface SessionLog {
  warn(details: object, message: string): void;
}

/** A warning as it crosses from a worker thread. */
export interface SessionWarning {
  details: object;
  message: string;
}

/** A SessionLog that keeps what it is told, for a worker thread to pass on to the main thread's logger. */
export function collectingLog(): SessionLog & { warnings: SessionWarning[] } {
  const warnings: SessionWarning[] = [];
  return { warnings, warn: (details, message) => warnings.push({ details, message }) };
}

/** Logs here what a worker thread's collectingLog kept. */
export function replayWarnings(warnings: readonly SessionWarning[], log: SessionLog | undefined): void {
  for (const w of warnings) log?.warn(w.details, w.message);
}

export interface SessionSettings {
  /** Provider names in order of preference, e.g. ['cuda', 'cpu']. 'cpu' is always tried last. */
  executionProviders: string[];
  /** Threads for one operator (0: onnxruntime's default). */
  intraOpThreads: number;
  /** Threads across operators (0: onnxruntime's default). */
  interOpThreads: number;
}

export interface OnnxSession {
  session: ort.InferenceSession;
  /** The provider that was actually used. */
  executionProvider: string;
}

/** Creates a session from a file path or bytes, trying providers in order. */
export async function createOnnxSession(model: string | Uint8Array, settings: SessionSettings, log?: SessionLog): Promise<OnnxSession> {
  const providers = [...new Set([...settings.executionProviders.map((p) => p.toLowerCase()), 'cpu'])];
  let lastError: unknown;
  for (const provider of providers) {
    const options: ort.InferenceSession.SessionOptions = {
      executionProviders: [provider],
      graphOptimizationLevel: 'all',
      ...(settings.intraOpThreads > 0 ? { intraOpNumThreads: settings.intraOpThreads } : {}),
      ...(settings.interOpThreads > 0 ? { interOpNumThreads: settings.interOpThreads } : {}),
    };
    try {
      const session = typeof model === 'string' ? await ort.InferenceSession.create(model, options) : await ort.InferenceSession.create(model, options);
      if (provider !== providers[0]) log?.warn({ wanted: providers[0], using: provider }, 'execution provider unavailable; fell back');
      return { session, executionProvider: provider };
    } catch (err) {
      lastError = err;
      log?.warn({ provider, err: String(err) }, 'could not create an onnxruntime session with this execution provider');
    }
  }
  throw lastError instanceof Error ? lastError : new Error(String(lastError));
}

/** Input and output names, element types and shapes of a session (what the registry records as a signature). */
export function sessionSignature(session: Pick<ort.InferenceSession, 'inputNames' | 'outputNames' | 'inputMetadata' | 'outputMetadata'>): { inputs: TensorInfo[]; outputs: TensorInfo[] } {
  const describe = (names: readonly string[], meta: readonly ort.InferenceSession.ValueMetadata[]): TensorInfo[] =>
    names.map((name, i) => {
      const m = meta[i] as ort.InferenceSession.ValueMetadata & { type?: string; shape?: readonly (number | string)[] };
      const shape = m && 'shape' in m && m.shape ? [...m.shape] : [];
      return {
        name,
        type: m && m.isTensor ? String(m.type) : 'non-tensor',
        shape: shape.map((d) => (typeof d === 'number' ? d : -1)),
        dimNames: shape.map((d) => (typeof d === 'string' ? d : '')),
      };
    });
  return { inputs: describe(session.inputNames, session.inputMetadata), outputs: describe(session.outputNames, session.outputMetadata) };
}

export interface TensorInfo {
  name: string;
  type: string;
  shape: number[];
  dimNames: string[];
}
