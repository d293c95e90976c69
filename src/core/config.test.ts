import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { describeConfig, loadConfig, redactedUrl } from './config.js';

const env = { EDM_JWT_SECRET: 'x'.repeat(32), EDM_SECRET_KEY: 'y'.repeat(32) };

describe('describeConfig: the line `edm serve` logs at start', () => {
  it.each([
    [{}, 'store sqlite:', 'tokens: HS256 secret; rate limit: off; request timeout: 30000 ms'],
    [
      { EDM_DATABASE_URL: 'postgres://edm:hunter2@db.internal:5432/okr', EDM_RATE_LIMIT: '100' },
      'store postgres://edm:***@db.internal:5432/okr',
      'rate limit: 100 calls per 1000 ms per caller; request timeout: 30000 ms',
    ],
    [{ EDM_REQUEST_TIMEOUT_MS: '0' }, 'store sqlite:', 'request timeout: none'],
  ])('%o', (vars, start, end) => {
    const line = describeConfig(loadConfig({ ...env, ...vars }));
    expect(line.startsWith(start)).toBe(true);
    expect(line.endsWith(end)).toBe(true);
    expect(line).not.toContain('hunter2');
    expect(line).not.toContain('x'.repeat(32));
  });

  it('names the token checks configured, and local mode', () => {
    // No HS256 secret configured: one is generated (unused) under the data dir.
    const keyOnly = loadConfig({
      EDM_SECRET_KEY: 'y'.repeat(32),
      EDM_JWKS_URL: 'https://id.example/jwks.json',
      EDM_DATA_DIR: mkdtempSync(join(tmpdir(), 'edm-config-')),
    });
    expect(describeConfig(keyOnly)).toContain('tokens: JWKS https://id.example/jwks.json;');
    const local = { ...loadConfig(env), localMode: true };
    expect(describeConfig(local)).toContain('tokens: local mode');
  });
});

describe('redactedUrl', () => {
  it.each([
    ['postgres://u:secret@h/db', 'postgres://u:***@h/db'],
    ['postgresql://u@h:5433/db?sslmode=require', 'postgresql://u@h:5433/db?sslmode=require'],
    ['sqlite:/var/lib/edm/edm.sqlite', 'sqlite:/var/lib/edm/edm.sqlite'],
  ])('%s → %s', (url, expected) => {
    expect(redactedUrl(url)).toBe(expected);
  });
});
