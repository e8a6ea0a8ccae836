import { describe, expect, it } from 'vitest';
import { withoutPreloads } from './start-worker.js';

describe('withoutPreloads', () => {
  it('drops --import and --require preloads in both spellings and keeps the other flags', () => {
    expect(withoutPreloads(['--import', 'tsx', '--max-old-space-size=512', '--import=./a.ts', '-r', 'x', '--require', 'y', '--require=z', '--enable-source-maps'])).toEqual([
      '--max-old-space-size=512',
      '--enable-source-maps',
    ]);
  });
});
