import { isUtf8 } from 'node:buffer';
import { statfs } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Server as NetServer, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { DEV_SUB, DEV_TENANT, MAX_CLAIM_LENGTH, mintToken, requireScope, TokenVerifier } from '../core/auth.js';
import { type Clock, isoTime, systemClock } from '../core/clock.js';
import { type Config, storeError } from '../core/config.js';
import { ApiError, fieldError } from '../core/errors.js';
import { requestIds } from '../core/ids.js';
import { CursorCodec } from '../core/list-query.js';
import { isIdOf, type ModuleDef, type Principal, parseSignature, signedMessage } from '../core/resource.js';
import { isCredentialParam, ServerKeys } from '../core/secrets.js';
import {
  bodyShapeProblem,
  duplicateMemberPath,
  isStorableText,
  longerThan,
  MalformedBody,
  prototypeMemberPath,
} from '../core/validation.js';
import { modules as allModules } from '../modules/index.js';
import { DEFAULT_STATEMENT_TIMEOUT_MS, openStore, type Store, storeOptions } from '../store/database.js';
import { Engine } from '../store/engine.js';
import {
  isUnmigrated,
  migrate,
  recordSecretFingerprint,
  recordWriteProbe,
  schemaProbe,
  searchPathProblem,
  sessionStatementTimeoutMs,
  takesWrites,
} from '../store/schema.js';
import { type CorsPolicy, corsHeaderFields, corsHeaders, registerCors } from './cors.js';
import { devTokenBody } from './dev-token.js';
import { Idempotency } from './idempotency.js';
import { registerManifestRoute } from './manifest.js';
import { registerMetrics } from './metrics.js';
import { ACCEPT_PATCH, registerOpenApiRoute } from './openapi.js';
import { playground } from './playground.js';
import {
  afterEarlierAnswers,
  answerClientError,
  answerOnSocket,
  framingProblem,
  headerLines,
  hostProblem,
  isConflict,
  isStorageFault,
  isUnavailable,
  PROBLEM_TYPE,
  sendProblem,
  toProblem,
} from './problem.js';
import { problemDocs } from './problem-docs.js';
import { parseQueryString, routerPath } from './querystring.js';
import { RATE_LIMIT_HEADERS, RateLimiter, rateLimitKey } from './rate-limit.js';
import { registerResourceRoutes } from './routes.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
  interface FastifyInstance {
    engine: Engine;
    /**
     * Begins a stop: takes no new connection, answers each request still arriving on an open
     * one 503 as its connection's last, and waits up to `graceMs` for those connections to end
     * before `close()` ends those still idle (see buildApp).
     */
    drain(graceMs: number): Promise<void>;
  }
}

/** The id a request was given, kept on Node's message for an answer the connection gives. */
const REQUEST_ID = Symbol('edm.requestId');
/** A Content-Type as sent where it was no media type (the request's headers hold a stand-in). */
const SENT_TYPE = Symbol('edm.sentType');
type Tagged = { [REQUEST_ID]?: string; [SENT_TYPE]?: string };
/** A media type as RFC 9110 §8.3.1 writes one, `type/subtype` tokens, with any parameters after. */
const MEDIA_TYPE = /^\s*[!#$%&'*+.^_`|~0-9A-Za-z-]+\/[!#$%&'*+.^_`|~0-9A-Za-z-]+\s*(;|$)/;

export interface AppOptions {
  config: Config;
  /** A store to use instead of opening `config.databaseUrl` (the caller then closes it). */
  store?: Store;
  clock?: Clock;
  modules?: readonly ModuleDef[];
  /** Create or upgrade the schema before serving (default: `config.autoMigrate`, else true). */
  migrate?: boolean;
  /**
   * The log: true (or `info`) logs every request and more; `warn` or `error` only what an
   * operator must read (warnings and errors: a full disk, an unmigrated schema, a 5xx).
   */
  logger?: boolean | 'info' | 'warn' | 'error';
  /** Where the request log goes when `logger` is on (default: standard output). */
  logStream?: { write(line: string): void };
  /** Run module jobs on their timers (default: only with the system clock). */
  runJobs?: boolean;
  /**
   * The bytes a SQLite store's file system must have free for /readyz to say ready again after a
   * storage fault (default STORAGE_FREE_BYTES, 1 MiB).
   */
  storageFreeBytes?: number;
}

export const BODY_LIMIT = 1024 * 1024;
/** The longest path parameter (an id) the router takes: a longer one names no route (404). */
const MAX_PARAM_LENGTH = 100;

/** How long /readyz says not ready after a storage fault before a write probe may say otherwise. */
const STORAGE_FAULT_MS = 10_000;

/** The free space a SQLite store's file system must have for /readyz to be ready after a storage fault. */
const STORAGE_FREE_BYTES = 1024 * 1024;

/** The bytes free to this process on the file system of a SQLite store's file; null: not known (PostgreSQL). */
async function freeBytes(store: Store): Promise<number | null> {
  if (store.kind !== 'sqlite' || store.file === null) return null;
  try {
    // The file's own file system (its WAL's too), through a link to it; root may write the
    // blocks kept for it (ext4's reserved 5%), others may not.
    const fs = await statfs(store.file);
    return (process.geteuid?.() === 0 ? fs.bfree : fs.bavail) * fs.bsize;
  } catch {
    return null;
  }
}

/** /readyz within STORAGE_FAULT_MS of a storage fault. */
class StorageFaulted extends Error {
  constructor() {
    super('a write met a storage fault (a full disk, a file system turned read-only)');
  }
}

/**
 * A URL as the request log shows it: a credential's value (isCredentialParam: a signed URL's
 * signature, and the forms a client may put a token in, which the API refuses with 401 but which
 * are credentials all the same) is left out,
 * under whatever escapes and letter case its name came with (`sig%6Eature`, `SIGNATURE`).
 */
export function loggedUrl(url: string): string {
  const at = url.indexOf('?');
  if (at < 0) return url;
  const params = url
    .slice(at + 1)
    .split('&')
    .map((param) => {
      const eq = param.indexOf('=');
      const raw = eq < 0 ? param : param.slice(0, eq);
      let name = raw;
      try {
        name = decodeURIComponent(raw.replaceAll('+', ' '));
      } catch {}
      return eq >= 0 && isCredentialParam(name) ? `${raw}=[redacted]` : param;
    });
  return `${url.slice(0, at)}?${params.join('&')}`;
}
const LOOPBACK = new Set(['127.0.0.1', '::1', '::ffff:127.0.0.1']);
/** A Host header naming this machine's loopback: `localhost`, `127.0.0.1` or `[::1]`, with a port or not. */
function isLocalHost(host: string): boolean {
  return /^(?:localhost|127\.0\.0\.1|\[::1\])(?::\d+)?$/i.test(host);
}

const PUBLIC_API = new Set(['/api/v1/manifest', '/api/v1/openapi.json', '/api/v1/dev/token']);

/**
 * Where a body that is not JSON breaks, in V8's words (`Expected ',' or '}' after property value
 * in JSON at position 9`), whatever JSON media type it came as; Fastify's own message named
 * application/json even for a merge patch, and no position.
 */
function jsonSyntaxProblem(text: string, fallback: string): string {
  try {
    JSON.parse(text);
  } catch (err) {
    if (err instanceof SyntaxError) return `The body is not valid JSON: ${err.message}`;
  }
  return fallback;
}

/** The last of a HEAD route's onSend hooks: a 304 carries no Content-Length (see the onRoute hook). */
function headNotModified(
  _request: FastifyRequest,
  reply: FastifyReply,
  payload: unknown,
  done: (err: null, payload: unknown) => void,
) {
  if (reply.statusCode === 304) reply.removeHeader('content-length');
  done(null, payload);
}

/**
 * Builds the Fastify application (it never listens: the CLI or a test decides that).
 * @example const app = await buildApp({ config: loadConfig() }); await app.listen({ port: 8080 });
 */
export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const { config } = options;
  const clock = options.clock ?? systemClock;
  const modules = options.modules ?? allModules;
  // A store of its own is opened and migrated here. If that fails, it is closed again (a pool's
  // idle connections would hold the process up for seconds), and the error names the store.
  let opened: Store | undefined;
  const keys = new ServerKeys(config.secretKey);
  /** The fingerprint of the secret the database was served with before this start (see below). */
  let servedWith: string | null = null;
  /** PostgreSQL: the statement_timeout this server's sessions got (see below); null: not asked. */
  let sessionTimeout: number | null = null;
  let migrated = false;
  try {
    opened = options.store ?? openStore(config.databaseUrl, storeOptions(config));
    if (options.migrate ?? config.autoMigrate ?? true) {
      await migrate(
        opened,
        modules.flatMap((m) => m.resources),
      );
      // Recorded where the store has just answered: a server started while its database is down
      // (--no-migrate) still starts, and answers 503 until it is back.
      servedWith = await recordSecretFingerprint(opened.db, keys.fingerprint);
      if (!options.store) sessionTimeout = await sessionStatementTimeoutMs(opened);
      migrated = true;
    }
  } catch (err) {
    if (options.store) throw err;
    await opened?.close().catch(() => {});
    throw storeError(config.databaseUrl, err);
  }
  const store = opened;
  const cursors = new CursorCodec(config.secretKey);
  const engine = new Engine({
    store,
    clock,
    modules,
    cursors,
    keys,
    requireIfMatch: config.requireIfMatch,
    outbound: { allowHosts: config.connectorAllowHosts ?? [], timeoutMs: config.connectorTimeoutMs ?? 10_000 },
  });
  // A sync claims its key, then reads its feed (up to the connector timeout) before its transaction.
  // On SQLite the keys' own writes go through the engine's group commit, as every write does.
  const idempotency = new Idempotency(
    store,
    clock,
    keys.requestKey,
    config.connectorTimeoutMs ?? 10_000,
    store.kind === 'sqlite' ? (fn) => engine.transaction(fn) : undefined,
  );
  const verifier = new TokenVerifier({
    secret: (config.acceptSecret ?? true) ? config.jwtSecret : undefined,
    publicKey: config.jwtPublicKey,
    jwksUrl: config.jwksUrl,
    clock,
    issuer: config.jwtIssuer,
    audience: config.jwtAudience,
    onStaleKeys: (why, at) =>
      app.log.warn(
        { err: why, setArrivedAt: new Date(at).toISOString() },
        'the JWKS cannot be fetched: tokens are verified by the last key set that arrived until one does',
      ),
  });

  const requestId = requestIds();
  const requestTimeout = config.requestTimeoutMs ?? 30_000;
  /** How often a request's arrival is checked against its deadline: ~a tenth of it. */
  const checkEvery = Math.min(5000, Math.max(10, Math.round(requestTimeout / 10)));
  const cors: CorsPolicy = {
    methods: ['GET', 'POST', 'PATCH', 'DELETE', 'OPTIONS'],
    allowedHeaders: ['Authorization', 'Content-Type', 'If-Match', 'If-None-Match', 'Idempotency-Key'],
    exposedHeaders: [
      'ETag',
      'Location',
      'x-request-id',
      'Retry-After',
      'Idempotent-Replayed',
      'Original-Request-Id',
      ...RATE_LIMIT_HEADERS,
    ],
    maxAge: 600,
    sameOriginOnly: config.localMode ? ['/api/v1/dev/token'] : [],
  };
  const answerCors = corsHeaders(cors);
  const corsFields = corsHeaderFields(cors);
  /** Count answers no hook sees in the request metrics (set once they are registered). */
  let observeUnrouted: ((request: FastifyRequest, reply: FastifyReply) => void) | undefined;
  let observeConnection: ((method: string, route: string, status: number, seconds: number) => void) | undefined;
  /** An answer the connection gave, before any route: logged and counted (no route). */
  const answeredByConnection = (id: string, method: string, status: number) => {
    app.log.info({ reqId: id, res: { statusCode: status } }, 'request answered by the connection');
    observeConnection?.(method, 'unmatched', status, 0);
  };
  /**
   * A request the connection refuses before any route (Node's parser: a request that did not
   * arrive in time, headers over the limit, bytes that are not HTTP), answered as a problem on
   * the socket, with CORS headers where its headers arrived with an Origin.
   */
  const refuseOnSocket = (err: Error & { code?: string }, socket: Socket) => {
    const incoming = (socket as { parser?: { incoming?: IncomingMessage | null } }).parser?.incoming;
    const known = incoming && !incoming.complete ? (incoming as Tagged)[REQUEST_ID] : undefined;
    const id = known ?? requestId();
    const origin = known ? incoming?.headers.origin : undefined;
    const status = answerClientError(err, socket, id, origin === undefined ? {} : corsFields(origin));
    // Its method where its headers arrived (Node's parser knows only real ones).
    if (status !== null) answeredByConnection(id, known && incoming?.method ? incoming.method : 'UNKNOWN', status);
  };
  const app = Fastify({
    logger: options.logger
      ? {
          level: options.logger === true ? 'info' : options.logger,
          ...(options.logStream ? { stream: options.logStream } : {}),
          serializers: {
            req: (req: FastifyRequest) => ({
              method: req.method,
              url: loggedUrl(req.url),
              host: req.host,
              remoteAddress: req.ip,
              remotePort: req.socket?.remotePort,
            }),
          },
        }
      : false,
    bodyLimit: BODY_LIMIT,
    // A request (headers and body) must arrive within this: a client trickling bytes holds no
    // connection for longer. Handlers' own time does not count. Checked every ~tenth of it.
    requestTimeout,
    // A request without Host (HTTP/1.1 requires one) is answered below as a problem, not by
    // Node's own bare 400 with no body.
    http: {
      connectionsCheckingInterval: checkEvery,
      requireHostHeader: false,
    },
    // A request cut off while its body arrives (a timeout, a malformed chunk) is answered under
    // the id it was given, which the log's "incoming request" line names; one whose headers never
    // arrived whole gets a new id. Node's parser holds the message it is reading.
    clientErrorHandler: (err, socket) => refuseOnSocket(err, socket),
    genReqId: (raw) => {
      const id = requestId();
      (raw as Tagged)[REQUEST_ID] = id;
      return id;
    },
    requestIdHeader: false,
    // A request that arrives while the server closes is answered below, as a problem.
    return503OnClosing: false,
    routerOptions: { ignoreTrailingSlash: true, querystringParser: parseQueryString, maxParamLength: MAX_PARAM_LENGTH },
    // A URL the router cannot read (`%zz`) or whose id is over its length limit names nothing:
    // 404 as a problem like every other, before any hook (so with its headers set here).
    // No hook runs for it: it is counted in the metrics here.
    frameworkErrors: (_err, request, reply) => {
      reply.header('x-request-id', request.id);
      answerCors(request, reply);
      const path = request.raw.url?.split('?')[0] ?? '';
      reply.raw.once('finish', () => observeUnrouted?.(request, reply));
      sendProblem(request, reply, new ApiError('route_not_found', `No route ${request.method} ${path}`));
    },
  });
  // Every header line counts (Node keeps the first ~1,000 and drops the rest otherwise, both from
  // `headers` and `rawHeaders`): a second Authorization, Host or If-Match past them went unseen.
  // The 16 KiB header limit still bounds them.
  app.server.maxHeadersCount = 0;
  // A CONNECT names no route here: a problem, as any other path no route answers (Node closed
  // the socket without a word).
  app.server.on('connect', (req: IncomingMessage, socket: Socket) => {
    const id = requestId();
    // Pipelined behind requests still being answered: after those answers, in its turn.
    afterEarlierAnswers(socket, (sent) => {
      if (!sent) return socket.destroy();
      const problem = new ApiError('route_not_found', `No route CONNECT ${req.url}`);
      const status = answerOnSocket(socket, problem, id, corsFields(req.headers.origin));
      answeredByConnection(id, 'CONNECT', status);
    });
  });
  // An Expect the server cannot meet (anything but 100-continue) is 417 as a problem; Node's own
  // answer was an empty body, without a request id, outside the log.
  app.server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    const id = requestId();
    const problem = new ApiError('expectation_failed', 'Only Expect: 100-continue is met');
    const body = JSON.stringify(toProblem(problem, id));
    res.writeHead(417, {
      'content-type': PROBLEM_TYPE,
      'content-length': Buffer.byteLength(body),
      'x-request-id': id,
      ...corsFields(req.headers.origin),
      connection: 'close',
    });
    res.end(body);
    req.resume();
    answeredByConnection(id, req.method ?? 'UNKNOWN', 417);
  });
  // The headers' deadline is the request's: Node's own (60 s) would cut a longer one, and 0 too.
  app.server.headersTimeout = requestTimeout;
  app.decorate('engine', engine);
  app.decorateRequest('principal', null);

  // JSON only (PATCH also merge-patch+json): any other media type is 415 (below). A body that is not
  // JSON is kept as a MalformedBody, answered 400 invalid_json where the route reads it (one
  // with a `__proto__` member, 400 unknown_field naming it): after 404 and 412, as PRODUCT.md
  // orders them, and stored with its Idempotency-Key like any 4xx.
  app.removeContentTypeParser(['text/plain', 'application/json']);
  const defaultJson = app.getDefaultJsonParser('error', 'error');
  // The members a body names, counted as its shape is checked (parsing is synchronous: one will do).
  const namedMembers = { members: 0 };
  const parseJson = (request: FastifyRequest, text: string, done: (err: Error | null, body?: unknown) => void) => {
    const shape = bodyShapeProblem(text, undefined, undefined, namedMembers);
    if (shape !== null) {
      done(null, new MalformedBody(shape, text));
      return;
    }
    // Fastify's own words would name application/json whatever the type sent (merge-patch too).
    if (text === '') {
      done(null, new MalformedBody('The body is empty: send a JSON object', text));
      return;
    }
    defaultJson(request, text, (err, body) => {
      if (!err) {
        // A member named twice: JSON leaves which one counts to the reader (a proxy in front may
        // have checked the first; JSON.parse keeps the last), so neither is taken.
        const twice = duplicateMemberPath(text, body, namedMembers.members);
        if (twice === null) done(null, body);
        else {
          const message = `${twice.slice(1)} is named twice in one object: send each member once`;
          const error = fieldError('invalid_json', [{ path: twice, code: 'duplicate_member', message }]);
          done(null, new MalformedBody(message, text, error));
        }
        return;
      }
      // JSON, refused for a member that could reach a prototype: named, as an unknown field is.
      const path = prototypeMemberPath(text);
      const named =
        path === null
          ? undefined
          : fieldError('unknown_field', [
              {
                path,
                code: 'unknown_field',
                message: path.endsWith('/__proto__')
                  ? '__proto__ is not accepted as a member name'
                  : 'constructor holding prototype is not accepted as a member',
              },
            ]);
      done(null, new MalformedBody(named ? err.message : jsonSyntaxProblem(text, err.message), text, named));
    });
  };
  // Read as bytes: text that is not UTF-8 is refused as such, not stored with U+FFFD in its place.
  const parseUtf8Json = (request: FastifyRequest, body: Buffer, done: (err: Error | null, body?: unknown) => void) => {
    if (!isUtf8(body)) {
      done(null, new MalformedBody('The body is not UTF-8 text', body.toString('latin1')));
      return;
    }
    // Valid UTF-8, but no JSON text holds a NUL byte: UTF-16 (RFC 8259 §8.1: JSON is UTF-8, and
    // a `charset` parameter changes nothing), said as such rather than a syntax error at byte 1.
    if (body.includes(0)) {
      const detail = 'The body is not UTF-8 text: it holds NUL bytes (UTF-16?); send JSON as UTF-8';
      done(null, new MalformedBody(detail, body.toString('latin1')));
      return;
    }
    parseJson(request, body.toString(), done);
  };
  // A body of another media type is kept as one that did not parse, refused 415 where the route
  // reads it: after 401, 403, 404 and 412 like a body's 400, and stored with its Idempotency-Key.
  // Its text, for the key's fingerprint, names the type and holds the bytes as they came (the
  // same bytes as another type, or as JSON that did not parse, are another request), and is never
  // blank: spaces sent as text/plain are a body of another type, not none.
  const mediaType = (request: FastifyRequest) =>
    (request.raw as Tagged)[SENT_TYPE] ?? String(request.headers['content-type'] ?? '').split(';')[0];
  // The 415 says what would be taken: a PATCH's types (RFC 5789 §2.2), or no content coding
  // (RFC 9110 §12.5.3: an encoded body is refused whatever its type).
  const unsupported = (request: FastifyRequest, body: Buffer, detail: string, encoded = false) =>
    new MalformedBody(
      detail,
      `\u0001${mediaType(request)}\u0001${body.toString('base64')}`,
      new ApiError('unsupported_media_type', detail, {
        headers: encoded
          ? { 'accept-encoding': 'identity' }
          : request.method === 'PATCH'
            ? { 'accept-patch': ACCEPT_PATCH }
            : undefined,
      }),
    );
  // A body in a content coding (gzip, br) is 415 as RFC 9110 §8.4.1 has it: the server reads
  // none, and read as is such bytes were 400 "not UTF-8" (or, if they were JSON, taken as it).
  const coding = (request: FastifyRequest) => {
    const header = String(request.headers['content-encoding'] ?? '').trim();
    if (header === '') return null;
    // A list of codings (RFC 9110 §8.4): identity alone, however often, is none.
    const codings = header.split(',').map((c) => c.trim().toLowerCase());
    return codings.every((c) => c === '' || c === 'identity') ? null : header;
  };
  const parseBody = (request: FastifyRequest, body: Buffer, done: (err: Error | null, body?: unknown) => void) => {
    const encoded = body.length > 0 ? coding(request) : null;
    if (encoded !== null) {
      done(
        null,
        unsupported(request, body, `Content-Encoding ${encoded} is not accepted: send the body uncompressed`, true),
      );
      return;
    }
    parseUtf8Json(request, body, done);
  };
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) =>
    parseBody(request, body as Buffer, done),
  );
  app.addContentTypeParser('application/merge-patch+json', { parseAs: 'buffer' }, (request, body, done) => {
    if (request.method !== 'PATCH' && (body as Buffer).length === 0) {
      done(null, undefined); // an empty body is no body, whatever its type says
      return;
    }
    if (request.method !== 'PATCH') {
      done(null, unsupported(request, body as Buffer, 'application/merge-patch+json is accepted on PATCH only'));
      return;
    }
    parseBody(request, body as Buffer, done);
  });
  // Any other media type is 415, but an empty body is no body whatever its Content-Type says
  // (a DELETE, a restore or a sync sent by a client that labels every request).
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (request, body, done) => {
    if ((body as Buffer).length === 0) {
      done(null, undefined);
      return;
    }
    const type = mediaType(request).trim();
    const detail =
      type === ''
        ? 'The body has no Content-Type: send it as application/json'
        : (request.raw as Tagged)[SENT_TYPE] !== undefined
          ? `Content-Type ${type} is no media type (type/subtype); send application/json`
          : `Unsupported Media Type: ${type}; send application/json`;
    done(null, unsupported(request, body as Buffer, detail));
  });
  registerCors(app, cors);
  // Closing: the requests in flight are answered, a new one is 503 (in the hook below; its
  // connection closes, so a client's retry goes to another instance or to this one restarted).
  // Fastify's own answer was JSON of another shape, without a code, a request id or Retry-After.
  let closing = false;
  // The open connections (tracked per connection, not per request): when closing begins, an
  // answer still being worked on says `Connection: close`. Said keep-alive, its client would send
  // its next request on a connection the server is about to close: a reset, not the 503 below.
  const sockets = new Set<Socket>();
  app.server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  // Node stops checking the request timeout once the server closes: a request still arriving
  // then (a client trickling bytes, or a connection that sent none) held the process up for as
  // long as its client kept the connection open. From the stop on it is checked here, with the
  // same answer (408, the connection closed): such a request has at most EDM_REQUEST_TIMEOUT_MS
  // (and at least a drain's grace) more to arrive. A request that arrived whole is answered however long its handler takes.
  let arrivals: NodeJS.Timeout | undefined;
  const timedOut = new WeakSet<Socket>();
  const beginClosing = (graceMs = 0) => {
    if (closing) return;
    closing = true;
    for (const socket of sockets) {
      // The answer in progress on it (Node's ServerResponse.assignSocket sets it).
      const res = (socket as Socket & { _httpMessage?: ServerResponse })._httpMessage;
      if (res && !res.headersSent) res.setHeader('connection', 'close');
    }
    // From the stop (a drain's start), not the close after it, and not within a drain's grace:
    // a connection its client keeps alive, idle, is one the grace is for (a timeout shorter than
    // the grace answered it 408, and its client's next request went unanswered).
    if (requestTimeout > 0) {
      const deadline = Date.now() + Math.max(requestTimeout, graceMs);
      arrivals = setInterval(() => {
        if (Date.now() < deadline) return;
        for (const socket of sockets) {
          const res = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
          if (timedOut.has(socket) || (res && res.req.complete)) continue;
          timedOut.add(socket);
          refuseOnSocket(Object.assign(new Error('request timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }), socket);
        }
      }, checkEvery);
    }
  };
  // A close ends at once the connections a client keeps alive between requests: one whose next
  // request was on its way then was reset, unanswered (the client cannot tell whether a write
  // ran). A drain first takes no new connection (a proxy tries another server for a refused
  // one), keeps those open for a grace, answering a request that comes on one 503 with
  // `Connection: close`, and is over as soon as none is left.
  app.decorate('drain', async (graceMs: number) => {
    beginClosing(graceMs);
    // Stops listening and leaves the connections be: http.Server's own close() ends the idle
    // ones at once (the close to come calls it, and ignores that the server listens no more).
    if (app.server.listening) NetServer.prototype.close.call(app.server);
    const deadline = Date.now() + graceMs;
    while (sockets.size > 0 && Date.now() < deadline) await sleep(Math.min(20, deadline - Date.now()));
  });
  app.addHook('preClose', (done) => {
    beginClosing();
    done();
  });

  /**
   * When a request or a job last met a storage fault (a full disk, a file system turned read-only
   * after errors), until a write is stored again: /readyz says not ready meanwhile. Nothing else
   * tells: a full disk leaves the file's access bits as they were, and ext4 turned read-only
   * after errors still grants W_OK, so /readyz answered 200 while every write was 503.
   */
  let storageFault: number | null = null;
  const metStorageFault = (err: unknown) => {
    if (isStorageFault(err) || isStorageFault((err as { cause?: unknown } | null)?.cause)) storageFault = Date.now();
  };
  /** A write was stored (a request's, or /readyz's probe): the store takes writes again. */
  const writesTakenAgain = () => {
    if (storageFault === null) return;
    storageFault = null;
    app.log.info('the store takes writes again after a storage fault');
  };

  app.setErrorHandler((err, request, reply) => {
    metStorageFault(err);
    // Fastify closes the connection after a body it stopped reading (413). The client is still
    // sending it: a close then resets the connection, and the answer can be lost with it. Left
    // open, Node reads and drops the rest of the body (within EDM_REQUEST_TIMEOUT_MS) after
    // answering, and the connection serves the next request.
    if ((err as { code?: unknown }).code === 'FST_ERR_CTP_BODY_TOO_LARGE') reply.removeHeader('connection');
    return sendProblem(request, reply, err);
  });

  // The methods each route answers, for a 405's Allow: the router finds a path's route only
  // with its method, so a path that some route answers with another method is known from these.
  const routeMethods: { pattern: RegExp; method: string }[] = [];
  /** The paths of signed operations (a webhook), which their callers reach without a token. */
  const signedPaths: RegExp[] = [];
  app.addHook('onRoute', (route) => {
    // Fastify's own HEAD route gives every answer the length of what it sends, a 304's `0`; RFC
    // 9110 §8.6 allows a 304 no Content-Length but the 200's. This runs after its handler.
    if (route.method === 'HEAD' && route.onSend) route.onSend = [route.onSend, headNotModified].flat();
    const escaped = route.url
      .replace(/[.+?^${}()|[\]\\]/g, '\\$&')
      .replace(/:[^/]+/g, `[^/]{1,${MAX_PARAM_LENGTH}}`)
      .replace('*', '.*'); // a wildcard route (`/playground/*`) answers every path under it
    const pattern = new RegExp(`^${escaped}/?$`);
    for (const method of [route.method].flat()) routeMethods.push({ pattern, method });
    if ((route.config as { signed?: unknown } | undefined)?.signed) signedPaths.push(pattern);
  });
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0];
    // Read as the router reads it (`/h%65althz` is `/healthz`), an escaped slash kept inside its
    // segment: else one path was both a route's (GET) and no route's (PUT: 404, no Allow).
    const routed = routerPath(path);
    const allow = [...new Set(routeMethods.filter((r) => r.pattern.test(routed)).map((r) => r.method))];
    if (allow.length === 0) {
      return sendProblem(request, reply, new ApiError('route_not_found', `No route ${request.method} ${path}`));
    }
    // Every path a route answers takes OPTIONS too (a CORS preflight is answered before this).
    allow.push('OPTIONS');
    reply.header('allow', allow.join(', '));
    // RFC 5789 §3.1: a resource that takes PATCH says in what forms.
    if (allow.includes('PATCH')) reply.header('accept-patch', ACCEPT_PATCH);
    if (request.method === 'OPTIONS') return reply.code(204).send();
    return sendProblem(
      request,
      reply,
      new ApiError('method_not_allowed', `${path} does not take ${request.method}; it takes ${allow.join(', ')}`),
    );
  });

  const limiter = config.rateLimit ? new RateLimiter(config.rateLimit, clock) : undefined;
  // Callback style, not async: a token seen before is answered from the cache without a promise.
  const admit = (request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) => {
    reply.header('x-request-id', request.id);
    if (closing) {
      reply.header('connection', 'close');
      done(
        new ApiError('service_unavailable', 'The server is shutting down; retry the request', {
          headers: { 'retry-after': '1' },
        }),
      );
      return;
    }
    // A Content-Type that is no media type (`json`) was refused 415 by the framework before any
    // route: a body of another type, judged as a body (after 404 and 412), and no body at all if
    // it is empty. The type the parsers take for it is one no route reads.
    const type = request.headers['content-type'];
    if (type !== undefined && !MEDIA_TYPE.test(type)) {
      (request.raw as Tagged)[SENT_TYPE] = type.split(';')[0] as string;
      request.headers['content-type'] = 'application/x-edm-no-media-type';
    }
    const lines = headerLines(request.raw.rawHeaders);
    const badHost = hostProblem(request, lines) ?? framingProblem(request);
    if (badHost !== null) {
      reply.header('connection', 'close');
      done(new ApiError('malformed_request', badHost));
      return;
    }
    const cfg = request.routeOptions.config;
    if (!cfg.module) {
      const path = request.url.split('?')[0];
      // Unknown /api/v1 routes still need a token: an anonymous caller learns nothing.
      // The route's own path, as declared (the URL may end in a slash the router ignores).
      const route = request.routeOptions.url ?? path;
      // A signed operation's path, in another method: 405 with Allow (the not-found handler),
      // not a 401 asking its caller, who signs and has no token, for one.
      if (
        !path.startsWith('/api/v1/') ||
        PUBLIC_API.has(route) ||
        request.method === 'OPTIONS' ||
        signedPaths.some((signed) => signed.test(path))
      ) {
        done();
        return;
      }
    }
    if (cfg.signed) {
      // A signed URL: the tenant it names, if the signature over operation, tenant and row holds.
      const { tenant_id: tenantId, signature } = request.query as Record<string, unknown>;
      const { id } = request.params as { id: string };
      const { resource, operation, generation } = cfg.signed;
      const signed = typeof signature === 'string' ? parseSignature(signature) : null;
      // A tenant and an id as the route can hold them (text without U+0000, a row id), so that
      // no other tenant, id and generation sign the same message.
      const named =
        typeof tenantId === 'string' &&
        !longerThan(tenantId, MAX_CLAIM_LENGTH) &&
        isStorableText(tenantId) &&
        isIdOf(resource, id);
      const refused = () =>
        new ApiError('invalid_token', 'This URL is not signed for this call: use the URL the resource shows');
      if (
        !signed ||
        !named ||
        !keys.verify(signedMessage(resource, operation, tenantId, id, signed.generation), signed.mac)
      ) {
        done(refused());
        return;
      }
      const principal = { sub: 'system', tenantId, appId: null, scopes: null };
      const admitSigned = () => {
        request.principal = principal;
        try {
          limiter?.take(rateLimitKey(principal, true), reply);
        } catch (err) {
          done(err as Error);
          return;
        }
        done();
      };
      if (!generation) {
        admitSigned();
        return;
      }
      // Over its limit, a caller costs no read (429 now; its budget is spent only once admitted).
      try {
        limiter?.refuseIfEmpty(rateLimitKey(principal, true));
      } catch (err) {
        done(err as Error);
        return;
      }
      // A URL the row has replaced since is refused as a forged one, before it spends the
      // tenant's budget, an idempotency key or a lock (the operation checks again under the lock).
      engine.internalValue(resource, tenantId, id, generation).then(
        (current) => {
          if (current !== undefined && Number(current ?? 0) !== signed.generation) done(refused());
          else admitSigned();
        },
        (err: Error) => done(err),
      );
      return;
    }
    // 401, then 403, then 429: a refused call spends nothing, and the body is not read yet.
    const admit = (principal: Principal) => {
      request.principal = principal;
      if (cfg.module) requireScope(principal, cfg.module, cfg.write === true);
      limiter?.take(rateLimitKey(principal, false), reply);
    };
    // The answer depends on the token (its tenant, app and scopes: a read-only caller sees a
    // webhook connector's URL as null under the ETag a writer's copy has), so a browser's cache
    // keeps one answer per token and never revalidates one caller's copy for another.
    const vary = reply.getHeader('vary');
    reply.header('vary', vary === undefined ? 'Authorization' : `${vary}, Authorization`);
    try {
      const header = request.headers.authorization;
      const m = header ? /^Bearer\s+(\S+)$/i.exec(header) : null;
      if (!m) throw new ApiError('unauthenticated', 'Send Authorization: Bearer <JWT>');
      if (lines.authorization > 1) {
        // Node keeps the first of them: a proxy that reads the last would see another caller.
        const message = 'must be one header: a request with more names more than one caller';
        throw new ApiError('invalid_header', `Authorization: ${message}`, {
          errors: [{ path: 'Authorization', code: 'invalid_header', message }],
        });
      }
      const known = verifier.cached(m[1]);
      if (known) {
        admit(known);
        done();
        return;
      }
      verifier.verify(m[1]).then(
        (principal) => {
          try {
            admit(principal);
            done();
          } catch (err) {
            done(err as Error);
          }
        },
        (err: Error) => done(err),
      );
    } catch (err) {
      done(err as Error);
    }
  };
  // RFC 9112 §9.3.2: pipelined requests are worked on side by side only when all are safe. A
  // request behind an unsafe one on its connection, or an unsafe one behind any, waits for the
  // answers before it (a GET pipelined after a PATCH read the row as it was before the PATCH).
  app.addHook('onRequest', (request, reply, done) => {
    const turn = pipelinedTurn(request.raw, reply.raw);
    if (turn === null) admit(request, reply, done);
    else turn.then(() => admit(request, reply, done));
  });

  app.get('/healthz', async () => ({ status: 'ok' }));
  problemDocs(app);
  // Ready within the connect timeout or not: a probe that waits on a frozen database learns
  // nothing. A timeout of 0 means none, as it does for requests: the prober's own limit decides.
  const readyWithinMs = config.dbConnectTimeoutMs ?? 5000;
  // Ready means requests can be served: the database answers and holds the schema (every
  // resource's table: a server started with --no-migrate before `edm migrate` is not ready).
  // Every column too: a schema of an earlier version (a column added since) is not ready either.
  const probe = schemaProbe(store, engine.resources);
  /**
   * After a storage fault (storageFault), not ready for STORAGE_FAULT_MS; then a write of the
   * probe's meta row decides, unless a request's write was stored first. (On a disk that is only
   * nearly full a small write may pass where a larger one fails: the next fault says so again.)
   */
  const writesStored = async () => {
    if (storageFault === null) return;
    // (A clock set back since ends the wait: it would last as long as the clock went back.)
    const since = Date.now() - storageFault;
    if (since >= 0 && since < STORAGE_FAULT_MS) throw new StorageFaulted();
    // A full disk first: the probe's row fits in pages SQLite holds already, and so it passed
    // on a disk with no byte free, every request's write still refused.
    const free = await freeBytes(store);
    if (free !== null && free < (options.storageFreeBytes ?? STORAGE_FREE_BYTES)) {
      storageFault = Date.now();
      throw new StorageFaulted();
    }
    try {
      await engine.transaction((trx) => recordWriteProbe(trx, isoTime(clock.now())));
    } catch (err) {
      // Not a storage fault (a role without INSERT on edm_meta): the probe says nothing of the
      // storage, and the time without a fault decides alone.
      if (!isStorageFault(err)) {
        app.log.warn({ cause: String((err as Error).message) }, 'the write probe of /readyz failed');
      } else {
        storageFault = Date.now();
        throw new StorageFaulted();
      }
    }
    writesTakenAgain();
  };
  /**
   * Ready means writes too: a PostgreSQL that takes none (a standby after a failover, or
   * `default_transaction_read_only`) answers every write 503, so the probe says not ready, and a
   * load balancer sends the writes to a process whose database takes them.
   */
  const ready = async () => {
    await probe.execute(store.db);
    if (!(await takesWrites(store))) throw new Error('the database takes no writes');
    const wrong = await searchPathProblem(store);
    if (wrong) throw new Error(wrong);
    await writesStored();
  };
  // Until the schema is in place (--no-migrate before `edm migrate`), every API request is 503,
  // as /readyz says: not only those that reach a missing table or column (a complete table's
  // rows would be served, and written, by a server not ready). Known in place after a migration
  // here, or the first probe that finds it so; until then probed at most once a second.
  let schemaInPlace = migrated;
  /** The last probe's time, and what it met: a missing table or column (`err`), or an outage. */
  let lastProbe: { at: number; err: unknown; outage: unknown } | null = null;
  // One probe at a time: the requests that arrive while it runs wait for it, not a probe each.
  let probing: Promise<void> | null = null;
  const probeSchema = () => {
    probing ??= probe
      .execute(store.db)
      .then(
        () => {
          schemaInPlace = true;
        },
        (err: unknown) => {
          // Only a missing table or column closes the API; an outage is answered to the requests
          // that waited for this probe (below), and later ones meet it themselves.
          const unmigrated = isUnmigrated(err);
          // Another failure (a table this role may not read) is the requests' own to meet, as before.
          const outage = !unmigrated && isUnavailable(err) ? err : null;
          lastProbe = { at: Date.now(), err: unmigrated ? err : null, outage };
        },
      )
      .finally(() => {
        probing = null;
      });
    return probing;
  };
  const schemaGate = async () => {
    // (Or a clock set back since the last probe: else no probe until it is past that time again.)
    const since = lastProbe === null ? 0 : Date.now() - lastProbe.at;
    if (probing !== null || lastProbe === null || since >= 1000 || since < 0) {
      await probeSchema();
      // The probe this request waited for met an outage (a database that does not answer): the
      // request answers it now, 503, rather than wait as long again for a connection of its own.
      if (!schemaInPlace && lastProbe !== null && lastProbe.outage !== null) throw lastProbe.outage;
    }
    if (!schemaInPlace && lastProbe !== null && lastProbe.err !== null) throw lastProbe.err;
  };
  // Only on a server that did not migrate at start (whose schema is in place): a callback hook,
  // so once the schema is known in place a request pays one test, no promise.
  if (!migrated) {
    app.addHook('preHandler', (request, _reply, done) => {
      if (schemaInPlace || !request.routeOptions.url?.startsWith('/api/')) done();
      else schemaGate().then(() => done(), done);
    });
  }
  app.get('/readyz', async (_request, reply) => {
    let timer: NodeJS.Timeout | undefined;
    try {
      const deadline =
        readyWithinMs > 0
          ? [
              new Promise((_, reject) => {
                timer = setTimeout(() => reject(new Error('no answer')), readyWithinMs);
              }),
            ]
          : [];
      await Promise.race([ready(), ...deadline]);
      schemaInPlace = true;
      return { status: 'ready', store: store.kind };
    } catch (err) {
      // As a request's 503 says: a schema not in place or a storage fault waits for an operator
      // (5 s), an outage is retried sooner (1 s).
      const retryAfter = isUnmigrated(err) || err instanceof StorageFaulted || isStorageFault(err) ? '5' : '1';
      return reply.code(503).header('retry-after', retryAfter).send({ status: 'unavailable', store: store.kind });
    } finally {
      clearTimeout(timer);
    }
  });

  if (config.localMode) {
    // Local use only: a one-click token for the Playground, answered to loopback callers, and
    // only to a page of this server's own: a browser connects from loopback for any page it
    // shows, so a site on another origin (Origin), or one whose name points here (Host: DNS
    // rebinding), would otherwise get a token. Not open to other origins by CORS either.
    app.post('/api/v1/dev/token', async (request, reply) => {
      // A credential: no cache keeps it (RFC 6749 §5.1).
      reply.header('cache-control', 'no-store');
      if (!LOOPBACK.has(request.socket.remoteAddress ?? '')) {
        throw new ApiError('forbidden', 'The dev-token endpoint answers loopback callers only');
      }
      const host = request.headers.host ?? '';
      const origin = request.headers.origin;
      if (!isLocalHost(host) || (origin !== undefined && origin !== `http://${host}`)) {
        throw new ApiError('forbidden', "The dev-token endpoint answers this server's own pages only");
      }
      // It takes no query parameters: one is a mistake to name, as on every other route.
      const params = Object.keys(request.query as object);
      if (params.length > 0) {
        throw new ApiError('unknown_parameter', `${params.join(', ')}: the dev-token endpoint takes no parameters`, {
          errors: params.map((p) => ({ path: p, code: 'unknown_parameter', message: `${p} is not accepted here` })),
        });
      }
      const body = devTokenBody(request.body);
      const tenant = body.tenant_id ?? DEV_TENANT;
      const sub = body.sub ?? DEV_SUB;
      const ttl = 12 * 3600;
      // Signed as the server checks tokens: with the configured issuer and audience, if any.
      const token = await mintToken({
        secret: config.jwtSecret,
        tenant,
        sub,
        ttl,
        now: clock.now(),
        issuer: config.jwtIssuer,
        audience: config.jwtAudience,
      });
      return { token, tenant_id: tenant, sub, expires_at: isoTime(clock.now() + ttl * 1000) };
    });
  }

  ({ observe: observeUnrouted, observeAnswer: observeConnection } = registerMetrics(app, {
    verifications: () => verifier.verifications,
    retriedTransactions: () => engine.retriedTransactions,
    deadlocks: () => engine.deadlocks,
  }));
  /** Jobs to run soon after a write of a resource, by its name (Job.wakeAfter; filled below). */
  const wakers = new Map<string, (() => void)[]>();
  registerResourceRoutes(app, {
    engine,
    idempotency,
    cursors,
    changed: (resource) => {
      writesTakenAgain();
      for (const wake of wakers.get(resource.name) ?? []) wake();
    },
  });
  registerManifestRoute(app, modules, config.localMode);
  registerOpenApiRoute(app, modules, { localMode: config.localMode });
  await app.register(playground);

  // The database out of reach (a restart, a failover) is a warning naming its cause, as a
  // request's 503 is: the next run does the work. Anything else is an error: storage that takes
  // no writes (a full disk: an operator must act, as for a request), writes that kept meeting
  // others' (a deadlock, three times), a role without a privilege the job needs.
  const jobFailed = (job: string, err: unknown) => {
    metStorageFault(err);
    if (isUnavailable(err) && !isStorageFault(err) && !isConflict(err)) {
      app.log.warn({ job, cause: String((err as Error).message) }, 'job put off: the database is unavailable');
    } else app.log.error({ err, job }, 'job failed');
  };
  // Expired idempotency keys, swept as a job is run: its failures said, not kept quiet while the table grows.
  const sweep = setInterval(
    () => idempotency.sweep().catch((err) => jobFailed('idempotency.sweep', err)),
    10 * 60 * 1000,
  );
  sweep.unref();
  // Module jobs (the status sweep) run on timers unless the caller drives them (tests set a clock).
  // A write that wakes a job (Job.wakeAfter), or a tick, during a run runs it once more after the
  // run under way, never beside it.
  const timers =
    (options.runJobs ?? options.clock === undefined)
      ? modules
          .flatMap((m) => m.jobs ?? [])
          .map((job) => {
            let running = false;
            let again = false;
            const run = () => {
              running = true;
              engine
                .runJob(job)
                .catch((err) => jobFailed(job.name, err))
                .finally(() => {
                  running = false;
                  if (again && !closing) {
                    again = false;
                    run();
                  }
                });
            };
            let pending = false;
            // After the answer is on its way: a run already due takes the write in.
            const wake = () => {
              if (running) again = true;
              else if (!pending && !closing) {
                pending = true;
                setImmediate(() => {
                  pending = false;
                  if (running) again = true;
                  else if (!closing) run();
                });
              }
            };
            for (const name of job.wakeAfter ?? []) wakers.set(name, [...(wakers.get(name) ?? []), wake]);
            // A tick during a run is not lost: the run after it starts when that one ends (a run
            // that outlasts its interval, the schedule's behind slow feeds, is followed at once).
            const timer = setInterval(() => {
              if (!running) run();
              else again = true;
            }, job.intervalMs);
            timer.unref();
            return timer;
          })
      : [];
  app.addHook('onClose', async () => {
    clearInterval(arrivals);
    idempotency.stop();
    clearInterval(sweep);
    for (const timer of timers) clearInterval(timer);
    if (!options.store) await store.close();
  });
  const warnOfStart = (served: string | null, timeout: number | null) => {
    // PRODUCT.md: one server secret, shared by every process of a deployment. One started with
    // another (generated under another EDM_DATA_DIR, or changed) is said at once, not learnt from
    // connector secrets that read as none and cursors and webhook URLs refused.
    if (served !== null && served !== keys.fingerprint) {
      app.log.warn(
        "EDM_SECRET_KEY is not the secret this database was served with before: connector secrets sealed under that one read as none until entered again, and list cursors and webhook URLs it signed are refused. Every process serving one database needs the same EDM_SECRET_KEY (a generated one is the data dir's secret-key file).",
      );
    }
    // A pooler that drops startup parameters (PgBouncer's ignore_startup_parameters) leaves the
    // sessions without EDM's statement_timeout: a request still gives up on its statement after
    // EDM_DB_STATEMENT_TIMEOUT_MS and a little more, but the statement runs on in PostgreSQL.
    const wanted = config.dbStatementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS;
    // With none asked for (0), EDM sends none, and a role's or the server's setting applies.
    if (timeout !== null && wanted > 0 && timeout !== wanted) {
      app.log.warn(
        `PostgreSQL's statement_timeout is ${timeout} ms in this server's sessions, not EDM_DB_STATEMENT_TIMEOUT_MS (${wanted}): something between EDM and PostgreSQL dropped the startup parameter that sets it (PgBouncer's ignore_startup_parameters does). A statement EDM gives up on runs on in the database; set it on the role instead (ALTER ROLE … SET statement_timeout = '${wanted}ms').`,
      );
    }
  };
  if (migrated) warnOfStart(servedWith, sessionTimeout);
  else if (!options.store) {
    // Started without migrating (--no-migrate: a role that may only read and write rows, as the
    // README advises): the same checks, once the database answers, without holding the start up
    // (a database down at start is /readyz's to say). The meta table takes that role's writes.
    void (async () => {
      try {
        warnOfStart(await recordSecretFingerprint(store.db, keys.fingerprint), await sessionStatementTimeoutMs(store));
      } catch {
        // Down, or not migrated yet: nothing to compare with.
      }
    })();
  }
  return app;
}

const UNSAFE_UNDER_WAY = Symbol('edm.unsafeUnderWay');
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'QUERY']);
type Pipelined = Socket & { _httpMessage?: ServerResponse | null; [UNSAFE_UNDER_WAY]?: number };

/**
 * When a request must wait for the answers before it on its connection (see the hook): a promise
 * of its turn, else null (not pipelined, or only safe requests side by side).
 */
function pipelinedTurn(req: IncomingMessage, res: ServerResponse): Promise<void> | null {
  const socket = req.socket as Pipelined;
  const safe = SAFE_METHODS.has(req.method ?? '');
  const unsafeBefore = socket[UNSAFE_UNDER_WAY] ?? 0;
  if (!safe) {
    socket[UNSAFE_UNDER_WAY] = unsafeBefore + 1;
    res.once('close', () => {
      socket[UNSAFE_UNDER_WAY] = (socket[UNSAFE_UNDER_WAY] ?? 1) - 1;
    });
  }
  const head = socket._httpMessage;
  if (!head || head === res || (safe && unsafeBefore === 0)) return null;
  // Its turn, or the connection going (its answer then goes nowhere).
  return new Promise((resolve) => afterEarlierAnswers(socket, () => resolve(), res));
}
