// What a version's files say: its tokenizer, and its pooling and length. The project's own models write `pooling`
// and `max_length` into config.json; models exported from Hugging Face carry the same facts elsewhere, read as
// fallbacks: sentence-transformers' 1_Pooling/config.json and sentence_bert_config.json, the tokenizer's
// model_max_length, the transformer's max_position_embeddings.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FailedPreconditionError } from '../../runtime/errors.js';
import { TextTokenizer } from '../domain/tokenizer.js';
import type { Pooling } from '../domain/vectors.js';

export interface EncoderConfig {
  pooling: Pooling;
  maxLength: number;
  /** From config (hidden_size / dimensions), if given. */
  dimensions: number | undefined;
}

const DEFAULT_MAX_LENGTH = 512;

const POOLING_NAMES: Record<string, Pooling> = { mean: 'mean', cls: 'cls', last_token: 'last_token', lasttoken: 'last_token', last: 'last_token' };

export async function readEncoderConfig(dir: string, name: string): Promise<EncoderConfig> {
  const config = await readJson(join(dir, 'config.json'));
  const tokenizerConfig = await readJson(join(dir, 'tokenizer_config.json'));
  const stPooling = await readJson(join(dir, '1_Pooling', 'config.json'));
  const stConfig = await readJson(join(dir, 'sentence_bert_config.json'));

  let pooling: Pooling = 'mean';
  if (typeof config.pooling === 'string') {
    const p = POOLING_NAMES[config.pooling.toLowerCase()];
    if (!p) throw new FailedPreconditionError(`model "${name}": config.json has an unknown pooling "${config.pooling}" (mean, cls or last_token)`);
    pooling = p;
  } else if (stPooling.pooling_mode_cls_token === true) pooling = 'cls';
  else if (stPooling.pooling_mode_lasttoken === true) pooling = 'last_token';

  const positions = positive(config.max_position_embeddings);
  const candidates = [positive(config.max_length), positive(stConfig.max_seq_length), positive(tokenizerConfig.model_max_length)];
  let maxLength = candidates.find((v) => v !== undefined && v < 1_000_000) ?? Math.min(DEFAULT_MAX_LENGTH, positions ?? DEFAULT_MAX_LENGTH);
  if (positions !== undefined) maxLength = Math.min(maxLength, positions);

  return { pooling, maxLength, dimensions: positive(config.dimensions) ?? positive(config.hidden_size) };
}

/** A version's tokenizer from its folder (tokenizer.json, optional tokenizer_config.json); FAILED_PRECONDITION when it has none or it cannot be read. */
export async function readTokenizer(dir: string, name: string, version: number, maxLength: number): Promise<TextTokenizer> {
  const tokenizerPath = join(dir, 'tokenizer.json');
  if (!existsSync(tokenizerPath)) {
    throw new FailedPreconditionError(`model "${name}" version ${version} has no tokenizer.json`, [
      { type: 'FILE', subject: `${name}:${version}`, description: 'an embedding model needs tokenizer.json' },
    ]);
  }
  try {
    const tokenizerConfigPath = join(dir, 'tokenizer_config.json');
    const tokenizerConfig = existsSync(tokenizerConfigPath) ? (JSON.parse(await readFile(tokenizerConfigPath, 'utf8')) as object) : {};
    return new TextTokenizer(JSON.parse(await readFile(tokenizerPath, 'utf8')) as object, tokenizerConfig, maxLength);
  } catch (err) {
    throw new FailedPreconditionError(`model "${name}" version ${version}: its tokenizer cannot be loaded: ${(err as Error).message}`);
  }
}

async function readJson(path: string): Promise<Record<string, unknown>> {
  if (!existsSync(path)) return {};
  try {
    return JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new FailedPreconditionError(`${path.split('/').slice(-2).join('/')} is not valid JSON: ${(err as Error).message}`);
  }
}

function positive(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : undefined;
}
