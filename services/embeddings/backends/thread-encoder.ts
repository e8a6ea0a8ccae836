// An encoder on a worker thread: the version's tokenizer and an OnnxEncoder with its own onnxruntime session
// (a TokenizingEncoder), in a worker (encoder-thread.ts). onnxruntime-node runs session.run synchronously on
// the calling thread, so on the event loop every batch would stop the service's gRPC work for as long as it
// runs — health checks, new requests, cancellations, answers — and the service would use one core. On a
// thread of its own the batch is tokenized and run while the event loop decodes and answers calls, and the
// batcher's next batch is ready when it ends. Tokenizing there too matters as much as running there: measured
// on the default model at 32 inputs per call, tokenizing on the event loop cost it ~75 µs of the ~250 µs it
// spent per call.
// A batch crosses as two moved buffers (TextBatch: its texts' UTF-8 and a few numbers per row); its vectors and
// token counts come back in two flat arrays, moved too, not copied.
import { replayWarnings, type SessionLog, type SessionSettings, type SessionWarning } from '../../runtime/models/onnx-session.js';
import { WorkerCalls } from '../../runtime/workers/worker-calls.js';
import type { EncoderOptions } from './onnx-encoder.js';
import type { TextRange } from '../domain/model.js';
import { packTexts, type EncodedBatch, type EncoderFacts, type TextBatch } from './tokenizing-encoder.js';

/** What the worker is started with. */
export interface EncoderInit {
  file: string;
  settings: SessionSettings;
  options: EncoderOptions;
  /** The version's folder (tokenizer.json, tokenizer_config.json) and its maximum tokens per input. */
  dir: string;
  maxLength: number;
  /** Most padded tokens in one onnxruntime run. */
  maxBatchTokens: number;
}

/** What the worker says when its encoder is ready. */
export interface EncoderInfo extends EncoderFacts {
  /** What creating the session warned about (providers that failed, the fallback), for the main thread's log. */
  warnings: SessionWarning[];
}

export class ThreadEncoder implements EncoderFacts {
  readonly dimensions: number;
  readonly output: string;
  readonly pooledByModel: boolean;
  readonly executionProvider: string;

  private constructor(private readonly thread: WorkerCalls<EncoderInfo>) {
    ({ dimensions: this.dimensions, output: this.output, pooledByModel: this.pooledByModel, executionProvider: this.executionProvider } = thread.info);
  }

  /**
   * Starts the worker and loads the tokenizer and model there (what that warned about goes to log); rejects with
   * the worker's reason when it cannot.
   */
  static async create(init: EncoderInit, log?: SessionLog): Promise<ThreadEncoder> {
    const what = `the encoder thread of model "${init.options.name}" version ${init.options.version}`;
    const thread = await WorkerCalls.start<EncoderInfo>(new URL('./encoder-thread.js', import.meta.url), init, what);
    replayWarnings(thread.info.warnings, log);
    return new ThreadEncoder(thread);
  }

  /** Tokenizes and runs the ranges' inputs on the thread, as TokenizingEncoder.run does here. */
  run(ranges: readonly TextRange[]): Promise<EncodedBatch> {
    const batch: TextBatch = packTexts(ranges);
    return this.thread.call<EncodedBatch>(batch, [batch.rows.buffer as ArrayBuffer, batch.bytes.buffer as ArrayBuffer]);
  }

  /** Releases the session (after the batches already sent) and ends the thread. */
  close(): Promise<void> {
    return this.thread.close();
  }

  /** For tests: ends the thread as a crash would. */
  kill(): Promise<number> {
    return this.thread.kill();
  }
}
