import { APIConnectionError, APIConnectionTimeoutError, APIError, type Problem, retryAfterMs } from './errors.js';

export interface ClientOptions {
  /** Where the API is served, e.g. `http://127.0.0.1:8080` (the `/api/v1/…` paths are appended). */
  baseUrl: string;
  /** A bearer JWT, or a function answering one before each request (to refresh it). */
  token?: string | (() => string | Promise<string>);
  /** A fetch implementation (default: the global `fetch`). */
  fetch?: typeof fetch;
  /** Retries on 429, 503 and connection errors (default 2). */
  maxRetries?: number;
  /**
   * Milliseconds to wait for each answer before a retry or an APIConnectionTimeoutError (default
   * 60 000): a whole number from 1 to 2 147 483 647 (the longest timer the platform holds), or
   * `Infinity` for no limit. Another value is a RangeError.
   */
  timeout?: number;
  /**
   * Headers sent with every request. Names are case-insensitive: one given here replaces the
   * SDK's default of that name (`Accept`, `Content-Type`) whatever its casing, and is itself
   * replaced by a request's `headers`. Not `Idempotency-Key`, which names one write (a TypeError).
   * See {@link RequestOptions.headers}.
   */
  headers?: Record<string, string>;
}

/** Options every method takes last. */
export interface RequestOptions {
  signal?: AbortSignal;
  timeout?: number;
  maxRetries?: number;
  /**
   * Headers of this request. Names are case-insensitive (`Content-Type` and `content-type` are
   * one header, never sent twice). Precedence, lowest first: the SDK's defaults (`Accept`,
   * `Content-Type: application/json`, a generated `Idempotency-Key`), the client's `headers`,
   * these `headers`, then the SDK's explicit options (`idempotencyKey`, `ifVersion`, and the
   * client's `token` as `Authorization`). An `Idempotency-Key` given here is used instead of a
   * generated one, and reused by every retry.
   */
  headers?: Record<string, string>;
}

/** Options of writes: an explicit idempotency key (one is generated, and reused by retries, otherwise). */
export interface WriteOptions extends RequestOptions {
  /**
   * The `Idempotency-Key` of this write, reused by its retries. Takes precedence over an
   * `Idempotency-Key` in `headers`; with neither, one is generated (unless `maxRetries` is 0).
   */
  idempotencyKey?: string;
}

/** Optimistic locking: the write happens only if the resource is still at this version (`If-Match`). */
export interface LockOptions extends WriteOptions {
  /** `null` or absent: no `If-Match` (documents type `version` as nullable, as the reference page does). */
  ifVersion?: number | null;
}

export type QueryValue = string | number | boolean | Date | null | undefined | readonly (string | number | boolean)[];

export interface ApiRequest {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  path: string;
  query?: Readonly<Record<string, QueryValue>>;
  body?: unknown;
  options?: LockOptions;
  /** The answer is a list's envelope: one without its `data` array is an error of the answer. */
  list?: boolean;
}

const DEFAULT_TIMEOUT = 60_000;
const MAX_RETRY_AFTER = 60_000;

/** A key the SDK makes up for a write it may retry (exported for the Playground, which sends once). */
export function randomKey(): string {
  const c = globalThis.crypto;
  if (typeof c?.randomUUID === 'function') return c.randomUUID();
  const bytes = c.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * Sets header `name` in `headers` (lowercase names), replacing any value of that name whatever
 * casing either was given in. Plain strings only, so the client runs anywhere `fetch` does.
 */
function setHeader(headers: Record<string, string>, name: string, value: string): void {
  headers[name.toLowerCase()] = value;
}

/** One value of an any-of list (`a,b`): a comma inside it is written `\,`, a backslash `\\`. */
function anyOfValue(value: unknown): string {
  const text = value instanceof Date ? value.toISOString() : String(value);
  return text.replaceAll('\\', '\\\\').replaceAll(',', '\\,');
}

/**
 * A body as JSON; a number JSON cannot carry (±Infinity, NaN) is a TypeError here, not sent as
 * null (which a merge patch reads as "clear this field").
 */
function toJson(body: unknown): string {
  return JSON.stringify(body, (key, value: unknown) => {
    if (typeof value === 'number' && !Number.isFinite(value)) {
      throw new TypeError(
        `${key ? `body.${key}` : 'body'} is ${value}: JSON has no such number (it would be sent as null)`,
      );
    }
    return value;
  });
}

/** List parameters that are not filters: sent as given (a search's text, a sort, a cursor). */
const RAW_PARAMS = new Set(['q', 'sort', 'cursor', 'limit', 'include_deleted']);

function queryString(query: Readonly<Record<string, QueryValue>> | undefined): string {
  if (!query) return '';
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value === undefined || value === null) continue;
    if (value instanceof Date) params.set(name, value.toISOString());
    else if (Array.isArray(value)) {
      // "Any of none" matches nothing, and `name=` would be read as one empty value (or refused):
      // said here, before anything is sent. Leave the filter out to match any value.
      if (value.length === 0) {
        throw new TypeError(`${name}: an empty list matches nothing; leave ${name} out to match any value`);
      }
      params.set(name, value.map(anyOfValue).join(','));
    } else if (typeof value === 'string' && !RAW_PARAMS.has(name) && !name.includes('[')) {
      // One value of a filter is a list of one: `tag: 'a,b'` is the tag "a,b", as `['a,b']` is.
      params.set(name, anyOfValue(value));
    } else params.set(name, String(value));
  }
  const s = params.toString();
  return s ? `?${s}` : '';
}

/**
 * The wait before retry `attempt` (0-based): the server's Retry-After, else backoff with jitter.
 * Null when the server asks for a wait longer than MAX_RETRY_AFTER: no retry then (one sooner
 * would be refused again), the error goes to the caller with its `retryAfter`.
 */
export function retryDelay(attempt: number, headers?: Headers): number | null {
  const ms = retryAfterMs(headers);
  if (ms !== undefined && ms > MAX_RETRY_AFTER) return null;
  // 0 (or a date passed, which a clock ahead of the server's reads): backoff all the same.
  if (ms !== undefined && ms > 0) return ms;
  const base = Math.min(500 * 2 ** attempt, 8000);
  return base * (1 - Math.random() * 0.25);
}

function retryable(status: number, problem: Problem | undefined): boolean {
  // 409 idempotency_in_flight: a retry overtook the first attempt, which is still running.
  return status === 429 || status === 503 || (status === 409 && problem?.code === 'idempotency_in_flight');
}

/** Waits `ms`, or rejects once `signal` aborts; either way nothing stays on the signal after. */
const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });

/** `p`, or the signal's reason once it aborts: a body that stalls after its headers ends too. */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return p;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/** The longest delay a timer holds (2^31 − 1 ms); a longer one fires at once, with a warning. */
const MAX_TIMER_MS = 2_147_483_647;

/**
 * `timeout` and `maxRetries`, checked where they are given: an impossible one (a negative, NaN, a
 * fraction, a timeout past the longest timer) failed every call late, after pointless retries.
 */
function checkLimits(o: { timeout?: number | undefined; maxRetries?: number | undefined }): void {
  const { timeout, maxRetries } = o;
  if (
    timeout !== undefined &&
    timeout !== Number.POSITIVE_INFINITY &&
    !(Number.isInteger(timeout) && timeout >= 1 && timeout <= MAX_TIMER_MS)
  ) {
    throw new RangeError(`timeout must be a whole number of ms from 1 to ${MAX_TIMER_MS}, or Infinity: got ${timeout}`);
  }
  if (maxRetries !== undefined && !(Number.isInteger(maxRetries) && maxRetries >= 0)) {
    throw new RangeError(`maxRetries must be a whole number, 0 or more: got ${maxRetries}`);
  }
}

/** Sends requests: auth, JSON, retries with one idempotency key per logical write, errors by status. */
export class Transport {
  readonly #options: ClientOptions;
  readonly #base: string;

  constructor(options: ClientOptions) {
    // A key names one write: as a client's header, every write would replay the first one's answer.
    if (Object.keys(options.headers ?? {}).some((name) => name.toLowerCase() === 'idempotency-key')) {
      throw new TypeError('Idempotency-Key names one write: give it per request (idempotencyKey), not to the client');
    }
    checkLimits(options);
    this.#options = options;
    this.#base = options.baseUrl.replace(/\/+$/, '');
  }

  async request<T>(req: ApiRequest): Promise<T> {
    const options = req.options ?? {};
    checkLimits(options);
    const maxRetries = options.maxRetries ?? this.#options.maxRetries ?? 2;
    // Lowest precedence first, each name lowercased so that a later one replaces an earlier one:
    // the SDK's defaults, the client's headers, the request's headers, the explicit options.
    const headers: Record<string, string> = { accept: 'application/json' };
    if (req.body !== undefined) headers['content-type'] = 'application/json';
    for (const given of [this.#options.headers, options.headers]) {
      for (const [name, value] of Object.entries(given ?? {})) setHeader(headers, name, value);
    }
    if (req.method !== 'GET') {
      // Decided once, before the first attempt: every retry sends this same key.
      // A key given is sent as given (an empty one too: the server refuses it, 400).
      const key = options.idempotencyKey ?? headers['idempotency-key'] ?? (maxRetries > 0 ? randomKey() : undefined);
      if (key !== undefined) headers['idempotency-key'] = key;
    }
    if (options.ifVersion !== undefined && options.ifVersion !== null) headers['if-match'] = `"${options.ifVersion}"`;
    const url = `${this.#base}${req.path}${queryString(req.query)}`;
    const body = req.body === undefined ? undefined : toJson(req.body);

    for (let attempt = 0; ; attempt++) {
      const token = typeof this.#options.token === 'function' ? await this.#options.token() : this.#options.token;
      if (token) headers.authorization = `Bearer ${token}`;
      let response: Response;
      let text: string;
      try {
        ({ response, text } = await this.#exchange(url, { method: req.method, headers, body }, options));
      } catch (err) {
        // A connection error is retried; an answer refused (a write's redirect) is not.
        if (options.signal?.aborted || !(err instanceof APIConnectionError)) throw err;
        if (attempt < maxRetries) {
          await sleep(retryDelay(attempt) ?? 0, options.signal);
          continue;
        }
        throw err;
      }
      if (response.ok) return this.#parse(response, text, req.list === true) as T;
      const problem = this.#problem(response, text);
      const wait =
        attempt < maxRetries && retryable(response.status, problem) ? retryDelay(attempt, response.headers) : null;
      if (wait !== null) {
        await sleep(wait, options.signal);
        continue;
      }
      throw APIError.generate(response.status, problem, response.headers, text.slice(0, 200));
    }
  }

  /**
   * One attempt: the answer's headers and its whole body. The body is part of the answer: a
   * connection cut, or the time running out, while it arrives is a connection error (retried,
   * with the same idempotency key) as one before the headers is.
   */
  async #exchange(
    url: string,
    init: RequestInit,
    options: RequestOptions,
  ): Promise<{ response: Response; text: string }> {
    const fetchImpl = this.#options.fetch ?? globalThis.fetch;
    const timeout = options.timeout ?? this.#options.timeout ?? DEFAULT_TIMEOUT;
    const timer = timeout === Number.POSITIVE_INFINITY ? undefined : AbortSignal.timeout(timeout);
    const signals = [options.signal, timer].filter((s) => s !== undefined);
    const signal = signals.length > 1 ? AbortSignal.any(signals) : signals[0];
    try {
      // A write is not sent on: fetch follows a 301 or 302 of a POST, and a 303 of any method, as
      // a GET without the body, whose answer would read as the write's (nothing written).
      const write = init.method !== 'GET';
      const response = await fetchImpl(url, { ...init, signal, redirect: write ? 'manual' : 'follow' });
      if (write && (response.type === 'opaqueredirect' || (response.status >= 300 && response.status < 400))) {
        // Read, as any answer's body is: unread, it would hold its connection until collected.
        await untilAborted(response.text(), signal).catch(() => {});
        // (A browser shows none of it: an opaque redirect has status 0 and no Location.)
        const to = response.headers.get('location');
        throw new APIError(
          response.status || undefined,
          undefined,
          `${init.method} ${url} answered a redirect${to ? ` to ${to}` : ''}: a write is not sent on (is baseUrl the API's address?)`,
          response.headers,
        );
      }
      const noBody = response.status === 204 || response.status === 304;
      return { response, text: noBody ? '' : await untilAborted(response.text(), signal) };
    } catch (err) {
      if (options.signal?.aborted || err instanceof APIError) throw err;
      if (timer?.aborted) throw new APIConnectionTimeoutError(`No answer within ${timeout} ms`, { cause: err });
      throw new APIConnectionError(`Connection error: ${(err as Error)?.message ?? String(err)}`, { cause: err });
    }
  }

  /**
   * A 2xx's document. Every call answers a JSON object: anything else (a proxy's or a portal's
   * HTML page, a base URL that names a web page, an empty body, JSON that does not parse) is an
   * error of the answer, with its status and request id, not a string or a bare SyntaxError.
   */
  #parse(response: Response, text: string, list: boolean): unknown {
    const type = response.headers.get('content-type');
    const refuse = (what: string, cause?: unknown) =>
      new APIError(response.status, undefined, `${response.status}: ${what}`, response.headers, { cause });
    if (!/json/i.test(type ?? '')) {
      throw refuse(
        `the answer is not JSON (${type ? `Content-Type: ${type}` : 'no Content-Type'}); is baseUrl the API's?`,
      );
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw refuse(text ? 'the answer is not valid JSON' : 'the answer is empty', err);
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw refuse('the answer is not a JSON object');
    }
    if (list && !Array.isArray((parsed as { data?: unknown }).data))
      throw refuse('the answer is not a list (no data array)');
    return parsed;
  }

  #problem(response: Response, text: string): Problem | undefined {
    if (!/json/i.test(response.headers.get('content-type') ?? '')) return undefined;
    try {
      const parsed = JSON.parse(text) as Problem;
      return parsed && typeof parsed === 'object' && typeof parsed.code === 'string' ? parsed : undefined;
    } catch {
      return undefined;
    }
  }
}
