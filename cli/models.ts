// `maas models …`: the registry from the command line. ls, show, push (with a progress bar), pull (resumable,
// with a progress bar), alias, rm. Errors are printed from the registry's status details.
import { readdir, stat } from 'node:fs/promises';
import { basename, join, relative, resolve, sep } from 'node:path';
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import cliProgress from 'cli-progress';
import { Task } from '../gen/maas/common/v1/model.js';
import { ModelRegistryServiceClient, type Model, type ModelVersion } from '../gen/maas/registry/v1/registry.js';
import { createClient, unary } from '../services/runtime/client.js';
import { decodeStatus } from '../services/runtime/grpc-status.js';
import { pullVersion } from '../services/registry/client/download.js';
import { TRANSFER_CHANNEL_OPTIONS } from '../services/registry/client/connect.js';
import { pushVersion } from '../services/registry/client/push.js';
import { table } from './table.js';

const USAGE = `usage: maas models <command>

  ls [--task <task>] [--tag k=v]         list models
  show <name>                             a model with its versions
  push <name> --task <task> <files…>      upload a version (a file is path or name=path; a folder adds
       [--alias a]… [--description d]     all files under it); the model is created when missing
       [--source uri] [--parent n] [--tag k=v]…
  pull <name>[:version|@alias] <dir>      download a version's files into dir (resumes)
  alias <name> <alias> <version>          point an alias at a version
  alias <name> <alias> --delete           remove an alias
  rm <name>[:version] [--force]           delete a version, or a model (--force: with its versions)

tasks: embedding, generation, ocr, image-classification
Registry address: MAAS_REGISTRY_ADDRESS (default 127.0.0.1:50052); admin token: MAAS_REGISTRY_ADMIN_TOKEN.`;

const TASKS: Record<string, Task> = {
  embedding: Task.TASK_EMBEDDING,
  generation: Task.TASK_GENERATION,
  ocr: Task.TASK_OCR,
  'image-classification': Task.TASK_IMAGE_CLASSIFICATION,
};

class UsageError extends Error {}

export interface ModelsOptions {
  registryAddress: string;
  token?: string;
  /** Where results go (default stdout) and where progress and errors go (default stderr). */
  out?: (text: string) => void;
  err?: (text: string) => void;
  /** Draw progress bars (default: when stderr is a terminal). */
  progress?: boolean;
}

export async function modelsCommand(args: string[], options: ModelsOptions): Promise<number> {
  const out = options.out ?? ((t: string) => process.stdout.write(`${t}\n`));
  const err = options.err ?? ((t: string) => process.stderr.write(`${t}\n`));
  const [command, ...rest] = args;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    (command ? out : err)(USAGE);
    return command ? 0 : 2;
  }
  const client = createClient(ModelRegistryServiceClient, options.registryAddress, { channelOptions: TRANSFER_CHANNEL_OPTIONS });
  const ctx: Ctx = { client, options, out, err, auth: authMetadata(options.token), showProgress: options.progress ?? Boolean(process.stderr.isTTY) };
  try {
    switch (command) {
      case 'ls':
      case 'list':
        return await ls(ctx, parse(rest, { task: 'value', tag: 'list' }));
      case 'show':
        return await show(ctx, parse(rest, {}));
      case 'push':
        return await push(ctx, parse(rest, { task: 'value', alias: 'list', description: 'value', source: 'value', parent: 'value', tag: 'list' }));
      case 'pull':
        return await pull(ctx, parse(rest, {}));
      case 'alias':
        return await alias(ctx, parse(rest, { delete: 'flag' }));
      case 'rm':
      case 'delete':
        return await rm(ctx, parse(rest, { force: 'flag' }));
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      err(`maas models: ${e.message}\n\n${USAGE}`);
      return 2;
    }
    err(`maas models: ${describeError(e, options.registryAddress)}`);
    return 1;
  } finally {
    client.close();
  }
}

interface Ctx {
  client: ModelRegistryServiceClient;
  options: ModelsOptions;
  out: (t: string) => void;
  err: (t: string) => void;
  auth: Metadata;
  showProgress: boolean;
}

interface Parsed {
  positional: string[];
  values: Record<string, string>;
  lists: Record<string, string[]>;
  flags: Set<string>;
}

function parse(args: string[], known: Record<string, 'value' | 'list' | 'flag'>): Parsed {
  const p: Parsed = { positional: [], values: {}, lists: {}, flags: new Set() };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (!a.startsWith('--')) {
      p.positional.push(a);
      continue;
    }
    const [key, inline] = a.slice(2).split(/=(.*)/s, 2) as [string, string | undefined];
    const kind = known[key];
    if (!kind) throw new UsageError(`unknown option --${key}`);
    if (kind === 'flag') {
      p.flags.add(key);
      continue;
    }
    const value = inline ?? args[++i];
    if (value === undefined) throw new UsageError(`--${key} needs a value`);
    if (kind === 'value') p.values[key] = value;
    else (p.lists[key] ??= []).push(value);
  }
  return p;
}

function tags(list: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const t of list ?? []) {
    const at = t.indexOf('=');
    if (at <= 0) throw new UsageError(`--tag wants key=value, got "${t}"`);
    out[t.slice(0, at)] = t.slice(at + 1);
  }
  return out;
}

function task(name: string | undefined, required: boolean): Task {
  if (name === undefined) {
    if (required) throw new UsageError('--task is required (embedding, generation, ocr, image-classification)');
    return Task.TASK_UNSPECIFIED;
  }
  const t = TASKS[name.toLowerCase().replace(/^task_/, '').replace(/_/g, '-')];
  if (t === undefined) throw new UsageError(`unknown task "${name}" (embedding, generation, ocr, image-classification)`);
  return t;
}

function taskName(t: Task): string {
  return Object.entries(TASKS).find(([, v]) => v === t)?.[0] ?? String(t);
}

async function ls(ctx: Ctx, a: Parsed): Promise<number> {
  const rows: string[][] = [];
  let pageToken = '';
  do {
    const res = await unary(ctx.client.listModels.bind(ctx.client), { pageSize: 1000, pageToken, task: task(a.values.task, false), tags: tags(a.lists.tag) }, deadline());
    for (const m of res.models) rows.push([m.name, taskName(m.task), m.latestVersion ? String(m.latestVersion) : '-', aliasList(m), clip(m.description, 50)]);
    pageToken = res.nextPageToken;
  } while (pageToken);
  if (rows.length === 0) ctx.out('no models');
  else ctx.out(table(['model', 'task', 'latest', 'aliases', 'description'], rows));
  return 0;
}

async function show(ctx: Ctx, a: Parsed): Promise<number> {
  const [name] = a.positional;
  if (!name || a.positional.length > 1) throw new UsageError('show takes one model name');
  const { model } = await unary(ctx.client.getModel.bind(ctx.client), { name }, deadline());
  const m = model!;
  ctx.out(`model        ${m.name}`);
  ctx.out(`task         ${taskName(m.task)}`);
  if (m.description) ctx.out(`description  ${m.description}`);
  if (Object.keys(m.tags).length) ctx.out(`tags         ${Object.entries(m.tags).map(([k, v]) => `${k}=${v}`).join(' ')}`);
  ctx.out(`aliases      ${aliasList(m) || '-'}`);
  ctx.out(`created      ${m.createTime?.toISOString() ?? ''}`);
  const versions: ModelVersion[] = [];
  let pageToken = '';
  do {
    const res = await unary(ctx.client.listVersions.bind(ctx.client), { model: name, pageSize: 1000, pageToken }, deadline());
    versions.push(...res.versions);
    pageToken = res.nextPageToken;
  } while (pageToken);
  ctx.out('');
  if (versions.length === 0) {
    ctx.out('no versions');
    return 0;
  }
  ctx.out(
    table(
      ['version', 'created', 'size', 'files', 'aliases', 'parent', 'source'],
      versions.map((v) => [
        String(v.version),
        v.createTime?.toISOString().replace(/\.\d+Z$/, 'Z') ?? '',
        bytes(v.files.reduce((n, f) => n + f.size, 0)),
        v.files.map((f) => f.name).join(', '),
        v.aliases.join(','),
        v.parentVersion ? String(v.parentVersion) : '',
        v.sourceUri,
      ]),
    ),
  );
  return 0;
}

async function push(ctx: Ctx, a: Parsed): Promise<number> {
  const [name, ...paths] = a.positional;
  if (!name || paths.length === 0) throw new UsageError('push needs a model name and at least one file');
  const t = task(a.values.task, true);
  const parent = a.values.parent === undefined ? 0 : Number(a.values.parent);
  if (!Number.isSafeInteger(parent) || parent < 0) throw new UsageError('--parent wants a version number');
  const files = await collectFiles(paths);
  const bar = progressBar(ctx);
  bar?.start(1, 0, { file: '' });
  try {
    const pushed = await pushVersion(ctx.client, {
      model: name,
      task: t,
      files,
      aliases: a.lists.alias,
      description: a.values.description,
      sourceUri: a.values.source,
      parentVersion: parent,
      tags: tags(a.lists.tag),
      token: ctx.options.token,
      onProgress: (p) => {
        bar?.setTotal(Math.max(p.totalBytes, 1));
        bar?.update(p.sentBytes, { file: `${p.phase === 'hash' ? 'hashing ' : ''}${p.file}` });
      },
    });
    bar?.stop();
    const size = pushed.files.reduce((n, f) => n + f.size, 0);
    ctx.out(`pushed ${pushed.model}:${pushed.version} (${pushed.files.length} file${pushed.files.length === 1 ? '' : 's'}, ${bytes(size)})${pushed.aliases.length ? `; ${pushed.aliases.map((x) => `@${x}`).join(' ')} → ${pushed.version}` : ''}`);
    return 0;
  } finally {
    bar?.stop();
  }
}

/** `path`, `name=path`, or a folder (every file under it, named by its path inside the folder). */
async function collectFiles(args: string[]): Promise<{ name: string; path: string }[]> {
  const files: { name: string; path: string }[] = [];
  for (const arg of args) {
    const at = arg.indexOf('=');
    const [name, path] = at > 0 ? [arg.slice(0, at), arg.slice(at + 1)] : [undefined, arg];
    const st = await stat(path).catch(() => undefined);
    if (!st) throw new UsageError(`no such file: ${path}`);
    if (st.isDirectory()) {
      const root = resolve(path);
      for (const f of await walk(root)) files.push({ name: (name ? `${name}/` : '') + relative(root, f).split(sep).join('/'), path: f });
    } else files.push({ name: name ?? basename(path), path });
  }
  return files;
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of (await readdir(dir, { withFileTypes: true })).sort((x, y) => x.name.localeCompare(y.name))) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

async function pull(ctx: Ctx, a: Parsed): Promise<number> {
  const [ref, dir] = a.positional;
  if (!ref || !dir || a.positional.length > 2) throw new UsageError('pull takes <name>[:version|@alias] <dir>');
  const { name, version, alias } = parseRef(ref);
  const bar = progressBar(ctx);
  let started = false;
  const done = new Map<string, number>();
  try {
    const v = await pullVersion(ctx.client, name, resolve(dir), {
      version,
      alias,
      onProgress: (p) => {
        const total = p.version.files.reduce((n, f) => n + f.size, 0);
        if (!started) {
          bar?.start(Math.max(total, 1), 0, { file: p.file });
          started = true;
        }
        done.set(p.file, p.fileBytes);
        bar?.update([...done.values()].reduce((n, x) => n + x, 0), { file: p.file });
      },
    });
    bar?.stop();
    ctx.out(`pulled ${v.model}:${v.version} into ${resolve(dir)} (${v.files.length} file${v.files.length === 1 ? '' : 's'}, ${bytes(v.files.reduce((n, f) => n + f.size, 0))}, sha256 checked)`);
    return 0;
  } finally {
    bar?.stop();
  }
}

async function alias(ctx: Ctx, a: Parsed): Promise<number> {
  const [name, aliasName, version] = a.positional;
  if (a.flags.has('delete')) {
    if (!name || !aliasName || version !== undefined) throw new UsageError('alias <name> <alias> --delete');
    await unary(ctx.client.deleteAlias.bind(ctx.client), { model: name, alias: aliasName }, deadline(ctx.auth));
    ctx.out(`removed ${name}@${aliasName}`);
    return 0;
  }
  const n = Number(version);
  if (!name || !aliasName || !version || !Number.isSafeInteger(n) || n < 1) throw new UsageError('alias takes <name> <alias> <version>');
  const { model } = await unary(ctx.client.setAlias.bind(ctx.client), { model: name, alias: aliasName, version: n }, deadline(ctx.auth));
  ctx.out(`${name}@${aliasName} → ${n}  (aliases: ${aliasList(model!)})`);
  return 0;
}

async function rm(ctx: Ctx, a: Parsed): Promise<number> {
  const [ref] = a.positional;
  if (!ref || a.positional.length > 1) throw new UsageError('rm takes <name> or <name>:<version>');
  const { name, version, alias: al } = parseRef(ref);
  if (al !== undefined) throw new UsageError('rm takes a version number, not an alias (use `maas models alias <name> <alias> --delete`)');
  if (version !== undefined) {
    await unary(ctx.client.deleteVersion.bind(ctx.client), { model: name, version }, deadline(ctx.auth));
    ctx.out(`deleted ${name}:${version}`);
  } else {
    await unary(ctx.client.deleteModel.bind(ctx.client), { name, force: a.flags.has('force') }, deadline(ctx.auth));
    ctx.out(`deleted model ${name}`);
  }
  return 0;
}

/** `name`, `name:3`, `name@prod`. */
export function parseRef(ref: string): { name: string; version?: number; alias?: string } {
  const at = ref.indexOf('@');
  if (at >= 0) return { name: ref.slice(0, at), alias: ref.slice(at + 1) };
  const colon = ref.lastIndexOf(':');
  if (colon >= 0) {
    const v = Number(ref.slice(colon + 1));
    if (!Number.isSafeInteger(v) || v < 1) throw new UsageError(`"${ref}": the version after ":" must be a number`);
    return { name: ref.slice(0, colon), version: v };
  }
  return { name: ref };
}

function progressBar(ctx: Ctx): cliProgress.SingleBar | undefined {
  if (!ctx.showProgress) return undefined;
  return new cliProgress.SingleBar(
    {
      format: '  {bar} {percentage}% | {value} of {total} | {file}',
      hideCursor: true,
      clearOnComplete: true,
      formatValue: (v, _o, type) => (type === 'value' || type === 'total' ? bytes(v) : String(v)),
    },
    cliProgress.Presets.shades_classic,
  );
}

function aliasList(m: Model): string {
  return Object.entries(m.aliases)
    .sort(([x], [y]) => x.localeCompare(y))
    .map(([a, v]) => `${a}→${v}`)
    .join(', ');
}

function authMetadata(token: string | undefined): Metadata {
  const md = new Metadata();
  if (token) md.set('authorization', `Bearer ${token}`);
  return md;
}

function deadline(metadata?: Metadata) {
  return { deadline: Date.now() + 30_000, metadata };
}

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

function clip(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

/** One line (plus field details) for a failed call, with a hint for the usual causes. */
export function describeError(e: unknown, address: string): string {
  const se = e as ServiceError;
  if (typeof se?.code !== 'number') return e instanceof Error ? e.message : String(e);
  const d = decodeStatus(se);
  const lines = [`${status[d.code] ?? d.code}: ${d.message}`];
  for (const v of d.badRequest?.fieldViolations ?? []) if (!d.message.includes(v.description)) lines.push(`  ${v.field}: ${v.description}`);
  for (const v of d.preconditionFailure?.violations ?? []) lines.push(`  ${v.subject}: ${v.description}`);
  if (d.code === status.UNAVAILABLE) lines.push(`  is the registry running at ${address}? (\`maas up\`, or set MAAS_REGISTRY_ADDRESS)`);
  if (d.code === status.UNAUTHENTICATED || d.code === status.PERMISSION_DENIED) lines.push('  set MAAS_REGISTRY_ADMIN_TOKEN to the registry\'s admin token');
  return lines.join('\n');
}
