// A local model repository, Triton-style, for running a model service without a registry (and for tests):
//   <root>/<model>/model.json        {"task": "embedding", "aliases": {"default": 1}}
//   <root>/<model>/<version>/<files> the version's files (model.onnx, tokenizer.json, config.json, ...)
// Alias changes in model.json are picked up by polling, so editing the file hot-swaps like the registry does.
import { existsSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { NotFoundError } from '../errors.js';
import { sha256File } from './file-digest.js';
import { ModelTask, type LocalVersion, type ModelSelector, type ModelSource, type SourceEvent } from './types.js';

const TASKS: Record<string, ModelTask> = {
  embedding: ModelTask.EMBEDDING,
  generation: ModelTask.GENERATION,
  ocr: ModelTask.OCR,
  image_classification: ModelTask.IMAGE_CLASSIFICATION,
};

interface ModelJson {
  task: string;
  aliases?: Record<string, number>;
  tags?: Record<string, string>;
}

export class DirectorySource implements ModelSource {
  private readonly listeners = new Set<(e: SourceEvent) => void>();
  private readonly known = new Map<string, Record<string, number>>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly root: string,
    private readonly pollMs = 1000,
  ) {}

  async resolve(selector: ModelSelector, _signal: AbortSignal) {
    const meta = await this.modelJson(selector.name);
    const task = TASKS[meta.task];
    if (task === undefined) throw new NotFoundError('model', selector.name, `model "${selector.name}" has an unknown task "${meta.task}" in model.json`);
    if (selector.version) {
      if (!existsSync(join(this.root, selector.name, String(selector.version)))) {
        throw new NotFoundError('version', `${selector.name}:${selector.version}`, `model "${selector.name}" has no version ${selector.version}`);
      }
      return { name: selector.name, version: selector.version, task, alias: '' };
    }
    const alias = selector.alias || 'default';
    const version = meta.aliases?.[alias];
    if (version === undefined) throw new NotFoundError('alias', `${selector.name}@${alias}`, `model "${selector.name}" has no alias "${alias}"`);
    this.known.set(selector.name, { ...meta.aliases });
    return { name: selector.name, version, task, alias };
  }

  async materialize(name: string, version: number, _signal: AbortSignal): Promise<LocalVersion> {
    const meta = await this.modelJson(name);
    const dir = join(this.root, name, String(version));
    if (!existsSync(dir)) throw new NotFoundError('version', `${name}:${version}`, `model "${name}" has no version ${version}`);
    const files = [];
    for (const path of await walk(dir)) {
      files.push({ name: relative(dir, path), size: (await stat(path)).size, sha256: await sha256File(path) });
    }
    return { name, version, task: TASKS[meta.task]!, dir, files, signatures: {}, tags: meta.tags ?? {} };
  }

  watch(listener: (e: SourceEvent) => void): () => void {
    this.listeners.add(listener);
    this.timer ??= setInterval(() => void this.poll(), this.pollMs).unref();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0 && this.timer) {
        clearInterval(this.timer);
        this.timer = undefined;
      }
    };
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private async poll(): Promise<void> {
    for (const [name, before] of this.known) {
      let after: Record<string, number>;
      try {
        after = { ...(await this.modelJson(name)).aliases };
      } catch {
        this.known.delete(name);
        this.emit({ type: 'model_deleted', model: name });
        continue;
      }
      this.known.set(name, after);
      for (const [alias, version] of Object.entries(after)) if (before[alias] !== version) this.emit({ type: 'alias_set', model: name, alias, version });
      for (const alias of Object.keys(before)) if (!(alias in after)) this.emit({ type: 'alias_deleted', model: name, alias });
    }
  }

  private emit(e: SourceEvent): void {
    for (const l of this.listeners) l(e);
  }

  private async modelJson(name: string): Promise<ModelJson> {
    if (!/^[a-z0-9][a-z0-9._-]{0,127}$/.test(name) || name.includes('..')) throw new NotFoundError('model', name);
    try {
      return JSON.parse(await readFile(join(this.root, name, 'model.json'), 'utf8')) as ModelJson;
    } catch {
      throw new NotFoundError('model', name);
    }
  }
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const d of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, d.name);
    if (d.isDirectory()) out.push(...(await walk(p)));
    else if (d.isFile()) out.push(p);
  }
  return out.sort();
}
