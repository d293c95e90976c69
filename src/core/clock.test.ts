import { describe, expect, it } from 'vitest';
import { isoTime } from './clock.js';

describe('isoTime', () => {
  it('prints each instant as RFC 3339 UTC with milliseconds, the same instant twice alike', () => {
    const instants = [0, 1_764_361_765_123, 1_764_361_765_123, 1_764_361_765_124, 0, -1, 253_402_300_799_999];
    expect(instants.map(isoTime)).toEqual([
      '1970-01-01T00:00:00.000Z',
      '2025-11-28T20:29:25.123Z',
      '2025-11-28T20:29:25.123Z',
      '2025-11-28T20:29:25.124Z',
      '1970-01-01T00:00:00.000Z',
      '1969-12-31T23:59:59.999Z',
      '9999-12-31T23:59:59.999Z',
    ]);
    expect(() => isoTime(Number.NaN)).toThrow(RangeError);
  });
});
