#!/usr/bin/env node
// The buf binary, from the platform package npm installed (@bufbuild/buf-linux-x64 or -aarch64), or `buf` on
// PATH elsewhere. The @bufbuild/buf wrapper package is not used: the npm registry this project installs from
// does not carry its macOS and Windows packages, and npm ci refuses a lockfile that lacks them.
// `node scripts/buf.mjs <args>` runs buf with those arguments.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

export function bufBinary() {
  const arch = process.arch === 'arm64' ? 'aarch64' : process.arch;
  const local = join(root, 'node_modules', '@bufbuild', `buf-${process.platform}-${arch}`, 'bin', 'buf');
  return existsSync(local) ? local : 'buf';
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const r = spawnSync(bufBinary(), process.argv.slice(2), { cwd: root, stdio: 'inherit' });
  if (r.error) {
    process.stderr.write(`cannot run buf (${r.error.message}); on this platform install it and put it on PATH\n`);
    process.exit(2);
  }
  process.exit(r.status ?? 1);
}
