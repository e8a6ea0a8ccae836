import { defineConfig } from 'vitest/config';

// Unit tests sit beside the code; tests that start processes and talk over sockets live in test/.
// Process-spawning tests are slow to start on a 2-core machine, hence the generous timeouts; no test
// asserts on timing.
export default defineConfig({
  test: {
    include: ['services/**/*.test.ts', 'gateway/**/*.test.ts', 'cli/**/*.test.ts', 'models/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    pool: 'forks',
    fileParallelism: true,
    maxWorkers: 2,
    reporters: ['default'],
  },
});
