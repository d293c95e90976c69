import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { hasScope } from '../core/auth.js';
import { ApiError } from '../core/errors.js';
import { type CursorCodec, checkDecoded, parseListQuery } from '../core/list-query.js';
import type { Doc, Principal, Resource } from '../core/resource.js';
import { credentialRedactor, listJson, serializeDoc } from '../core/serialize.js';
import { asObject, isNoBody, refuseBody } from '../core/validation.js';
import type { DB } from '../store/database.js';
import { checkIfMatch, type Engine, type WriteConditions } from '../store/engine.js';
import type { Idempotency, StoredResponse } from './idempotency.js';
import { asApiError, PROBLEM_TYPE, toProblem } from './problem.js';
import { routedUrl } from './querystring.js';

export interface RouteDeps {
  engine: Engine;
  idempotency: Idempotency;
  cursors: CursorCodec;
  /** Told of each create, update or restore answered 2xx, by resource (the jobs it wakes: Job.wakeAfter). */
  changed?: (resource: Resource) => void;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Module whose scope the route needs; absent for public routes. */
    module?: string;
    write?: boolean;
    /** A signed operation (CustomOperation.auth): its URL's signature admits the call, not a token. */
    signed?: { resource: Resource; operation: string; generation?: string };
  }
}

type Query = Record<string, string | string[] | undefined>;
type IdParams = { id: string };

/** Rejects query parameters a route does not take. */
function allowOnly(query: Query, allowed: readonly string[]): void {
  for (const [name, value] of Object.entries(query)) {
    if (!allowed.includes(name)) {
      throw new ApiError('unknown_parameter', `${name || '""'} is not a parameter of this operation`, {
        errors: [{ path: name, code: 'unknown_parameter', message: `${name || '""'} is not accepted here` }],
      });
    }
    checkDecoded(query, name);
    if (Array.isArray(value)) {
      throw new ApiError('invalid_parameter', `${name} must not be repeated`, {
        errors: [{ path: name, code: 'invalid_parameter', message: `${name} must not be repeated` }],
      });
    }
  }
}

/**
 * A row id from the path. One with U+0000 names no row (and PostgreSQL would refuse it as
 * text): 404 as any missing id, on both stores.
 */
function rowId(resource: Resource, id: string): string {
  // An empty segment (`…/cycles//`, which the router reads as an id) names no row's path.
  if (id === '') throw new ApiError('route_not_found', `No route: ${resource.basePath}/ names no ${resource.name}`);
  if (id.includes('\u0000')) throw new ApiError('not_found', `No ${resource.name} with id ${JSON.stringify(id)}`);
  return id;
}

/** The query of a signed URL (CustomOperation.auth 'signed'): whose row, and the signature. */
const SIGNED_PARAMETERS = ['tenant_id', 'signature'] as const;

/** An entity tag (RFC 9110 §8.8.3): optionally weak, an opaque string of visible characters in quotes. */
const ENTITY_TAG = /^(W\/)?"([\x21\x23-\x7e\x80-\xff]*)"$/;
/** Our ETags' opaque part: a version, as the server writes it (no sign, no leading zero). */
const VERSION = /^(0|[1-9]\d*)$/;

/**
 * The elements of a comma-separated header, where a comma inside quotes is part of its element:
 * `"1,2"` is one entity tag (RFC 9110 §8.8.3 allows commas in one), not `"1` and `2"`.
 */
function listElements(header: string): string[] {
  if (!header.includes(',')) return [header]; // one element: the common If-Match: "3"
  const elements: string[] = [];
  let current = '';
  let quoted = false;
  for (const ch of header) {
    if (ch === '"') quoted = !quoted;
    if (ch === ',' && !quoted) {
      elements.push(current);
      current = '';
    } else current += ch;
  }
  elements.push(current);
  return elements;
}

/**
 * Parses entity tags of If-Match / If-None-Match: our ETags are the strong `"<version>"`.
 * Tags compare as opaque strings: `"026"` or `"abc"` is no version of ours and matches nothing
 * (so If-Match fails, 412). If-Match compares strongly, so a weak tag matches nothing there;
 * If-None-Match compares weakly (RFC 9110 §13.1.2), so `W/"3"` (a strong tag a proxy weakened)
 * matches version 3. Empty list elements are ignored (RFC 9110 §5.6.1); anything else is 400.
 */
function parseTags(header: string | undefined, name: string, weak = false): number[] | 'any' | null {
  if (header === undefined) return null;
  if (header.trim() === '*') return 'any';
  const tags: number[] = [];
  for (const part of listElements(header)) {
    const tag = part.trim();
    if (tag === '') continue;
    const m = ENTITY_TAG.exec(tag);
    if (!m) {
      const message = `malformed entity tag ${tag}; send the ETag as given, e.g. "3"`;
      throw new ApiError('invalid_header', `${name}: ${message}`, {
        errors: [{ path: name, code: 'invalid_header', message }],
      });
    }
    const version = VERSION.test(m[2] as string) ? Number(m[2]) : -1;
    tags.push(m[1] && !weak ? -1 : version);
  }
  return tags;
}

/**
 * A write's If-Match and If-None-Match (weak comparison, as RFC 9110 has it for the latter), and
 * the checks of its own the route runs after 404 and 412 (`deferred`).
 */
function conditions(request: FastifyRequest, deferred?: () => void): WriteConditions {
  try {
    const ifMatch = parseTags(request.headers['if-match'], 'If-Match');
    const ifNoneMatch = parseTags(request.headers['if-none-match'], 'If-None-Match', true);
    return { ifMatch, ...(ifNoneMatch !== null ? { ifNoneMatch } : {}), ...(deferred ? { deferred } : {}) };
  } catch (err) {
    // A header that is no list of entity tags is 400, after 404 (PRODUCT.md's order).
    return { ifMatch: null, invalid: err as ApiError, ...(deferred ? { deferred } : {}) };
  }
}

function docResponse(resource: Resource, doc: Doc, status: number): StoredResponse {
  const headers: Record<string, string> = {
    'content-type': 'application/json; charset=utf-8',
    etag: `"${doc.version}"`,
  };
  if (status === 201) headers.location = `${resource.basePath}/${doc.id}`;
  return { status, headers, body: serializeDoc(resource, doc) };
}

const ORIGINAL_REQUEST_ID = 'original-request-id';

/**
 * How long a 5xx waits for its key's release before it is answered (Idempotency.releaseWithin):
 * a delete the database takes is done well within it; one waiting for a connection the pool has
 * none of would double the 503's wait (a second EDM_DB_CONNECT_TIMEOUT_MS).
 */
const RELEASE_WAIT_MS = 250;

/**
 * A stored answer, replayed: the same status, headers and body, with the first request's id in
 * Original-Request-Id; a problem's `request_id` names this request, as its x-request-id does.
 */
function replayed(response: StoredResponse, request: FastifyRequest): StoredResponse {
  if (response.headers['content-type'] !== PROBLEM_TYPE) return response;
  const problem = JSON.parse(response.body) as Record<string, unknown>;
  problem.request_id = request.id;
  return { ...response, body: JSON.stringify(problem) };
}

function send(reply: FastifyReply, response: StoredResponse): FastifyReply {
  return reply.code(response.status).headers(response.headers).send(response.body);
}

export function registerResourceRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { engine, idempotency, cursors, changed } = deps;

  /** A write's answer, sent; a create, update or restore that succeeded (`changes`) is said to `changed`. */
  function answer(reply: FastifyReply, response: StoredResponse, changes: Resource | undefined): FastifyReply {
    const sent = send(reply, response);
    if (changes && changed && response.status < 300) changed(changes);
    return sent;
  }

  /**
   * Runs a write in one transaction. With an Idempotency-Key, the response is stored in that
   * same transaction (4xx in its own), replayed on retries, and forgotten on a 5xx. `prepare`
   * runs first, outside the transaction (what waits on the outside world holds no lock
   * meanwhile), and after the key is claimed: a retry is replayed without running it again.
   */
  async function write<P = undefined>(
    request: FastifyRequest,
    reply: FastifyReply,
    work: (db: DB, principal: Principal, prepared: P | undefined) => Promise<StoredResponse>,
    {
      prepare,
      takesBody = true,
      changes,
    }: {
      prepare?: (principal: Principal) => Promise<P>;
      takesBody?: boolean;
      /** A create, update or restore of this resource: a 2xx is said to `changed` (RouteDeps). */
      changes?: Resource;
    } = {},
  ): Promise<FastifyReply> {
    const principal = request.principal as Principal;
    const key = idempotency.parseKey(request.headers['idempotency-key']);
    if (key === null) {
      const prepared = prepare ? await prepare(principal) : undefined;
      return answer(reply, await engine.transaction((db) => work(db, principal, prepared)), changes);
    }
    // A write that takes no body is the same request with none, an empty one or `{}`.
    const body = !takesBody && isNoBody(request.body) ? undefined : request.body;
    // The URL as routed: `/cycles/`, `/%63ycles` and `/cycles?` are one operation, one request.
    const url = routedUrl(request.url, request.query as Record<string, unknown>);
    const fp = idempotency.fingerprint(request.method, url, principal, body);
    // A write that prepares outside its transaction (a sync reads its feed) holds its key longer.
    const claimed = await idempotency.claim(
      principal,
      key,
      fp,
      () => [
        ...idempotency.earlierFingerprints(request.method, url, principal, body),
        // Builds before this one hashed the URL as it was sent.
        ...(url === request.url
          ? []
          : [
              idempotency.fingerprint(request.method, request.url, principal, body),
              ...idempotency.earlierFingerprints(request.method, request.url, principal, body),
            ]),
      ],
      prepare !== undefined,
    );
    if ('replay' in claimed)
      return send(reply.header('idempotent-replayed', 'true'), replayed(claimed.replay, request));
    const { claim } = claimed;
    // What is stored names the request that did the work (sent with replays as Original-Request-Id).
    const stored = (r: StoredResponse): StoredResponse => ({
      ...r,
      headers: { ...r.headers, [ORIGINAL_REQUEST_ID]: request.id },
    });
    try {
      const prepared = prepare ? await prepare(principal) : undefined;
      const response = await engine.transaction(async (db) => {
        const r = await work(db, principal, prepared);
        await idempotency.complete(db, claim, stored(r));
        return r;
      });
      return answer(reply, response, changes);
    } catch (err) {
      const apiError = asApiError(err);
      if (apiError.status >= 500) {
        await idempotency.releaseWithin(claim, RELEASE_WAIT_MS);
        throw err;
      }
      const problem: StoredResponse = {
        status: apiError.status,
        headers: { 'content-type': PROBLEM_TYPE, ...apiError.headers },
        body: JSON.stringify(toProblem(apiError, request.id)),
      };
      try {
        await idempotency.completeAlone(claim, stored(problem));
      } catch {
        // Not recorded (the database failed meanwhile): the answer stands, and a retry runs again.
        await idempotency.releaseWithin(claim, RELEASE_WAIT_MS);
      }
      throw apiError;
    }
  }

  for (const resource of engine.resources) {
    const base = resource.basePath;
    const read = { module: resource.module, write: false };
    const writeCfg = { module: resource.module, write: true };

    // A credential (a webhook's signed URL) is answered only to callers who may write.
    const redact = credentialRedactor(resource);
    const redacting = (principal: Principal) => redact !== null && !hasScope(principal, resource.module, true);

    app.get<{ Querystring: Query }>(base, { config: read }, async (request, reply) => {
      const principal = request.principal as Principal;
      const query = parseListQuery(resource, principal, request.query, cursors);
      const page = await engine.list(resource, principal, query);
      let { documents } = page;
      if (redact && redacting(principal)) {
        const docs = Buffer.isBuffer(documents)
          ? (JSON.parse(`[${documents.toString()}]`) as Doc[])
          : documents.map((json) => JSON.parse(json) as Doc);
        documents = docs.map(redact);
      }
      return reply.type('application/json; charset=utf-8').send(listJson(documents, page.has_more, page.next_cursor));
    });

    app.get<{ Params: IdParams; Querystring: Query }>(`${base}/:id`, { config: read }, async (request, reply) => {
      const id = rowId(resource, request.params.id);
      const principal = request.principal as Principal;
      const found = await engine.getJson(resource, principal, id);
      const { version } = found;
      const json = redact && redacting(principal) ? redact(JSON.parse(found.json.toString()) as Doc) : found.json;
      // If-Match first (RFC 9110 §13.2.2): a read that names another version is 412, as a write's
      // is, after 404 and before the query's checks (PRODUCT.md's order).
      checkIfMatch(parseTags(request.headers['if-match'], 'If-Match'), version);
      allowOnly(request.query, []);
      const inm = parseTags(request.headers['if-none-match'], 'If-None-Match', true);
      reply.header('etag', `"${version}"`);
      if (inm === 'any' || (Array.isArray(inm) && inm.includes(version))) return reply.code(304).send();
      return reply.type('application/json; charset=utf-8').send(json);
    });

    app.post<{ Querystring: Query }>(base, { config: writeCfg }, async (request, reply) =>
      write(
        request,
        reply,
        async (db, principal) => {
          allowOnly(request.query, []);
          const doc = await engine.create(db, resource, principal, asObject(request.body));
          return docResponse(resource, doc, 201);
        },
        { changes: resource },
      ),
    );

    app.patch<{ Params: IdParams; Querystring: Query }>(`${base}/:id`, { config: writeCfg }, async (request, reply) =>
      write(
        request,
        reply,
        async (db, principal) => {
          const id = rowId(resource, request.params.id);
          const cond = conditions(request, () => allowOnly(request.query, []));
          const doc = await engine.update(db, resource, principal, id, request.body, cond);
          return docResponse(resource, doc, 200);
        },
        { changes: resource },
      ),
    );

    app.delete<{ Params: IdParams; Querystring: Query }>(`${base}/:id`, { config: writeCfg }, async (request, reply) =>
      write(
        request,
        reply,
        async (db, principal) => {
          const id = rowId(resource, request.params.id);
          const cascade = request.query.cascade;
          const cond = conditions(request, () => {
            allowOnly(request.query, ['cascade']);
            if (cascade !== undefined && cascade !== 'true' && cascade !== 'false') {
              const message = 'cascade must be true or false';
              throw new ApiError('invalid_parameter', message, {
                errors: [{ path: 'cascade', code: 'invalid_parameter', message }],
              });
            }
            refuseBody(request.body);
          });
          const doc = await engine.remove(db, resource, principal, id, cond, cascade === 'true');
          return docResponse(resource, doc, 200);
        },
        { takesBody: false },
      ),
    );

    app.post<{ Params: IdParams; Querystring: Query }>(
      `${base}/:id/restore`,
      { config: writeCfg },
      async (request, reply) =>
        write(
          request,
          reply,
          async (db, principal) => {
            const id = rowId(resource, request.params.id);
            const cond = conditions(request, () => {
              allowOnly(request.query, []);
              refuseBody(request.body);
            });
            const doc = await engine.restore(db, resource, principal, id, cond);
            return docResponse(resource, doc, 200);
          },
          { takesBody: false, changes: resource },
        ),
    );

    for (const op of resource.operations ?? []) {
      const url = `${base}${op.path.replaceAll('{id}', ':id')}`;
      type OpRequest = FastifyRequest<{ Params: IdParams; Querystring: Query }>;
      // A POST operation's own parameters: a signed URL's, else none (a GET's are its list's).
      // Checked after 404 and 412 where the operation reads its row under conditions, which a
      // signed call (a webhook push) may send too (RFC 9110 §13.1: a server evaluates them).
      const postConditions = (request: OpRequest): WriteConditions =>
        conditions(request, () => allowOnly(request.query, op.auth === 'signed' ? SIGNED_PARAMETERS : []));
      const run = async (
        db: DB,
        principal: Principal,
        request: OpRequest,
        prepared?: unknown,
      ): Promise<StoredResponse> => {
        const result = await engine.operate(
          db,
          resource,
          principal,
          op,
          rowId(resource, request.params.id),
          request.body,
          request.query,
          prepared,
          op.method === 'POST' ? postConditions(request) : undefined,
        );
        if (op.response.kind === 'resource') return docResponse(resource, result as Doc, op.response.status);
        return {
          status: 200,
          headers: { 'content-type': 'application/json; charset=utf-8' },
          body: JSON.stringify(result),
        };
      };
      if (op.method === 'GET') {
        // A read: no transaction and no locks, so it neither waits for writers nor holds them up
        // (on SQLite it reads on the read connection, not through the writers' group commit).
        app.get<{ Params: IdParams; Querystring: Query }>(url, { config: read }, async (request, reply) =>
          send(reply, await run(engine.store.db, request.principal as Principal, request)),
        );
      } else {
        const signed = {
          resource,
          operation: op.name,
          ...(op.signedGeneration ? { generation: op.signedGeneration } : {}),
        };
        const cfg = op.auth === 'signed' ? { ...writeCfg, signed } : writeCfg;
        const prepare = op.prepare
          ? (request: OpRequest) => (principal: Principal) =>
              engine.prepare(
                resource,
                principal,
                op,
                rowId(resource, request.params.id),
                request.body,
                postConditions(request),
              )
          : undefined;
        app.post<{ Params: IdParams; Querystring: Query }>(url, { config: cfg }, async (request, reply) =>
          write(request, reply, (db, principal, prepared) => run(db, principal, request, prepared), {
            prepare: prepare?.(request),
            takesBody: op.body !== undefined,
          }),
        );
      }
    }
  }
}
