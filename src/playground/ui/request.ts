import { anyOfText, isJsonNumberText, splitAnyOf } from '../../core/manifest-types';
import {
  IDEMPOTENCY_KEY,
  type ManifestHeader,
  type ManifestOperation,
  type ManifestResource,
  pathParams,
} from './manifest';

/** What the user typed into one operation's console; `undefined` means "not touched: use the default". */
export interface FormState {
  params: Record<string, string | undefined>;
  query: Record<string, string | undefined>;
  /** The JSON body editor's text, or undefined while it still shows the example. */
  body: string | undefined;
  /** What was typed into the operation's header fields (`If-Match`, `Idempotency-Key`). */
  headers?: Partial<Record<ManifestHeader, string>>;
}

export const emptyForm = (): FormState => ({ params: {}, query: {}, body: undefined, headers: {} });

/**
 * Ids the session has seen, by id prefix: `kr` → the last key result answered, deleted or not (an
 * `id` parameter's default), and `ref:kr` → the live ones, most recent first (a reference's).
 */
export type KnownIds = Readonly<Record<string, string | readonly string[]>>;

/** How many live ids of a prefix the session keeps: a delete falls back to the one seen before. */
export const LIVE_IDS = 8;

/** The key of the live ids a reference field is prefilled from. */
const referenceKey = (prefix: string) => `ref:${prefix}`;

/** The live ids of `prefix` the session saw, most recent first (a session stored before kept one, as text). */
function liveIds(known: KnownIds, prefix: string): string[] {
  const live = known[referenceKey(prefix)];
  if (typeof live === 'string') return live ? [live] : [];
  return Array.isArray(live) ? live.filter((id): id is string => typeof id === 'string' && id !== '') : [];
}

/** The last row of `prefix` seen, deleted or not. */
function lastId(known: KnownIds, prefix: string): string | undefined {
  const id = known[prefix];
  return typeof id === 'string' && id !== '' ? id : undefined;
}

/**
 * The id a reference to `prefix` is prefilled with: the last live row the session saw (none once
 * every one it saw is deleted: a create naming a deleted parent would be 422). Ids given without
 * the live list (`{ obj: … }`) are taken as live.
 */
export function referenceId(known: KnownIds, prefix: string): string | undefined {
  if (known[referenceKey(prefix)] === undefined) return lastId(known, prefix);
  return liveIds(known, prefix)[0];
}

/**
 * The ids known once the API answered `doc` (a document with an `id` of `prefix`): the last row
 * seen, for an `id` parameter (a deleted one too: to restore it), and the live ones, most recent
 * first, for a reference in a body. A live row goes to the front of that list (at most LIVE_IDS);
 * a deleted one leaves it, so a reference falls back to the live row seen before.
 */
export function rememberId(known: KnownIds, prefix: string, doc: { id: string; is_deleted?: unknown }): KnownIds {
  const others = liveIds(known, prefix).filter((id) => id !== doc.id);
  const live = doc.is_deleted === true ? others : [doc.id, ...others].slice(0, LIVE_IDS);
  return { ...known, [prefix]: doc.id, [referenceKey(prefix)]: live };
}

export type QueryValue = string | number | boolean | (string | number | boolean)[];

/** One call, ready to send or to print as SDK code or curl. */
export interface BuiltRequest {
  method: ManifestOperation['method'];
  /** The path with its parameters filled in (still `{id}` where one is missing). */
  path: string;
  /** Path parameter values, in the order of the path. */
  pathValues: { name: string; value: string }[];
  query: Record<string, QueryValue>;
  /** The parsed JSON body (undefined when the operation takes none or it does not parse). */
  body: unknown;
  /** Why the body text is not usable, if it is not. */
  bodyError: string | null;
  /** Path parameters still empty. */
  missing: string[];
  /**
   * Why a path parameter's value cannot be sent, and which one: `.` and `..` are steps of a URL
   * (`…/key-results/.` is the list), so they would name another path (the SDK refuses them too).
   */
  paramError: string | null;
  paramErrorAt: string | null;
  /** `If-Match` as the SDK's `ifVersion`: the version the write expects (null: not sent). */
  ifVersion: number | null;
  /** The `Idempotency-Key` to send (null: the SDK makes one up). */
  idempotencyKey: string | null;
  /** Why a header field is not usable, if one is not. */
  headerError: string | null;
  /** Which header that is (the first one not usable). */
  headerErrorAt: string | null;
  /** Every header given that is not usable (left out of the snippets, which say so). */
  invalidHeaders: string[];
}

/** An entity tag as typed: `3` or `"3"` (the ETag as the API sends it). */
const VERSION_TAG = /^"?(\d{1,15})"?$/;

/** The value an untouched path parameter shows: the id of this resource the session saw last. */
export function defaultParam(resource: ManifestResource, name: string, known: KnownIds): string {
  return name === 'id' ? (lastId(known, resource.id_prefix) ?? '') : '';
}

/**
 * The example body of an operation as editor text, with reference fields pointing at the last
 * live rows of those resources this session saw (so "create objective, then key result" just works).
 */
export function exampleBodyText(op: ManifestOperation, resource: ManifestResource, known: KnownIds): string {
  if (!op.has_body) return '';
  const example: Record<string, unknown> = { ...(op.example ?? {}) };
  for (const field of resource.fields) {
    const id = field.ref ? referenceId(known, field.ref) : undefined;
    if (id && field.name in example) example[field.name] = id;
  }
  return JSON.stringify(example, null, 2);
}

function coerce(type: string, raw: string): string | number | boolean {
  // A number as JSON writes one; other text (0x10, +5) goes as typed, for the server to refuse.
  if ((type === 'integer' || type === 'number') && isJsonNumberText(raw) && Number.isFinite(Number(raw))) {
    return Number(raw);
  }
  if (type === 'boolean' && (raw === 'true' || raw === 'false')) return raw === 'true';
  return raw;
}

export function buildRequest(
  op: ManifestOperation,
  resource: ManifestResource,
  form: FormState,
  known: KnownIds,
): BuiltRequest {
  const names = pathParams(op);
  const pathValues = names.map((name) => ({
    name,
    value: (form.params[name] ?? defaultParam(resource, name, known)).trim(),
  }));
  const dotted = pathValues.find((p) => p.value === '.' || p.value === '..');
  const path = pathValues.reduce(
    (p, { name, value }) => p.replace(`{${name}}`, value ? encodeURIComponent(value) : `{${name}}`),
    op.path,
  );
  const query: Record<string, QueryValue> = {};
  for (const param of op.query) {
    const raw = form.query[param.name];
    if (raw === undefined || raw.trim() === '') continue;
    if (!param.multiple) {
      // One value, as typed: a search (`q=Revenue, growth`) holds commas and backslashes as text.
      query[param.name] = coerce(param.type, raw.trim());
      continue;
    }
    // A filter of several values (`at_risk,off_track`: any of them) is a list, as the SDK takes it;
    // so is one value holding a comma or a backslash (typed `\,` and `\\`), which the SDK writes so.
    const values = splitChoices(raw);
    // Only commas and spaces (`,`): no value, left out as a blank filter is. Sent as text, the
    // console's SDK call would ask for the tag "," and the curl for none (a 400).
    if (values.length === 0) continue;
    query[param.name] =
      values.length > 1 || values.some((v) => /[,\\]/.test(v))
        ? values.map((v) => coerce(param.type, v))
        : coerce(param.type, values[0] ?? raw.trim());
  }
  let body: unknown;
  let bodyError: string | null = null;
  if (op.has_body) {
    const text = form.body ?? exampleBodyText(op, resource, known);
    if (text.trim() === '') {
      bodyError = 'The body is empty: send a JSON object, e.g. {}';
    } else {
      try {
        body = JSON.parse(text);
        // A number past a double's range parses as ±Infinity, which JSON cannot send (it would
        // go as null, and a merge patch's null clears the field).
        const at = nonFinite(body, '');
        if (at !== null) bodyError = `The number at ${at || '/'} is beyond what JSON can carry (±1.8e308)`;
      } catch (err) {
        bodyError = `The body is not valid JSON: ${(err as Error).message}`;
      }
    }
  }
  let ifVersion: number | null = null;
  let idempotencyKey: string | null = null;
  let headerError: string | null = null;
  const ifMatch = (form.headers?.['If-Match'] ?? '').trim();
  if (op.headers.includes('If-Match') && ifMatch !== '') {
    const m = VERSION_TAG.exec(ifMatch);
    if (m) ifVersion = Number(m[1]);
    else headerError = 'If-Match takes the version to expect, as the ETag shows it: 3 or "3"';
  }
  let headerErrorAt: string | null = headerError ? 'If-Match' : null;
  const invalidHeaders = headerError ? ['If-Match'] : [];
  const key = (form.headers?.['Idempotency-Key'] ?? '').trim();
  if (op.headers.includes('Idempotency-Key') && key !== '') {
    if (IDEMPOTENCY_KEY.test(key)) idempotencyKey = key;
    else {
      invalidHeaders.push('Idempotency-Key');
      if (headerError === null) {
        headerError = 'An Idempotency-Key is 1–255 visible ASCII characters, without spaces';
        headerErrorAt = 'Idempotency-Key';
      }
    }
  }
  return {
    method: op.method,
    path,
    pathValues,
    query,
    body,
    bodyError,
    missing: pathValues.filter((p) => !p.value).map((p) => p.name),
    paramError: dotted ? `${dotted.name} cannot be "${dotted.value}": a URL reads it as a step of its path` : null,
    paramErrorAt: dotted?.name ?? null,
    ifVersion,
    idempotencyKey,
    headerError,
    headerErrorAt,
    invalidHeaders,
  };
}

/** The path and query string of a built request: `/api/v1/okr/key-results?limit=10`. */
export function requestUrl(built: Pick<BuiltRequest, 'path' | 'query'>): string {
  const qs = Object.entries(built.query)
    .map(
      ([k, v]) =>
        `${encodeURIComponent(k)}=${encodeURIComponent(Array.isArray(v) ? v.map(anyOfText).join(',') : String(v))}`,
    )
    .join('&');
  return qs ? `${built.path}?${qs}` : built.path;
}

/**
 * The options a write's SDK call ends with: its query (`cascade`) and its headers as the SDK
 * names them (`ifVersion`, `idempotencyKey`). Null when there are none. A list's query is its
 * params argument instead (lists take no headers).
 */
export function sdkOptions(built: BuiltRequest): Record<string, unknown> | null {
  const options: Record<string, unknown> = { ...built.query };
  if (built.ifVersion !== null) options.ifVersion = built.ifVersion;
  if (built.idempotencyKey !== null) options.idempotencyKey = built.idempotencyKey;
  return Object.keys(options).length > 0 ? options : null;
}

/**
 * The headers a signed operation (no SDK method, sent with plain fetch) carries as typed, as the
 * SDK would send them for another write: `if-match: "3"`, `idempotency-key: …`. The console and
 * its fetch snippet both send these, as curl shows them.
 */
export function signedHeaders(built: BuiltRequest): Record<string, string> {
  const headers: Record<string, string> = {};
  if (built.ifVersion !== null) headers['if-match'] = `"${built.ifVersion}"`;
  if (built.idempotencyKey !== null) headers['idempotency-key'] = built.idempotencyKey;
  return headers;
}

/**
 * The values of a comma-separated filter, trimmed, empty ones dropped, read as the API reads an
 * any-of list (`\,` is a comma inside a value, `\\` a backslash: splitAnyOf).
 */
export function splitChoices(raw: string): string[] {
  return splitAnyOf(raw)
    .map((v) => v.trim())
    .filter((v) => v !== '');
}

/**
 * Checks or unchecks one value of a several-values filter, answering the comma-separated text
 * the form keeps, in the order the choices are offered: `at_risk,off_track`.
 */
export function toggleChoice(raw: string, choice: string, on: boolean, choices: readonly string[]): string {
  const chosen = new Set(splitChoices(raw));
  if (on) chosen.add(choice);
  else chosen.delete(choice);
  return [...choices.filter((c) => chosen.has(c)), ...[...chosen].filter((c) => !choices.includes(c))]
    .map(anyOfText)
    .join(',');
}

const STANDARD = new Set(['list', 'get', 'create', 'update', 'delete', 'restore']);

/**
 * Whether the operation's SDK method takes a body argument before its options. A custom write
 * (a check-in, a sync) does even when it sends no body: `sync(id, undefined, { ifVersion: 1 })`.
 */
export function bodySlot(op: Pick<ManifestOperation, 'name' | 'has_body' | 'response'>): boolean {
  return op.has_body || (!STANDARD.has(op.name) && op.response === 'resource');
}

/** The JSON Pointer of the first number in `value` that is not finite, or null. */
function nonFinite(value: unknown, at: string): string | null {
  if (typeof value === 'number') return Number.isFinite(value) ? null : at;
  if (value === null || typeof value !== 'object') return null;
  for (const [key, member] of Object.entries(value)) {
    const found = nonFinite(member, `${at}/${key.replaceAll('~', '~0').replaceAll('/', '~1')}`);
    if (found !== null) return found;
  }
  return null;
}
