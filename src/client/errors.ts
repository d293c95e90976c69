import type { ErrorCode, FieldErrorCode } from '../core/errors.js';

export type { ErrorCode, FieldErrorCode };

/** An RFC 9457 problem document as the API answers it. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  /** Stable, snake_case: see docs/errors.md. */
  code: ErrorCode;
  request_id: string;
  /** Field problems: `path` is a JSON Pointer into the body, or a parameter name; `code` as docs/errors.md lists. */
  errors?: { path: string; code: FieldErrorCode; message: string }[];
  /** Extra members, e.g. `current_version` on a `version_conflict`. */
  [extra: string]: unknown;
}

/**
 * How long an answer's `Retry-After` asks to wait, in ms: delay-seconds or an HTTP-date (RFC 9110
 * §10.2.3; a date passed is 0). Undefined when there is none, or none that reads.
 */
export function retryAfterMs(headers: Headers | undefined): number | undefined {
  const header = headers?.get('retry-after')?.trim();
  if (!header) return undefined;
  if (/^\d+(?:\.\d+)?$/.test(header)) return Number(header) * 1000; // fractions too, leniently
  // A date names its day and month in words (`Wed, 21 Oct 2026 07:28:00 GMT`): Date.parse would
  // read other text as a date too.
  const at = /[a-z]/i.test(header) ? Date.parse(header) : Number.NaN;
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : undefined;
}

/**
 * Every error the client throws. HTTP errors carry the answer's `status`, its `problem`
 * document, the problem's `code` and the `requestId` to quote in a support request.
 *
 * @example
 * try {
 *   await client.okr.keyResults.get('kr_01JBZ7Q3V5R4N8KX2M6T9WCH1D');
 * } catch (err) {
 *   if (err instanceof NotFoundError) console.log('gone', err.requestId);
 *   else if (err instanceof APIError) console.log(err.status, err.code);
 *   else throw err;
 * }
 */
export class APIError extends Error {
  override name = 'APIError';
  /** HTTP status; undefined when no answer was received. */
  readonly status: number | undefined;
  /** The problem document of the answer, when it had one. */
  readonly problem: Problem | undefined;
  /** The problem's stable `code` (`not_found`, `version_conflict`, …). */
  readonly code: ErrorCode | undefined;
  /** The server's request id (`x-request-id`, also `request_id` in the problem). */
  readonly requestId: string | undefined;
  readonly headers: Headers | undefined;

  constructor(
    status: number | undefined,
    problem: Problem | undefined,
    message: string,
    headers?: Headers,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.status = status;
    this.problem = problem;
    this.code = problem?.code;
    this.requestId = problem?.request_id ?? headers?.get('x-request-id') ?? undefined;
    this.headers = headers;
  }

  /**
   * Seconds the server asked to wait before trying again (`Retry-After`, on a 429, a 503 or a
   * 409 in flight), when it said: an HTTP-date is read as the seconds until it, rounded up.
   */
  get retryAfter(): number | undefined {
    const ms = retryAfterMs(this.headers);
    return ms === undefined ? undefined : Math.ceil(ms / 1000);
  }

  /**
   * The error class for an HTTP answer.
   *
   * @example
   * const err = APIError.generate(404, problem, response.headers); // a NotFoundError
   */
  static generate(status: number, problem: Problem | undefined, headers: Headers, fallback = ''): APIError {
    const detail = problem
      ? `${problem.code}: ${problem.detail ?? problem.title}`
      : fallback || (status === 304 ? 'not modified: If-None-Match names the current version' : 'no problem document');
    const message = `${status} ${detail}`;
    const Class = STATUS_CLASSES[status] ?? (status >= 500 ? InternalServerError : APIError);
    return new Class(status, problem, message, headers);
  }
}

/**
 * 304: the resource is still the version an `If-None-Match` header named; there is no body to
 * return. `etag` is the current version's tag (`"7"`).
 *
 * @example
 * try {
 *   kr = await client.okr.keyResults.get(kr.id, { headers: { 'If-None-Match': `"${kr.version}"` } });
 * } catch (err) {
 *   if (!(err instanceof NotModifiedError)) throw err; // kr is current
 * }
 */
export class NotModifiedError extends APIError {
  override name = 'NotModifiedError';
  /** The current version's entity tag, as the server sent it. */
  get etag(): string | undefined {
    return this.headers?.get('etag') ?? undefined;
  }
}
/** 400: the request is malformed (body, parameter or header); `problem.errors` names the fields. */
export class BadRequestError extends APIError {
  override name = 'BadRequestError';
}
/** 401: no token, or an invalid or expired one. */
export class AuthenticationError extends APIError {
  override name = 'AuthenticationError';
}
/** 403: the token's scope does not allow the operation. */
export class PermissionDeniedError extends APIError {
  override name = 'PermissionDeniedError';
}
/** 404: no such resource visible to the caller (or no such route). */
export class NotFoundError extends APIError {
  override name = 'NotFoundError';
}
/** 409: the resource's state forbids the write (`version_conflict`, `resource_deleted`, `has_dependents`, …). */
export class ConflictError extends APIError {
  override name = 'ConflictError';
}
/** 412: `If-Match` (`ifVersion`) names another version than the current one. */
export class PreconditionFailedError extends APIError {
  override name = 'PreconditionFailedError';
}
/** 428: the server requires `If-Match` (`EDM_REQUIRE_IF_MATCH`) and the write sent none: give `ifVersion`. */
export class PreconditionRequiredError extends APIError {
  override name = 'PreconditionRequiredError';
}
/** 422: a reference names no live resource, or an idempotency key was reused for another request. */
export class UnprocessableEntityError extends APIError {
  override name = 'UnprocessableEntityError';
}
/** 429: the caller spent its budget (`rate_limited`); retried automatically, honouring `Retry-After`. */
export class RateLimitError extends APIError {
  override name = 'RateLimitError';
}
/** 5xx: the server failed; 503 is retried automatically. */
export class InternalServerError extends APIError {
  override name = 'InternalServerError';
}

/** No answer: the connection failed or was reset, or DNS failed. Retried automatically. */
export class APIConnectionError extends APIError {
  override name = 'APIConnectionError';
  constructor(message = 'Connection error', options?: { cause?: unknown }) {
    super(undefined, undefined, message, undefined, options);
  }
}

/** No answer within the client's `timeout`. Retried automatically. */
export class APIConnectionTimeoutError extends APIConnectionError {
  override name = 'APIConnectionTimeoutError';
}

type ErrorClass = new (
  status: number | undefined,
  problem: Problem | undefined,
  message: string,
  headers?: Headers,
) => APIError;

const STATUS_CLASSES: Record<number, ErrorClass> = {
  304: NotModifiedError,
  400: BadRequestError,
  401: AuthenticationError,
  403: PermissionDeniedError,
  404: NotFoundError,
  409: ConflictError,
  412: PreconditionFailedError,
  422: UnprocessableEntityError,
  428: PreconditionRequiredError,
  429: RateLimitError,
};
