// POST /tokenize, as vLLM serves it: `{model, prompt}` or `{model, messages}` (rendered with the chat template as
// a chat completion would be) to `{count, max_model_len, tokens}`, plus `token_strs` when
// `return_token_strs` is true. A generation model (the default) answers through the generation service's
// Tokenize and CountTokens; an embedding model through the embedding service's Tokenize and GetModelInfo, so
// TEI users get the same route.
import { EmbeddingServiceService } from '../../gen/maas/embeddings/v1/embeddings.js';
import { GenerationServiceService, type ChatMessage } from '../../gen/maas/generation/v1/generation.js';
import { InvalidArgumentError } from '../../services/runtime/errors.js';
import { callService, type ApiContext, type RequestContext, type ServiceTarget } from './context.js';
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
    const at = <Req, Res>(method: ServiceTarget<Req, Res>['method']) => ({ pool: 'embeddings', method, affinity: model.affinity });
    const [tokenized, info] = await Promise.all([
      callService(api, rc, at(EmbeddingServiceService.tokenize), { model: model.ref, inputs: [prompt], addSpecialTokens, truncate: false, truncationDirection: 0 }),
      callService(api, rc, at(EmbeddingServiceService.getModelInfo), { model: model.ref }),
    ]);
    tokens = tokenized.inputs[0]?.tokens ?? [];
    maxModelLen = info.info?.maxInputTokens ?? 0;
  } else {
    const at = <Req, Res>(method: ServiceTarget<Req, Res>['method']) => ({ pool: 'generation', method, affinity: model.affinity });
    const [tokenized, counted] = await Promise.all([
      callService(api, rc, at(GenerationServiceService.tokenize), { model: model.ref, text: prompt, messages }),
      callService(api, rc, at(GenerationServiceService.countTokens), { model: model.ref, prompt, messages }),
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

/** The request's name for a field of either service's TokenizeRequest: `text` or `inputs[0]` → `prompt`. */
export function tokenizeFieldName(name: string): string {
  return name === 'text' || /^inputs(\[0\])?$/.test(name) ? 'prompt' : name;
}
