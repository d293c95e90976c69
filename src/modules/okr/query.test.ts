import { describe, expect, it } from 'vitest';
import {
  evaluate,
  keptQueries,
  MAX_DEPTH,
  MAX_READS,
  parsed,
  parseQuery,
  QUERY_CACHE_CHARS,
  QuerySyntaxError,
} from './query.js';

const A = 'kr_01ARZ3NDEKTSV4RRFFQ69G5FAA';
const B = 'kr_01ARZ3NDEKTSV4RRFFQ69G5FAB';
const values: Record<string, number> = { [A]: 30, [B]: 12 };
const run = (src: string) => evaluate(parseQuery(src), (id) => values[id]);

describe('metric queries: values', () => {
  it.each([
    ['1 + 2 * 3', 7],
    ['(1 + 2) * 3', 9],
    ['10 - 4 - 3', 3],
    ['2 * 3 / 4', 1.5],
    ['-3 + 5', 2],
    ['--3', 3],
    ['+4', 4],
    ['-(2 * 3)', -6],
    ['1.5e2 + .5', 150.5],
    [`kr("${A}")`, 30],
    [`kr('${B}')`, 12],
    [`kr("${A}") / kr("${B}") * 100`, 250],
    [`sum(kr("${A}"), kr("${B}"), 8)`, 50],
    [`avg(kr("${A}"), kr("${B}"))`, 21],
    [`min(kr("${A}"), kr("${B}"), 20)`, 12],
    [`max(kr("${A}"), 99)`, 99],
    [`count(kr("${A}"), kr("${B}"), 1)`, 3],
    [`sum(1, max(2, 3) * 2)`, 7],
    ['  1\n+\t2  ', 3],
    ['0 * -1', 0],
    ['1e15', 1e15],
    ['-1e15', -1e15],
  ])('%s = %s', (src, value) => {
    expect(run(src)).toBe(value);
  });

  it.each([
    ['1 / 0'],
    [`kr("${A}") / (kr("${B}") - 12)`],
    ['1e308 * 10'],
    ['0 / 0'],
    ['1e15 * 2'],
    ['-1e16'],
    ['99999999999 * 99999999999'],
    // Not finite at a step, whatever the steps after make of it.
    [`min(kr("${A}") / (kr("${B}") - 12) * 100, 100)`],
    ['1 / (1 / 0)'],
    ['min(1 / 0, 7)'],
    ['max(-1 / 0, 3)'],
    ['count(1 / 0)'],
    ['1 / (1e200 * 1e200)'],
    ['sum(1e308, 1e308) - 1e308'],
    ['avg(1e308, 1e308) * 0'],
  ])('%s is not a finite number within ±1e15: null (the key result keeps its value)', (src) => {
    expect(run(src)).toBeNull();
  });

  it('lists what it reads once each, in order of appearance', () => {
    expect(parseQuery(`kr("${B}") + kr("${A}") * kr("${B}")`).reads).toEqual([B, A]);
    expect(parseQuery('1 + 2').reads).toEqual([]);
  });

  it('never evaluates JavaScript', () => {
    for (const src of ['process.exit(1)', 'constructor("x")', '[1]', '`1`', '1; 2', 'this', 'kr.constructor']) {
      expect(() => parseQuery(src), src).toThrow(QuerySyntaxError);
    }
  });
});

describe('metric queries: syntax errors name the column', () => {
  it.each([
    ['', 'the query is empty at column 1'],
    ['1 +', 'expected a number, kr("…"), a function or \'(\', found end of query at column 4'],
    ['(1 + 2', "expected ')', found end of query at column 7"],
    ['1 2', "unexpected '2' at column 3"],
    ['1 + ) ', "expected a number, kr(\"…\"), a function or '(', found ')' at column 5"],
    ['foo(1)', 'unknown function foo(): use kr, sum, avg, min, max, count at column 1'],
    ['sum()', 'sum() needs at least one argument at column 5'],
    ['sum(1 2)', "expected ',' or ')' in sum(), found '2' at column 7"],
    ['kr(1)', 'kr() takes a key result id in quotes, like kr("kr_…") at column 4'],
    [
      'kr("obj_01ARZ3NDEKTSV4RRFFQ69G5FAA")',
      '"obj_01ARZ3NDEKTSV4RRFFQ69G5FAA" is not a key result id (kr_ and 26 characters) at column 4',
    ],
    [`kr("${A}"`, "expected ')' after the key result id, found end of query at column 35"],
    ['kr("abc', 'unterminated string at column 4'],
    ['1 % 2', 'unexpected character "%" at column 3'],
    // As written: a whole emoji, not half of it; a number's text, not its value.
    ['😀+1', 'unexpected character "😀" at column 1'],
    ['1..2', "unexpected '.2' at column 3"],
    ['1 1e3', "unexpected '1e3' at column 3"],
    ['sum', "expected '(' after sum, found end of query at column 4"],
  ])('%j: %s', (src, message) => {
    expect(() => parseQuery(src)).toThrow(message);
  });

  it(`refuses nesting deeper than ${MAX_DEPTH} levels and more than ${MAX_READS} key results`, () => {
    expect(() => parseQuery(`${'('.repeat(MAX_DEPTH + 1)}1${')'.repeat(MAX_DEPTH + 1)}`)).toThrow(/nested deeper/);
    expect(parseQuery(`${'('.repeat(MAX_DEPTH)}1${')'.repeat(MAX_DEPTH)}`).reads).toEqual([]);
    expect(() => parseQuery(`${'-'.repeat(MAX_DEPTH + 1)}1`)).toThrow(/nested deeper/);
    expect(evaluate(parseQuery(`${'-'.repeat(MAX_DEPTH)}1`), () => 0)).toBe(1);
    const ids = (n: number) =>
      Array.from({ length: n }, (_, i) => `kr("kr_01ARZ3NDEKTSV4RRFFQ69G${String(i).padStart(4, '0')}")`).join('+');
    expect(parseQuery(ids(MAX_READS)).reads).toHaveLength(MAX_READS);
    expect(() => parseQuery(ids(MAX_READS + 1))).toThrow(/at most 100 key results/);
  });
});

describe('metric queries: the parse cache', () => {
  it('keeps at most QUERY_CACHE_CHARS of query text, the oldest dropped first: long queries do not fill memory', () => {
    // 4,000 characters each (the longest a key result takes): ~196 KB of tree apiece.
    const long = (i: number) => `${String(i).padStart(4, '0')}${'+1'.repeat(1998)}`;
    expect(long(0)).toHaveLength(4000);
    const first = parsed(long(0));
    for (let i = 1; i < 300; i++) parsed(long(i));
    const kept = keptQueries();
    expect(kept.chars).toBeLessThanOrEqual(QUERY_CACHE_CHARS);
    expect(kept.queries).toBe(Math.floor(QUERY_CACHE_CHARS / 4000));
    // The newest is kept: parsed again, the same tree.
    expect(parsed(long(299))).toBe(parsed(long(299)));
    // The oldest was dropped: parsed again, a new tree.
    expect(parsed(long(0))).not.toBe(first);
    // Short ones: at most a thousand, whatever their text.
    for (let i = 0; i < 1500; i++) parsed(`${i} + 1`);
    expect(keptQueries().queries).toBe(1000);
    expect(keptQueries().chars).toBeLessThanOrEqual(QUERY_CACHE_CHARS);
  });
});
