import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../runtime/errors.js';
import { checkAlias, checkFilePath, checkName, checkTags } from './names.js';

describe('registry names', () => {
  it('accepts lowercase names with digits, dots, dashes and underscores', () => {
    for (const n of ['glove-100d', 'ppocr.v4_det', '0day', 'a'.repeat(128)]) expect(checkName('name', n)).toBe(n);
  });

  it('refuses names that could be paths, are empty, too long or not lowercase', () => {
    for (const n of ['', '.', '..', '../x', 'a/b', 'A', '-a', '_a', 'a b', 'a'.repeat(129), 'é']) {
      expect(() => checkName('name', n), n).toThrow(InvalidArgumentError);
    }
  });

  it('wants aliases to start with a letter so they never look like versions', () => {
    expect(checkAlias('alias', 'prod')).toBe('prod');
    expect(() => checkAlias('alias', '2')).toThrow(InvalidArgumentError);
  });

  it('accepts relative file paths and refuses anything that leaves the version folder', () => {
    for (const p of ['model.onnx', 'det/model.onnx', 'tokenizer_config.json', '.gitattributes', 'a/b/c/d.bin']) expect(checkFilePath('f', p)).toBe(p);
    for (const p of ['', '/abs', '../up', 'a/../../b', 'a/./b', 'a//b', 'a/', 'a\\b', 'nul\u0000', 'sp ace', `${'a/'.repeat(8)}b`]) {
      expect(() => checkFilePath('f', p), JSON.stringify(p)).toThrow(InvalidArgumentError);
    }
  });

  it('sorts tags and checks their keys like names', () => {
    expect(Object.keys(checkTags('tags', { b: '1', a: '2' }))).toEqual(['a', 'b']);
    expect(() => checkTags('tags', { 'Not Ok': 'x' })).toThrow(InvalidArgumentError);
  });
});
