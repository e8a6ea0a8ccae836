import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UnavailableError } from '../../runtime/errors.js';
import { collectingLog, createOnnxSession } from '../../runtime/models/onnx-session.js';
import { Texts } from '../domain/texts.js';
import { TextTokenizer } from '../domain/tokenizer.js';
import { heldTexts } from '../testing/held-texts.js';
import { createModelFolder, type ModelFolder } from '../testing/model-folder.js';
import { OnnxEncoder } from './onnx-encoder.js';
import { ThreadEncoder } from './thread-encoder.js';
import { packTexts, TokenizingEncoder, type EncodedBatch } from './tokenizing-encoder.js';

const session = { executionProviders: ['cpu'], intraOpThreads: 1, interOpThreads: 1 };
const STRINGS = ['A short one.', 'The river rose in the night and the town slept on, unaware of the water at its doors.', 'Prices fell.', 'x'];
const TEXTS = Texts.of(STRINGS);
// One input per range, shaped as requests shape them: one cut from the left, some normalized, one keeping its
// first 8 dimensions.
const ROWS = STRINGS.map((text, i) => ({ texts: TEXTS, start: i, end: i + 1, shape: { side: i === 1 ? ('left' as const) : ('right' as const), dimensions: i === 2 ? 8 : 0, normalize: i !== 3 } }));

const MAX_LENGTH = 12;

let folder: ModelFolder;
beforeAll(async () => {
  folder = await createModelFolder({ bert: true });
});
afterAll(() => folder?.remove());

function tokenizer(dir: string): TextTokenizer {
  return new TextTokenizer(JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as object, {}, MAX_LENGTH);
}

function init(model: string, extra: { executionProviders?: string[]; pooling?: 'mean' | 'cls' } = {}) {
  const dir = join(folder.root, model, '1');
  return {
    file: join(dir, 'model.onnx'),
    dir,
    maxLength: MAX_LENGTH,
    maxBatchTokens: 16384,
    settings: { ...session, executionProviders: extra.executionProviders ?? session.executionProviders },
    options: { name: model, version: 1, pooling: extra.pooling ?? 'mean', padId: tokenizer(dir).padId },
  };
}

const plain = (b: EncodedBatch) => ({ values: Array.from(b.values), counts: Array.from(b.counts), width: b.width, runs: b.runs });

describe('packTexts', () => {
  it('packs the inputs of each range, in order, with their range’s shape', () => {
    const shape = { side: 'left' as const, dimensions: 3, normalize: true };
    const other = { side: 'right' as const, dimensions: 0, normalize: false };
    const request = ['zero', 'one', 'é 日本', ''];
    const packed = packTexts([
      { texts: Texts.of(request), start: 1, end: 4, shape },
      { texts: Texts.of(['x', 'y']), start: 0, end: 1, shape: other },
    ]);
    expect(Buffer.from(packed.bytes).toString('utf8')).toBe('oneé 日本x');
    // Where each text starts and ends (in pairs), the dimensions kept, the flags (1: from the left, 2: normalize).
    expect(Array.from(packed.rows)).toEqual([0, 3, 3, 12, 12, 12, 12, 13, 3, 3, 3, 0, 3, 3, 3, 0]);
    // Both buffers are moved to the thread whole, so each holds this batch and nothing else.
    expect(packed.rows.buffer.byteLength).toBe(4 * 4 * 4);
    expect(packed.bytes.buffer.byteLength).toBe(13);
    expect(structuredClone(packed)).toEqual(packed);
  });

  it('copies a run of texts held as UTF-8 in one piece, the bytes between them left unread', () => {
    const shape = { side: 'right' as const, dimensions: 0, normalize: true };
    const request = ['zero', 'one', 'é 日本', '', 'last'];
    const packed = packTexts([
      { texts: heldTexts(request), start: 1, end: 4, shape },
      { texts: heldTexts(['x', 'y']), start: 1, end: 2, shape },
    ]);
    const rows = packed.rows;
    const texts = Array.from({ length: 4 }, (_, r) => Buffer.from(packed.bytes).toString('utf8', rows[2 * r], rows[2 * r + 1]));
    expect(texts).toEqual(['one', 'é 日本', '', 'y']);
    // 'one', its neighbour's two bytes of tag and length, 'é 日本', two more, '' — then 'y' alone.
    expect(packed.bytes.length).toBe(3 + 2 + 9 + 2 + 0 + 1);
    expect(Array.from(rows.subarray(0, 8))).toEqual([0, 3, 5, 14, 16, 16, 16, 17]);
  });
});

describe('ThreadEncoder', () => {
  it.each(['glove-100d', 'bert-mean', 'bert-cls'])('gives exactly the vectors and token counts the encoder gives on the event loop (%s)', async (model) => {
    const pooling = model === 'bert-cls' ? 'cls' : 'mean';
    const i = init(model, { pooling });
    const local = await createOnnxSession(i.file, session);
    const threaded = await ThreadEncoder.create(i);
    try {
      const here = new TokenizingEncoder(tokenizer(i.dir), new OnnxEncoder(local.session, i.options), threaded.dimensions, i.maxBatchTokens);
      const expected = await here.run(packTexts(ROWS));
      // Two batches in flight at once, as the batcher sends them.
      const [a, b] = await Promise.all([threaded.run(ROWS), threaded.run(ROWS.slice(1, 3))]);
      expect(plain(a)).toEqual(plain(expected));
      expect(plain(b)).toEqual(plain(await here.run(packTexts(ROWS.slice(1, 3)))));
      // One range of all the texts is the same rows as a range per text.
      const shape = ROWS[1]!.shape;
      const whole = await threaded.run([{ texts: TEXTS, start: 0, end: TEXTS.length, shape }]);
      expect(plain(whole)).toEqual(plain(await here.run(packTexts(ROWS.map((r) => ({ ...r, shape }))))));
      // Texts held as UTF-8 (as requests bring them) give the same as strings.
      const bytes = heldTexts(STRINGS);
      expect(plain(await threaded.run(ROWS.map((r) => ({ ...r, texts: bytes }))))).toEqual(plain(expected));
      // The long text (row 1) was cut to the maximum length, from the left as it asked; its full length is kept.
      expect(a.counts[1]).toBe(MAX_LENGTH);
      expect(a.counts[ROWS.length + 1]).toBeGreaterThan(MAX_LENGTH);
      expect(threaded.executionProvider).toBe('cpu');
    } finally {
      await threaded.close();
      await local.session.release();
    }
  });

  it('falls back to the cpu provider on its thread and logs that here', async () => {
    const log = collectingLog();
    const encoder = await ThreadEncoder.create(init('glove-100d', { executionProviders: ['no-such-provider', 'cpu'] }), log);
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
    await expect(ThreadEncoder.create({ ...init('glove-100d'), file })).rejects.toThrow(/fail/i);
  });

  it('fails the batches in flight with UNAVAILABLE when its thread dies, and runs later ones on a new thread', async () => {
    const encoder = await ThreadEncoder.create(init('glove-100d'));
    try {
      const before = plain(await encoder.run(ROWS));
      const inFlight = encoder.run(ROWS);
      await encoder.kill();
      const settled = await inFlight.then(
        () => 'answered',
        (err: unknown) => err,
      );
      // The batch may have finished before the thread was stopped; if not, it failed as UNAVAILABLE.
      if (settled !== 'answered') expect(settled).toBeInstanceOf(UnavailableError);
      // Two batches at once after the death start one new thread, and both are answered, as before.
      const after = await Promise.all([encoder.run(ROWS), encoder.run(ROWS)]);
      for (const batch of after) expect(plain(batch)).toEqual(before);
    } finally {
      await encoder.close();
    }
  });

  it('refuses batches once closed', async () => {
    const encoder = await ThreadEncoder.create(init('glove-100d'));
    await encoder.close();
    await expect(encoder.run(ROWS)).rejects.toBeInstanceOf(UnavailableError);
  });
});
