import { describe, expect, it } from 'vitest';
import { stringList, text } from './fields.js';
import { checkField, nestsDeeperThan } from './validation.js';

describe('nestsDeeperThan', () => {
  it.each([
    ['{}', 1, false],
    ['{"a":[1,{"b":2}]}', 3, false],
    ['{"a":[1,{"b":2}]}', 2, true],
    ['[[[]]]', 2, true],
    // Brackets inside strings are text, escaped quotes included.
    ['{"a":"[[[[{{{{"}', 1, false],
    ['{"a":"\\"[[[[","b":1}', 1, false],
    ['{"a":"\\\\","b":[[1]]}', 2, true],
    ['[1],[2],[3]', 1, false],
  ] as const)('%s deeper than %i: %s', (text, max, deeper) => {
    expect(nestsDeeperThan(text, max)).toBe(deeper);
  });
});

describe('checkField: text that must not be empty shows a character', () => {
  const title = text({ notes: 'A title.', required: true, minLength: 1, maxLength: 200 });
  const note = text({ notes: 'A note.', maxLength: 200 });
  const tags = stringList({ notes: 'Tags.', maxItems: 32, itemMinLength: 1, itemMaxLength: 64 });

  it.each([' ', '\t\r\n', '\u00a0\u2003\u3000', '\u200b\ufeff', '\u0001\u001f\u007f'])(
    'refuses %j as a title, naming it (blank)',
    (value) => {
      expect(checkField('title', title, value)).toEqual([
        { path: '/title', code: 'blank', message: 'title: must show a character, not only spaces or invisible ones' },
      ]);
    },
  );

  it.each(['x', '  a  ', '🙂', '\u200bx', '·'])('takes %j as a title', (value) => {
    expect(checkField('title', title, value)).toEqual([]);
  });

  it('leaves text that may be empty alone, and names a blank tag by its index', () => {
    expect(checkField('note', note, '   ')).toEqual([]);
    expect(checkField('tags', tags, ['growth', ' '])).toEqual([
      { path: '/tags/1', code: 'blank', message: 'tags/1: must show a character, not only spaces or invisible ones' },
    ]);
    expect(checkField('tags', tags, ['growth', 'q4 '])).toEqual([]);
  });
});

describe('checkField: the first error of a large value', () => {
  const tags = stringList({ notes: 'Tags.', maxItems: 32, itemMinLength: 1, itemMaxLength: 64 });

  it('answers a 520,000-item list by its length, without reading an item (each would be an error to build)', () => {
    let reads = 0;
    const items = new Proxy(Array(520_000).fill(1), {
      get(target, key, receiver) {
        if (typeof key === 'string' && /^\d+$/.test(key)) reads++;
        return Reflect.get(target, key, receiver);
      },
    });
    expect(checkField('tags', tags, items)).toEqual([
      { path: '/tags', code: 'too_many_items', message: 'tags: Expected array length to be less or equal to 32' },
    ]);
    expect(reads).toBe(0);
  });

  it('names the first bad item of a list within its limits', () => {
    expect(checkField('tags', tags, ['ok', 2, 3])).toEqual([
      { path: '/tags/1', code: 'invalid_type', message: 'tags/1: Expected string' },
    ]);
  });
});
