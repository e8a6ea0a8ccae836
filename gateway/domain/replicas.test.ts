import { describe, expect, it } from 'vitest';
import { ReplicaSet } from './replicas.js';

function set(addresses: string[], balancing: 'least-outstanding' | 'round-robin' = 'least-outstanding') {
  const disposed: string[] = [];
  const s = new ReplicaSet<string>({ balancing, ejectMs: 1000, create: (a) => a, dispose: (h) => disposed.push(h) });
  s.setAddresses(addresses);
  for (const r of s.replicas) s.setHealth(r, 'serving');
  return { s, disposed };
}

describe('ReplicaSet', () => {
  it('picks the replica with the fewest calls in flight', () => {
    const { s } = set(['a:1', 'b:1', 'c:1']);
    s.replicas[0]!.outstanding = 3;
    s.replicas[1]!.outstanding = 1;
    s.replicas[2]!.outstanding = 2;
    expect(s.pick('m')!.address).toBe('b:1');
  });

  it('keeps one model on one replica while load is even, and spreads different models', () => {
    const { s } = set(['a:1', 'b:1', 'c:1', 'd:1']);
    const first = s.pick('model-x@1')!.address;
    for (let i = 0; i < 10; i++) expect(s.pick('model-x@1')!.address).toBe(first);
    const spread = new Set(Array.from({ length: 40 }, (_, i) => s.pick(`model-${i}@1`)!.address));
    expect(spread.size).toBeGreaterThan(1);
  });

  it('goes round when there is no model to hash', () => {
    const { s } = set(['a:1', 'b:1', 'c:1']);
    expect([s.pick(undefined), s.pick(undefined), s.pick(undefined)].map((r) => r!.address).sort()).toEqual(['a:1', 'b:1', 'c:1']);
  });

  it('leaves out replicas that are not serving and uses them again when they recover', () => {
    const { s } = set(['a:1', 'b:1']);
    s.setHealth(s.replicas[0]!, 'not_serving');
    for (let i = 0; i < 5; i++) expect(s.pick(undefined)!.address).toBe('b:1');
    s.setHealth(s.replicas[1]!, 'unreachable');
    expect(s.pick(undefined)).toBeUndefined();
    s.setHealth(s.replicas[0]!, 'serving');
    expect(s.pick(undefined)!.address).toBe('a:1');
  });

  it('leaves out an ejected replica for the ejection time, or until it reports SERVING', () => {
    const { s } = set(['a:1', 'b:1']);
    const now = Date.now();
    s.eject(s.replicas[0]!, now);
    expect(s.pick(undefined, undefined, now + 10)!.address).toBe('b:1');
    expect(s.pick(undefined, undefined, now + 10)!.address).toBe('b:1');
    s.replicas[1]!.outstanding = 1;
    expect(s.pick(undefined, undefined, now + 1001)!.address).toBe('a:1');
    s.eject(s.replicas[0]!, now);
    s.setHealth(s.replicas[0]!, 'serving');
    expect(s.pick(undefined, undefined, now + 10)!.address).toBe('a:1');
  });

  it('avoids replicas the call already tried, unless nothing else is usable', () => {
    const { s } = set(['a:1', 'b:1']);
    const a = s.replicas[0]!;
    expect(s.pick(undefined, new Set([a]))!.address).toBe('b:1');
    s.setHealth(s.replicas[1]!, 'not_serving');
    expect(s.pick(undefined, new Set([a]))!.address).toBe('a:1');
  });

  it('uses replicas of unknown health only when none is known to serve', () => {
    const s = new ReplicaSet<string>({ balancing: 'least-outstanding', ejectMs: 1000, create: (a) => a, dispose: () => undefined });
    s.setAddresses(['a:1', 'b:1']);
    expect(s.pick(undefined)).toBeDefined();
    s.setHealth(s.replicas[1]!, 'serving');
    expect(s.pick(undefined)!.address).toBe('b:1');
  });

  it('adds and removes replicas when the addresses change, disposing the removed ones', () => {
    const { s, disposed } = set(['a:1', 'b:1']);
    const { added, removed } = s.setAddresses(['b:1', 'c:1']);
    expect(added.map((r) => r.address)).toEqual(['c:1']);
    expect(removed.map((r) => r.address)).toEqual(['a:1']);
    expect(disposed).toEqual(['a:1']);
    expect(s.replicas.map((r) => r.address)).toEqual(['b:1', 'c:1']);
  });

  it('tells when the service gains or loses its last usable replica', () => {
    const seen: boolean[] = [];
    const s = new ReplicaSet<string>({ balancing: 'round-robin', ejectMs: 1000, create: (a) => a, dispose: () => undefined, onAvailability: (v) => seen.push(v) });
    s.setAddresses(['a:1']);
    s.setHealth(s.replicas[0]!, 'serving');
    s.setHealth(s.replicas[0]!, 'not_serving');
    expect(seen).toEqual([true, false]);
  });
});
