// Model names on the HTTP API: `name`, `name:alias` or `name@version` (registry names never contain `:` or
// `@`), resolved through the model directory, and checked against the task the endpoint serves.
import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from '../../services/runtime/errors.js';
import type { ModelDirectory } from '../clients/model-directory.js';
import type { ModelRefLike, ModelTaskName } from '../domain/catalog.js';

export interface ResolvedModel {
  ref: ModelRefLike;
  /** The routing key (name@version when known). */
  affinity: string | undefined;
  /** Shown in responses. */
  display: string;
  /** The model's task, when the directory knows it (the endpoint's first task for the default model). */
  task: ModelTaskName;
}

export function parseModelName(model: unknown): ModelRefLike {
  if (model === undefined || model === null || model === '') return { name: '' };
  if (typeof model !== 'string') throw InvalidArgumentError.field('model', 'must be a string');
  const at = /^([^@:]+)@(\d+)$/.exec(model);
  if (at) return { name: at[1]!, version: Number(at[2]) };
  const colon = /^([^@:]+):([^@:]+)$/.exec(model);
  if (colon) return { name: colon[1]!, alias: colon[2]! };
  if (/[@:]/.test(model)) throw InvalidArgumentError.field('model', 'must be a name, name:alias or name@version');
  return { name: model };
}

/** Resolves a model name for an endpoint that serves `task` (or any of several tasks, the first the default). */
export async function resolveModel(directory: ModelDirectory, model: unknown, task: ModelTaskName | ModelTaskName[], endpoint: string): Promise<ResolvedModel> {
  const tasks = Array.isArray(task) ? task : [task];
  const ref = parseModelName(model);
  if (ref.name === '') return { ref, affinity: '', display: '', task: tasks[0]! };
  const r = await directory.resolve(ref);
  if (r.status === 'not_found') throw new NotFoundError('model', r.name, r.message);
  if (r.status === 'found') {
    if (r.task !== 'unknown' && !tasks.includes(r.task)) {
      const wanted = tasks.join(' or ');
      throw new FailedPreconditionError(`model "${r.name}" is a ${r.task} model; ${endpoint} needs a ${wanted} model`, [{ type: 'TASK', subject: r.name, description: `task is ${r.task}` }]);
    }
    return { ref, affinity: `${r.name}@${r.version}`, display: typeof model === 'string' ? model : r.name, task: r.task === 'unknown' ? tasks[0]! : r.task };
  }
  return { ref, affinity: ref.name, display: ref.name, task: tasks[0]! };
}
