// The container image, checked without a Docker engine (none runs on the project's machines): the Dockerfile's
// stages and runtime hardening, that its entrypoint can start every component registered in cli/components.ts
// from the compiled tree, and that .dockerignore keeps out what the build must make itself.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { components } from '../cli/components.js';
import { ROOT } from '../cli/launch.js';

interface Stage { name: string; from: string; lines: string[] }

function stages(dockerfile: string): { args: Record<string, string>; stages: Stage[] } {
  const args: Record<string, string> = {};
  const out: Stage[] = [];
  const logical = dockerfile.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  for (const line of logical) {
    const from = /^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/i.exec(line);
    if (from) out.push({ from: from[1]!, name: from[2] ?? String(out.length), lines: [] });
    else if (out.length === 0 && /^ARG\s+/i.test(line)) {
      const [k, v] = line.replace(/^ARG\s+/i, '').split('=');
      args[k!] = v ?? '';
    } else out.at(-1)?.lines.push(line);
  }
  return { args, stages: out };
}

const dockerfile = readFileSync(join(ROOT, 'deploy', 'Dockerfile'), 'utf8');
const parsed = stages(dockerfile);
const stage = (name: string) => parsed.stages.find((s) => s.name === name);
const expand = (image: string) => image.replace(/\$\{(\w+)\}/g, (_, k: string) => parsed.args[k] ?? '');

describe('deploy/Dockerfile', () => {
  it('builds in a full stage and runs in slim CPU (default) and CUDA runtime stages', () => {
    expect(parsed.stages.map((s) => s.name)).toEqual(expect.arrayContaining(['build', 'deps', 'deps-gpu', 'gpu', 'cpu']));
    expect(parsed.stages.at(-1)!.name, 'the default target is the CPU image').toBe('cpu');
    expect(expand(stage('cpu')!.from)).toMatch(/^node:\d+\.\d+\.\d+-\w+-slim$/);
    expect(expand(stage('gpu')!.from)).toMatch(/^nvidia\/cuda:\d+\.\d+\.\d+-cudnn-runtime-/);
    for (const s of parsed.stages) expect(expand(s.from), `stage ${s.name} base is pinned`).toMatch(/^[^:]+:[\w.-]*\d[\w.-]*$|^(build|deps|deps-gpu)$/);
  });

  it('runs as a numeric non-root user with no package manager, compiler or sources in the runtime stages', () => {
    for (const name of ['cpu', 'gpu']) {
      const s = stage(name)!;
      const user = s.lines.filter((l) => /^USER\s/i.test(l)).at(-1);
      expect(user, `${name} USER`).toMatch(/^USER\s+[1-9]\d{3,}(:\d+)?$/);
      expect(s.lines.some((l) => /^ENTRYPOINT\s/i.test(l)), `${name} ENTRYPOINT`).toBe(true);
      expect(s.lines.filter((l) => /^RUN\s/i.test(l) && /\b(npm|npx|apt-get|tsc|gcc|make)\b(?! *\/)/.test(l.replace(/rm -rf.*$/, ''))), `${name} installs nothing`).toEqual([]);
      const copies = s.lines.filter((l) => /^COPY\s/i.test(l) && !/--from=/.test(l));
      expect(copies.every((l) => /deploy\/entrypoint\.sh/.test(l)), `${name} copies only the entrypoint from the context`).toBe(true);
    }
  });

  it('skips the onnxruntime CUDA download for the CPU image and makes the GPU image fetch it', () => {
    const env = (name: string) => stage(name)!.lines.filter((l) => /^ENV\s/i.test(l)).join(' ');
    expect(env('deps')).toMatch(/ONNXRUNTIME_NODE_INSTALL=skip/);
    expect(env('deps-gpu')).not.toMatch(/ONNXRUNTIME_NODE_INSTALL=skip/);
    expect(env('deps-gpu')).toMatch(/ONNXRUNTIME_NODE_INSTALL=cuda12/);
    expect(stage('deps-gpu')!.lines.join('\n')).toMatch(/libonnxruntime_providers_cuda\.so/);
    expect(stage('gpu')!.lines.join('\n')).toMatch(/--from=deps-gpu \/app\/node_modules/);
    expect(stage('cpu')!.lines.join('\n')).toMatch(/--from=deps \/app\/node_modules/);
  });

  it('compiles to dist/ mirroring the source tree, with the reflection descriptors beside it', () => {
    const build = JSON.parse(readFileSync(join(ROOT, 'tsconfig.build.json'), 'utf8')) as { compilerOptions?: { outDir?: string; rootDir?: string } };
    const base = JSON.parse(readFileSync(join(ROOT, 'tsconfig.json'), 'utf8')) as { compilerOptions: { outDir?: string; rootDir?: string } };
    expect(build.compilerOptions?.outDir ?? base.compilerOptions.outDir).toBe('dist');
    expect(build.compilerOptions?.rootDir ?? base.compilerOptions.rootDir).toBe('.');
    expect(stage('build')!.lines.join('\n')).toMatch(/cp gen\/descriptors\.binpb dist\/gen\/descriptors\.binpb/);
  });
});

describe('deploy/entrypoint.sh', () => {
  const entrypoint = join(ROOT, 'deploy', 'entrypoint.sh');

  it('is executable and refuses a missing or unknown component', () => {
    accessSync(entrypoint, constants.X_OK);
    const none = spawnSync(entrypoint, [], { encoding: 'utf8' });
    expect(none.status).toBe(64);
    expect(none.stderr).toMatch(/usage/);
    const unknown = spawnSync(entrypoint, ['no-such-component'], { encoding: 'utf8' });
    expect(unknown.status).toBe(64);
    expect(unknown.stderr).toMatch(/unknown component: no-such-component/);
  });

  it('starts every registered component by name from its compiled entry', () => {
    const script = readFileSync(entrypoint, 'utf8');
    expect(script).toContain('/app/dist/services/$name/main.js');
    expect(script).toContain('/app/dist/$name/main.js');
    for (const c of components) {
      expect([`services/${c.name}/main.ts`, `${c.name}/main.ts`], `${c.name} entry ${c.entry}`).toContain(c.entry);
    }
  });
});

describe('production dependencies', () => {
  /** Every file a component's entry reaches through relative imports, and the packages those files import. */
  function reach(entry: string): { files: Set<string>; packages: Map<string, string> } {
    const files = new Set<string>();
    const packages = new Map<string, string>();
    const queue = [join(ROOT, entry)];
    while (queue.length > 0) {
      const file = queue.pop()!;
      if (files.has(file)) continue;
      files.add(file);
      const text = readFileSync(file, 'utf8');
      const specifiers = [...text.matchAll(/(?:^|[\s;])(?:import|export)\s+(?!type\s)(?:[^'";]*?\s+from\s+)?['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/gm)].map((m) => m[1] ?? m[2]!);
      for (const spec of specifiers) {
        if (spec.startsWith('.')) {
          const target = join(dirname(file), spec).replace(/\.js$/, '.ts');
          queue.push(existsSync(target) ? target : join(dirname(file), spec));
        } else if (!spec.startsWith('node:') && !builtinModules.includes(spec)) {
          const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
          if (!packages.has(name)) packages.set(name, relative(ROOT, file));
        }
      }
    }
    return { files, packages };
  }

  it("installs every package a component's code imports (npm ci --omit=dev), never a devDependency", () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies?: Record<string, string>; optionalDependencies?: Record<string, string> };
    const production = new Set([...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.optionalDependencies ?? {})]);
    const entries = [...components.map((c) => c.entry), 'services/runtime/telemetry/register.ts'];
    const missing: string[] = [];
    for (const entry of entries) {
      const { files, packages } = reach(entry);
      expect(files.size, `${entry} reaches its modules`).toBeGreaterThan(1);
      for (const [name, from] of packages) if (!production.has(name)) missing.push(`${name} (imported by ${from}, reached from ${entry})`);
    }
    expect(missing, 'packages the image would not have: move them to "dependencies"').toEqual([]);
  });
});

describe('.dockerignore', () => {
  const rules = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const toRegex = (p: string) =>
    new RegExp(`^${p.replace(/^\//, '').replace(/[.+^$|()[\]{}]/g, '\\$&').replace(/\*\*\//g, '\u0000').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]').replace(/\u0000/g, '(.*/)?')}(/.*)?$`);
  /** Docker's rule: the last matching pattern wins; `!` re-includes. */
  const ignored = (path: string) => {
    let out = false;
    for (const r of rules) if (toRegex(r.replace(/^!/, '')).test(path)) out = !r.startsWith('!');
    return out;
  };

  it('keeps out installed modules, build output, generated code, local data and git', () => {
    for (const p of ['node_modules', 'services/x/node_modules', 'dist', 'gen', '.maas', '.git', '.npmrc']) expect(ignored(p), p).toBe(true);
  });

  it('sends what the build needs, including every component', () => {
    const needed = ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'buf.yaml', 'buf.gen.yaml', 'scripts/gen.mjs', 'proto/maas/registry/v1/registry.proto', 'services/runtime/server.ts', 'cli/component.ts', 'deploy/entrypoint.sh', 'deploy/prune-modules.sh'];
    for (const p of [...needed, ...components.map((c) => c.entry)]) expect(ignored(p), p).toBe(false);
  });
});
