import { decodeTime } from 'ulid';
import { describe, expect, it, vi } from 'vitest';
import { base32x8, newId, ulid } from './ids.js';

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
/** Base 32 digit by digit, as the encoding is defined. */
function reference(n: number): string {
  let out = '';
  for (let i = 0; i < 8; i++) {
    out = CROCKFORD[n % 32] + out;
    n = Math.floor(n / 32);
  }
  return out;
}

describe('ids', () => {
  it('encodes 40 bits as 8 Crockford characters, as digit by digit', () => {
    const edges = [0, 1, 31, 32, 1023, 1024, 2 ** 20 - 1, 2 ** 20, 2 ** 30, 2 ** 39, 2 ** 40 - 1];
    const random = Array.from({ length: 2000 }, () => Math.floor(Math.random() * 2 ** 40));
    for (const n of [...edges, ...random]) expect(base32x8(n), String(n)).toBe(reference(n));
  });

  it('makes ULIDs of the time now that sort as they were made, within a millisecond too', () => {
    const before = Date.now();
    const ids = Array.from({ length: 5000 }, () => ulid());
    const after = Date.now();
    for (const id of ids) expect(id).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
    const times = ids.map((id) => decodeTime(id));
    expect(Math.min(...times)).toBeGreaterThanOrEqual(before);
    expect(Math.max(...times)).toBeLessThanOrEqual(after);
    expect(newId('kr')).toMatch(/^kr_[0-9A-HJKMNP-TV-Z]{26}$/);
  });

  // Set back, the clock made ids that sorted before those made earlier (ids are a list's
  // order where times tie, and a cursor's position).
  it('makes ULIDs that sort after the ones before when the clock is set back, at the last time until it is past', () => {
    const start = Date.now() + 60_000;
    vi.useFakeTimers({ toFake: ['Date'], now: start });
    try {
      const before = ulid();
      vi.setSystemTime(start - 3_600_000);
      const after = [ulid(), ulid()];
      expect([before, ...after].sort()).toEqual([before, ...after]);
      expect(after.map((id) => decodeTime(id))).toEqual([start, start]);
      vi.setSystemTime(start + 1);
      expect(decodeTime(ulid())).toBe(start + 1);
    } finally {
      vi.useRealTimers();
    }
  });
});
