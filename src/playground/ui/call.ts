import { createClient } from '../../client/index';
import { randomKey } from '../../client/transport';
import { type CallResult, type Exchange, recordingFetch, toResult } from './api';
import { type ManifestOperation, viaSdk } from './manifest';
import { type BuiltRequest, bodySlot, requestUrl, sdkOptions, signedHeaders } from './request';

type Method = (...args: unknown[]) => unknown;

/** The SDK method an operation names: `client.okr.keyResults.checkIns.create`. */
export function sdkMethod(client: unknown, clientMethod: string): Method | null {
  const [root, ...path] = clientMethod.split('.');
  if (root !== 'client' || path.length === 0) return null;
  let target: unknown = client;
  for (const name of path) {
    if (target === null || (typeof target !== 'object' && typeof target !== 'function')) return null;
    target = (target as Record<string, unknown>)[name];
  }
  return typeof target === 'function' ? (target as Method) : null;
}

/**
 * The SDK call's arguments, as the snippets print them: path ids, then the body, then options.
 * Every write but the six standard ones (a custom operation: a check-in, a sync) keeps the body
 * slot even when it sends no body, so its options are never taken for one:
 * `sync(id, undefined, { ifVersion: 1 })`.
 */
export function sdkCallArgs(op: ManifestOperation, built: BuiltRequest): unknown[] {
  const args: unknown[] = built.pathValues.map((p) => p.value);
  const options = sdkOptions(built);
  if (bodySlot(op) && (op.has_body || options)) args.push(built.body);
  if (options) args.push(options);
  return args;
}

/** A signed operation, sent as the other system would: to its signed URL, with no token. */
async function sendSigned(
  op: ManifestOperation,
  built: BuiltRequest,
  baseUrl: string,
  fetchImpl: typeof fetch,
): Promise<CallResult> {
  const log: Exchange[] = [];
  const headers: Record<string, string> = { accept: 'application/json' };
  if (op.has_body) headers['content-type'] = 'application/json';
  Object.assign(headers, signedHeaders(built));
  try {
    await recordingFetch(log, fetchImpl)(`${baseUrl}${requestUrl(built)}`, {
      method: op.method,
      headers,
      body: op.has_body ? JSON.stringify(built.body) : undefined,
    });
    return toResult(log, null);
  } catch (err) {
    return toResult(log, err);
  }
}

/**
 * Sends one console call through the SDK itself, recording the raw exchange (status, headers,
 * timing, body) through the SDK's `fetch` option so the console can show it. A signed operation
 * (no SDK method) is sent directly, with its query and without the token.
 */
export async function sendCall(
  op: ManifestOperation,
  built: BuiltRequest,
  token: string,
  via: { baseUrl?: string; fetch?: typeof fetch; maxRetries?: number } = {},
): Promise<CallResult> {
  const baseUrl = via.baseUrl ?? location.origin;
  // Every write carries an Idempotency-Key, made up here where none is typed, as the console
  // says: the SDK makes one only for its retries (the console sends once), and a signed
  // operation goes without the SDK.
  const sent = op.method !== 'GET' && built.idempotencyKey === null ? { ...built, idempotencyKey: randomKey() } : built;
  if (!viaSdk(op)) return sendSigned(op, sent, baseUrl, via.fetch ?? ((i, n) => fetch(i, n)));
  const log: Exchange[] = [];
  const client = createClient({
    baseUrl,
    token: token || undefined,
    fetch: recordingFetch(log, via.fetch),
    ...(via.maxRetries === undefined ? {} : { maxRetries: via.maxRetries }),
  });
  const method = sdkMethod(client, op.client_method);
  if (!method) return toResult([], new Error(`The SDK has no method ${op.client_method}`));
  try {
    await method(...sdkCallArgs(op, sent));
    return toResult(log, null);
  } catch (err) {
    // An HTTP error still has its exchange in the log; only a call that got no answer has none.
    // The SDK says a failed connection as an APIConnectionError: a TypeError or a RangeError with
    // nothing sent is its refusal of a call it cannot make (an id of "..", say).
    const refused = log.length === 0 && (err instanceof TypeError || err instanceof RangeError);
    return toResult(log, err, refused);
  }
}
