import { describe, expect, it } from 'vitest';
import { expNonPositive } from './fast-exp.js';
import { Prng } from './prng.js';

describe('expNonPositive', () => {
  it('matches Math.exp to float32 precision over the range probabilities need', () => {
    const rng = new Prng(3);
    let worst = 0;
    for (let i = 0; i < 200_000; i++) {
      const x = -rng.next() * (i % 2 ? 110 : 8);
      const want = Math.exp(x);
      const got = expNonPositive(x);
      if (want > 1e-38) worst = Math.max(worst, Math.abs(got - want) / want);
      else expect(got).toBeLessThan(1e-37);
    }
    expect(worst).toBeLessThan(1e-9);
    expect(expNonPositive(0)).toBe(1);
    expect(expNonPositive(-1000)).toBe(0);
  });
});
