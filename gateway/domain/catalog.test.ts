import { describe, expect, it } from 'vitest';
import { ModelCatalog } from './catalog.js';

function synced() {
  const c = new ModelCatalog();
  c.beginSnapshot();
  c.apply({ type: 'version_created', model: 'glove', version: 1, task: 'embedding' });
  c.apply({ type: 'version_created', model: 'glove', version: 2, task: 'embedding' });
  c.apply({ type: 'alias_set', model: 'glove', alias: 'default', version: 1, task: 'embedding' });
  c.endSnapshot();
  return c;
}

describe('ModelCatalog', () => {
  it('answers unknown until the first snapshot is complete', () => {
    const c = new ModelCatalog();
    c.beginSnapshot();
    c.apply({ type: 'alias_set', model: 'glove', alias: 'default', version: 1, task: 'embedding' });
    expect(c.resolve({ name: 'glove' })).toEqual({ status: 'unknown' });
    c.endSnapshot();
    expect(c.resolve({ name: 'glove' })).toMatchObject({ status: 'found', version: 1 });
  });

  it('resolves the default alias, a named alias and an exact version like the registry', () => {
    const c = synced();
    expect(c.resolve({ name: 'glove' })).toEqual({ status: 'found', name: 'glove', version: 1, task: 'embedding' });
    expect(c.resolve({ name: 'glove', version: 2 })).toMatchObject({ status: 'found', version: 2 });
    expect(c.resolve({ name: 'glove', version: 3 })).toMatchObject({ status: 'not_found', resource: 'version' });
    expect(c.resolve({ name: 'glove', alias: 'prod' })).toMatchObject({ status: 'not_found', resource: 'alias' });
    expect(c.resolve({ name: 'nope' })).toMatchObject({ status: 'not_found', resource: 'model' });
  });

  it('follows alias moves and deletions as events arrive', () => {
    const c = synced();
    c.apply({ type: 'alias_set', model: 'glove', alias: 'default', version: 2, task: 'embedding' });
    expect(c.resolve({ name: 'glove' })).toMatchObject({ version: 2 });
    c.apply({ type: 'alias_deleted', model: 'glove', alias: 'default', task: 'embedding' });
    expect(c.resolve({ name: 'glove' })).toMatchObject({ status: 'not_found' });
    c.apply({ type: 'model_deleted', model: 'glove' });
    expect(c.resolve({ name: 'glove', version: 1 })).toMatchObject({ status: 'not_found', resource: 'model' });
  });

  it('keeps answering from the old state while a new snapshot is read', () => {
    const c = synced();
    c.beginSnapshot();
    c.apply({ type: 'alias_set', model: 'other', alias: 'default', version: 1, task: 'generation' });
    expect(c.resolve({ name: 'glove' })).toMatchObject({ status: 'found' });
    c.endSnapshot();
    expect(c.resolve({ name: 'glove' })).toMatchObject({ status: 'not_found' });
    expect(c.list().map((m) => m.name)).toEqual(['other']);
  });
});
