import { afterEach, describe, expect, it } from 'vitest';
import { mintToken } from '../src/core/auth.js';
import { ManualClock } from '../src/core/clock.js';
import { integer, text } from '../src/core/fields.js';
import { defineModule, defineResource } from '../src/core/resource.js';
import { buildApp } from '../src/http/app.js';
import { freshStore, storeKinds, T0, testConfig } from './helpers.js';

// A resource declared in a test: one declaration is a whole working resource.
const notesV1 = defineResource({
  module: 'notes',
  name: 'Note',
  path: 'notes',
  idPrefix: 'note',
  schemaVersion: 1,
  description: 'A short note.',
  titleField: 'title',
  fields: { title: text({ required: true, maxLength: 100, notes: 'The note.' }) },
  sortable: ['created_at', 'title'],
  filterable: ['title'],
});

const notesV2 = defineResource({
  ...notesV1,
  schemaVersion: 2,
  fields: {
    ...notesV1.fields,
    words: integer({ computed: true, notes: 'Words in the title.' }),
  },
  hooks: {
    prepare(doc) {
      doc.words = String(doc.title ?? '')
        .split(/\s+/)
        .filter(Boolean).length;
    },
    upgrade(doc, from) {
      if (from < 2)
        doc.words = String(doc.title ?? '')
          .split(/\s+/)
          .filter(Boolean).length;
    },
  },
});

describe.each(storeKinds)('declared resources on %s', (kind) => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0)) await c();
  });

  async function appWith(
    resource: typeof notesV1 | typeof notesV2,
    store: Awaited<ReturnType<typeof freshStore>>['store'],
  ) {
    const app = await buildApp({
      config: testConfig(),
      store,
      clock: new ManualClock(T0),
      modules: [defineModule({ name: 'notes', description: 'Notes.', resources: [resource] })],
    });
    cleanups.unshift(() => app.close());
    return app;
  }

  it('serves a new resource from one declaration, and upgrades old rows on read, writing them back on the next write', async () => {
    const fresh = await freshStore(kind);
    cleanups.push(async () => {
      await fresh.store.close();
      await fresh.drop();
    });
    const token = await mintToken({ secret: testConfig().jwtSecret, tenant: 't', sub: 'usr-x', now: T0, ttl: '1d' });
    const headers = { authorization: `Bearer ${token}` };
    const v1 = await appWith(notesV1, fresh.store);
    const created = await v1.inject({
      method: 'POST',
      url: '/api/v1/notes/notes',
      headers,
      payload: { title: 'three little words' },
    });
    expect(created.statusCode).toBe(201);
    const id = created.json().id as string;
    expect(id).toMatch(/^note_/);
    const bad = await v1.inject({ method: 'POST', url: '/api/v1/notes/notes', headers, payload: { title: 1 } });
    expect(bad.statusCode).toBe(400);
    await v1.close();

    const v2 = await appWith(notesV2, fresh.store);
    const read = await v2.inject({ method: 'GET', url: `/api/v1/notes/notes/${id}`, headers });
    expect(read.json()).toMatchObject({ words: 3, schema_version: 2, version: 1 });
    const listed = await v2.inject({ method: 'GET', url: '/api/v1/notes/notes', headers });
    expect(listed.json().data[0]).toMatchObject({ id, words: 3, schema_version: 2 });
    const stored = () =>
      fresh.store.db
        .selectFrom('notes_notes')
        .select(['schema_version', 'words'])
        .where('id', '=', id)
        .executeTakeFirstOrThrow();
    expect(await stored()).toEqual({ schema_version: 1, words: null });
    const patched = await v2.inject({
      method: 'PATCH',
      url: `/api/v1/notes/notes/${id}`,
      headers,
      payload: { source: 'import' },
    });
    expect(patched.json()).toMatchObject({ words: 3, schema_version: 2, version: 2 });
    expect(await stored()).toEqual({ schema_version: 2, words: 3 });
  });
});
