#!/usr/bin/env node
// The maas command. It runs the TypeScript CLI through tsx, after making sure gen/ is current
// (scripts/gen.mjs returns at once when nothing under proto/ changed).
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { register } from 'tsx/esm/api';

const root = fileURLToPath(new URL('..', import.meta.url));
execFileSync(process.execPath, [`${root}scripts/gen.mjs`], { stdio: 'inherit', cwd: root });
register();
const { main } = await import('../cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
