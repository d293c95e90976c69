import { Type } from '@sinclair/typebox';
import { describe, expect, it } from 'vitest';
import { json, stringList, text } from './fields.js';
import { type Doc, defineResource, type Resource } from './resource.js';
import { asciiJson, documentMember, JsonText, listJson, serializeDoc, utf8 } from './serialize.js';

describe('utf8', () => {
  // Mostly ASCII fits the first guess; dense multi-byte text makes the buffer grow, once or more,
  // and a surrogate pair must never be cut where the buffer was full.
  const cases: [string, (string | Buffer)[]][] = [
    ['empty', []],
    ['ASCII only', ['{"a":1}', ',', '{"b":2}']],
    ['an em dash in ASCII', ['{"title":"Key result 7 — grow"}']],
    ['all three-byte characters', ['—'.repeat(5000)]],
    ['astral characters (surrogate pairs)', ['🎯'.repeat(3000), 'x', '🎯']],
    ['a buffer between strings', ['é'.repeat(100), Buffer.from('[1,2]'), 'ü'.repeat(2000)]],
    ['a lone surrogate', ['a\ud800b']],
  ];
  it.each(cases)('%s: the bytes Buffer.from gives for the whole', (_name, parts) => {
    const expected = Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : p)));
    expect(utf8(parts).equals(expected)).toBe(true);
  });
});

describe('asciiJson', () => {
  // Units past U+007F, at the edges of the ranges, in strings that also hold escapes of their own.
  const values: [string, unknown][] = [
    ['ASCII only (the same text back)', { a: 'plain \u007f', b: [1, null, true] }],
    ['Latin-1', { name: 'Zürich é ÿ \u0080' }],
    ['three-byte characters', { title: 'Key result 7 — grow 成長 \uffff' }],
    ['astral characters (surrogate pairs)', ['🎯', 'x🚀y']],
    ['a lone surrogate', { s: 'a\ud800b\udfff' }],
    ['escapes next to them', { s: '"—"\\\n\u2028\t' }],
    ['long runs of them, first and last in a string', ['日本語のテキスト'.repeat(40), 'é', `${'x'.repeat(50)}—`]],
  ];
  it.each(values)('%s: ASCII text that reads back as the same value', (_name, value) => {
    const json = JSON.stringify(value);
    const ascii = asciiJson(json);
    expect(ascii).toMatch(/^[\x20-\x7f]*$/);
    expect(JSON.parse(ascii)).toEqual(JSON.parse(json));
    if (!/[\u0080-\uffff]/.test(json)) expect(ascii).toBe(json);
  });
  it('writes a unit as four lower-case hex digits', () => {
    expect(asciiJson('"é—🎯"')).toBe('"\\u00e9\\u2014\\ud83c\\udfaf"');
  });
});

describe('listJson', () => {
  const docs = ['{"id":"kr_1","title":"Ünïcode — 🎯"}', '{"id":"kr_2","title":"plain"}', '{"id":"kr_3"}'];
  it.each([
    ['documents as strings', docs],
    ['documents as one buffer, joined by commas', Buffer.from(docs.join(','))],
    ['one document as a string', docs.slice(0, 1)],
  ])('%s: the same envelope, as bytes', (_name, documents) => {
    const body = listJson(documents, true, 'c"1');
    expect(Buffer.isBuffer(body)).toBe(true);
    const count = Buffer.isBuffer(documents) ? docs.length : documents.length;
    expect(JSON.parse(body.toString('utf8'))).toEqual({
      object: 'list',
      data: docs.slice(0, count).map((d) => JSON.parse(d)),
      has_more: true,
      next_cursor: 'c"1',
    });
  });
  it('an empty page', () => {
    for (const empty of [[], Buffer.alloc(0)]) {
      expect(listJson(empty, false, null).toString()).toBe(
        '{"object":"list","data":[],"has_more":false,"next_cursor":null}',
      );
    }
  });
});

describe('members kept as text in a stored document', () => {
  const Entry = Type.Object({
    at: Type.String({ format: 'date-time' }),
    value: Type.Number(),
    note: Type.Union([Type.String(), Type.Null()]),
  });
  const fields = {
    title: text({ required: true, notes: 'A title.' }),
    log: json(Type.Array(Entry), { computed: true, stored: 'document', notes: 'Entries.' }),
    tags: stringList({ notes: 'Tags.' }),
  };
  const logs = defineResource({
    module: 'test',
    name: 'Log',
    path: 'logs',
    idPrefix: 'log',
    schemaVersion: 1,
    description: 'A resource with a member kept in its document.',
    titleField: 'title',
    fields,
    sortable: ['created_at'],
    filterable: [],
  });
  // The same with the member serialized last: without a key after it, its end is not searched for.
  const { version: _, tags: __, ...leading } = logs.allFields;
  const logsLast = { ...logs, allFields: leading } as unknown as Resource;
  // Values that look like the markers the search uses, inside strings (escaped there).
  const tricky = [
    'plain',
    'a "quoted" word',
    'back\\slash \\" and \\\\',
    '],"tags":["x"]',
    '{"at":"2026-01-01T00:00:00.000Z"}',
    '"log":[]',
    '}]}',
    'über — 🎯 \u2028 line\nbreak',
  ];
  const doc = (log: unknown, title = 'title with "log":[1] inside'): Doc => ({
    ...Object.fromEntries(Object.keys(logs.allFields).map((name) => [name, null])),
    id: 'log_01JABCDEFGHJKMNPQRSTVWXYZ0',
    tenant_id: 't',
    created_at: '2026-01-01T00:00:00.000Z',
    updated_at: '2026-01-01T00:00:00.000Z',
    is_deleted: false,
    schema_version: 1,
    title,
    log,
    tags: ['a', 'b]', '{"'],
    version: 3,
  });
  const entries = tricky.map((note, i) => ({ at: `2026-01-0${(i % 9) + 1}T00:00:00.000Z`, value: i + 0.5, note }));

  it.each([
    ['tricky notes', entries],
    ['one entry with a null note', [{ at: '2026-01-01T00:00:00.000Z', value: 1, note: null }]],
    ['no entries', []],
  ])('%s: cut out exactly, and spliced back into the same bytes', (_name, log) => {
    const stored = serializeDoc(logs, doc(log));
    const member = documentMember(logs, stored, 'log');
    expect(member).toBeInstanceOf(JsonText);
    expect((member as JsonText).value).toEqual(log);
    expect(serializeDoc(logs, doc(member))).toBe(stored);
    expect(JSON.stringify({ log: member })).toBe(JSON.stringify({ log }));
  });

  it('a null member is null; a document without it, or not of this layout, is left to the parser', () => {
    expect(documentMember(logs, serializeDoc(logs, doc(null)), 'log')).toBeNull();
    expect(documentMember(logs, '{"id":"log_1","title":"t"}', 'log')).toBeUndefined();
    expect(documentMember(logs, '{"id":"log_1","log":{"a":1},"tags":null}', 'log')).toBeUndefined();
    expect(documentMember(logsLast, serializeDoc(logsLast, doc([])), 'log')).toBeUndefined();
    // Stored by a build that serialized another array after it, `tags` only later.
    expect(documentMember(logs, '{"id":"log_1","log":[{"at":"x"}],"old":["y"],"tags":[]}', 'log')).toBeUndefined();
    expect(documentMember(logs, serializeDoc(logs, doc(entries)), 'title')).toBeUndefined();
  });

  it('only where string search is exact: an array of flat objects, with no objects serialized before it', () => {
    const nested = defineResource({
      ...logs,
      fields: { ...fields, log: json(Type.Array(Type.Object({ at: Type.Array(Type.String()) })), fields.log) },
    });
    const behind = defineResource({
      ...logs,
      fields: { meta: json(Type.Object({ log: Type.Array(Type.String()) }), { notes: 'Meta.' }), ...fields },
    });
    for (const resource of [nested, behind]) {
      const stored = serializeDoc(resource, { ...doc([]), meta: { log: [] } });
      expect(documentMember(resource, stored, 'log')).toBeUndefined();
    }
  });
});
