import { describe, expect, it } from 'vitest';
import { nestsDeeperThan } from './validation.js';

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
