// POST /v1/embeddings: OpenAI's request (input as a string or a list of strings, encoding_format float or
// base64, dimensions) to the embedding service's Embed, and its answer back in OpenAI's shape.
import { EmbeddingServiceService } from '../../gen/maas/embeddings/v1/embeddings.js';
import { InvalidArgumentError } from '../../services/runtime/errors.js';
import { optionalInt, type Body } from './fields.js';
import { resolveModel } from './models.js';
import { callService, type ApiContext, type RequestContext } from './context.js';

interface EmbeddingsBody extends Body {
  input?: unknown;
  model?: unknown;
  encoding_format?: unknown;
  dimensions?: unknown;
  user?: unknown;
}

export async function createEmbeddings(body: EmbeddingsBody, api: ApiContext, rc: RequestContext): Promise<object> {
  const inputs = readInputs(body.input);
  const format = body.encoding_format ?? 'float';
  if (format !== 'float' && format !== 'base64') throw InvalidArgumentError.field('encoding_format', 'must be "float" or "base64"');
  const dimensions = optionalInt(body, 'dimensions', 1);
  const model = await resolveModel(api.directory, body.model, 'embedding', '/v1/embeddings');
  const target = { pool: 'embeddings', method: EmbeddingServiceService.embed, affinity: model.affinity };
  const res = await callService(api, rc, target, { model: model.ref, inputs, dimensions, truncate: false, truncationDirection: 0 });
  return {
    object: 'list',
    data: res.embeddings.map((e) => ({
      object: 'embedding',
      index: e.index,
      embedding: format === 'base64' ? Buffer.from(new Float32Array(e.values).buffer).toString('base64') : e.values,
    })),
    model: model.display || res.model?.name || '',
    usage: { prompt_tokens: res.usage?.inputTokens ?? 0, total_tokens: res.usage?.totalTokens ?? res.usage?.inputTokens ?? 0 },
  };
}

function readInputs(input: unknown): string[] {
  if (typeof input === 'string') return [input];
  if (Array.isArray(input) && input.length > 0 && input.every((x) => typeof x === 'string')) return input as string[];
  if (Array.isArray(input) && input.length > 0 && input.every((x) => typeof x === 'number' || Array.isArray(x))) {
    throw InvalidArgumentError.field('input', 'token id inputs are not supported; send text');
  }
  throw InvalidArgumentError.field('input', 'must be a non-empty string or a non-empty list of strings');
}

/** The request's name for a field of EmbedRequest: `inputs[3]` → `input[3]`. */
export function embeddingsFieldName(name: string): string {
  return name.replace(/^inputs(?=\[|$)/, 'input');
}
