import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { errorRegistry } from '../src/core/errors.js';

describe('error registry', () => {
  const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
  const documented = new Map(
    [...doc.matchAll(/^\| `([a-z_]+)`\s*\| (\d{3})\s*\|/gm)].map((m) => [m[1], Number(m[2])] as const),
  );

  it.each(Object.entries(errorRegistry))('documents %s with its status', (code, entry) => {
    expect(documented.get(code)).toBe(entry.status);
  });

  it('documents no code the registry lacks', () => {
    expect([...documented.keys()].filter((c) => !(c in errorRegistry))).toEqual([]);
  });
});
