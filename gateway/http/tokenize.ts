// POST /tokenize, as vLLM serves it: `{model, prompt}` or `{model, messages}` (rendered with the chat template as
// a chat completion would be) to `{count, max_model_len, tokens}`, plus `token_strs` when
// `return_token_strs` is true. A generation model (the default) answers through the generation service's
// Tokenize and CountTokens; an embedding model through the embedding service's Tokenize and GetModelInfo, so
// TEI users get the same route.
import { EmbeddingServiceClient } from '../../gen/maas/embeddings/v1/embeddings.js';
import { GenerationServiceClient, type ChatMessage } from '../../gen/maas/generation/v1/generation.js';
import { unary } from '../../services/runtime/client.js';
import { InvalidArgumentError } from '../../services/runtime/errors.js';
import type { ApiContext, RequestContext } from './context.js';
import { readMessages } from './completions.js';
import { optionalBoolean, type Body } from './fields.js';
import { resolveModel } from './models.js';

export async function tokenize(body: Body, api: ApiContext, rc: RequestContext): Promise<object> {
  const hasPrompt = body.prompt !== undefined && body.prompt !== null;
  const hasMessages = body.messages !== undefined && body.messages !== null;
  if (hasPrompt === hasMessages) throw InvalidArgumentError.field(hasPrompt ? 'messages' : 'prompt', 'send exactly one of prompt and messages');
  if (hasPrompt && (typeof body.prompt !== 'string' || body.prompt === '')) throw InvalidArgumentError.field('prompt', 'must be a non-empty string');
  const prompt = hasPrompt ? (body.prompt as string) : '';
  const messages: ChatMessage[] = hasMessages ? readMessages(body.messages) : [];
  const addSpecialTokens = optionalBoolean(body, 'add_special_tokens');
  const withStrings = optionalBoolean(body, 'return_token_strs') ?? false;
  const model = await resolveModel(api.directory, body.model, ['generation', 'embedding'], '/tokenize');
  let tokens: { id: number; text: string }[];
  let maxModelLen: number;
  if (model.task === 'embedding') {
    if (hasMessages) throw InvalidArgumentError.field('messages', 'an embedding model tokenizes a prompt, not chat messages');
    const pool = api.pools.get('embeddings');
    const deadline = rc.deadline('/maas.embeddings.v1.EmbeddingService/Tokenize');
    const call = <T>(f: (client: EmbeddingServiceClient) => Promise<T>) =>
      api.caller.unary({ pool, affinity: model.affinity, idempotent: true, deadline, signal: rc.signal }, (replica) => f(pool!.client(replica, EmbeddingServiceClient)));
    const [tokenized, info] = await Promise.all([
      call((c) => unary(c.tokenize.bind(c), { model: model.ref, inputs: [prompt], addSpecialTokens, truncate: false, truncationDirection: 0 }, { signal: rc.signal, deadline })),
      call((c) => unary(c.getModelInfo.bind(c), { model: model.ref }, { signal: rc.signal, deadline })),
    ]);
    tokens = tokenized.inputs[0]?.tokens ?? [];
    maxModelLen = info.info?.maxInputTokens ?? 0;
  } else {
    const pool = api.pools.get('generation');
    const deadline = rc.deadline('/maas.generation.v1.GenerationService/Tokenize');
    const call = <T>(f: (client: GenerationServiceClient) => Promise<T>) =>
      api.caller.unary({ pool, affinity: model.affinity, idempotent: true, deadline, signal: rc.signal }, (replica) => f(pool!.client(replica, GenerationServiceClient)));
    const [tokenized, counted] = await Promise.all([
      call((c) => unary(c.tokenize.bind(c), { model: model.ref, text: prompt, messages }, { signal: rc.signal, deadline })),
      call((c) => unary(c.countTokens.bind(c), { model: model.ref, prompt, messages }, { signal: rc.signal, deadline })),
    ]);
    tokens = tokenized.tokens;
    maxModelLen = counted.contextLength;
  }
  return {
    count: tokens.length,
    max_model_len: maxModelLen,
    tokens: tokens.map((t) => t.id),
    ...(withStrings ? { token_strs: tokens.map((t) => t.text) } : {}),
  };
}
