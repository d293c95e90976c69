/**
 * Reading a connector's value: one number per sync, from an HTTP JSON API or a SQL query,
 * through the platform's outbound policy (src/core/outbound.ts).
 */
import pg from 'pg';
import { NUMBER_LIMIT } from '../../core/fields.js';
import {
  fetchJson,
  MAX_ANSWER_BYTES,
  OutboundError,
  readDeadline,
  resolveAllowed,
  withoutAddress,
} from '../../core/outbound.js';
import type { Doc, OutboundPolicy } from '../../core/resource.js';

export interface ConnectorConfig {
  url?: string;
  pointer?: string;
  headers?: Record<string, string>;
  auth?: 'bearer' | 'basic' | 'header' | 'query';
  secret_header?: string;
  secret_param?: string;
  query?: string;
}

/**
 * The headers of an http_json read: config's, and the secret as config.auth says. The secret's
 * header replaces one of config's by the same name (a row stored before config refused them).
 */
export function requestHeaders(config: ConnectorConfig, secret: string | null): Record<string, string> {
  const headers = { ...(config.headers ?? {}) };
  if (secret === null || config.auth === 'query') return headers;
  const auth = config.auth ?? 'bearer';
  const name = auth === 'header' ? (config.secret_header as string) : 'authorization';
  for (const key of Object.keys(headers)) if (key.toLowerCase() === name.toLowerCase()) delete headers[key];
  headers[name] =
    auth === 'basic'
      ? `Basic ${Buffer.from(secret).toString('base64')}`
      : auth === 'header'
        ? secret
        : `Bearer ${secret}`;
  return headers;
}

/**
 * The URL of an http_json read: config's, with the secret in the query parameter
 * config.secret_param names where config.auth is `query` (replacing one of that name).
 */
export function requestUrl(config: ConnectorConfig, secret: string | null): string {
  const url = config.url as string;
  if (secret === null || config.auth !== 'query' || !config.secret_param) return url;
  const parsed = new URL(url);
  parsed.searchParams.set(config.secret_param, secret);
  return parsed.href;
}

/** The member of `doc` a JSON Pointer (RFC 6901) names, or undefined. */
export function atPointer(doc: unknown, pointer: string): unknown {
  if (pointer === '') return doc;
  let at: unknown = doc;
  for (const raw of pointer.slice(1).split('/')) {
    const key = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    if (Array.isArray(at) && /^(0|[1-9]\d*)$/.test(key)) at = at[Number(key)];
    else if (at !== null && typeof at === 'object' && !Array.isArray(at) && Object.hasOwn(at, key)) {
      at = (at as Record<string, unknown>)[key];
    } else return undefined;
  }
  return at;
}

/**
 * What a read value that is no number was, for `last_error`: its type, and a string's first 40
 * characters (whole ones: a pair of surrogates is not cut). Never the whole of an object or
 * array, however deep.
 */
function described(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') {
    const chars = Array.from(value);
    return JSON.stringify(chars.length > 40 ? `${chars.slice(0, 40).join('')}…` : value);
  }
  return String(value); // a boolean, NaN or ±Infinity (a PostgreSQL float), as itself
}

/** A read value as the number a key result takes: a finite JSON number or numeric text, |x| ≤ 1e15. */
export function asMetric(value: unknown, what: string): number {
  const n =
    typeof value === 'number'
      ? value
      : typeof value === 'string' && /^\s*-?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/.test(value)
        ? Number(value)
        : Number.NaN;
  if (!Number.isFinite(n)) throw new OutboundError(`${what} is ${described(value)}, not a number`);
  // Numeric text as the feed sent it (9999999999999999 would read 10000000000000000 as a number).
  if (Math.abs(n) > NUMBER_LIMIT) {
    throw new OutboundError(`${what} is ${typeof value === 'string' ? described(value) : n}, beyond ±1e15`);
  }
  return n + 0;
}

/**
 * Text without the connector's secret in it: a feed that echoes its request's Authorization
 * header at the pointer, or a database that quotes the connection's password, would show it in
 * `last_error` to every reader of the connector. The secret, as given and base64-encoded (as
 * `config.auth` "basic" sends it), a basic secret's password and a postgres URL's password, each
 * as `[secret]` (a part under 4 characters is left: it would mask ordinary text, and is no
 * secret to speak of). A value is masked before its text is cut to a failure's 40 characters,
 * which would leave a secret's first part.
 */
export function withoutSecret(message: string, secret: unknown): string {
  if (typeof secret !== 'string') return message;
  // As given, base64-encoded (config.auth "basic") and as a URL's query encodes it (config.auth "query").
  const parts = [
    secret,
    Buffer.from(secret).toString('base64'),
    new URLSearchParams({ s: secret }).toString().slice(2),
  ];
  const colon = secret.indexOf(':');
  if (colon >= 0) parts.push(secret.slice(colon + 1)); // user:password, the password alone
  try {
    const password = new URL(secret).password;
    if (password) parts.push(password, decodeURIComponent(password));
  } catch {
    // Not a URL (an http_json token) or a password whose escapes do not decode: the rest stands.
  }
  let text = message;
  for (const part of parts.sort((a, b) => b.length - a.length)) {
    if (part.length >= 4) text = text.replaceAll(part, '[secret]');
  }
  return text;
}

/** The most of a failure's text `last_error` keeps: a database's error may quote a whole value or file. */
export const MAX_ERROR_CHARS = 500;

/**
 * A failed read's text as `last_error` records it: without the secret (see withoutSecret), then
 * cut to MAX_ERROR_CHARS (whole characters: a pair of surrogates is not cut).
 */
export function failureText(message: string, secret: unknown): string {
  const text = withoutSecret(message, secret);
  if (text.length <= MAX_ERROR_CHARS) return text;
  const end = /[\uD800-\uDBFF]/.test(text[MAX_ERROR_CHARS - 1]) ? MAX_ERROR_CHARS - 1 : MAX_ERROR_CHARS;
  return `${text.slice(0, end)}…`;
}

/** A value read, as its failure would quote it: text without the secret (see withoutSecret). */
function masked(value: unknown, secret: string | null): unknown {
  return typeof value === 'string' && secret !== null ? withoutSecret(value, secret) : value;
}

/**
 * A postgres:// URL's host, user, password and database, decoded as libpq decodes them (a URL
 * of this scheme keeps its host's escapes: `db%2Dx` is the host `db-x`); null where an escape
 * is malformed.
 */
export function postgresUrlParts(
  url: URL,
): { host: string; user: string; password: string; database: string | undefined } | null {
  try {
    return {
      host: decodeURIComponent(url.hostname),
      user: decodeURIComponent(url.username),
      password: decodeURIComponent(url.password),
      database: decodeURIComponent(url.pathname.slice(1)) || undefined,
    };
  } catch {
    return null;
  }
}

/** What pg answers where the server takes no TLS on this connection. */
const TLS_REFUSED = 'The server does not support SSL connections';

/** Where a `postgres` connector's secret points, and how its connection is to be opened. */
interface PostgresTarget {
  /** The connection's options, but for its TLS. */
  options: pg.ClientConfig;
  /** The TLS the first connection asks for. */
  ssl: pg.ClientConfig['ssl'];
  /** Whether a server that refuses TLS is connected to again without (`sslmode=prefer`). */
  plaintextIfRefused: boolean;
  /** The host the secret names, said in a failure in place of the address it was reached at. */
  name: string;
}

/** libpq's `sslmode` values, the ones a `postgres` connector's secret may give. */
export const SSLMODES: readonly string[] = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'];

/** What is said of a secret's `sslmode` that is none of SSLMODES. */
export function sslmodeProblem(sslmode: string): string {
  return `the secret's sslmode=${sslmode} is none of ${SSLMODES.join(', ')}`;
}

/** The connection a `postgres` connector's secret names, to the address its host was checked at. */
async function postgresTarget(secret: string, policy: OutboundPolicy, deadline: number): Promise<PostgresTarget> {
  let url: URL;
  try {
    url = new URL(secret);
  } catch {
    throw new OutboundError('the secret is not a postgres:// URL');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new OutboundError('the secret is not a postgres:// URL');
  }
  const parts = postgresUrlParts(url);
  if (!parts) throw new OutboundError('the secret has a malformed %-escape in its host, user, password or database');
  const { host: named, ...decoded } = parts;
  const host = named || 'localhost';
  const target = await resolveAllowed(host, policy, deadline);
  const sslmode = url.searchParams.get('sslmode') ?? 'disable';
  // A value libpq does not know (`verify_full`) is refused, not read as TLS unverified: stored by
  // an earlier build, which did not check it on writes.
  if (!SSLMODES.includes(sslmode)) throw new OutboundError(sslmodeProblem(sslmode));
  const options: pg.ClientConfig = {
    host: target.address,
    port: Number(url.port || 5432),
    ...decoded,
    connectionTimeoutMillis: policy.timeoutMs,
    statement_timeout: policy.timeoutMs,
    query_timeout: policy.timeoutMs,
    application_name: 'edm-connector',
  };
  // `allow` is libpq's plaintext first, then TLS where the server demands it; here it is
  // plaintext only, so a server that demands TLS refuses the read (`prefer` or `require` reach it).
  if (sslmode === 'disable' || sslmode === 'allow')
    return { options, ssl: false, plaintextIfRefused: false, name: host };
  // `prefer` is libpq's: TLS without checking the server's certificate, and plaintext where the
  // server answers that it takes no TLS.
  const verified = sslmode === 'verify-full' || sslmode === 'verify-ca';
  return {
    options,
    ssl: { servername: host, rejectUnauthorized: verified },
    plaintextIfRefused: sslmode === 'prefer',
    name: host,
  };
}

/**
 * Runs a `postgres` connector's query read-only and takes the first column of its first row,
 * all of it (the connection, BEGIN, the query) within the connector timeout: each step has the
 * timeout too, but three slow steps would take three times it.
 */
async function readPostgres(
  config: ConnectorConfig,
  secret: string,
  policy: OutboundPolicy,
  sending?: () => void,
): Promise<number> {
  // One deadline for the host's lookup, the connection, BEGIN and the query.
  const deadline = readDeadline(policy);
  // Every connection the read opens (a second one where `prefer` met a server without TLS),
  // closed when the read ends or its deadline passes; none is opened after that.
  const opened: pg.Client[] = [];
  const answers = answerBound();
  let over = false;
  const close = async () => {
    over = true;
    await Promise.all(opened.map((client) => client.end().catch(() => {})));
  };
  const open = (target: PostgresTarget, ssl: pg.ClientConfig['ssl']): pg.Client => {
    if (over) throw new OutboundError('postgres: the read is over');
    const client = new pg.Client({ ...target.options, ssl });
    // A connection that breaks later is this read's failure, not the process's.
    client.on('error', () => {});
    answers.watch(client);
    opened.push(client);
    return client;
  };
  const work = postgresTarget(secret, policy, deadline)
    .then((target) => {
      sending?.();
      return queryPostgres(target, (ssl) => open(target, ssl), config, secret, answers.exceeded);
    })
    .finally(close);
  if (deadline === Number.POSITIVE_INFINITY) return work;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => {
        reject(new OutboundError(`postgres: no answer within ${policy.timeoutMs} ms`));
        void close();
      },
      Math.max(0, deadline - performance.now()),
    );
  });
  work.catch(() => {}); // answered by the timeout when it loses the race
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The target's connection, made again without TLS where `prefer` met a server that takes none. */
async function connectPostgres(
  target: PostgresTarget,
  open: (ssl: pg.ClientConfig['ssl']) => pg.Client,
): Promise<pg.Client> {
  const client = open(target.ssl);
  try {
    await client.connect();
    return client;
  } catch (err) {
    if (!target.plaintextIfRefused || (err as Error).message !== TLS_REFUSED) throw err;
  }
  const plaintext = open(false);
  await plaintext.connect();
  return plaintext;
}

/** The cursor a read takes its row through (the connection is the read's own: no other names it). */
const CURSOR = 'edm_connector_read';

/** The statement as one by the extended protocol, which takes no second: no `COMMIT; …` out of the read-only transaction. */
function oneStatement(text: string): pg.QueryArrayConfig {
  // (`queryMode` is pg's, not yet in its types.)
  const query: pg.QueryArrayConfig & { queryMode: 'extended' } = { text, rowMode: 'array', queryMode: 'extended' };
  return query;
}

async function queryPostgres(
  target: PostgresTarget,
  open: (ssl: pg.ClientConfig['ssl']) => pg.Client,
  config: ConnectorConfig,
  secret: string,
  exceeded: () => boolean,
): Promise<number> {
  try {
    return await readFirstCell(await connectPostgres(target, open), config, secret);
  } catch (err) {
    // Whatever the connection's end made fail (a startup answer too, or a query's), said so.
    if (exceeded()) throw new OutboundError(`postgres: the server answered more than ${MAX_ANSWER_BYTES} bytes`);
    if (err instanceof OutboundError) throw err;
    throw new OutboundError(
      `postgres: ${withoutAddress((err as Error).message, target.options.host as string, target.name)}`,
    );
  }
}

/**
 * Ends a read's connection once its server has sent more than MAX_ANSWER_BYTES on it, from its
 * first byte (a startup answer too), as an http_json read ends its GET: a value of 200 MB
 * (`repeat('7', 200000000)`), or an error quoting one, is not held here whole. Counted on the
 * socket, then on the TLS stream pg puts over it, where the socket's own data events stop.
 */
function answerBound(): { watch: (client: pg.Client) => void; exceeded: () => boolean } {
  let exceeded = false;
  const watch = (client: pg.Client) => {
    let size = 0;
    let stream = client.connection.stream;
    const count = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_ANSWER_BYTES) return;
      exceeded = true;
      stream.off('data', count);
      stream.destroy(new Error(`the server answered more than ${MAX_ANSWER_BYTES} bytes`));
    };
    stream.on('data', count);
    client.connection.once('sslconnect', () => {
      stream.off('data', count);
      stream = client.connection.stream;
      stream.on('data', count);
    });
  };
  return { watch, exceeded: () => exceeded };
}

/**
 * The statement's first word, past comments, white space and opening parentheses, in capitals
 * (`COPY`, `SELECT`); '' where there is none.
 */
export function leadingKeyword(text: string): string {
  let at = 0;
  for (;;) {
    const rest = text.slice(at);
    const space = /^[\s(]+/.exec(rest);
    if (space) at += space[0].length;
    else if (rest.startsWith('--')) {
      // To the end of the line, which \r ends too in PostgreSQL's lexer.
      const end = rest.search(/[\r\n]/);
      at = end < 0 ? text.length : at + end + 1;
    } else if (rest.startsWith('/*')) {
      // Block comments nest in PostgreSQL.
      let depth = 0;
      let i = 0;
      do {
        if (rest.startsWith('/*', i)) {
          depth++;
          i += 2;
        } else if (rest.startsWith('*/', i)) {
          depth--;
          i += 2;
        } else i++;
      } while (depth > 0 && i < rest.length);
      at += i;
    } else return (/^[A-Za-z_][A-Za-z0-9_$]*/.exec(rest)?.[0] ?? '').toUpperCase();
  }
}

/**
 * What may run by itself where no cursor holds it: SHOW, EXPLAIN and CALL, and the query forms a
 * cursor holds (their syntax errors are answered again, as the query's own).
 */
const STATEMENTS_BY_THEMSELVES = new Set(['SELECT', 'VALUES', 'TABLE', 'WITH', 'SHOW', 'EXPLAIN', 'CALL']);

/** BEGIN READ ONLY, the query, and its first row's first column as a metric. */
async function readFirstCell(client: pg.Client, config: ConnectorConfig, secret: string): Promise<number> {
  await client.query('BEGIN READ ONLY');
  const query = config.query as string;
  let rows: unknown[][];
  try {
    // Through a cursor, one row is all the server computes and sends: a query of millions of
    // rows is not held here whole to read one cell (nor read on until the timeout).
    await client.query(oneStatement(`DECLARE ${CURSOR} NO SCROLL CURSOR FOR ${query}`));
    rows = (await client.query({ text: `FETCH 1 FROM ${CURSOR}`, rowMode: 'array' })).rows;
  } catch (err) {
    // A cursor holds a SELECT, VALUES or TABLE only; any other statement is a syntax error
    // after FOR (a write inside a WITH under a SELECT is refused by DECLARE itself, 0A000, and
    // answered so). Such a statement then runs by itself, in a read-only transaction of its own:
    // a write is refused there in PostgreSQL's own words, and SHOW, CALL or EXPLAIN answer a
    // few rows (a genuine syntax error is answered again, as the query's own).
    if ((err as { code?: unknown }).code !== '42601') throw err;
    // Only statements that read run by themselves: COPY writes where a read-only transaction
    // does not look (a file, or a program's input, on the database's host, as its role may),
    // and DO runs any of them. (A function the role may call can too: the role is the bound.)
    const word = leadingKeyword(query);
    if (!STATEMENTS_BY_THEMSELVES.has(word)) {
      throw new OutboundError(
        `postgres: a connector runs a query (SELECT, VALUES, TABLE, WITH), SHOW, EXPLAIN or CALL, not ${word || 'this'}`,
      );
    }
    await client.query('ROLLBACK; BEGIN READ ONLY');
    rows = (await client.query(oneStatement(query))).rows;
  }
  if (rows.length === 0) throw new OutboundError('the query returned no row');
  return asMetric(masked(rows[0]?.[0], secret), 'the first column of its first row');
}

/** One read of a pulled connector (`http_json`, `postgres`): its number, or an OutboundError. */
export async function readConnector(connector: Doc, policy: OutboundPolicy, sending?: () => void): Promise<number> {
  const config = (connector.config ?? {}) as ConnectorConfig;
  const secret = typeof connector.secret === 'string' ? connector.secret : null;
  switch (connector.kind) {
    case 'http_json': {
      try {
        const doc = await fetchJson(requestUrl(config, secret), requestHeaders(config, secret), policy, sending);
        return asMetric(masked(atPointer(doc, config.pointer ?? ''), secret), `the value at "${config.pointer ?? ''}"`);
      } catch (err) {
        // Whatever the feed's answer makes fail is this read's failure, not the request's.
        if (err instanceof OutboundError) throw err;
        throw new OutboundError(`the read failed: ${(err as Error).message}`);
      }
    }
    case 'postgres':
      if (secret === null) throw new OutboundError('a postgres connector needs its connection URL as its secret');
      return readPostgres(config, secret, policy, sending);
    default:
      throw new OutboundError(`a ${connector.kind} connector is pushed to, not read`);
  }
}
