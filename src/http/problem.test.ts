import { describe, expect, it } from 'vitest';
import { isUnavailable } from './problem.js';

/** An error as node-postgres gives a server's: its SQLSTATE, routine and message. */
const pgError = (code: string, message: string, routine?: string) =>
  Object.assign(new Error(message), { code, ...(routine ? { routine } : {}) });

describe('which database errors are a 503 (unavailable)', () => {
  it.each([
    // A database closed to sessions, in English and under another lc_messages (the routine says it).
    [pgError('55000', 'database "x" is not currently accepting connections', 'CheckMyDatabase'), true],
    [pgError('55000', 'la base de données « x » n’accepte plus les connexions', 'CheckMyDatabase'), true],
    // 55000 raised by another routine is no outage: a lock, a sequence not yet read.
    [pgError('55000', 'currval of sequence "s" is not yet defined in this session', 'currval_oid'), false],
    [pgError('57P04', 'database dropped'), true],
    // PgBouncer's own refusals, all under 08P01: a pooler full or waiting is a database away.
    [pgError('08P01', 'no more connections allowed (max_client_conn)'), true],
    [pgError('08P01', 'query_wait_timeout'), true],
    [Object.assign(new Error('getaddrinfo ENOTFOUND db'), { code: 'ENOTFOUND' }), true],
    [Object.assign(new Error('connect ENOENT /tmp/.s.PGSQL.5432'), { code: 'ENOENT', syscall: 'connect' }), true],
    // A file that is not there is no database away (SQLite's is a storage fault).
    [Object.assign(new Error('ENOENT: no such file'), { code: 'ENOENT', syscall: 'open' }), false],
  ])('%s → %s', (err, unavailable) => {
    expect(isUnavailable(err)).toBe(unavailable);
  });
});
