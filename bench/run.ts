// `npm run bench [-- name ...]`: runs every bench/*.bench.ts (or those named) one after another and prints one
// table of figures and ratios. Each bench starts what it measures and stops it; ratios are measured side by
// side in the same run, so they mean something on a shared, noisy machine where absolute figures do not.
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { table } from '../cli/table.js';
import type { Bench, BenchResult } from './types.js';

const dir = fileURLToPath(new URL('.', import.meta.url));
const wanted = process.argv.slice(2);
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.bench.ts'))
  .filter((f) => wanted.length === 0 || wanted.some((w) => f.startsWith(w)))
  .sort();

const results: BenchResult[] = [];
let failed = 0;
for (const file of files) {
  const started = performance.now();
  process.stderr.write(`running ${file} ...\n`);
  try {
    const mod = (await import(`./${file}`)) as { default: Bench };
    results.push(...(await mod.default()));
    process.stderr.write(`  done in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
  } catch (err) {
    failed++;
    process.stderr.write(`  ${file} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  }
}

const fmt = (v: number) => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2));
process.stdout.write(`\n${table(['group', 'measure', 'value', 'unit', 'note'], results.map((r) => [r.group, r.name, fmt(r.value), r.unit, r.note ?? '']))}\n`);
process.exitCode = failed > 0 ? 1 : 0;
