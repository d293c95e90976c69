import SQLite from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { compareText, inSortOrder } from './sort-order.js';

describe('inSortOrder: a packed page in the order its query asked for', () => {
  const cases: [string, unknown[], string[], boolean, boolean, boolean][] = [
    // name, keys, ids, desc, nullsLast, in order
    ['ascending numbers', [1, 2, 3], ['a', 'b', 'c'], false, false, true],
    ['a swapped pair', [1, 3, 2], ['a', 'b', 'c'], false, false, false],
    ['descending numbers', [3, 2.5, -1], ['a', 'b', 'c'], true, false, true],
    ['equal keys: ids ascending', [1, 1, 2], ['a', 'b', 'c'], false, false, true],
    ['equal keys: ids out of order', [1, 1], ['b', 'a'], false, false, false],
    ['equal keys, descending: ids descending', [1, 1], ['b', 'a'], true, false, true],
    ['a repeated row', [1, 1], ['a', 'a'], false, false, false],
    ['nulls last, ascending', [1, 2, null, null], ['a', 'b', 'c', 'd'], false, true, true],
    ['nulls last, descending', [2, 1, null, null], ['a', 'b', 'd', 'c'], true, true, true],
    ['a null before a value under nulls last', [null, 1], ['a', 'b'], false, true, false],
    ["SQLite's own: null first ascending", [null, 1], ['a', 'b'], false, false, true],
    ["SQLite's own: null last descending", [1, null], ['a', 'b'], true, false, true],
    ['numbers before text', [9, '1'], ['a', 'b'], false, false, true],
    ['text before numbers', ['1', 9], ['a', 'b'], false, false, false],
    ['code points, not UTF-16 units', ['\uffff', '😀'], ['a', 'b'], false, false, true],
    ['UTF-16 order is not code-point order', ['😀', '\uffff'], ['a', 'b'], false, false, false],
    ['an integer JSON may have rounded', [2 ** 53, 2 ** 53 + 2], ['a', 'b'], false, false, false],
    ['a value of another type', [true, false], ['a', 'b'], false, false, false],
    ['keys and ids of different lengths', [1, 2], ['a'], false, false, false],
    ['one row', ['x'], ['a'], false, false, true],
  ];
  it.each(cases)('%s', (_name, keys, ids, desc, nullsLast, expected) => {
    expect(inSortOrder(keys, ids, desc, nullsLast)).toBe(expected);
  });

  // The check must agree with SQLite itself: it says yes to SQLite's order under every sort
  // (mixed values, ties, empty ones, characters on both sides of U+FFFF) and no once two rows
  // that SQLite tells apart are swapped.
  it('agrees with SQLite on its own ORDER BY, and refuses every swap of rows SQLite tells apart', () => {
    const db = new SQLite(':memory:');
    db.exec('create table t (id text primary key, k)');
    const texts = ['a', 'B', 'b', 'é', 'Ω', '\ue000', '\uffff', '😀', '𝄞', 'a😀', 'a\uffff', ''];
    const values = [null, 0, -1.5, 1 / 3, 2, 2, 1e15 + 0.5, 2 ** 53 - 1, ...texts];
    const insert = db.prepare('insert into t values (?, ?)');
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let i = 0; i < 60; i++)
      insert.run(`id${String(i).padStart(3, '0')}`, values[Math.floor(random() * values.length)]);
    let swaps = 0;
    for (const desc of [false, true]) {
      for (const nullsLast of [false, true]) {
        const dir = desc ? 'desc' : 'asc';
        const sql = `select json_group_array(k) as keys, group_concat(id) as ids from (select id, k from t order by k ${dir}${nullsLast ? ' nulls last' : ''}, id ${dir})`;
        const row = db.prepare(sql).get() as { keys: string; ids: string };
        const keys = JSON.parse(row.keys) as unknown[];
        const ids = row.ids.split(',');
        expect(inSortOrder(keys, ids, desc, nullsLast), `${dir} nulls last ${nullsLast}`).toBe(true);
        for (let i = 1; i < ids.length; i++) {
          const swappedKeys = [...keys];
          const swappedIds = [...ids];
          [swappedKeys[i - 1], swappedKeys[i]] = [swappedKeys[i], swappedKeys[i - 1]];
          [swappedIds[i - 1], swappedIds[i]] = [swappedIds[i], swappedIds[i - 1]];
          swaps++;
          expect(inSortOrder(swappedKeys, swappedIds, desc, nullsLast), `swap at ${i}`).toBe(false);
        }
      }
    }
    expect(swaps).toBe(4 * 59);
    db.close();
  });

  it('compares text by code point', () => {
    const sorted = ['', 'A', 'a', 'ab', 'é', '\ue000', '\uffff', '😀', '𝄞'].sort(compareText);
    expect(sorted).toEqual(['', 'A', 'a', 'ab', 'é', '\ue000', '\uffff', '𝄞', '😀']);
  });
});
