import { createClient } from '../../client/index';
import { type CallResult, type Exchange, recordingFetch, toResult } from './api';
import type { ManifestOperation } from './manifest';
import { type BuiltRequest, sdkOptions } from './request';

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

/** The SDK call's arguments, as the snippets print them: path ids, then the body, then options. */
export function sdkCallArgs(op: ManifestOperation, built: BuiltRequest): unknown[] {
  const args: unknown[] = built.pathValues.map((p) => p.value);
  if (op.has_body) args.push(built.body);
  const options = sdkOptions(built);
  if (options) args.push(options);
  return args;
}

/**
 * Sends one console call through the SDK itself, recording the raw exchange (status, headers,
 * timing, body) through the SDK's `fetch` option so the console can show it.
 */
export async function sendCall(
  op: ManifestOperation,
  built: BuiltRequest,
  token: string,
  via: { baseUrl?: string; fetch?: typeof fetch; maxRetries?: number } = {},
): Promise<CallResult> {
  const log: Exchange[] = [];
  const client = createClient({
    baseUrl: via.baseUrl ?? location.origin,
    token: token || undefined,
    fetch: recordingFetch(log, via.fetch),
    ...(via.maxRetries === undefined ? {} : { maxRetries: via.maxRetries }),
  });
  const method = sdkMethod(client, op.client_method);
  if (!method) return toResult([], new Error(`The SDK has no method ${op.client_method}`));
  try {
    await method(...sdkCallArgs(op, built));
    return toResult(log, null);
  } catch (err) {
    // An HTTP error still has its exchange in the log; only a call that got no answer has none.
    return toResult(log, err);
  }
}
