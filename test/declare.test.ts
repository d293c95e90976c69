import { Type } from '@sinclair/typebox';
import { afterEach, describe, expect, it } from 'vitest';
import { mintToken } from '../src/core/auth.js';
import { ManualClock } from '../src/core/clock.js';
import { integer, json, text } from '../src/core/fields.js';
import { type Doc, defineModule, defineResource } from '../src/core/resource.js';
import { jsonValue } from '../src/core/serialize.js';
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

// A field kept in the stored document alone: a write's hooks may find it as the stored text
// (read it with jsonValue); an upgrade always sees the value.
const Edit = Type.Object({ title: Type.String(), at: Type.String() });
const logV1 = defineResource({
  ...notesV1,
  fields: {
    ...notesV1.fields,
    edits: json(Type.Array(Edit), { computed: true, stored: 'document', notes: 'Every title it had.' }),
  },
  hooks: {
    prepare(doc, before, ctx) {
      const edits = (jsonValue(before?.edits) ?? []) as Doc[];
      doc.edits = [...edits, { title: doc.title, at: new Date(ctx.now).toISOString() }];
    },
  },
});
const logV2 = defineResource({
  ...logV1,
  schemaVersion: 2,
  // Before `edits`, so the key after it in the document stays the same (`version`) and an old
  // row's `edits` is found as text.
  fields: {
    title: logV1.fields.title,
    edit_count: integer({ computed: true, notes: 'How many titles it had.' }),
    edits: logV1.fields.edits,
  },
  hooks: {
    prepare(doc, before, ctx) {
      logV1.hooks?.prepare?.(doc, before, ctx);
      doc.edit_count = (doc.edits as Doc[]).length;
    },
    upgrade(doc) {
      doc.edit_count = (doc.edits as Doc[]).length;
    },
  },
});

describe.each(storeKinds)('declared resources on %s', (kind) => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0)) await c();
  });

  async function appWith(
    resource: typeof notesV1 | typeof notesV2 | typeof logV1 | typeof logV2,
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

  /** A fresh store (dropped after the test) and the headers of a caller in tenant `t`. */
  async function session() {
    const fresh = await freshStore(kind);
    cleanups.push(async () => {
      await fresh.store.close();
      await fresh.drop();
    });
    const token = await mintToken({ secret: testConfig().jwtSecret, tenant: 't', sub: 'usr-x', now: T0, ttl: '1d' });
    return { fresh, headers: { authorization: `Bearer ${token}` } };
  }

  it('serves a new resource from one declaration, and upgrades old rows on read, writing them back on the next write', async () => {
    const { fresh, headers } = await session();
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

  it('a field kept in the document reaches a write as stored text, and an upgrade as its value', async () => {
    const { fresh, headers } = await session();
    const v1 = await appWith(logV1, fresh.store);
    const id = (
      await v1.inject({ method: 'POST', url: '/api/v1/notes/notes', headers, payload: { title: 'a "b"' } })
    ).json().id as string;
    const patched = await v1.inject({
      method: 'PATCH',
      url: `/api/v1/notes/notes/${id}`,
      headers,
      payload: { title: 'c' },
    });
    expect(patched.json().edits.map((e: Doc) => e.title)).toEqual(['a "b"', 'c']);
    await v1.close();
    const v2 = await appWith(logV2, fresh.store);
    const read = await v2.inject({ method: 'GET', url: `/api/v1/notes/notes/${id}`, headers });
    expect(read.json()).toMatchObject({ edit_count: 2, schema_version: 2 });
    const again = await v2.inject({
      method: 'PATCH',
      url: `/api/v1/notes/notes/${id}`,
      headers,
      payload: { title: 'd' },
    });
    expect(again.json()).toMatchObject({ edit_count: 3, schema_version: 2 });
    expect(again.json().edits.map((e: Doc) => e.title)).toEqual(['a "b"', 'c', 'd']);
  });
});
