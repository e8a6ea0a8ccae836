import { describe, expect, it } from 'vitest';
import { StopMatcher } from './stop-matcher.js';

function run(stops: string[], pieces: string[]) {
  const m = new StopMatcher(stops);
  const out: string[] = [];
  for (const p of pieces) {
    out.push(m.push(p));
    if (m.matched !== undefined) break;
  }
  if (m.matched === undefined) out.push(m.flush());
  return { out, text: out.join(''), matched: m.matched };
}

describe('StopMatcher', () => {
  it('finds a stop sequence spread over several pieces and emits only the text before it', () => {
    const r = run(['###'], ['Hello #', '#', '# more']);
    expect(r).toMatchObject({ text: 'Hello ', matched: '###' });
  });

  it('holds back text that could start a stop sequence and releases it when it does not', () => {
    const r = run(['</end>'], ['a</', 'en', 'x', ' b']);
    expect(r.out).toEqual(['a', '', '</enx', ' b', '']);
    expect(r.matched).toBeUndefined();
  });

  it('ends at the earliest of several stop sequences', () => {
    expect(run(['cd', 'bc'], ['ab', 'cd'])).toMatchObject({ text: 'a', matched: 'bc' });
  });

  it('passes text through unchanged without stop sequences', () => {
    expect(run([], ['a', 'b']).out).toEqual(['a', 'b', '']);
  });
});
