import { createPublicKey, randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  existsSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';

export interface Config {
  port: number;
  /** 127.0.0.1 whenever the JWT secret was generated (local use), else `HOST` or 0.0.0.0. */
  host: string;
  databaseUrl: string;
  dataDir: string;
  jwtSecret: Uint8Array;
  /**
   * Whether HS256 tokens signed with `jwtSecret` are accepted: when EDM_JWT_SECRET is set, or in
   * local mode. With only public keys configured, they are not.
   */
  acceptSecret?: boolean;
  /** EDM_JWT_PUBLIC_KEY: a PEM public key (SPKI) for RS256, ES256 or EdDSA tokens. */
  jwtPublicKey?: string | undefined;
  /** EDM_JWKS_URL: a JWKS document whose keys (by `kid`) verify RS256, ES256 or EdDSA tokens. */
  jwksUrl?: string | undefined;
  /** True when no way to verify tokens was configured: local mode, with the loopback dev-token endpoint. */
  localMode: boolean;
  secretKey: Uint8Array;
  jwtIssuer: string | undefined;
  jwtAudience: string | undefined;
  requireIfMatch: boolean;
  dbPoolSize: number;
  /** EDM_AUTO_MIGRATE: `edm serve` creates or upgrades the schema at start (default true). */
  autoMigrate?: boolean;
  /** EDM_DB_CONNECT_TIMEOUT_MS: wait for a PostgreSQL connection before answering 503. */
  dbConnectTimeoutMs?: number;
  /** EDM_DB_STATEMENT_TIMEOUT_MS: PostgreSQL statement_timeout of requests (0: none). */
  dbStatementTimeoutMs?: number;
  /**
   * EDM_DB_PREPARE: PostgreSQL sessions prepare each statement once (default true); false behind
   * a pooler in transaction mode that does not keep prepared statements.
   */
  dbPrepare?: boolean;
  /**
   * EDM_DB_BATCH_WRITES: a PostgreSQL transaction's writes go to the server together, as one
   * statement, before its next read or COMMIT, and BEGIN and COMMIT are pipelined with the
   * statements beside them (default true).
   */
  dbBatchWrites?: boolean;
  /**
   * EDM_CONNECTOR_ALLOW_HOSTS (comma-separated host names or addresses): hosts connectors may
   * reach although they resolve to private, loopback, link-local or metadata addresses.
   */
  connectorAllowHosts?: string[];
  /** EDM_CONNECTOR_TIMEOUT_MS: how long one connector read may take (default 10 s). */
  connectorTimeoutMs?: number;
  /**
   * EDM_RATE_LIMIT calls per EDM_RATE_LIMIT_WINDOW_MS (default 1000) for each caller: each
   * application of a tenant, the tenant's people, its signed webhook calls. Absent: no limit.
   */
  rateLimit?: { max: number; windowMs: number } | undefined;
  /** EDM_REQUEST_TIMEOUT_MS: how long a request's headers and body may take to arrive (default 30 s; 0: no limit). */
  requestTimeoutMs?: number;
}

type Env = Record<string, string | undefined>;

/** The longest delay Node's timers take (2^31 − 1 ms). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The shortest EDM_JWT_SECRET or EDM_SECRET_KEY accepted (the generated ones are 64 hex digits). */
const MIN_SECRET_BYTES = 32;

/**
 * Makes a file's bytes, or a folder's entries (a file linked or renamed into it), last through a
 * power cut or a file system's error. A folder that cannot be opened or synced (some file systems
 * refuse it: EINVAL, EACCES…) is left as it is, as SQLite and PostgreSQL leave it: its entry was
 * made all the same, and refusing then failed a start or an export that had done its work.
 */
export function syncToDisk(path: string, kind: 'file' | 'folder'): void {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    if (kind === 'folder') return;
    throw err;
  }
  try {
    fsyncSync(fd);
  } catch (err) {
    if (kind === 'file') throw err;
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads a generated secret from the data dir, creating it (0600) on first use. Written whole to
 * a file of its own, then linked into place: of processes starting at once on a fresh folder
 * (`edm serve` beside `edm seed`), one link wins and every one reads that whole secret, never
 * an empty or half-written file.
 */
function generatedSecret(dataDir: string, name: string): Uint8Array {
  const file = join(dataDir, name);
  if (!existsSync(file)) {
    const variable = name === 'jwt-secret' ? 'EDM_JWT_SECRET' : 'EDM_SECRET_KEY';
    if (existsSync(dataDir) && !statSync(dataDir).isDirectory()) {
      throw new Error(
        `EDM_DATA_DIR ${dataDir} is not a folder (it keeps the generated ${name}, unless ${variable} is set)`,
      );
    }
    try {
      mkdirSync(dataDir, { recursive: true, mode: 0o700 }); // its secrets and the store are the owner's
      const draft = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
      // On the disk before it is linked into place, and the link too: after a power cut or a
      // file system's error the secret was there but empty (0 bytes), and no server started.
      const fd = openSync(draft, 'wx', 0o600);
      try {
        writeFileSync(fd, randomBytes(32).toString('hex'));
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      try {
        chmodSync(draft, 0o600);
        linkSync(draft, file);
      } catch (err) {
        if ((err as { code?: string }).code !== 'EEXIST') throw err;
      } finally {
        unlinkSync(draft);
      }
      syncToDisk(dataDir, 'folder');
    } catch (err) {
      throw new Error(
        `EDM_DATA_DIR ${dataDir}: the generated ${name} cannot be written there (${(err as { code?: string }).code ?? (err as Error).message}); make it writable, or set ${variable}`,
        { cause: err },
      );
    }
  }
  return readSecret(file);
}

/** A generated secret's file, read: at least MIN_SECRET_BYTES, or refused naming the file. */
function readSecret(file: string): Uint8Array {
  const secret = new TextEncoder().encode(readFileSync(file, 'utf8').trim());
  // As a configured one must be: an empty or short file (truncated, or written by hand) would
  // sign tokens no one can verify, or derive keys from a few bytes.
  if (secret.length < MIN_SECRET_BYTES) {
    throw new Error(
      `${file} holds ${secret.length} bytes: a generated secret is ${MIN_SECRET_BYTES} at least (restore the file, or remove it to have a new one made: what the old one signed or sealed is then unreadable)`,
    );
  }
  return secret;
}

/**
 * A JWKS URL the server can fetch: http or https, without credentials in it (fetch refuses a URL
 * that holds them). Otherwise the server would start, report ready, and answer every token 503.
 */
function checkJwksUrl(url: string): void {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error('EDM_JWKS_URL is not a URL that can be read');
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') {
    throw new Error(`EDM_JWKS_URL must be an http or https URL, not ${u.protocol}`);
  }
  if (u.username || u.password) {
    throw new Error('EDM_JWKS_URL must not hold a user or password (a key set is fetched without them)');
  }
}

/**
 * Refuses, at start, an EDM_JWT_PUBLIC_KEY no token could be verified with: not a PEM public
 * key (SPKI: `-----BEGIN PUBLIC KEY-----`; a private key pasted by mistake is one of those), or
 * of a type none of RS256, ES256 and EdDSA takes. Otherwise the server would start, report
 * ready, and answer every token 401.
 */
function checkPublicKey(pem: string): void {
  const usage =
    'EDM_JWT_PUBLIC_KEY must be a PEM public key (SPKI, "-----BEGIN PUBLIC KEY-----") of RSA (2048 bits or more), EC P-256 or Ed25519';
  if (!pem.includes('-----BEGIN PUBLIC KEY-----')) throw new Error(usage);
  let key: ReturnType<typeof createPublicKey>;
  try {
    key = createPublicKey(pem);
  } catch (err) {
    throw new Error(`${usage}: ${(err as Error).message}`);
  }
  const curve = key.asymmetricKeyDetails?.namedCurve;
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  // RS256 takes RSA keys of 2048 bits or more (jose refuses shorter ones).
  if (key.asymmetricKeyType === 'rsa' && bits < 2048) {
    throw new Error(`${usage}: an RSA key of ${bits} bits is too short (2048 at least)`);
  }
  const usable =
    key.asymmetricKeyType === 'rsa' ||
    key.asymmetricKeyType === 'ed25519' ||
    (key.asymmetricKeyType === 'ec' && curve === 'prime256v1');
  if (!usable) throw new Error(`${usage}, not ${key.asymmetricKeyType}${curve ? ` (${curve})` : ''}`);
}

/**
 * EDM_CONNECTOR_ALLOW_HOSTS as the outbound check compares it: host names lower case without a
 * trailing dot, IPv6 addresses without brackets and in their short form (as a URL writes them).
 * An entry that is neither (a scheme, a port, a range, a wildcard) is refused: it would match no
 * host, unseen.
 */
function allowedHosts(raw: string): string[] {
  const hosts: string[] = [];
  for (const entry of raw.split(',')) {
    let host = entry.trim().toLowerCase().replace(/\.$/, '');
    if (host === '') continue;
    const refused = new Error(
      `EDM_CONNECTOR_ALLOW_HOSTS: ${entry.trim()} is not a host name or an IP address (no scheme, port, range or wildcard; commas between hosts)`,
    );
    if (/^\[.*\]$/.test(host)) host = host.slice(1, -1);
    // A scheme, a port, a range, a wildcard or a user: no URL's host is written so.
    if (isIP(host) !== 6 && /[/:*@?#\s\\]/.test(host)) throw refused;
    try {
      // As a URL's host reads once parsed: `127.1` is 127.0.0.1, `bücher.example` its xn-- form.
      const parsed = new URL(isIP(host) === 6 ? `http://[${host}]/` : `http://${host}/`).hostname;
      hosts.push(isIP(host) === 6 ? parsed.slice(1, -1) : parsed.replace(/\.$/, ''));
    } catch {
      throw refused;
    }
  }
  return hosts;
}

/** A schema name as PostgreSQL reads it unquoted (in `search_path`): lower case, or it is not the one created. */
const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;
/**
 * The parameters a PostgreSQL URL may carry: EDM's (`schema`) and those the driver reads from a
 * `postgres://` URL (pg-connection-string and pg's connection parameters). Another is refused:
 * the driver would ignore it unseen (libpq's `connect_timeout` and `keepalives`, which pg reads
 * only from its own options; `db` and `encoding`, which it reads only from a `socket:` URL), and
 * a misspelt `schema` would leave the server in `public`.
 */
const URL_PARAMETERS = new Set([
  'schema',
  'options',
  'application_name',
  'fallback_application_name',
  'client_encoding',
  'host',
  'port',
  'user',
  'password',
  'ssl',
  'sslmode',
  'sslcert',
  'sslkey',
  'sslrootcert',
  'sslnegotiation',
  'uselibpqcompat',
  'lock_timeout',
  'idle_in_transaction_session_timeout',
  'binary',
  'replication',
]);

/** Parameters a URL may not carry because a variable of EDM's sets what they would, and says why. */
const SET_BY_EDM: Record<string, string> = {
  connect_timeout: 'the driver does not read it from a URL; EDM_DB_CONNECT_TIMEOUT_MS bounds connecting',
  statement_timeout: "set EDM_DB_STATEMENT_TIMEOUT_MS instead (EDM's wait for an answer follows that one)",
  query_timeout: "set EDM_DB_STATEMENT_TIMEOUT_MS instead (EDM's wait for an answer follows that one)",
  keepalives: 'the driver does not read it from a URL; EDM keeps TCP keepalives on',
  keepalives_idle: 'the driver does not read it from a URL; EDM sends the first keepalive after 10 s',
};

/**
 * The values the driver understands for parameters whose other values it does not refuse but
 * reads as something else: pg takes any `sslmode` but `disable` (`disabled` included) as
 * verify-full SSL, and any `ssl` but `0` (`false` included) as SSL on.
 */
const URL_VALUES: Record<string, readonly string[]> = {
  sslmode: ['disable', 'prefer', 'require', 'verify-ca', 'verify-full', 'no-verify'],
  ssl: ['true', '1', '0', 'no-verify'],
};

/**
 * The host a PostgreSQL URL that names none stands in for while it is read. libpq's form for a
 * Unix socket, `postgres://user@/db?host=/var/run/postgresql`, is no WHATWG URL (a user but no
 * host); the driver reads it with a placeholder host and leaves the host empty, and so do we.
 */
const NO_HOST = '__edm_no_host__';

/**
 * A PostgreSQL URL as the driver reads it (see NO_HOST), or null for one neither can read.
 * @example readPostgresUrl('postgres://edm@/edm?host=/run/postgresql')?.searchParams.get('host') === '/run/postgresql'
 */
export function readPostgresUrl(url: string): URL | null {
  // One raw `@`, the user's part's end, and no `%` but those of escapes: another is a user,
  // password or parameter not percent-encoded, which the URL parser and the driver each read
  // their own way (a password's tail taken for the host, a parameter or an escape, and printed).
  if ((url.match(/@/g) ?? []).length > 1 || /%(?![0-9a-f]{2})/i.test(url)) return null;
  const read = URL.canParse(url) ? new URL(url) : withoutHost(url);
  // A raw `@` past the authority, in the path, a parameter's name or the fragment, is what is
  // left of a user's part that was not percent-encoded (`u:2024/Hunter2@db` reads as the host
  // `u`, port 2024 and the path `/Hunter2@db`): no URL to connect with, nor to print.
  if (read === null || read.pathname.includes('@') || read.hash.includes('@')) return null;
  return [...read.searchParams.keys()].some((name) => name.includes('@')) ? null : read;
}

/** libpq's form with a user and no host (`user@/db`), read with NO_HOST in its place. */
function withoutHost(url: string): URL | null {
  const at = url.indexOf('@/');
  if (at < 0) return null;
  const placed = `${url.slice(0, at)}@${NO_HOST}/${url.slice(at + 2)}`;
  return URL.canParse(placed) ? new URL(placed) : null;
}

/** A URL read by readPostgresUrl, written out again: with no host where it named none. */
export function writePostgresUrl(url: URL): string {
  // With no user either (`postgres://@/db`), the URL writes no `@`.
  return url.toString().replace(`@${NO_HOST}/`, '@/').replace(`//${NO_HOST}/`, '///');
}

/**
 * What is wrong with a PostgreSQL URL for EDM, or null: one that cannot be read, a schema that is
 * not a plain lower-case identifier, a parameter given twice, one a variable of EDM's sets, one
 * neither EDM nor the driver reads, or a value the driver would read as another.
 */
export function postgresUrlProblem(url: string, schemaOverride?: string): string | null {
  const read = readPostgresUrl(url);
  if (!read) {
    return 'EDM_DATABASE_URL is not a URL that can be read (in a user, password or parameter, write % as %25, @ as %40, / as %2F, ? as %3F, # as %23 and : as %3A)';
  }
  const params = read.searchParams;
  const schema = schemaOverride ?? params.get('schema');
  if (schema !== null && !IDENTIFIER.test(schema)) {
    return `EDM_DATABASE_URL: schema must be a plain lower-case identifier (a–z, digits, _; at most 63), got ${schema}`;
  }
  // A parameter given twice: the driver and EDM each read one of them (`&schema=prod` added to
  // `?schema=staging` served staging, saying nothing).
  const twice = [...new Set(params.keys())].filter((name) => params.getAll(name).length > 1);
  if (twice.length) {
    return `EDM_DATABASE_URL: ${twice.map((n) => `?${n}`).join(', ')} is given more than once; give each parameter once`;
  }
  const taken = [...params.keys()].find((name) => SET_BY_EDM[name] !== undefined);
  if (taken) return `EDM_DATABASE_URL: ?${taken} is not taken from the URL: ${SET_BY_EDM[taken]}`;
  const unknown = [...params.keys()].filter((name) => !URL_PARAMETERS.has(name));
  if (unknown.length) {
    return `EDM_DATABASE_URL: ${unknown.map((n) => `?${n}`).join(', ')} is not a parameter EDM or the PostgreSQL driver reads (schema=<name> selects a schema)`;
  }
  for (const [name, values] of Object.entries(URL_VALUES)) {
    const value = params.get(name);
    if (value !== null && !values.includes(value)) {
      return `EDM_DATABASE_URL: ?${name}=${value} is not a value the PostgreSQL driver reads as such (use one of ${values.join(', ')})`;
    }
  }
  return null;
}

/**
 * A failure to open, reach or migrate the store, as `edm serve` and the commands that open one
 * say it: naming the store (its password masked) and the variables that choose it. One that
 * names them already (a URL refused, a SQLite file that is not there) is left as it is.
 */
export function storeError(databaseUrl: string, err: unknown): Error {
  const message = err instanceof Error ? err.message : String(err);
  if (message.startsWith('EDM_DATABASE_URL') || message.startsWith('the store ')) return err as Error;
  // PgBouncer's answer to the startup parameters EDM sends (search_path, statement_timeout,
  // idle_in_transaction_session_timeout): what to do is in the README, not in its words.
  const hint = /unsupported startup parameter/.test(message)
    ? " (a pooler between EDM and PostgreSQL refuses EDM's session settings: list them in PgBouncer's ignore_startup_parameters and set them on the role instead; README, Behind PgBouncer)"
    : '';
  return new Error(
    `the store ${redactedUrl(databaseUrl)} (EDM_DATABASE_URL, or EDM_DATA_DIR's edm.sqlite): ${message}${hint}`,
    {
      cause: err,
    },
  );
}

/** The longest path (in bytes, from the root) of a SQLite file that SQLite opens, with its journal. */
const MAX_SQLITE_PATH_BYTES = 504;

/**
 * What is wrong with the file a `sqlite:` URL names, or null: none at all; `//…`, which reads as
 * a URL's host but is a path from the root (`sqlite://app.db` made `/app.db`); `~/…`, which no
 * shell expanded (a folder named `~` was made); SQLite's own
 * `file:` URIs, which would name a file called `file:…` with their parameters unread; a path
 * longer than SQLite opens; a folder.
 */
export function sqliteFileProblem(file: string): string | null {
  if (file.trim() === '') return 'EDM_DATABASE_URL: sqlite: names no file (use sqlite:<file>)';
  // `sqlite:///var/lib/edm.db` is an absolute path, as it always was; `sqlite://edm.db` is not.
  if (/^\/\/[^/]/.test(file)) {
    return `EDM_DATABASE_URL: sqlite:${file} is read as the path ${file.replace(/^\/+/, '/')}, from the root; write sqlite:<path> (sqlite:./app.db, sqlite:/var/lib/edm/app.db)`;
  }
  if (file === '~' || file.startsWith('~/')) {
    return `EDM_DATABASE_URL: sqlite:${file} starts with ~, which no shell expanded here (a folder named ~ would be made): write the whole path`;
  }
  if (file.startsWith('file:')) {
    return `EDM_DATABASE_URL: sqlite:${file} is a SQLite URI, which EDM does not read: name the file (sqlite:<path>)`;
  }
  // SQLite's Unix file layer takes paths of up to 512 bytes, the journal's name (`-journal`) and
  // its end included: a longer one was refused as "unable to open database file", once the
  // missing folders of the path had been made.
  const bytes = file === ':memory:' ? 0 : Buffer.byteLength(resolve(file));
  if (bytes > MAX_SQLITE_PATH_BYTES) {
    return `EDM_DATABASE_URL: sqlite:${file} is a path of ${bytes} bytes from the root; SQLite opens at most ${MAX_SQLITE_PATH_BYTES}: choose a shorter one`;
  }
  if (file !== ':memory:' && (file.endsWith('/') || (existsSync(file) && statSync(file).isDirectory()))) {
    return `EDM_DATABASE_URL: sqlite:${file} names a folder, not a file (sqlite:${file.replace(/\/+$/, '')}/edm.sqlite, say)`;
  }
  return null;
}

/** What a server that does not migrate adds to missingStore. */
const NOT_MIGRATING =
  'a server that does not migrate (--no-migrate, EDM_AUTO_MIGRATE=0) creates none: run edm migrate first';

/** What a command that reads a store says of a SQLite file that is not there (it creates none). */
export function missingStore(file: string): string {
  return `the store sqlite:${file} does not exist (EDM_DATABASE_URL, or EDM_DATA_DIR's edm.sqlite)`;
}

/** The variables whose value is a key, read byte for byte. */
const SECRETS = new Set(['EDM_JWT_SECRET', 'EDM_SECRET_KEY']);

/**
 * Configuration from the environment (PORT, HOST, EDM_DATABASE_URL, EDM_JWT_SECRET,
 * EDM_SECRET_KEY, EDM_JWT_ISSUER, EDM_JWT_AUDIENCE, EDM_REQUIRE_IF_MATCH, EDM_DB_POOL_SIZE,
 * EDM_JWT_PUBLIC_KEY, EDM_JWKS_URL, EDM_DATA_DIR, EDM_AUTO_MIGRATE, EDM_DB_CONNECT_TIMEOUT_MS, EDM_DB_STATEMENT_TIMEOUT_MS, EDM_DB_PREPARE, EDM_DB_BATCH_WRITES, EDM_CONNECTOR_ALLOW_HOSTS, EDM_CONNECTOR_TIMEOUT_MS, EDM_RATE_LIMIT, EDM_RATE_LIMIT_WINDOW_MS, EDM_REQUEST_TIMEOUT_MS). Secrets that are not configured are generated under the data dir,
 * unless the SQLite store is not there and must be (`storeMustExist`, or `serving` without
 * migrating: `migrate` if given, else EDM_AUTO_MIGRATE): then it throws before writing anything.
 */
export function loadConfig(
  given: Env = process.env,
  options: { storeMustExist?: boolean; serving?: { migrate?: boolean } } = {},
): Config {
  // A variable that is empty or all spaces is unset: its default (a secret of spaces too). Others
  // are read without the spaces around them (a `.env` line's trailing space named another store
  // file, or a host that does not resolve), except the secrets, whose every byte is the key.
  const env: Env = Object.fromEntries(
    Object.entries(given).map(([name, value]) => [
      name,
      value?.trim() === '' ? undefined : SECRETS.has(name) ? value : value?.trim(),
    ]),
  );
  const dataDir = resolve(env.EDM_DATA_DIR || './data');
  const localMode = !env.EDM_JWT_SECRET && !env.EDM_JWT_PUBLIC_KEY && !env.EDM_JWKS_URL;
  // Whole numbers in decimal digits: not `0x2393` or `1e3`, which Number() would take.
  const whole = (name: string, fallback: number) => {
    const raw = env[name]?.trim();
    return raw === undefined ? fallback : /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
  };
  const port = whole('PORT', 8080);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`PORT must be 0–65535, got ${env.PORT}`);
  const poolSize = whole('EDM_DB_POOL_SIZE', 10);
  if (!Number.isInteger(poolSize) || poolSize < 1) throw new Error('EDM_DB_POOL_SIZE must be a positive integer');
  // Node's timers hold at most 2^31 − 1 ms (~24.8 days): a longer one would fire at once.
  const millis = (name: string, fallback: number) => {
    const n = whole(name, fallback);
    if (!Number.isInteger(n) || n < 0 || n > MAX_TIMER_MS) {
      throw new Error(`${name} must be a whole number of milliseconds, at most ${MAX_TIMER_MS}`);
    }
    return n;
  };
  // A switch says yes or no in words an operator writes; anything else stops the start, rather
  // than leave the default in force unseen (`EDM_REQUIRE_IF_MATCH=yes` once enforced nothing).
  const flag = (name: string, fallback: boolean) => {
    const raw = env[name]?.trim().toLowerCase();
    if (raw === undefined) return fallback;
    if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
    if (['0', 'false', 'no', 'off'].includes(raw)) return false;
    throw new Error(`${name} must be 1, true, yes or on, or 0, false, no or off, not ${env[name]}`);
  };
  const rateLimit = whole('EDM_RATE_LIMIT', 0);
  if (!Number.isInteger(rateLimit) || rateLimit < 0) {
    throw new Error('EDM_RATE_LIMIT must be a whole number of calls per window (0: no limit)');
  }
  const rateWindow = millis('EDM_RATE_LIMIT_WINDOW_MS', 1000);
  if (env.EDM_JWT_PUBLIC_KEY) checkPublicKey(env.EDM_JWT_PUBLIC_KEY);
  // An HS256 key must be at least as long as the hash (RFC 7518 §3.2); a short one is guessed
  // offline from any token it signed. The server secret derives every other key (HKDF).
  for (const name of ['EDM_JWT_SECRET', 'EDM_SECRET_KEY']) {
    const value = env[name];
    if (value !== undefined && Buffer.byteLength(value) < MIN_SECRET_BYTES) {
      throw new Error(
        `${name} must be at least ${MIN_SECRET_BYTES} bytes (256 bits) long, e.g. \`openssl rand -hex 32\``,
      );
    }
  }
  if (rateWindow < 1) throw new Error('EDM_RATE_LIMIT_WINDOW_MS must be at least 1');
  const databaseUrl = env.EDM_DATABASE_URL || `sqlite:${join(dataDir, 'edm.sqlite')}`;
  const sqliteProblem = databaseUrl.startsWith('sqlite:')
    ? sqliteFileProblem(databaseUrl.slice('sqlite:'.length))
    : null;
  if (sqliteProblem) throw new Error(sqliteProblem);
  const autoMigrate = flag('EDM_AUTO_MIGRATE', true);
  // A command that only reads the store (`edm export`), or a server that does not migrate it
  // (`serve --no-migrate`, EDM_AUTO_MIGRATE=0: a mistyped path would be served as an empty store
  // that answers 503), is refused before a secret is generated: a data folder with fresh secrets
  // beside no store would sign nothing the server accepts.
  const notMigrating = options.serving !== undefined && !(options.serving.migrate ?? autoMigrate);
  if ((options.storeMustExist || notMigrating) && databaseUrl.startsWith('sqlite:')) {
    const file = databaseUrl.slice('sqlite:'.length);
    if (file !== ':memory:' && !existsSync(file)) {
      throw new Error(`${missingStore(file)}${notMigrating ? `; ${NOT_MIGRATING}` : ''}`);
    }
  }
  if (!databaseUrl.startsWith('sqlite:')) {
    if (!/^postgres(ql)?:\/\//.test(databaseUrl)) throw new Error(unsupportedStoreUrl(databaseUrl));
    const problem = postgresUrlProblem(databaseUrl);
    if (problem) throw new Error(problem);
  }
  if (env.EDM_JWKS_URL) checkJwksUrl(env.EDM_JWKS_URL);
  // Every value checked before a secret is generated: a start that is refused writes nothing.
  const requireIfMatch = flag('EDM_REQUIRE_IF_MATCH', false);
  const dbConnectTimeoutMs = millis('EDM_DB_CONNECT_TIMEOUT_MS', 5000);
  const dbStatementTimeoutMs = millis('EDM_DB_STATEMENT_TIMEOUT_MS', 30_000);
  const dbPrepare = flag('EDM_DB_PREPARE', true);
  const dbBatchWrites = flag('EDM_DB_BATCH_WRITES', true);
  const connectorAllowHosts = allowedHosts(env.EDM_CONNECTOR_ALLOW_HOSTS ?? '');
  const connectorTimeoutMs = millis('EDM_CONNECTOR_TIMEOUT_MS', 10_000);
  const requestTimeoutMs = millis('EDM_REQUEST_TIMEOUT_MS', 30_000);
  // The generated secrets' files that are there already, checked before either is written.
  for (const [name, file] of [
    ['EDM_JWT_SECRET', 'jwt-secret'],
    ['EDM_SECRET_KEY', 'secret-key'],
  ] as const) {
    if (!env[name] && existsSync(join(dataDir, file))) readSecret(join(dataDir, file));
  }
  return {
    port,
    host: localMode ? '127.0.0.1' : env.HOST || '0.0.0.0',
    databaseUrl,
    dataDir,
    jwtSecret: env.EDM_JWT_SECRET
      ? new TextEncoder().encode(env.EDM_JWT_SECRET)
      : generatedSecret(dataDir, 'jwt-secret'),
    acceptSecret: localMode || Boolean(env.EDM_JWT_SECRET),
    jwtPublicKey: env.EDM_JWT_PUBLIC_KEY || undefined,
    jwksUrl: env.EDM_JWKS_URL || undefined,
    localMode,
    secretKey: env.EDM_SECRET_KEY
      ? new TextEncoder().encode(env.EDM_SECRET_KEY)
      : generatedSecret(dataDir, 'secret-key'),
    jwtIssuer: env.EDM_JWT_ISSUER || undefined,
    jwtAudience: env.EDM_JWT_AUDIENCE || undefined,
    requireIfMatch,
    dbPoolSize: poolSize,
    autoMigrate,
    dbConnectTimeoutMs,
    dbStatementTimeoutMs,
    dbPrepare,
    dbBatchWrites,
    connectorAllowHosts,
    connectorTimeoutMs,
    requestTimeoutMs,
    rateLimit: rateLimit > 0 ? { max: rateLimit, windowMs: rateWindow } : undefined,
  };
}

/**
 * A URL for a log or a message: its password masked, and its whole query (`query: 'all'`, a
 * JWKS URL's may carry a key) or the query parameters that name a secret (`password`,
 * `sslpassword`, `sslkey`: PostgreSQL's driver reads them); `unparsable` for none.
 */
export function maskedUrl(url: string, query: 'all' | 'secrets', unparsable = '(unparsable URL)'): string {
  return URL.canParse(url) ? mask(new URL(url), query).toString() : unparsable;
}

/** A URL with its password, and its query or the parameters of it that name a secret, masked (see maskedUrl). */
function mask(u: URL, query: 'all' | 'secrets'): URL {
  if (u.password) u.password = '***';
  if (query === 'all' && u.search) u.search = '?***';
  if (query === 'secrets') {
    for (const name of [...u.searchParams.keys()]) {
      if (/pass|secret|key|token/i.test(name)) u.searchParams.set(name, '***');
    }
  }
  return u;
}

/**
 * The database URL without its password, for logs. One of another form than `postgres://` (a
 * slash missing, another scheme) shows its scheme only: a URL parsed as some other kind holds
 * its password where masking would not find it.
 */
export function redactedUrl(url: string): string {
  if (url.startsWith('sqlite:')) return url;
  if (!/^postgres(ql)?:\/\//.test(url)) {
    // Its scheme, where it starts with one (a libpq `host=… password=…` string has none).
    const scheme = /^[a-z][a-z0-9+.-]*:/i.exec(url)?.[0];
    return scheme ? `${scheme}…` : '(unparsable URL)';
  }
  const read = readPostgresUrl(url);
  return read ? writePostgresUrl(mask(read, 'secrets')) : '(unparsable URL)';
}

/** Why a store URL that is neither `sqlite:` nor `postgres://` is refused (its password never shown). */
export function unsupportedStoreUrl(url: string): string {
  // `postgres:/db/edm` or `POSTGRES://…`: PostgreSQL meant, the URL written wrong.
  if (/^postgres(ql)?:/i.test(url)) {
    return `EDM_DATABASE_URL: ${redactedUrl(url)} is not read as a PostgreSQL URL: write postgres://user:password@host:5432/database (two slashes, the scheme in lower case)`;
  }
  return `EDM_DATABASE_URL: unsupported scheme in ${redactedUrl(url)} (use sqlite:<file> or postgres://…)`;
}

/** One line on what `edm serve` runs with: the store, the limits, how tokens are checked (no secrets). */
export function describeConfig(config: Config): string {
  const tokens = config.localMode
    ? 'local mode (generated secret, dev-token endpoint)'
    : [
        config.acceptSecret ? 'HS256 secret' : null,
        config.jwtPublicKey ? 'public key' : null,
        // A JWKS URL's password or query may carry a credential.
        config.jwksUrl ? `JWKS ${maskedUrl(config.jwksUrl, 'all')}` : null,
      ]
        .filter(Boolean)
        .join(' + ');
  const rate = config.rateLimit
    ? `${config.rateLimit.max} calls per ${config.rateLimit.windowMs} ms per caller`
    : 'off';
  const timeout = config.requestTimeoutMs ?? 30_000;
  return [
    `store ${redactedUrl(config.databaseUrl)}`,
    `tokens: ${tokens}`,
    `rate limit: ${rate}`,
    `request timeout: ${timeout === 0 ? 'none' : `${timeout} ms`}`,
  ].join('; ');
}
