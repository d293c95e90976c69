import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { describeConfig, loadConfig, redactedUrl, storeError } from './config.js';

const env = { EDM_JWT_SECRET: 'x'.repeat(32), EDM_SECRET_KEY: 'y'.repeat(32) };
/** Temporary folders of this file's tests, removed after them. */
const made: string[] = [];
const tempDir = (prefix = 'edm-config-') => {
  const d = mkdtempSync(join(tmpdir(), prefix));
  made.push(d);
  return d;
};
afterAll(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});
/** What a PostgreSQL URL that cannot be read is refused with: it says how to write each character. */
const UNREADABLE_URL =
  /^EDM_DATABASE_URL is not a URL that can be read \(in a user, password or parameter, write % as %25, @ as %40/;

describe('describeConfig: the line `edm serve` logs at start', () => {
  it.each([
    [{}, 'store sqlite:', 'tokens: HS256 secret; rate limit: off; request timeout: 30000 ms'],
    [
      { EDM_DATABASE_URL: 'postgres://edm:hunter2@db.internal:5432/okr', EDM_RATE_LIMIT: '100' },
      'store postgres://edm:***@db.internal:5432/okr',
      'rate limit: 100 calls per 1000 ms per caller; request timeout: 30000 ms',
    ],
    [{ EDM_REQUEST_TIMEOUT_MS: '0' }, 'store sqlite:', 'request timeout: none'],
    // libpq's form for a Unix socket: a user and no host, the socket's folder in ?host=.
    [
      { EDM_DATABASE_URL: 'postgres://edm:hunter2@/okr?host=/var/run/postgresql&schema=okr' },
      'store postgres://edm:***@/okr?host=/var/run/postgresql&schema=okr',
      'request timeout: 30000 ms',
    ],
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
      EDM_DATA_DIR: tempDir(),
    });
    expect(describeConfig(keyOnly)).toContain('tokens: JWKS https://id.example/jwks.json;');
    const withCredentials = { ...keyOnly, jwksUrl: 'https://u:pw@id.example/jwks.json?key=abc' };
    expect(describeConfig(withCredentials)).toContain('tokens: JWKS https://u:***@id.example/jwks.json?***;');
    const local = { ...loadConfig(env), localMode: true };
    expect(describeConfig(local)).toContain('tokens: local mode');
  });
});

describe('redactedUrl', () => {
  it.each([
    ['postgres://u:secret@h/db', 'postgres://u:***@h/db'],
    ['postgresql://u@h:5433/db?sslmode=require', 'postgresql://u@h:5433/db?sslmode=require'],
    // The driver reads a password from the query too.
    ['postgres://u@h/db?schema=edm&password=hunter3', 'postgres://u@h/db?schema=edm&password=***'],
    ['postgres://u@h/db?sslpassword=pw&sslkey=%2Fk', 'postgres://u@h/db?sslpassword=***&sslkey=***'],
    ['postgres://u:p@[bad/db', '(unparsable URL)'],
    ['postgres:u:hunter2@db/edm', 'postgres:…'],
    ['host=db user=u password=hunter2 dbname=edm', '(unparsable URL)'],
    ['sqlite:/var/lib/edm/edm.sqlite', 'sqlite:/var/lib/edm/edm.sqlite'],
  ])('%s → %s', (url, expected) => {
    expect(redactedUrl(url)).toBe(expected);
  });
});

describe('generated secrets', () => {
  it('are one per data dir when processes start at once on a fresh folder, each read whole', async () => {
    const { spawn } = await import('node:child_process');
    // The built module (`npm test` builds first), as `edm` runs it.
    const config = new URL('../../dist/core/config.js', import.meta.url).pathname;
    const read = (dir: string, at: number) =>
      new Promise<string>((resolve, reject) => {
        // Each process loads the configuration as `edm` does, and prints the secrets it read.
        const child = spawn(
          process.execPath,
          [
            '-e',
            // All start reading at one moment (`at`), as closely as processes can.
            `import(${JSON.stringify(config)}).then((m) => { while (Date.now() < ${at}); const c = m.loadConfig({ EDM_DATA_DIR: ${JSON.stringify(dir)} }); process.stdout.write(Buffer.from(c.jwtSecret).toString() + ' ' + Buffer.from(c.secretKey).toString()); })`,
          ],
          { stdio: ['ignore', 'pipe', 'pipe'] },
        );
        let out = '';
        let err = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d;
        });
        child.stderr.on('data', (d: Buffer) => {
          err += d;
        });
        child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(err))));
      });
    for (let trial = 0; trial < 6; trial++) {
      const dir = join(tempDir('edm-secrets-'), 'data');
      const at = Date.now() + 700;
      const answers = await Promise.all([read(dir, at), read(dir, at), read(dir, at)]);
      expect(new Set(answers).size, answers.join(' | ')).toBe(1);
      expect(answers[0]).toMatch(/^[0-9a-f]{64} [0-9a-f]{64}$/);
      // The folder and the secrets are the owner's only.
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      expect(statSync(join(dir, 'jwt-secret')).mode & 0o777).toBe(0o600);
    }
  });
});

describe('loadConfig: values', () => {
  it('takes an empty variable as unset: its default, not 0', () => {
    const blank = loadConfig({
      ...env,
      EDM_REQUEST_TIMEOUT_MS: '',
      EDM_DB_CONNECT_TIMEOUT_MS: '',
      EDM_RATE_LIMIT_WINDOW_MS: '',
      EDM_DB_STATEMENT_TIMEOUT_MS: '',
      EDM_CONNECTOR_TIMEOUT_MS: '',
    });
    expect([
      blank.requestTimeoutMs,
      blank.dbConnectTimeoutMs,
      blank.dbStatementTimeoutMs,
      blank.connectorTimeoutMs,
    ]).toEqual([30_000, 5000, 30_000, 10_000]);
    expect(loadConfig({ ...env, EDM_REQUEST_TIMEOUT_MS: '0' }).requestTimeoutMs).toBe(0);
    // Spaces alone are empty too.
    const spaces = loadConfig({ ...env, EDM_REQUEST_TIMEOUT_MS: ' ', PORT: ' ', EDM_CONNECTOR_TIMEOUT_MS: '  ' });
    expect([spaces.requestTimeoutMs, spaces.port, spaces.connectorTimeoutMs]).toEqual([30_000, 8080, 10_000]);
  });

  it('takes any variable of spaces alone as unset: a JWT secret of spaces is no secret (local mode)', () => {
    const { EDM_JWT_SECRET: _secret, ...rest } = env;
    const dataDir = tempDir();
    const spaced = loadConfig({
      ...rest,
      EDM_DATA_DIR: dataDir,
      EDM_JWT_SECRET: '  ',
      HOST: '   ',
      EDM_DATABASE_URL: '  ',
    });
    expect([spaced.localMode, spaced.host]).toEqual([true, '127.0.0.1']);
    expect(spaced.databaseUrl).toMatch(/^sqlite:.*edm\.sqlite$/);
    const hosted = loadConfig({ ...env, HOST: ' ' });
    expect(hosted.host).toBe('0.0.0.0');
  });

  it.each([
    ['PORT', '0x2393', /PORT must be 0–65535/],
    ['PORT', '1e3', /PORT must be 0–65535/],
    ['PORT', '65536', /PORT must be 0–65535, got 65536/],
    ['EDM_DB_POOL_SIZE', '1e1', /EDM_DB_POOL_SIZE/],
    // A pool of no connections would wait forever for one.
    ['EDM_DB_POOL_SIZE', '0', /EDM_DB_POOL_SIZE must be a positive integer/],
    // PostgreSQL names are 63 bytes at most: a longer schema would be cut to another name.
    ['EDM_DATABASE_URL', `postgres://db/edm?schema=${'a'.repeat(64)}`, /schema must be .*at most 63/],
    ['EDM_DB_CONNECT_TIMEOUT_MS', '3000000000', /at most 2147483647/],
    ['EDM_DB_STATEMENT_TIMEOUT_MS', '2147483648', /at most 2147483647/],
    ['EDM_DATABASE_URL', 'sqlite:', /sqlite: names no file/],
    ['EDM_DATABASE_URL', 'sqlite:  ', /sqlite: names no file/],
    // An HS256 key shorter than the hash is guessed offline from any token (RFC 7518 §3.2).
    ['EDM_JWT_SECRET', 'a', /EDM_JWT_SECRET must be at least 32 bytes/],
    ['EDM_JWT_SECRET', 'x'.repeat(31), /EDM_JWT_SECRET must be at least 32 bytes/],
    ['EDM_SECRET_KEY', 'short', /EDM_SECRET_KEY must be at least 32 bytes/],
    // A switch in words the table does not know is no silent default.
    ['EDM_REQUIRE_IF_MATCH', 'always', /EDM_REQUIRE_IF_MATCH must be 1, true, yes or on, or 0, false, no or off/],
    ['EDM_AUTO_MIGRATE', 'never', /EDM_AUTO_MIGRATE must be/],
    ['EDM_DB_PREPARE', 'nope', /EDM_DB_PREPARE must be/],
    ['EDM_DB_BATCH_WRITES', '2', /EDM_DB_BATCH_WRITES must be/],
    // A key set the server could never fetch.
    ['EDM_JWKS_URL', 'not a url', /EDM_JWKS_URL is not a URL/],
    ['EDM_JWKS_URL', 'ftp://id.example/jwks', /EDM_JWKS_URL must be an http or https URL, not ftp:/],
    ['EDM_JWKS_URL', 'https://idp:s3cret@id.example/jwks', /EDM_JWKS_URL must not hold a user or password/],
    // A database URL that cannot be read is named, its password never shown.
    ['EDM_DATABASE_URL', 'postgres://u:hunter2@[bad/test', UNREADABLE_URL],
    // A raw `@/` in a password is no URL: read as libpq's socket form it lost its tail to the path.
    ['EDM_DATABASE_URL', 'postgres://u:hun@/ter2@db:5432/test', UNREADABLE_URL],
    // Nor a raw `/`, `?` or `#` in one: the rest read as a path, a parameter or a fragment, and printed.
    ['EDM_DATABASE_URL', 'postgres://edm:2024/Hunter2@db/edm', UNREADABLE_URL],
    ['EDM_DATABASE_URL', 'postgres://edm:2024?Hunter2@db/edm', UNREADABLE_URL],
    ['EDM_DATABASE_URL', 'postgres://edm:2024#Hunter2@db/edm', UNREADABLE_URL],
    ['EDM_DATABASE_URL', 'postgres://u:p@/x?y@db/t', UNREADABLE_URL],
    // A raw @ or % in a password: its tail was read as a parameter (and printed), or sent re-escaped.
    ['EDM_DATABASE_URL', 'postgres://edm:Tr0ub@dor?host=Qwerty@db.example.com/edm', UNREADABLE_URL],
    ['EDM_DATABASE_URL', 'postgres://edm:50%off=deal@db.example.com/edm', UNREADABLE_URL],
    ['EDM_DATABASE_URL', 'postgres://edm:100%off@/edm?host=/run/postgresql', UNREADABLE_URL],
    ['EDM_DATABASE_URL', 'postgress://u:hunter2@db/x', /^EDM_DATABASE_URL: unsupported scheme in postgress:… /],
    // A slash missing: parsed as another kind of URL, its password is where masking looks for none.
    [
      'EDM_DATABASE_URL',
      'postgres:/edm:hunter2@db/edm',
      /^EDM_DATABASE_URL: postgres:… is not read as a PostgreSQL URL: write postgres:\/\/user:password@host:5432\/database \(two slashes/,
    ],
    [
      'EDM_DATABASE_URL',
      'POSTGRES://edm:hunter2@db/edm',
      /^EDM_DATABASE_URL: POSTGRES:… is not read as a PostgreSQL URL/,
    ],
    // Parameters libpq reads but the driver takes from its own options only, or from a socket: URL:
    // ignored, unseen, they are refused.
    [
      'EDM_DATABASE_URL',
      'postgres://db/edm?connect_timeout=1',
      /\?connect_timeout is not taken from the URL: .*EDM_DB_CONNECT_TIMEOUT_MS/,
    ],
    ['EDM_DATABASE_URL', 'postgres://db/edm?keepalives=0', /\?keepalives is not taken from the URL/],
    ['EDM_DATABASE_URL', 'postgres://db/edm?db=other', /\?db is not a parameter EDM or the PostgreSQL driver reads/],
    ['EDM_DATABASE_URL', 'postgres://db/edm?encoding=utf8', /\?encoding is not a parameter/],
    // One a variable sets: the URL's would win at the server while EDM waited for the variable's.
    [
      'EDM_DATABASE_URL',
      'postgres://db/edm?statement_timeout=8000',
      /\?statement_timeout .*EDM_DB_STATEMENT_TIMEOUT_MS/,
    ],
    ['EDM_DATABASE_URL', 'postgres://db/edm?query_timeout=8000', /\?query_timeout .*EDM_DB_STATEMENT_TIMEOUT_MS/],
    // A value the driver reads as another: `disabled` and `false` would turn SSL on.
    [
      'EDM_DATABASE_URL',
      'postgres://db/edm?sslmode=disabled',
      /\?sslmode=disabled is not a value .*disable, prefer, require/,
    ],
    ['EDM_DATABASE_URL', 'postgres://db/edm?sslmode=allow', /\?sslmode=allow is not a value/],
    ['EDM_DATABASE_URL', 'postgres://db/edm?ssl=false', /\?ssl=false is not a value .*true, 1, 0, no-verify/],
  ])('refuses %s=%j at start, saying why', (name, value, message) => {
    expect(() => loadConfig({ ...env, [name]: value })).toThrow(message);
  });

  it('reads a switch as an operator writes it: 1, true, yes, on; 0, false, no, off', () => {
    for (const yes of ['1', 'true', 'YES', 'on'])
      expect(loadConfig({ ...env, EDM_REQUIRE_IF_MATCH: yes }).requireIfMatch).toBe(true);
    for (const no of ['0', 'False', 'no', 'off'])
      expect(loadConfig({ ...env, EDM_AUTO_MIGRATE: no }).autoMigrate).toBe(false);
    expect(loadConfig(env)).toMatchObject({
      requireIfMatch: false,
      autoMigrate: true,
      dbPrepare: true,
      dbBatchWrites: true,
    });
  });

  it('takes the bounds themselves: PORT 65535, a schema of 63 characters', () => {
    expect(loadConfig({ ...env, PORT: '65535' }).port).toBe(65535);
    const url = `postgres://db/edm?schema=${'a'.repeat(63)}`;
    expect(loadConfig({ ...env, EDM_DATABASE_URL: url }).databaseUrl).toBe(url);
  });

  it('takes the longest timer Node holds, 2^31 − 1 ms', () => {
    expect(loadConfig({ ...env, EDM_DB_CONNECT_TIMEOUT_MS: '2147483647' }).dbConnectTimeoutMs).toBe(2 ** 31 - 1);
  });

  it('refuses at start a public key no token could be verified with', async () => {
    const { generateKeyPairSync } = await import('node:crypto');
    const pem = (type: 'rsa' | 'ec' | 'ed25519' | 'ec-k', part: 'publicKey' | 'privateKey') => {
      const pair =
        type === 'rsa'
          ? generateKeyPairSync('rsa', { modulusLength: 2048 })
          : type === 'ec'
            ? generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
            : type === 'ec-k'
              ? generateKeyPairSync('ec', { namedCurve: 'secp256k1' })
              : generateKeyPairSync('ed25519');
      const key = pair[part];
      return part === 'publicKey'
        ? (key.export({ type: 'spki', format: 'pem' }) as string)
        : (key.export({ type: 'pkcs8', format: 'pem' }) as string);
    };
    for (const type of ['rsa', 'ec', 'ed25519'] as const) {
      expect(loadConfig({ ...env, EDM_JWT_PUBLIC_KEY: pem(type, 'publicKey') }).jwtPublicKey).toContain('PUBLIC KEY');
    }
    const bad = (key: string) => () => loadConfig({ ...env, EDM_JWT_PUBLIC_KEY: key });
    expect(bad('garbage')).toThrow(/EDM_JWT_PUBLIC_KEY must be a PEM public key/);
    expect(bad(pem('ec', 'privateKey'))).toThrow(/EDM_JWT_PUBLIC_KEY must be a PEM public key/);
    expect(bad('-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n')).toThrow(/EDM_JWT_PUBLIC_KEY/);
    expect(bad(pem('ec-k', 'publicKey'))).toThrow(/not ec \(secp256k1\)/);
    const short = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' });
    expect(bad(short as string)).toThrow(/an RSA key of 1024 bits is too short/);
  });
});

describe('loadConfig: what an operator writes', () => {
  const dir = () => tempDir();

  it('reads values without the spaces around them, except the secrets, whose every byte is the key', () => {
    const config = loadConfig({
      ...env,
      EDM_JWT_SECRET: ` ${'x'.repeat(32)} `,
      HOST: '127.0.0.1 ',
      EDM_DATABASE_URL: 'sqlite:/tmp/edm-trim.sqlite ',
      EDM_JWT_ISSUER: ' https://id.example ',
    });
    expect([config.host, config.databaseUrl, config.jwtIssuer]).toEqual([
      '127.0.0.1',
      'sqlite:/tmp/edm-trim.sqlite',
      'https://id.example',
    ]);
    expect(config.jwtSecret).toHaveLength(34);
  });

  it.each([
    ['EDM_REQUIRE_IF_MATCH', 'maybe'],
    ['EDM_DB_CONNECT_TIMEOUT_MS', '-1'],
    ['EDM_CONNECTOR_ALLOW_HOSTS', '*'],
    ['EDM_DATABASE_URL', 'postgres://db/edm?schema=Okr'],
    ['EDM_DATABASE_URL', 'postgres://db/edm?shema=okr'],
    // `//` reads as a URL's host but is a path from the root: sqlite://app.db made /app.db.
    ['EDM_DATABASE_URL', 'sqlite://app.db'],
    // SQLite's own URI: a file named `file:x.db?mode=ro` was made, read-write.
    ['EDM_DATABASE_URL', 'sqlite:file:x.db?mode=ro'],
    // A folder: its missing parents were made before SQLite refused it.
    ['EDM_DATABASE_URL', 'sqlite:newparent/sub/'],
  ])('refuses %s=%s before it generates a secret: a refused start writes nothing', (name, value) => {
    const dataDir = dir();
    expect(() => loadConfig({ EDM_DATA_DIR: dataDir, [name]: value })).toThrow(name);
    expect(readdirSync(dataDir)).toEqual([]);
  });

  it.each([
    ['sqlite://app.db', 'is read as the path /app.db, from the root'],
    ['sqlite:file:x.db?mode=ro', 'is a SQLite URI, which EDM does not read'],
    ['sqlite:~/edm.sqlite', 'starts with ~, which no shell expanded here'],
    ['sqlite:newparent/sub/', 'names a folder, not a file (sqlite:newparent/sub/edm.sqlite, say)'],
  ])('refuses EDM_DATABASE_URL=%s, saying it %s', (url, message) => {
    expect(() => loadConfig({ ...env, EDM_DATABASE_URL: url })).toThrow(`EDM_DATABASE_URL: ${url} ${message}`);
  });

  it('takes an @ or a % in a parameter written as its escape, and prints none of a mis-encoded password', () => {
    const url = 'postgres://edm@/edm?host=/run/postgresql&application_name=ops%40edm&password=50%25off';
    expect(loadConfig({ ...env, EDM_DATABASE_URL: url }).databaseUrl).toBe(url);
    for (const bad of [
      'postgres://edm:2024/Hunter2@db/edm',
      'postgres://edm:12/Hunter2@/edm?host=/tmp',
      'postgres://edm:Tr0ub@dor?host=Qwerty@db.example.com/edm',
      'postgres://edm:Tr0ub@dor?Zx9=Qw@db.example.com/edm',
    ]) {
      expect(redactedUrl(bad)).toBe('(unparsable URL)');
      expect(() => loadConfig({ ...env, EDM_DATABASE_URL: bad })).toThrow(UNREADABLE_URL);
    }
  });

  it('takes sqlite:///<absolute path>, as it always did', () => {
    const file = join(dir(), 'edm.sqlite');
    expect(loadConfig({ ...env, EDM_DATABASE_URL: `sqlite://${file}` }).databaseUrl).toBe(`sqlite://${file}`);
  });

  it('serving without migrating, needs the SQLite file to be there; serving and migrating, makes it', () => {
    const folder = dir();
    const file = join(folder, 'edm.sqlite');
    const vars = { ...env, EDM_DATABASE_URL: `sqlite:${file}` };
    const missing = `the store sqlite:${file} does not exist`;
    for (const [given, options, refused] of [
      [vars, { serving: { migrate: false } }, true],
      [{ ...vars, EDM_AUTO_MIGRATE: '0' }, { serving: {} }, true],
      // --no-migrate wins over EDM_AUTO_MIGRATE=1; a command (`migrate`, `seed`) is no server.
      [{ ...vars, EDM_AUTO_MIGRATE: '1' }, { serving: { migrate: false } }, true],
      [vars, { serving: {} }, false],
      [{ ...vars, EDM_AUTO_MIGRATE: '0' }, {}, false],
    ] as const) {
      const load = () => loadConfig(given, options);
      if (refused) expect(load, JSON.stringify([given, options])).toThrow(missing);
      else expect(load().databaseUrl).toBe(`sqlite:${file}`);
    }
    writeFileSync(file, '');
    expect(loadConfig(vars, { serving: { migrate: false } }).databaseUrl).toBe(`sqlite:${file}`);
  });

  it('refuses EDM_DATABASE_URL naming a folder that is there', () => {
    const folder = dir();
    expect(() => loadConfig({ ...env, EDM_DATABASE_URL: `sqlite:${folder}` })).toThrow(
      `EDM_DATABASE_URL: sqlite:${folder} names a folder, not a file`,
    );
  });

  it('says so of an EDM_DATA_DIR that is a file, or where a generated secret cannot be written', () => {
    const file = join(dir(), 'not-a-folder');
    writeFileSync(file, '');
    expect(() => loadConfig({ EDM_DATA_DIR: file })).toThrow(
      `EDM_DATA_DIR ${file} is not a folder (it keeps the generated jwt-secret, unless EDM_JWT_SECRET is set)`,
    );
    // A folder below a file: it cannot be made.
    expect(() => loadConfig({ EDM_DATA_DIR: join(file, 'data') })).toThrow(
      `EDM_DATA_DIR ${join(file, 'data')}: the generated jwt-secret cannot be written there (ENOTDIR); make it writable, or set EDM_JWT_SECRET`,
    );
  });

  it('refuses a generated secret file that is empty or short, naming it', () => {
    const dataDir = dir();
    loadConfig({ EDM_DATA_DIR: dataDir });
    writeFileSync(join(dataDir, 'secret-key'), 'abc');
    expect(() => loadConfig({ EDM_DATA_DIR: dataDir })).toThrow(
      `${join(dataDir, 'secret-key')} holds 3 bytes: a generated secret is 32 at least`,
    );
    writeFileSync(join(dataDir, 'jwt-secret'), '');
    expect(() => loadConfig({ EDM_DATA_DIR: dataDir })).toThrow(`${join(dataDir, 'jwt-secret')} holds 0 bytes`);
    // A short one beside a missing one: refused before the missing one is written.
    const other = dir();
    writeFileSync(join(other, 'secret-key'), 'abc');
    expect(() => loadConfig({ EDM_DATA_DIR: other })).toThrow('holds 3 bytes');
    expect(readdirSync(other)).toEqual(['secret-key']);
  });

  it('reads EDM_CONNECTOR_ALLOW_HOSTS as the outbound check compares it, and refuses an entry that matches no host', () => {
    const hosts = loadConfig({
      ...env,
      EDM_CONNECTOR_ALLOW_HOSTS: ' Metrics.Internal. , [::1],0:0:0:0:0:0:0:1, 127.0.0.1,,10.0.0.5,127.1,Bücher.Example',
    }).connectorAllowHosts;
    expect(hosts).toEqual([
      'metrics.internal',
      '::1',
      '::1',
      '127.0.0.1',
      '10.0.0.5',
      '127.0.0.1',
      'xn--bcher-kva.example',
    ]);
    for (const bad of ['127.0.0.1:4669', 'http://127.0.0.1', '127.0.0.0/8', '*', 'a b', 'fe80::1%eth0', 'u@host']) {
      expect(() => loadConfig({ ...env, EDM_CONNECTOR_ALLOW_HOSTS: bad })).toThrow(
        `EDM_CONNECTOR_ALLOW_HOSTS: ${bad} is not a host name or an IP address`,
      );
    }
  });
});

describe('storeError: a store that cannot be opened, reached or migrated', () => {
  it('names the store, its password masked, and the variables that choose it', () => {
    const err = storeError('postgres://edm:hunter2@db/okr', new Error('connect ECONNREFUSED 10.0.0.5:5432'));
    expect(err.message).toBe(
      "the store postgres://edm:***@db/okr (EDM_DATABASE_URL, or EDM_DATA_DIR's edm.sqlite): connect ECONNREFUSED 10.0.0.5:5432",
    );
  });

  it("says what to do when a pooler refuses EDM's session settings (PgBouncer)", () => {
    const err = storeError('postgres://db:6432/okr', new Error('unsupported startup parameter: statement_timeout'));
    expect(err.message).toContain(
      'unsupported startup parameter: statement_timeout (a pooler between EDM and PostgreSQL',
    );
    expect(err.message).toContain("PgBouncer's ignore_startup_parameters");
  });

  it('leaves a message that names the store or the variable already', () => {
    const named = new Error('EDM_DATABASE_URL: sqlite: names no file (use sqlite:<file>)');
    expect(storeError('sqlite:', named)).toBe(named);
  });
});
