// The contracts: buf lint (STANDARD) and buf breaking (FILE) against the last commit of main.
import { execFileSync, spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../cli/launch.js';

// @ts-expect-error: a plain ESM script without types
import { bufBinary } from '../scripts/buf.mjs';

const buf = bufBinary() as string;

function run(args: string[]) {
  return spawnSync(buf, args, { cwd: ROOT, encoding: 'utf8' });
}

describe('contracts', () => {
  it('pass buf lint', () => {
    const r = run(['lint']);
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('make no breaking change against the last commit of main', () => {
    const hasMain = spawnSync('git', ['rev-parse', '--verify', '--quiet', 'refs/heads/main'], { cwd: ROOT }).status === 0;
    const hasHead = spawnSync('git', ['rev-parse', '--verify', '--quiet', 'HEAD'], { cwd: ROOT }).status === 0;
    if (!hasHead) return; // a repository without commits has nothing to break
    // Compare only when the reference already has contracts (the first commit that adds proto/ has none to break).
    const ref = hasMain ? 'main' : 'HEAD';
    const tracked = execFileSync('git', ['ls-tree', '-r', '--name-only', ref, 'proto'], { cwd: ROOT, encoding: 'utf8' });
    if (!tracked.includes('.proto')) return;
    const r = run(['breaking', '--against', `.git#${hasMain ? 'branch=main' : 'ref=HEAD'},subdir=.`]);
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('put every package in the folder its name says', () => {
    const files = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', 'proto/maas'], { cwd: ROOT, encoding: 'utf8' })
      .split('\n')
      .filter((f) => f.endsWith('.proto'));
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) expect(f).toMatch(/^proto\/maas\/[a-z]+\/v\d+\/[a-z_]+\.proto$/);
  });
});
