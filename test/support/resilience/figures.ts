// Figures a resilience test measured (requests sent, rejected, failed, memory peaks), printed at the end of
// the file and kept in .maas/resilience/<file>.json so docs/resilience.md can be refreshed from a run.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../../../cli/launch.js';

export class Figures {
  private readonly rows: Record<string, unknown> = {};
  constructor(private readonly file: string) {}

  set(key: string, value: unknown): void {
    this.rows[key] = value;
  }

  write(): void {
    const dir = join(ROOT, '.maas', 'resilience');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `${this.file}.json`), `${JSON.stringify(this.rows, null, 2)}\n`);
    console.log(`[resilience figures: ${this.file}]\n${JSON.stringify(this.rows, null, 2)}`);
  }
}
