import { describe, expect, it } from 'vitest';
import { ServerKeys } from './secrets.js';

describe('ServerKeys', () => {
  const keys = new ServerKeys(new TextEncoder().encode('a server secret of some length'));

  it('seals with a fresh nonce and opens in the same context only', () => {
    // A password long enough that random base64url cannot hold it by chance ('pw' did, about 1 run in 70).
    const url = 'postgres://u:hunter2-secret@db/x';
    const a = keys.seal(url, 'row-1');
    const b = keys.seal(url, 'row-1');
    expect(a).toMatch(/^sealed:v1:/);
    expect(a).not.toBe(b);
    expect(a).not.toContain('hunter2');
    // Nor its text in another encoding a careless seal might write.
    expect(a).not.toContain(Buffer.from(url).toString('base64url').slice(0, 16));
    expect(keys.open(a, 'row-1')).toBe(url);
    // Moved to another row, altered, or opened under another server secret: refused.
    expect(() => keys.open(a, 'row-2')).toThrow();
    const raw = Buffer.from(a.slice('sealed:v1:'.length), 'base64url');
    raw[15] ^= 1;
    expect(() => keys.open(`sealed:v1:${raw.toString('base64url')}`, 'row-1')).toThrow();
    expect(() => new ServerKeys(new TextEncoder().encode('another secret')).open(a, 'row-1')).toThrow();
    expect(() => keys.open('plain text', 'row-1')).toThrow('not a sealed value');
  });

  it('signs and verifies messages', () => {
    const sig = keys.sign('webhook\u0000t\u0000con_1');
    expect(keys.verify('webhook\u0000t\u0000con_1', sig)).toBe(true);
    expect(keys.verify('webhook\u0000t\u0000con_2', sig)).toBe(false);
    expect(keys.verify('webhook\u0000t\u0000con_1', `${sig}x`)).toBe(false);
  });
});
