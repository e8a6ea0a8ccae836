import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FailedPreconditionError } from '../../runtime/errors.js';
import { readEncoderConfig } from './model-config.js';

let dir: string;
afterEach(() => rmSync(dir, { recursive: true, force: true }));
function folder(files: Record<string, unknown>) {
  dir = mkdtempSync(join(tmpdir(), 'maas-emb-config-'));
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), JSON.stringify(content));
  }
  return dir;
}

describe('readEncoderConfig', () => {
  it("reads the project's pooling, maximum length and dimensions from config.json", async () => {
    expect(await readEncoderConfig(folder({ 'config.json': { pooling: 'cls', max_length: 128, hidden_size: 384 } }), 'm')).toEqual({ pooling: 'cls', maxLength: 128, dimensions: 384 });
  });

  it('falls back to sentence-transformers files and caps the length at the position embeddings', async () => {
    const d = folder({
      'config.json': { hidden_size: 384, max_position_embeddings: 512 },
      '1_Pooling/config.json': { pooling_mode_cls_token: true, pooling_mode_mean_tokens: false },
      'sentence_bert_config.json': { max_seq_length: 1024 },
    });
    expect(await readEncoderConfig(d, 'm')).toEqual({ pooling: 'cls', maxLength: 512, dimensions: 384 });
  });

  it('ignores the huge placeholder model_max_length of some tokenizers and defaults to mean pooling', async () => {
    const d = folder({ 'tokenizer_config.json': { model_max_length: 1e30 } });
    expect(await readEncoderConfig(d, 'm')).toEqual({ pooling: 'mean', maxLength: 512, dimensions: undefined });
  });

  it('refuses an unknown pooling with FAILED_PRECONDITION', async () => {
    await expect(readEncoderConfig(folder({ 'config.json': { pooling: 'max' } }), 'm')).rejects.toBeInstanceOf(FailedPreconditionError);
  });
});
