/**
 * The one error registry: every problem the API can answer has a stable `code` here.
 * Code throws `ApiError`s by code; exactly one place (src/http/problem.ts) maps them to
 * RFC 9457 problem+json. docs/errors.md documents every code (a test checks it).
 */
export const errorRegistry = {
  // 400
  invalid_json: { status: 400, title: 'Malformed JSON body' },
  invalid_body: { status: 400, title: 'Request body must be a JSON object' },
  validation_failed: { status: 400, title: 'Validation failed' },
  unknown_field: { status: 400, title: 'Unknown field' },
  read_only_field: { status: 400, title: 'Field is server-owned' },
  invalid_parameter: { status: 400, title: 'Invalid query parameter' },
  unknown_parameter: { status: 400, title: 'Unknown query parameter' },
  invalid_cursor: { status: 400, title: 'Invalid cursor' },
  invalid_header: { status: 400, title: 'Invalid header' },
  malformed_request: { status: 400, title: 'Malformed HTTP request' },
  // 401 / 403
  unauthenticated: { status: 401, title: 'Authentication required' },
  invalid_token: { status: 401, title: 'Invalid token' },
  insufficient_scope: { status: 403, title: 'Insufficient scope' },
  forbidden: { status: 403, title: 'Forbidden' },
  // 404 / 405
  not_found: { status: 404, title: 'Resource not found' },
  route_not_found: { status: 404, title: 'Route not found' },
  method_not_allowed: { status: 405, title: 'Method not allowed' },
  // 408
  request_timeout: { status: 408, title: 'Request timeout' },
  // 409
  version_conflict: { status: 409, title: 'Version conflict' },
  resource_deleted: { status: 409, title: 'Resource is deleted' },
  not_deleted: { status: 409, title: 'Resource is not deleted' },
  parent_deleted: { status: 409, title: 'Parent resource is deleted' },
  has_dependents: { status: 409, title: 'Resource has live dependents' },
  idempotency_in_flight: { status: 409, title: 'Request with this idempotency key is in flight' },
  not_manual: { status: 409, title: 'Key result is not manually updated' },
  not_pulled: { status: 409, title: 'Connector is pushed to, not pulled' },
  not_webhook: { status: 409, title: 'Connector has no webhook URL' },
  // 412 / 413 / 415 / 422 / 428 / 429 / 431
  precondition_failed: { status: 412, title: 'Precondition failed' },
  payload_too_large: { status: 413, title: 'Payload too large' },
  unsupported_media_type: { status: 415, title: 'Unsupported media type' },
  expectation_failed: { status: 417, title: 'Expectation failed' },
  idempotency_key_reused: { status: 422, title: 'Idempotency key reused with a different request' },
  invalid_reference: { status: 422, title: 'Invalid reference' },
  precondition_required: { status: 428, title: 'Precondition required' },
  rate_limited: { status: 429, title: 'Too many requests' },
  headers_too_large: { status: 431, title: 'Request headers too large' },
  // 5xx
  internal_error: { status: 500, title: 'Internal server error' },
  service_unavailable: { status: 503, title: 'Service unavailable' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof errorRegistry;

/** One problem with one field of a request: `path` is a JSON Pointer into the body or a parameter name. */
export interface FieldError {
  path: string;
  code: string;
  message: string;
}

export class ApiError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly errors: FieldError[] | undefined;
  /** Extra members for the problem document (e.g. `current_version`). */
  readonly extra: Record<string, unknown> | undefined;
  readonly headers: Record<string, string> | undefined;

  constructor(
    code: ErrorCode,
    detail?: string,
    options: {
      errors?: FieldError[];
      extra?: Record<string, unknown>;
      headers?: Record<string, string>;
      /** What failed underneath (logged with a 503, never answered). */
      cause?: unknown;
    } = {},
  ) {
    const { status } = errorRegistry[code];
    // A client error (4xx) is answered, never logged with its stack: not capturing one saves
    // ~7% of the CPU of a refused request. Server errors keep theirs for the log.
    const limit = Error.stackTraceLimit;
    if (status < 500) Error.stackTraceLimit = 0;
    try {
      super(detail ?? errorRegistry[code].title, options.cause === undefined ? undefined : { cause: options.cause });
    } finally {
      Error.stackTraceLimit = limit;
    }
    this.code = code;
    this.status = status;
    this.errors = options.errors;
    this.extra = options.extra;
    this.headers = options.headers;
  }
}

/** A 400 about body fields; the first field names the detail. */
export function fieldError(code: ErrorCode, errors: FieldError[]): ApiError {
  const first = errors[0];
  const detail = first ? `${first.path || 'body'}: ${first.message}` : undefined;
  return new ApiError(code, detail, { errors });
}
