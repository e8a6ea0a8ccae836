// POST /v1/completions and POST /v1/chat/completions: OpenAI's requests to the generation service's Generate
// (whole answer) or GenerateStream (`stream: true`, as server-sent events, with usage in a final chunk when
// `stream_options.include_usage` is set), and the answers back in OpenAI's shapes. vLLM's extensions
// `top_k`, `repetition_penalty` and `ignore_eos` pass through to the parameters of the same names.
import { randomUUID } from 'node:crypto';
import {
  FinishReason,
  GenerationServiceService,
  type ChatMessage,
  type GenerationParameters,
  type TokenLogprob,
} from '../../gen/maas/generation/v1/generation.js';
import { InvalidArgumentError } from '../../services/runtime/errors.js';
import { optionalBoolean, optionalInt, optionalNumber, type Body } from './fields.js';
import type { Usage } from '../../gen/maas/common/v1/usage.js';
import { resolveModel, type ResolvedModel } from './models.js';
import { callService, streamService, type ApiContext, type RequestContext } from './context.js';
import type { EventStream } from './sse.js';

/** The roles OpenAI's chat API accepts; anything else is refused as it refuses it. */
const CHAT_ROLES = new Set(['system', 'developer', 'user', 'assistant', 'tool', 'function']);

interface Prepared {
  model: ResolvedModel;
  prompt: string;
  messages: ChatMessage[];
  parameters: GenerationParameters;
  stream: boolean;
  includeUsage: boolean;
  /** Chat: `logprobs: true`; completions: `logprobs: n`. */
  logprobs: boolean;
}

async function prepare(body: Body, api: ApiContext, chat: boolean): Promise<Prepared> {
  const endpoint = chat ? '/v1/chat/completions' : '/v1/completions';
  const model = await resolveModel(api.directory, body.model, 'generation', endpoint);
  let prompt = '';
  let messages: ChatMessage[] = [];
  if (chat) messages = readMessages(body.messages);
  else prompt = readPrompt(body.prompt);
  if (body.n !== undefined && body.n !== null && body.n !== 1) throw InvalidArgumentError.field('n', 'only 1 choice per request is supported');
  if (!chat && body.echo === true) throw InvalidArgumentError.field('echo', 'echo is not supported');
  if (!chat && body.suffix !== undefined && body.suffix !== null) throw InvalidArgumentError.field('suffix', 'suffix is not supported');
  const stop = body.stop === undefined || body.stop === null ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop;
  if (!Array.isArray(stop) || !stop.every((s) => typeof s === 'string')) throw InvalidArgumentError.field('stop', 'must be a string or a list of strings');
  let logprobs: number | undefined;
  if (chat) {
    if (body.logprobs === true) logprobs = optionalInt(body, 'top_logprobs') ?? 0;
  } else logprobs = optionalInt(body, 'logprobs');
  const parameters: GenerationParameters = {
    maxNewTokens: optionalInt(body, chat && body.max_completion_tokens !== undefined ? 'max_completion_tokens' : 'max_tokens'),
    temperature: optionalNumber(body, 'temperature'),
    topP: optionalNumber(body, 'top_p'),
    presencePenalty: optionalNumber(body, 'presence_penalty'),
    frequencyPenalty: optionalNumber(body, 'frequency_penalty'),
    seed: optionalInt(body, 'seed', 0, Number.MAX_SAFE_INTEGER),
    stop: stop as string[],
    logprobs,
    // vLLM's extensions; its top_k of -1 means no cut, as 0 does.
    topK: Math.max(0, optionalInt(body, 'top_k', -1) ?? 0) || undefined,
    repetitionPenalty: optionalNumber(body, 'repetition_penalty'),
    ignoreEos: optionalBoolean(body, 'ignore_eos') ?? false,
  };
  const streamOptions = body.stream_options as { include_usage?: unknown } | undefined | null;
  return {
    model,
    prompt,
    messages,
    parameters,
    stream: optionalBoolean(body, 'stream') ?? false,
    includeUsage: streamOptions?.include_usage === true,
    logprobs: logprobs !== undefined,
  };
}

/** A whole completion (`stream` false). */
export async function complete(body: Body, api: ApiContext, rc: RequestContext, chat: boolean): Promise<object> {
  const p = await prepare(body, api, chat);
  const target = { pool: 'generation', method: GenerationServiceService.generate, affinity: p.model.affinity };
  const res = await callService(api, rc, target, { model: p.model.ref, prompt: p.prompt, messages: p.messages, parameters: p.parameters });
  const id = `${chat ? 'chatcmpl' : 'cmpl'}-${randomUUID()}`;
  const created = Math.floor(Date.now() / 1000);
  const modelName = p.model.display || res.model?.name || '';
  const finish = finishReason(res.finishReason);
  const usage = usageOf(res.usage);
  if (chat) {
    return {
      id,
      object: 'chat.completion',
      created,
      model: modelName,
      system_fingerprint: fingerprint(res.model),
      choices: [{ index: 0, message: { role: 'assistant', content: res.text, refusal: null }, logprobs: p.logprobs ? { content: chatLogprobs(res.logprobs) } : null, finish_reason: finish }],
      usage,
    };
  }
  return {
    id,
    object: 'text_completion',
    created,
    model: modelName,
    system_fingerprint: fingerprint(res.model),
    choices: [{ index: 0, text: res.text, logprobs: p.logprobs ? completionLogprobs(res.logprobs) : null, finish_reason: finish }],
    usage,
  };
}

/**
 * A streamed completion (`stream` true). The first message is awaited before the event stream starts, so an
 * error the service reports up front (bad request, unknown model, overload) is an ordinary HTTP error.
 */
export async function completeStreaming(body: Body, api: ApiContext, rc: RequestContext, chat: boolean, events: () => EventStream): Promise<void> {
  const p = await prepare(body, api, chat);
  const target = { pool: 'generation', method: GenerationServiceService.generateStream, affinity: p.model.affinity };
  const messages = streamService(api, rc, target, { model: p.model.ref, prompt: p.prompt, messages: p.messages, parameters: p.parameters });
  const id = `${chat ? 'chatcmpl' : 'cmpl'}-${randomUUID()}`;
  const created = Math.floor(Date.now() / 1000);
  let modelName = p.model.display;
  let out: EventStream | undefined;
  let usage: ReturnType<typeof usageOf> | undefined;
  let fp: string | undefined;
  try {
    for await (const m of messages) {
      if (!modelName && m.model) modelName = m.model.name;
      if (m.model) fp = fingerprint(m.model);
      const base = { id, object: chat ? 'chat.completion.chunk' : 'text_completion', created, model: modelName, system_fingerprint: fp };
      if (!out) {
        out = events();
        out.start();
        if (chat) await out.send({ ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }] });
      }
      const finished = m.finishReason !== FinishReason.FINISH_REASON_UNSPECIFIED;
      if (finished) usage = usageOf(m.usage);
      if (m.text === '' && !finished && (!p.logprobs || m.logprobs.length === 0)) continue;
      const reason = finished ? finishReason(m.finishReason) : null;
      if (chat) {
        const delta = m.text === '' && finished ? {} : { content: m.text };
        await out.send({ ...base, choices: [{ index: 0, delta, logprobs: p.logprobs ? { content: chatLogprobs(m.logprobs) } : null, finish_reason: reason }] });
      } else {
        await out.send({ ...base, choices: [{ index: 0, text: m.text, logprobs: p.logprobs ? completionLogprobs(m.logprobs) : null, finish_reason: reason }] });
      }
    }
  } catch (err) {
    if (!out) throw err;
    // The stream already started: the error goes in the stream, as OpenAI does.
    await out.send({ error: errorBody(err) });
    out.end();
    return;
  }
  if (!out) {
    out = events();
    out.start();
  }
  if (p.includeUsage) {
    await out.send({ id, object: chat ? 'chat.completion.chunk' : 'text_completion', created, model: modelName, system_fingerprint: fp, choices: [], usage: usage ?? null });
  }
  out.end();
}

function errorBody(err: unknown): { message: string; type: string } {
  const e = err as { details?: string; message?: string };
  return { message: e.details ?? e.message ?? 'the stream failed', type: 'server_error' };
}

function readPrompt(prompt: unknown): string {
  if (typeof prompt === 'string' && prompt !== '') return prompt;
  if (Array.isArray(prompt) && prompt.length === 1 && typeof prompt[0] === 'string' && prompt[0] !== '') return prompt[0];
  if (Array.isArray(prompt) && prompt.length > 1) throw InvalidArgumentError.field('prompt', 'only one prompt per request is supported');
  throw InvalidArgumentError.field('prompt', 'must be a non-empty string');
}

export function readMessages(messages: unknown): ChatMessage[] {
  if (!Array.isArray(messages) || messages.length === 0) throw InvalidArgumentError.field('messages', 'must be a non-empty list');
  return messages.map((m: unknown, i) => {
    const msg = m as { role?: unknown; content?: unknown };
    if (typeof msg?.role !== 'string' || !CHAT_ROLES.has(msg.role)) {
      throw InvalidArgumentError.field(`messages[${i}].role`, `must be one of ${[...CHAT_ROLES].map((r) => `"${r}"`).join(', ')}`);
    }
    let content: string;
    if (typeof msg.content === 'string') content = msg.content;
    else if (msg.content === null || msg.content === undefined) content = '';
    else if (Array.isArray(msg.content)) {
      content = msg.content
        .map((part: { type?: unknown; text?: unknown }, j: number) => {
          if (part?.type !== 'text' || typeof part.text !== 'string') throw InvalidArgumentError.field(`messages[${i}].content[${j}]`, 'only text parts are supported');
          return part.text;
        })
        .join('');
    } else throw InvalidArgumentError.field(`messages[${i}].content`, 'must be a string or a list of text parts');
    return { role: msg.role, content };
  });
}

/** The request's name for a field of GenerateRequest: `parameters.max_new_tokens` → `max_tokens`, … */
export function completionsFieldName(name: string, chat: boolean): string {
  const field = name.replace(/^parameters\./, '');
  if (field === 'max_new_tokens') return 'max_tokens';
  if (field === 'logprobs') return chat ? 'top_logprobs' : 'logprobs';
  return field;
}

function finishReason(r: FinishReason): 'stop' | 'length' | null {
  switch (r) {
    case FinishReason.FINISH_REASON_LENGTH:
      return 'length';
    case FinishReason.FINISH_REASON_STOP:
    case FinishReason.FINISH_REASON_EOS:
      return 'stop';
    default:
      return null;
  }
}

function usageOf(u: Usage | undefined) {
  return { prompt_tokens: u?.inputTokens ?? 0, completion_tokens: u?.outputTokens ?? 0, total_tokens: u?.totalTokens ?? 0 };
}

function fingerprint(m: { name: string; version: number } | undefined): string | undefined {
  return m ? `${m.name}@${m.version}` : undefined;
}

function chatLogprobs(lps: TokenLogprob[]) {
  return lps.map((l) => ({
    token: l.token,
    logprob: l.logprob,
    bytes: [...Buffer.from(l.token, 'utf8')],
    top_logprobs: l.top.map((t) => ({ token: t.token, logprob: t.logprob, bytes: [...Buffer.from(t.token, 'utf8')] })),
  }));
}

function completionLogprobs(lps: TokenLogprob[]) {
  return {
    tokens: lps.map((l) => l.token),
    token_logprobs: lps.map((l) => l.logprob),
    top_logprobs: lps.map((l) => Object.fromEntries(l.top.map((t) => [t.token, t.logprob]))),
    text_offset: [],
  };
}
