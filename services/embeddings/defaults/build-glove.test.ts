import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { sharedCacheDir } from '../testing/model-folder.js';
import { buildGlove, GLOVE_SETTINGS } from './build-glove.js';
import { isBertWord } from './wordpiece-tokenizer.js';

describe('buildGlove', () => {
  it('writes an encoder with the Hugging Face signature, cached by its settings', async () => {
    const first = await buildGlove(sharedCacheDir());
    const again = await buildGlove(sharedCacheDir());
    expect(again).toMatchObject({ dir: first.dir, built: false });
    expect(first.files.sort()).toEqual(['config.json', 'model.onnx', 'tokenizer.json', 'tokenizer_config.json']);

    const session = await ort.InferenceSession.create(join(first.dir, 'model.onnx'));
    try {
      expect(session.inputNames).toEqual(['input_ids', 'attention_mask']);
      expect(session.outputNames).toEqual(['last_hidden_state', 'sentence_embedding']);
      // Row 0: "[UNK] the" padded; row 1: "the" alone. Unknown words add nothing; padding is masked out.
      const tokenizer = JSON.parse(readFileSync(join(first.dir, 'tokenizer.json'), 'utf8')) as { model: { vocab: Record<string, number> } };
      const the = tokenizer.model.vocab.the!;
      const ids = new ort.Tensor('int64', BigInt64Array.from([1n, BigInt(the), BigInt(the), 0n]), [2, 2]);
      const mask = new ort.Tensor('int64', BigInt64Array.from([1n, 1n, 1n, 0n]), [2, 2]);
      const out = await session.run({ input_ids: ids, attention_mask: mask });
      expect(out.last_hidden_state!.dims).toEqual([2, 2, GLOVE_SETTINGS.dimensions]);
      const pooled = out.sentence_embedding!.data as Float32Array;
      const a = pooled.subarray(0, 100);
      const b = pooled.subarray(100, 200);
      expect(Math.hypot(...a)).toBeCloseTo(1, 5);
      for (let i = 0; i < 100; i++) expect(a[i]).toBeCloseTo(b[i]!, 5);
    } finally {
      await session.release();
    }
  });
});

describe('isBertWord', () => {
  it('keeps words the BERT pre-tokenizer can produce whole', () => {
    expect(['the', 'café', ',', '$', '1990'].map((w) => isBertWord(w))).toEqual([true, true, true, true, true]);
    expect(['u.s.', "n't", 'cross-country', 'New', ''].map((w) => isBertWord(w))).toEqual([false, false, false, false, false]);
  });
});
