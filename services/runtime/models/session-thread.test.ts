import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { DataType, GraphBuilder } from '../../embeddings/defaults/onnx-graph.js';
import { collectingLog, createOnnxSession } from './onnx-session.js';
import { openSession, ThreadSession } from './session-thread.js';

const SETTINGS = { executionProviders: ['cpu'], intraOpThreads: 1, interOpThreads: 1 };
const WIDE = 1024;

/** y = x + 1 (float), ids_out = ids (int64), and a heavy product: slow = x_wide · W, [rows, 1024] · [1024, 1024]. */
function model(): Uint8Array {
  const g = new GraphBuilder('session-thread-test');
  g.input('x', DataType.FLOAT, ['rows', 4]);
  g.input('ids', DataType.INT64, ['rows']);
  g.input('x_wide', DataType.FLOAT, ['rows', WIDE]);
  g.output('y', DataType.FLOAT, ['rows', 4]);
  g.output('ids_out', DataType.INT64, ['rows']);
  g.output('slow', DataType.FLOAT, ['rows', WIDE]);
  g.op('Add', ['x', g.floats('one', [4], new Float32Array(4).fill(1))], {}, 'y');
  g.op('Identity', ['ids'], {}, 'ids_out');
  const w = new Float32Array(WIDE * WIDE).map((_, i) => ((i * 7919) % 13) / 13 - 0.5);
  g.op('MatMul', ['x_wide', g.floats('w', [WIDE, WIDE], w)], {}, 'slow');
  return g.encode({ opset: 17, producer: 'maas-test' });
}

function feeds(rows: number): Record<string, ort.Tensor> {
  return {
    x: new ort.Tensor('float32', Float32Array.from({ length: rows * 4 }, (_, i) => i / 3), [rows, 4]),
    ids: new ort.Tensor('int64', BigInt64Array.from({ length: rows }, (_, i) => BigInt(i) * 10_000_000_000n), [rows]),
    x_wide: new ort.Tensor('float32', Float32Array.from({ length: rows * WIDE }, (_, i) => (i % 17) / 17), [rows, WIDE]),
  };
}

const FETCHES = ['y', 'ids_out', 'slow'];

describe('ThreadSession', () => {
  it('answers exactly what a session on the event loop answers, and describes the same graph', async () => {
    const bytes = model();
    const local = await createOnnxSession(bytes, SETTINGS);
    const threaded = await ThreadSession.create(bytes, SETTINGS, 2);
    try {
      expect(threaded.inputNames).toEqual(local.session.inputNames);
      expect(threaded.outputNames).toEqual(local.session.outputNames);
      expect(threaded.inputMetadata).toEqual(local.session.inputMetadata);
      expect(threaded.executionProvider).toBe('cpu');
      const expected = await local.session.run(feeds(3), FETCHES);
      // Four runs at once over two threads.
      const got = await Promise.all(Array.from({ length: 4 }, () => threaded.run(feeds(3), FETCHES)));
      for (const out of got) {
        for (const name of FETCHES) {
          expect(out[name]!.type).toBe(expected[name]!.type);
          expect(out[name]!.dims).toEqual(expected[name]!.dims);
          expect(Array.from(out[name]!.data as ArrayLike<unknown>)).toEqual(Array.from(expected[name]!.data as ArrayLike<unknown>));
        }
      }
    } finally {
      await threaded.release();
      await local.session.release();
    }
  });

  it('exists because a session on the event loop holds the loop for the whole of a run', async () => {
    // What the threads are for, shown on onnxruntime itself: event-loop turns (setImmediate callbacks) while one
    // heavy run (a 256 × 1024 × 1024 product) is in flight on the event loop. The run happens synchronously
    // inside one turn, so nothing else gets a turn until it ends. (The converse, that the loop turns while a
    // thread runs, depends on how the machine schedules threads, so it is not asserted here; the vision and
    // embeddings benchmarks measure what it gives.)
    const onLoop = await openSession(model(), SETTINGS, 0);
    try {
      await onLoop.session.run(feeds(256), FETCHES);
      let turns = 0;
      let done = false;
      const spin = () => {
        if (done) return;
        turns++;
        setImmediate(spin);
      };
      setImmediate(spin);
      await onLoop.session.run(feeds(256), FETCHES);
      done = true;
      expect(turns).toBeLessThanOrEqual(3);
    } finally {
      await onLoop.session.release();
    }
  });

  it('moves handed-over inputs to the thread instead of copying them, and copies the others', async () => {
    const session = await ThreadSession.create(model(), SETTINGS, 1);
    try {
      const kept = feeds(2);
      const given = feeds(2);
      const a = await session.run(kept, FETCHES);
      const b = await session.run(given, FETCHES, true);
      expect(Array.from(b.y!.data as Float32Array)).toEqual(Array.from(a.y!.data as Float32Array));
      expect((kept.x!.data as Float32Array).length).toBe(8);
      expect((given.x!.data as Float32Array).length).toBe(0);
    } finally {
      await session.release();
    }
  });

  it('falls back along the provider list on its threads and logs it here, as on the event loop', async () => {
    const bytes = model();
    const warnings = (log: { warnings: { details: object; message: string }[] }) => log.warnings.map((w) => [w.message, w.details]);
    const here = collectingLog();
    const local = await createOnnxSession(bytes, { ...SETTINGS, executionProviders: ['no-such-provider', 'cpu'] }, here);
    const there = collectingLog();
    const threaded = await ThreadSession.create(bytes, { ...SETTINGS, executionProviders: ['no-such-provider', 'cpu'] }, 2, there);
    try {
      expect(threaded.executionProvider).toBe('cpu');
      expect(warnings(there).map(([message]) => message)).toContain('execution provider unavailable; fell back');
      // The same warnings, in the same order, as the same session created here (the errors' wording included).
      expect(warnings(there)).toEqual(warnings(here));
    } finally {
      await threaded.release();
      await local.session.release();
    }
  });

  it('rejects with the reason when the model cannot be loaded', async () => {
    await expect(ThreadSession.create(new TextEncoder().encode('not an onnx graph'), SETTINGS, 2)).rejects.toThrow(/fail|protobuf|pars/i);
  });
});
