import { type ServerResponse, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError, type ErrorCode, errorRegistry } from '../core/errors.js';
import { isUnmigrated } from '../store/schema.js';

export const PROBLEM_TYPE = 'application/problem+json';

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  request_id: string;
  errors?: { path: string; code: string; message: string }[];
  [extra: string]: unknown;
}

/**
 * The most field errors one problem lists. A body of many members refused one by one (a 1 MiB
 * body of unknown members) made a problem ~9× its size, stored as such with its Idempotency-Key.
 */
const MAX_FIELD_ERRORS = 100;

export function toProblem(err: ApiError, requestId: string): Problem {
  const errors = err.errors;
  const more = errors ? errors.length - MAX_FIELD_ERRORS : 0;
  return {
    type: `/problems/${err.code}`,
    title: errorRegistry[err.code].title,
    status: err.status,
    detail:
      more > 0 ? `${err.message} (and ${more} more errors: the first ${MAX_FIELD_ERRORS} are listed)` : err.message,
    code: err.code,
    request_id: requestId,
    ...(errors ? { errors: more > 0 ? errors.slice(0, MAX_FIELD_ERRORS) : errors } : {}),
    ...err.extra,
  };
}

const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  // A QUERY request must say its body's type (RFC 10008): a header, not a body field, is missing.
  FST_ERR_ROUTE_MISSING_CONTENT_TYPE: 'invalid_header',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid_header',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_json',
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_json',
  FST_ERR_BAD_URL: 'route_not_found',
};

/**
 * Errors that mean the database cannot serve right now but may shortly: unreachable or
 * restarting servers, ended sessions, exhausted resources, timeouts, and transient conflicts
 * (deadlock, serialization failure) whose remedy is the same retry. Node socket codes,
 * PostgreSQL SQLSTATEs and SQLite result codes.
 */
const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ENOTFOUND', // the database's host name resolves to nothing (a service being restarted)
  // class 08: connection exception
  '08000',
  '08001',
  '08003',
  '08004',
  '08006',
  '08007',
  // A protocol violation: what PgBouncer reports its own refusals as (max_client_conn reached,
  // a pool's wait timed out, its login to the server failing), and a driver or server in a
  // state no retry of the request's own makes worse.
  '08P01',
  // A login refused (class 28: a rotated password, a role renamed) or a database that is not
  // there (3D000): the database cannot serve this process until its operator puts it right, and
  // /readyz says 503 meanwhile; a retry works once they have, with no restart.
  '28000',
  '28P01',
  '3D000',
  // class 57: operator intervention (pg_terminate_backend, shutdown, recovery, statement_timeout)
  '57P01',
  '57P02',
  '57P03',
  '57P04', // database_dropped: the session's database went away under it
  '57P05',
  '57014',
  // class 53: insufficient resources (too many connections, out of memory, disk full)
  '53000',
  '53100',
  '53200',
  '53300',
  // A database that takes no writes (25006, read_only_sql_transaction): a primary demoted to a
  // standby in a failover, or default_transaction_read_only. Its successor takes them shortly
  // (the pool's next sessions reach it); /readyz says 503 meanwhile.
  '25006',
  // transient conflicts and session timeouts
  '40001',
  '40P01',
  '55P03',
  '25P03',
  'SQLITE_BUSY',
  'SQLITE_BUSY_SNAPSHOT',
  'SQLITE_BUSY_RECOVERY',
  'SQLITE_BUSY_TIMEOUT',
  'SQLITE_LOCKED',
]);

/** PostgreSQL refusing text it cannot store (e.g. U+0000 in a query parameter): the caller's input. */
const BAD_TEXT_CODES = new Set(['22021', '22P05']);

/** Messages of node-postgres for sessions that ended or could not start (they carry no code). */
const UNAVAILABLE_MESSAGE =
  /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|Client was closed and is not queryable|Query read timeout/i;

/**
 * Storage that cannot take writes: a full disk (SQLite's SQLITE_FULL, PostgreSQL's 53100), I/O
 * errors, a file or folder turned read-only or that cannot be opened. Answered 503 (a retry may
 * pass once an operator acts) and logged as an error, since it needs one.
 */
export function isStorageFault(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return (
    typeof code === 'string' &&
    (code === '53100' || code === 'SQLITE_FULL' || /^SQLITE_(IOERR|READONLY|CANTOPEN)(_|$)/.test(code))
  );
}

/** A transaction PostgreSQL aborted for other writes to its rows: a deadlock, a serialization failure. */
export function isConflict(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === '40P01' || code === '40001';
}

/** True for errors that mean the database cannot be reached right now (answered as 503). */
export function isUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && UNAVAILABLE_CODES.has(code)) return true;
  // A Unix socket that is not there: a stopped local PostgreSQL removes its socket (a file
  // SQLite cannot open is a storage fault, not this: no connect).
  if (code === 'ENOENT' && (err as { syscall?: unknown }).syscall === 'connect') return true;
  // A database closed to new sessions (ALLOW_CONNECTIONS false, for maintenance): 55000 is a
  // generic code (object not in prerequisite state), so by the server routine that refuses the
  // session (its name is not translated, as a message under another lc_messages is), or its message.
  if (code === '55000') {
    const routine = (err as { routine?: unknown }).routine;
    return routine === 'CheckMyDatabase' || /is not currently accepting connections/.test(err.message);
  }
  return UNAVAILABLE_MESSAGE.test(err.message);
}

/** Maps any thrown error to an ApiError; unknown ones become a 500 that reveals nothing. */
export function asApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  const fe = err as FastifyError;
  const mapped = fe?.code ? FASTIFY_CODES[fe.code] : undefined;
  if (mapped) return new ApiError(mapped, fe.message);
  if (fe instanceof SyntaxError && fe.statusCode === 400) return new ApiError('invalid_json', fe.message);
  if (fe?.code && BAD_TEXT_CODES.has(fe.code)) {
    return new ApiError('validation_failed', 'Text must be valid Unicode without the NUL character (U+0000)');
  }
  if (isStorageFault(err)) {
    return new ApiError(
      'service_unavailable',
      'The database cannot store data right now (disk full or failing); retry later',
      {
        headers: { 'retry-after': '5' },
        cause: err,
      },
    );
  }
  // A transaction run again after a deadlock or a serialization failure, until its runs ran out
  // (Engine.transaction): other writes to the same rows, not an outage.
  if (isConflict(fe)) {
    return new ApiError(
      'service_unavailable',
      'Other writes to the same rows kept this one from completing, each time it ran; retry shortly',
      { cause: err, headers: { 'retry-after': '1' } },
    );
  }
  if (isUnavailable(err)) {
    // With its cause, which the log says (a warning: refused, timed out, terminated, …).
    return new ApiError('service_unavailable', 'The database is unavailable or busy; retry shortly', {
      cause: err,
      headers: { 'retry-after': '1' },
    });
  }
  // Not ready rather than broken, as /readyz says: the log names what is missing.
  if (isUnmigrated(err)) {
    return new ApiError('service_unavailable', 'The database schema is not in place yet (edm migrate creates it)', {
      headers: { 'retry-after': '5' },
      cause: err,
    });
  }
  // A static file's own conditions (If-Match, If-Unmodified-Since) that fail.
  if (fe?.statusCode === 412)
    return new ApiError('precondition_failed', "The file does not meet the request's conditions");
  if (typeof fe?.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return new ApiError('validation_failed', fe.message);
  }
  return new ApiError('internal_error', 'An unexpected error occurred');
}

/** How often one fault an operator must act on is logged whole (with its stack). */
const OPERATOR_ERROR_EVERY_MS = 10_000;
/** Per server (an app), so that one's faults do not quiet another's log. */
const operatorErrors = new WeakMap<object, Map<string, { at: number; repeated: number }>>();

/**
 * Logs a fault an operator must act on (a full disk, an unmigrated schema) with its stack, once
 * per OPERATOR_ERROR_EVERY_MS for the same fault: the next line says how many answers it was
 * (`repeated`). Under load a full disk answered every write with a stack of its own, ~1 MB of
 * log a second, onto the disk that was full. Each answer keeps its request line (status 503).
 */
function logOperatorError(request: FastifyRequest, cause: unknown, message: string): void {
  const key = `${message}\u0000${(cause as Error | undefined)?.message ?? String(cause)}`;
  const now = Date.now();
  let logged = operatorErrors.get(request.server);
  if (!logged) {
    logged = new Map();
    operatorErrors.set(request.server, logged);
  }
  const seen = logged.get(key);
  // (A clock set back since is no reason to say nothing until it is past that time again.)
  if (seen && now - seen.at < OPERATOR_ERROR_EVERY_MS && now >= seen.at) {
    seen.repeated++;
    return;
  }
  request.log.error({ err: cause, ...(seen?.repeated ? { repeated: seen.repeated } : {}) }, message);
  // Faults are few (a full disk, a missing table): the map stays small, and is bounded anyway.
  if (logged.size >= 100 && !seen) logged.clear();
  logged.set(key, { at: now, repeated: 0 });
}

/** The one place an error becomes an HTTP answer. */
export function sendProblem(request: FastifyRequest, reply: FastifyReply, err: unknown): FastifyReply {
  const apiError = asApiError(err);
  // Answered while its body still arrives (a 413, or a 401 decided from the headers): Node reads
  // and drops the rest, and a timeout meanwhile closes the connection without a second answer to
  // the one request (a 408 after the 401, under its id).
  const { raw } = request;
  if (!raw.complete) {
    const { socket } = raw;
    answeredEarly.add(socket);
    raw.once('end', () => answeredEarly.delete(socket));
  }
  if (apiError.status >= 500 && apiError.code !== 'service_unavailable') request.log.error({ err }, 'request failed');
  // A schema without a table or column the server uses is an error to act on (an upgrade not
  // migrated yet, or a bug), logged as one; the answer says 503 as /readyz does.
  // So is storage that cannot take writes (a full disk): retrying clients cannot fix it.
  else if (isUnmigrated(apiError.cause) || isStorageFault(apiError.cause)) {
    logOperatorError(request, apiError.cause, apiError.message);
  }
  // A 503 with a known cause (a JWKS that cannot be fetched) says it in the log, once per answer.
  else if (apiError.code === 'service_unavailable' && apiError.cause !== undefined) {
    request.log.warn({ cause: String((apiError.cause as Error)?.message ?? apiError.cause) }, apiError.message);
  }
  // A caching policy set for the answer it would have been (a Playground asset's year) is not
  // the problem's: a shared cache would keep the error in the file's place. One that forbids
  // storing (a credential's `no-store`) holds for it too.
  if (reply.getHeader('cache-control') !== 'no-store') reply.removeHeader('cache-control');
  if (apiError.headers) reply.headers(apiError.headers);
  // RFC 6750 §3: a request without credentials gets the bare challenge, a token refused says so.
  if (apiError.status === 401) {
    reply.header('www-authenticate', apiError.code === 'invalid_token' ? 'Bearer error="invalid_token"' : 'Bearer');
  }
  return reply
    .code(apiError.status)
    .type(PROBLEM_TYPE)
    .send(JSON.stringify(toProblem(apiError, request.id)));
}

/**
 * Connections whose request is answered while its body still arrives (a 413, or another problem
 * decided before it was read; see sendProblem): Node reads and drops the rest, and a timeout
 * meanwhile closes the connection without another answer.
 */
export const answeredEarly = new WeakSet<Socket>();

/**
 * Node's HTTP parser refused the connection's request before any route saw it: a request that
 * did not arrive within the request timeout (408), headers over the size limit (431), or bytes
 * that are not HTTP (400). Answered as a problem like any other, on the socket, which is then
 * closed (Fastify's `clientErrorHandler`). A reset connection gets nothing. Answers the status
 * sent, or null when nothing was.
 */
export function answerClientError(
  err: Error & { code?: string },
  socket: Socket,
  requestId: string,
  headers: Readonly<Record<string, string>> = {},
): number | null {
  if (err.code === 'ECONNRESET' || socket.destroyed) return null;
  // Its request was answered already (a 413 while the body still arrived): a second answer
  // would break the framing, so the connection just closes.
  if (answeredEarly.has(socket)) {
    socket.destroy();
    return null;
  }
  const apiError =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? new ApiError('request_timeout', 'The request did not arrive in time')
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? requestLineTooLong(err)
          ? new ApiError('uri_too_long', 'The request line (its method and URL) exceeds 16 KiB')
          : new ApiError('headers_too_large', 'The request headers exceed 16 KiB')
        : new ApiError('malformed_request', 'This is not a valid HTTP/1.1 request');
  afterEarlierAnswers(socket, (sent) =>
    sent ? answerOnSocket(socket, apiError, requestId, headers) : socket.destroy(),
  );
  return apiError.status;
}

/**
 * Runs `then` once the answers to the requests before on the connection are sent (pipelined
 * requests, a write among them), or at once if none is under way: `sent` false if one was cut
 * off instead (the connection is going). `own`: the answer of the request asking, which is not
 * waited for. Node gives the connection to one answer at a time (`_httpMessage`), the earliest
 * unfinished; the answer of a request still arriving (a body that stopped, or broke) is none
 * before it.
 */
export function afterEarlierAnswers(socket: Socket, then: (sent: boolean) => void, own?: ServerResponse): void {
  const earlier = (socket as { _httpMessage?: ServerResponse | null })._httpMessage;
  if (!earlier || earlier === own || earlier.writableFinished || !earlier.req?.complete) then(true);
  else if (earlier.closed) then(false);
  else earlier.once('close', () => (earlier.writableFinished ? afterEarlierAnswers(socket, then, own) : then(false)));
}

/**
 * Whether headers over the limit were the request line alone (RFC 9112 §3: 414): the bytes the
 * parser was reading begin with it, and it had not ended by the limit. Bytes that arrived in
 * pieces, the line among earlier ones, are judged as headers (431).
 */
function requestLineTooLong(err: Error & { rawPacket?: unknown }): boolean {
  const raw = err.rawPacket;
  if (!Buffer.isBuffer(raw) || !/^[A-Z]+ /.test(raw.subarray(0, 16).toString('latin1'))) return false;
  const end = raw.indexOf(10);
  return end === -1 || end >= 16 * 1024;
}

/**
 * Writes `apiError` as a problem straight onto a socket no route will answer (the parser's
 * refusals, a CONNECT), then closes it. `headers`: more fields (a cross-origin request's CORS
 * headers). Answers the status sent.
 */
export function answerOnSocket(
  socket: Socket,
  apiError: ApiError,
  requestId: string,
  headers: Readonly<Record<string, string>> = {},
): number {
  if (socket.writable) {
    const body = JSON.stringify(toProblem(apiError, requestId));
    let more = '';
    for (const [name, value] of Object.entries(headers)) more += `${name}: ${value}\r\n`;
    socket.write(
      // Date, as every answer of an origin server with a clock (RFC 9110 §6.6.1).
      `HTTP/1.1 ${apiError.status} ${STATUS_CODES[apiError.status]}\r\nDate: ${new Date().toUTCString()}\r\n` +
        `Content-Type: ${PROBLEM_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
        `x-request-id: ${requestId}\r\n${more}Connection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
  return apiError.status;
}

/** A Host header's value: a host name or address, and a port (RFC 3986's reg-name, IP-literal, port). */
const HOST_VALUE = /^[A-Za-z0-9\-._~!$&'()*+,;=%:[\]]+$/;

/**
 * How many `Host` and `Authorization` lines a request's headers hold (Node's `headers` keeps only
 * the first of each), in one pass: every request is checked for both. The usual spellings are
 * compared before any lower-cased copy is made.
 */
export function headerLines(raw: readonly string[]): { host: number; authorization: number } {
  let host = 0;
  let authorization = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length === 4) {
      if (name === 'Host' || name === 'host' || name.toLowerCase() === 'host') host++;
    } else if (name.length === 13) {
      if (name === 'Authorization' || name === 'authorization' || name.toLowerCase() === 'authorization') {
        authorization++;
      }
    }
  }
  return { host, authorization };
}

/**
 * Why a request's Host header makes it no request to answer (400 `malformed_request`, RFC 9112
 * §3.2), or null: an HTTP/1.1 request without one, one with two (Node keeps the first, where a
 * proxy in front may route by the other), or one that is no host (`a b`, `x/y`). `lines`: the
 * request's headerLines, where the caller counted them already.
 */
export function hostProblem(
  request: FastifyRequest,
  lines: { host: number } = headerLines(request.raw.rawHeaders),
): string | null {
  const host = request.headers.host;
  if (host === undefined)
    return request.raw.httpVersion === '1.1' ? 'An HTTP/1.1 request must carry a Host header' : null;
  if (lines.host > 1) return 'A request must carry one Host header, not more';
  if (!HOST_VALUE.test(host)) return 'The Host header must be a host name or address, and a port';
  return null;
}

/**
 * Why a request's body framing makes it no request to answer (400 `malformed_request`, the
 * connection closed), or null: a Transfer-Encoding on HTTP/1.0 (RFC 9112 §6.1: faulty framing)
 * or one naming a coding besides `chunked` (`gzip, chunked`, which Node's parser reads as plain
 * chunked, the body still compressed).
 */
export function framingProblem(request: FastifyRequest): string | null {
  const coding = request.headers['transfer-encoding'];
  if (coding === undefined) return null;
  if (request.raw.httpVersion === '1.0') return 'An HTTP/1.0 request cannot carry Transfer-Encoding';
  return /^\s*chunked\s*$/i.test(coding) ? null : 'Transfer-Encoding other than chunked alone is not supported';
}
