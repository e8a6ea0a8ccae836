#!/usr/bin/env node
// Rebuilds gen/ from proto/: TypeScript for @grpc/grpc-js (ts-proto through buf, options in buf.gen.yaml) and
// one binary FileDescriptorSet (gen/descriptors.binpb) that server reflection serves. Nobody edits gen/.
// Skips the work when gen/ is newer than proto/ and the buf configs; `--force` redoes it.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bufBinary } from './buf.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const gen = join(root, 'gen');
const stamp = join(gen, 'descriptors.binpb');

function newest(path) {
  const s = statSync(path);
  if (!s.isDirectory()) return s.mtimeMs;
  return readdirSync(path).reduce((m, f) => Math.max(m, newest(join(path, f))), s.mtimeMs);
}

const inputs = ['proto', 'buf.yaml', 'buf.gen.yaml', 'scripts/gen.mjs'].map((p) => newest(join(root, p)));
if (!process.argv.includes('--force') && existsSync(stamp) && statSync(stamp).mtimeMs >= Math.max(...inputs)) {
  process.exit(0);
}

// Generate into a temporary folder and swap it in whole, so a failed or concurrent run never leaves a
// half-written gen/ behind.
const buf = bufBinary();
const base = mkdtempSync(join(root, '.gen-'));
try {
  execFileSync(buf, ['generate', '--output', base], { cwd: root, stdio: 'inherit' });
  execFileSync(buf, ['build', '-o', join(base, 'gen', 'descriptors.binpb')], { cwd: root, stdio: 'inherit' });
  const old = `${gen}.old-${process.pid}`;
  if (existsSync(gen)) renameSync(gen, old);
  renameSync(join(base, 'gen'), gen);
  rmSync(old, { recursive: true, force: true });
} finally {
  rmSync(base, { recursive: true, force: true });
}
