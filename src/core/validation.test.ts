import { describe, expect, it } from 'vitest';
import { stringList, text } from './fields.js';
import { bodyShapeProblem, checkField } from './validation.js';

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
