import { describe, expect, it } from 'vitest';
import { listJson, utf8 } from './serialize.js';

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
