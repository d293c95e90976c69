import { describe, expect, it } from 'vitest';
import { stringList, text } from './fields.js';
import { bodyShapeProblem, checkField, duplicateMemberPath, isDate, isDateTime } from './validation.js';

describe('bodyShapeProblem', () => {
  const deep = (max: number) => `The body nests arrays and objects deeper than ${max} levels`;
  const wide = (max: number) => `The body has an object or array of more than ${max} members`;
  it.each([
    ['{}', 1, 10, null],
    ['{"a":[1,{"b":2}]}', 3, 10, null],
    ['{"a":[1,{"b":2}]}', 2, 10, deep(2)],
    ['[[[]]]', 2, 10, deep(2)],
    // Brackets and commas inside strings are text, escaped quotes included.
    ['{"a":"[[[[{{{{,,,,"}', 1, 2, null],
    ['{"a":"\\"[[[[","b":1}', 1, 10, null],
    ['{"a":"\\\\","b":[[1]]}', 2, 10, deep(2)],
    ['[1],[2],[3]', 1, 10, null],
    // Members are counted per object or array: three of three, then four.
    ['{"a":1,"b":[1,2,3],"c":{"d":1,"e":2}}', 5, 3, null],
    ['{"a":1,"b":[1,2,3,4],"c":3}', 5, 3, wide(3)],
    ['{"a":1,"b":2,"c":3,"d":4}', 5, 3, wide(3)],
    // A level's count starts over with each object or array opened at it.
    ['[[1,2,3],[1,2,3],[1,2,3]]', 5, 3, null],
  ] as const)('%s (depth %i, members %i): %s', (text, depth, members, problem) => {
    expect(bodyShapeProblem(text, depth, members)).toBe(problem);
  });
});

describe('duplicateMemberPath', () => {
  it.each([
    ['{"a":1,"b":2}', null],
    ['{"title":"a","title":"b"}', '/title'],
    ['{ "a" : 1 ,\n "a" : 2 }', '/a'],
    ['{"a":{"x":1,"x":2}}', '/a/x'],
    ['[{"a":1},{"a":1,"a":2}]', '/1/a'],
    // Colons, quotes and brackets inside strings are text.
    ['{"a":"x:y","b":"::{[","c":"\\":"}', null],
    // The same name escaped another way is the same name.
    ['{"\\u0061":1,"a":2}', '/a'],
    ['{"a\\"b":1,"c":{"d":[1,{"e":"\\\\"}]},"a\\"b":2}', '/a"b'],
    ['{"a/b":1,"a/b":2}', '/a~1b'],
    ['{"x":[true,false,null,-1.5e3,"s"],"y":{}}', null],
    ['{}', null],
    ['[]', null],
    ['"x"', null],
    ['1', null],
  ] as const)('%s: %s', (text, expected) => {
    const named = { members: 0 };
    expect(bodyShapeProblem(text, undefined, undefined, named)).toBeNull();
    expect(duplicateMemberPath(text, JSON.parse(text), named.members)).toBe(expected);
  });
});

// RFC 3339 date-times of real days (hours 00–23, offsets within ±23:59, no leap second), and
// dates, in years 0001–9999 once in UTC: the first instant is taken, the end of 9999 is not.
describe('isDateTime and isDate', () => {
  it.each([
    ['0001-01-01T00:00:00Z', true],
    ['0001-01-01T00:30:00+01:00', false],
    ['9999-12-31T23:59:59.999Z', true],
    ['9999-12-31T23:00:00-01:00', false],
    ['9999-12-31T22:59:59.999-01:00', true],
    ['2026-11-30T23:59:59+23:59', true],
    ['2026-11-30T09:00:00+24:00', false],
    ['2026-11-30T24:00:00Z', false],
    ['2026-11-30T23:60:00Z', false],
    ['2026-11-30T23:59:60Z', false],
    ['2026-11-30t09:00:00.123456789z', true],
    ['2026-11-30T09:00:00', false],
    ['2024-02-29T00:00:00Z', true],
    ['2026-02-29T00:00:00Z', false],
  ] as const)('isDateTime(%j) is %s', (value, expected) => {
    expect(isDateTime(value)).toBe(expected);
  });

  it.each([
    ['0001-01-01', true],
    ['0000-12-31', false],
    ['9999-12-31', true],
    ['2024-02-29', true],
    ['2026-02-29', false],
    ['2026-04-31', false],
    ['2026-13-01', false],
    ['2026-1-01', false],
  ] as const)('isDate(%j) is %s', (value, expected) => {
    expect(isDate(value)).toBe(expected);
  });
});

describe('checkField: text that must not be empty shows a character', () => {
  const title = text({ notes: 'A title.', required: true, minLength: 1, maxLength: 200 });
  const note = text({ notes: 'A note.', maxLength: 200 });
  const tags = stringList({ notes: 'Tags.', maxItems: 32, itemMinLength: 1, itemMaxLength: 64 });

  it.each([
    ' ',
    '\t\r\n',
    '\u00a0\u2003\u3000',
    '\u200b\ufeff',
    '\u0001\u001f\u007f',
    // Shown as nothing, though not format characters: Hangul fillers, a variation selector, U+034F.
    '\u3164',
    '\uffa0\u115f\u1160',
    '\ufe0f\u034f\u17b4',
    // Over the limit in UTF-16 units only (limits count characters).
    '\u{e0020}'.repeat(101),
  ])('refuses %j as a title, naming it (blank)', (value) => {
    expect(checkField('title', title, value)).toEqual([
      { path: '/title', code: 'blank', message: 'title: must show a character, not only spaces or invisible ones' },
    ]);
  });

  it.each(['x', '  a  ', '🙂', '\u200bx', '·', '❤\ufe0f', '\u3164x'])('takes %j as a title', (value) => {
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
