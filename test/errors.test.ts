import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ApiError, errorRegistry } from '../src/core/errors.js';

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

describe('ApiError', () => {
  const frames = (err: Error) => (err.stack ?? '').split('\n').filter((line) => line.trim().startsWith('at ')).length;

  it('captures no stack for a client error (never logged with one), and leaves the limit as it was', () => {
    const limit = Error.stackTraceLimit;
    const err = new ApiError('not_found', 'No KeyResult with id kr_1');
    expect([err.status, err.message, frames(err)]).toEqual([404, 'No KeyResult with id kr_1', 0]);
    expect(Error.stackTraceLimit).toBe(limit);
    expect(frames(new Error('plain'))).toBeGreaterThan(0);
  });

  it('keeps the stack of a server error, for the log', () => {
    expect(frames(new ApiError('internal_error'))).toBeGreaterThan(0);
    expect(frames(new ApiError('service_unavailable'))).toBeGreaterThan(0);
  });
});

describe('a 503 for an outage', () => {
  it('keeps its cause for the log (a warning naming it), and answers none of it', async () => {
    const { asApiError, toProblem } = await import('../src/http/problem.js');
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    const err = asApiError(refused);
    expect([err.status, err.code, err.headers?.['retry-after']]).toEqual([503, 'service_unavailable', '1']);
    expect(err.cause).toBe(refused);
    expect(JSON.stringify(toProblem(err, 'req_1'))).not.toContain('ECONNREFUSED');
  });
});
