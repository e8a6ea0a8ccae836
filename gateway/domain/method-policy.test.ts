import { describe, expect, it } from 'vitest';
import { lookupMethod, parseDuration, parseMethodTable, parseSize } from './method-policy.js';
import { parseTargets } from './targets.js';

describe('per-method tables', () => {
  it('takes the most specific key: full method, short service and method, method, service, *', () => {
    const t = parseMethodTable('*=30s,VisionService/*=60s,maas.generation.v1.GenerationService/*=90s,Generate=120s,GenerationService/GenerateStream=5m', parseDuration);
    expect(lookupMethod(t, '/maas.generation.v1.GenerationService/GenerateStream', 0)).toBe(300_000);
    expect(lookupMethod(t, '/maas.generation.v1.GenerationService/Generate', 0)).toBe(120_000);
    expect(lookupMethod(t, '/maas.generation.v1.GenerationService/ListModels', 0)).toBe(90_000);
    expect(lookupMethod(t, '/maas.vision.v1.VisionService/ClassifyImage', 0)).toBe(60_000);
    expect(lookupMethod(t, '/maas.embeddings.v1.EmbeddingService/Embed', 0)).toBe(30_000);
    expect(lookupMethod(new Map(), '/a.B/C', 7)).toBe(7);
  });

  it('parses durations and sizes with units and rejects nonsense', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('0')).toBe(0);
    expect(parseDuration('1.5s')).toBe(1500);
    expect(parseSize('4MiB')).toBe(4 * 1024 * 1024);
    expect(parseSize('512KiB')).toBe(524_288);
    expect(parseSize('1000')).toBe(1000);
    expect(() => parseSize('4 parsecs')).toThrow(/not a size/);
    expect(() => parseDuration('soon')).toThrow(/not a duration/);
    expect(() => parseMethodTable('Generate', parseDuration)).toThrow(/key=value/);
  });
});

describe('parseTargets', () => {
  it('reads a static list, a dns name, or nothing', () => {
    expect(parseTargets('a:1, b:2,[::1]:3')).toEqual({ kind: 'static', addresses: ['a:1', 'b:2', '[::1]:3'] });
    expect(parseTargets('dns:///embeddings.maas.svc.cluster.local:50053')).toEqual({ kind: 'dns', host: 'embeddings.maas.svc.cluster.local', port: 50053 });
    expect(parseTargets('')).toEqual({ kind: 'none' });
  });

  it('refuses addresses without a port and a dns name mixed with others', () => {
    expect(() => parseTargets('localhost')).toThrow(/host:port/);
    expect(() => parseTargets('dns:///x:1,a:2')).toThrow(/only one/);
    expect(() => parseTargets('a:99999')).toThrow(/port/);
  });
});
