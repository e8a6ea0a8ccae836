import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UnavailableError } from '../../runtime/errors.js';
import { collectingLog, createOnnxSession } from '../../runtime/models/onnx-session.js';
import { TextTokenizer } from '../domain/tokenizer.js';
import { createModelFolder, type ModelFolder } from '../testing/model-folder.js';
import { OnnxEncoder } from './onnx-encoder.js';
import { packBatch, ThreadEncoder, unpackBatch } from './thread-encoder.js';

const session = { executionProviders: ['cpu'], intraOpThreads: 1, interOpThreads: 1 };
const TEXTS = ['A short one.', 'The river rose in the night and the town slept on, unaware of the water at its doors.', 'Prices fell.', 'x'];

let folder: ModelFolder;
beforeAll(async () => {
  folder = await createModelFolder({ bert: true });
});
afterAll(() => folder?.remove());

function tokenizer(dir: string): TextTokenizer {
  return new TextTokenizer(JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as object, {}, 128);
}

describe('packBatch / unpackBatch', () => {
  it('carries every row’s ids, and type ids when asked, through one buffer', () => {
    const rows = [
      { ids: [101, 7, 8, 102], typeIds: [0, 0, 1, 1] },
      { ids: [101, 102], typeIds: [0, 1] },
      { ids: [5], typeIds: [] },
    ];
    for (const typed of [true, false]) {
      const packed = packBatch(rows, typed);
      // The message moves one buffer: nothing of it may be shared with the caller's arrays.
      expect(packed.data.buffer.byteLength).toBe(packed.data.byteLength);
      const back = unpackBatch(structuredClone(packed));
      expect(back.map((r) => [...Array.from(r.ids)])).toEqual(rows.map((r) => r.ids));
      expect(back.map((r) => Array.from({ length: r.ids.length }, (_, t) => r.typeIds[t] ?? 0))).toEqual(
        typed ? [[0, 0, 1, 1], [0, 1], [0]] : [[0, 0, 0, 0], [0, 0], [0]],
      );
    }
  });
});

describe('ThreadEncoder', () => {
  it.each(['glove-100d', 'bert-mean', 'bert-cls'])('gives exactly the vectors the encoder gives on the event loop (%s)', async (model) => {
    const dir = join(folder.root, model, '1');
    const file = join(dir, 'model.onnx');
    const tok = tokenizer(dir);
    const batch = TEXTS.map((t) => tok.encode(t, { truncate: true, side: 'right' }));
    const pooling = model === 'bert-cls' ? 'cls' : 'mean';
    const options = { name: model, version: 1, pooling, padId: tok.padId } as const;
    const local = await createOnnxSession(file, session);
    const threaded = await ThreadEncoder.create({ file, settings: session, options });
    try {
      const expected = await new OnnxEncoder(local.session, options).run(batch);
      // Two batches in flight at once, as the batcher sends them.
      const [a, b] = await Promise.all([threaded.run(batch), threaded.run(batch.slice(1, 3))]);
      expect(a.map((v) => Array.from(v))).toEqual(expected.map((v) => Array.from(v)));
      expect(b.map((v) => Array.from(v))).toEqual(expected.slice(1, 3).map((v) => Array.from(v)));
      expect(threaded.dimensions).toBe(expected[0]!.length);
      expect(threaded.executionProvider).toBe('cpu');
    } finally {
      await threaded.close();
      await local.session.release();
    }
  });

  it('falls back to the cpu provider on its thread and logs that here', async () => {
    const dir = join(folder.root, 'glove-100d', '1');
    const log = collectingLog();
    const encoder = await ThreadEncoder.create(
      { file: join(dir, 'model.onnx'), settings: { ...session, executionProviders: ['no-such-provider', 'cpu'] }, options: { name: 'g', version: 1, pooling: 'mean', padId: 0 } },
      log,
    );
    try {
      expect(encoder.executionProvider).toBe('cpu');
      expect(log.warnings.map((w) => w.message)).toContain('execution provider unavailable; fell back');
      expect(log.warnings.find((w) => w.message === 'execution provider unavailable; fell back')!.details).toEqual({ wanted: 'no-such-provider', using: 'cpu' });
    } finally {
      await encoder.close();
    }
  });

  it('rejects at creation with the reason when the model cannot be loaded', async () => {
    const file = join(folder.root, 'broken.onnx');
    writeFileSync(file, 'not an onnx graph');
    await expect(ThreadEncoder.create({ file, settings: session, options: { name: 'broken', version: 1, pooling: 'mean', padId: 0 } })).rejects.toThrow(/fail/i);
  });

  it('fails the batches in flight with UNAVAILABLE when its thread dies, and runs later ones on a new thread', async () => {
    const dir = join(folder.root, 'glove-100d', '1');
    const tok = tokenizer(dir);
    const encoder = await ThreadEncoder.create({ file: join(dir, 'model.onnx'), settings: session, options: { name: 'g', version: 1, pooling: 'mean', padId: tok.padId } });
    try {
      const batch = TEXTS.map((t) => tok.encode(t, { truncate: true, side: 'right' }));
      const before = await encoder.run(batch);
      const inFlight = encoder.run(batch);
      await encoder.kill();
      const settled = await inFlight.then(
        () => 'answered',
        (err: unknown) => err,
      );
      // The batch may have finished before the thread was stopped; if not, it failed as UNAVAILABLE.
      if (settled !== 'answered') expect(settled).toBeInstanceOf(UnavailableError);
      // Two batches at once after the death start one new thread, and both are answered, as before.
      const after = await Promise.all([encoder.run(batch), encoder.run(batch)]);
      for (const vectors of after) expect(vectors.map((v) => Array.from(v))).toEqual(before.map((v) => Array.from(v)));
    } finally {
      await encoder.close();
    }
  });

  it('refuses batches once closed', async () => {
    const dir = join(folder.root, 'glove-100d', '1');
    const encoder = await ThreadEncoder.create({ file: join(dir, 'model.onnx'), settings: session, options: { name: 'g', version: 1, pooling: 'mean', padId: 0 } });
    await encoder.close();
    await expect(encoder.run([{ ids: [1, 2], typeIds: [] }])).rejects.toBeInstanceOf(UnavailableError);
  });
});
