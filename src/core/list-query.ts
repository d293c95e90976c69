import { createHash, createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { ApiError } from './errors.js';
import type { AnyField } from './fields.js';
import { isJsonNumberText, splitAnyOf } from './manifest-types.js';
import type { Principal, Resource } from './resource.js';
import { isDate, isDateTime } from './validation.js';

export type RangeOp = 'gte' | 'gt' | 'lte' | 'lt';
export type Filter =
  | { field: string; op: 'in'; values: unknown[] }
  | { field: string; op: RangeOp; value: unknown }
  | { field: string; op: 'has_any'; values: string[] };

export interface ListQuery {
  limit: number;
  sort: { field: string; desc: boolean };
  filters: Filter[];
  /** Lower-cased, normalized search text for the title field. */
  q: string | null;
  includeDeleted: boolean;
  /** Keyset position after which the page starts. */
  after: { value: unknown; id: string } | null;
  /** Binds a cursor to everything but `limit`. */
  fingerprint: string;
}

export const DEFAULT_LIMIT = 50;
/** The field a list is sorted by unless it asks for another (newest first): every resource has it. */
export const DEFAULT_SORT = 'created_at';
export const MAX_LIMIT = 200;
const RANGE = /^([a-z0-9_]+)\[(gte|gt|lte|lt)\]$/;
const RANGE_KINDS = new Set(['real', 'integer', 'date', 'datetime']);

/**
 * Folds text for `q` matching, identically on both stores (in JavaScript, never in SQL): NFKC,
 * then case folded, not just lower-cased. Lower, upper, lower again maps what has no one-to-one
 * lower case alike (`ß`, `ẞ` and `SS` all become `ss`; `ı` and `I` become `i`); `ς`, which lower
 * casing picks at a word's end (so `ΟΔΟΣ` and a search for `Σ` or `ΠΩΛΗΣ` would differ), is `σ`;
 * `İ` is `i` without its combining dot. Changing this changes what is stored: bump SEARCH_FOLD.
 */
export function searchText(s: string): string {
  return s
    .normalize('NFKC')
    .toLowerCase()
    .toUpperCase()
    .toLowerCase()
    .normalize('NFKC')
    .replaceAll('ς', 'σ')
    .replaceAll('i\u0307', 'i');
}

/** The version of searchText that stored search columns hold; `migrate` folds older rows again. */
export const SEARCH_FOLD = 2;

function bad(param: string, message: string): ApiError {
  return new ApiError('invalid_parameter', `${param}: ${message}`, {
    errors: [{ path: param, code: 'invalid_parameter', message }],
  });
}

/**
 * Where a query string's parser puts the names of parameters it could not decode (a malformed
 * percent-escape such as `%zz`, or escapes of bytes that are not UTF-8): such a value was kept
 * as its raw text, which reads as another value (`q=%zz` searched for the text "%zz"). A
 * symbol, so that no loop over the parameters meets it.
 */
export const MALFORMED_PARAMETERS: unique symbol = Symbol('malformed query parameters');

/** 400 for a parameter its parser could not decode (see MALFORMED_PARAMETERS), whatever it names. */
export function checkDecoded(params: object, param: string): void {
  if ((params as { [MALFORMED_PARAMETERS]?: ReadonlySet<string> })[MALFORMED_PARAMETERS]?.has(param)) {
    throw bad(param, 'holds a malformed percent-escape (% and two hex digits, of UTF-8 bytes); a literal % is %25');
  }
}

/**
 * Reads every query parameter with `one`, and refuses them together: one 400 names every
 * parameter that is unknown or invalid (an unknown one's code leads), so a client fixes them
 * in one round trip. Other errors go through as they are.
 */
export function eachParameter(
  params: Record<string, string | string[] | undefined>,
  one: (param: string, value: string | string[]) => void,
): void {
  const refused: ApiError[] = [];
  for (const [param, value] of Object.entries(params)) {
    if (value === undefined) continue;
    try {
      checkDecoded(params, param);
      one(param, value);
    } catch (err) {
      if (!(err instanceof ApiError) || (err.code !== 'invalid_parameter' && err.code !== 'unknown_parameter'))
        throw err;
      refused.push(err);
    }
  }
  if (refused.length === 0) return;
  const lead = refused.find((e) => e.code === 'unknown_parameter') ?? (refused[0] as ApiError);
  if (refused.length === 1) throw lead;
  const others = refused.filter((e) => e !== lead).map((e) => e.message);
  throw new ApiError(lead.code, `${lead.message}; also ${others.join('; ')}`, {
    errors: refused.flatMap((e) => e.errors ?? []),
  });
}

/** How many values one `a,b,…` filter may list ("any of"). */
export const MAX_FILTER_VALUES = 100;

/** The distinct values of an `a,b,…` filter, at most MAX_FILTER_VALUES of them. */
function anyOf(param: string, values: string[]): string[] {
  const distinct = [...new Set(values)];
  if (distinct.length > MAX_FILTER_VALUES) throw bad(param, `lists at most ${MAX_FILTER_VALUES} values`);
  return distinct;
}

/** Fields' patterns, compiled once each. */
const patterns = new Map<string, RegExp>();
function patternOf(pattern: string): RegExp {
  let re = patterns.get(pattern);
  if (re === undefined) {
    re = new RegExp(pattern, 'u');
    patterns.set(pattern, re);
  }
  return re;
}

function parseValue(param: string, field: AnyField, raw: string): unknown {
  switch (field.column) {
    case 'real':
    case 'integer': {
      const n = Number(raw);
      if (!isJsonNumberText(raw) || !Number.isFinite(n)) throw bad(param, `${raw} is not a number`);
      return n;
    }
    case 'boolean':
      if (raw === 'true') return true;
      if (raw === 'false') return false;
      throw bad(param, 'must be true or false');
    case 'date':
      if (!isDate(raw)) throw bad(param, 'must be a date YYYY-MM-DD of a real day, in years 0001–9999');
      return raw;
    case 'datetime':
      if (!isDateTime(raw)) throw bad(param, 'must be an RFC 3339 timestamp of a real day, in years 0001–9999');
      return new Date(raw).toISOString(); // to the millisecond, finer digits cut (see `datetimeFilters`)
    default:
      if (field.enum && !field.enum.includes(raw)) throw bad(param, `must be one of: ${field.enum.join(', ')}`);
      // No row holds an empty id or text (a field left empty is null): it would match nothing.
      if (raw === '') throw bad(param, 'is empty, which no row holds: leave it out to match any value');
      // Nor a value of another form than its field's (an id, `usr-<uuid>`): a typo, said as one.
      if (field.pattern !== undefined && !patternOf(field.pattern).test(raw)) {
        throw bad(param, `${JSON.stringify(raw)} does not match ${field.pattern}`);
      }
      return raw;
  }
}

/** Whether a date-time names an instant between two milliseconds (a digit after the third is not 0). */
function finerThanMs(raw: string): boolean {
  const fraction = /\.(\d+)/.exec(raw)?.[1] ?? '';
  return /[1-9]/.test(fraction.slice(3));
}

/**
 * The filters a date-time filter is, compared exactly although times are stored to the
 * millisecond. Between two milliseconds x and x+1: `[gte]` is `[gt]` x, `[lt]` is `[lte]` x,
 * `[gt]` and `[lte]` are themselves with x, and equality matches no stored time (an empty range).
 */
function datetimeFilters(param: string, field: AnyField, name: string, op: RangeOp | 'in', raw: string): Filter[] {
  if (op !== 'in') {
    const value = parseValue(param, field, raw);
    if (!finerThanMs(raw)) return [{ field: name, op, value }];
    return [{ field: name, op: op === 'gte' ? 'gt' : op === 'lt' ? 'lte' : op, value }];
  }
  const values = anyOf(param, splitAnyOf(raw));
  const parsed = values.map((v) => parseValue(param, field, v));
  const exact = parsed.filter((_, i) => !finerThanMs(values[i] as string));
  if (exact.length > 0) return [{ field: name, op: 'in', values: [...new Set(exact)] }];
  return [
    { field: name, op: 'gt', value: parsed[0] },
    { field: name, op: 'lte', value: parsed[0] },
  ];
}

/**
 * Cursors are opaque, HMAC-protected and bound to the caller's tenant and app, the filters,
 * the sort and `include_deleted` (not `limit`).
 */
export class CursorCodec {
  private readonly key: Buffer;

  constructor(secretKey: Uint8Array) {
    this.key = Buffer.from(hkdfSync('sha256', secretKey, 'edm', 'edm list cursor v1', 32));
  }

  encode(fingerprint: string, value: unknown, id: string): string {
    const payload = Buffer.from(JSON.stringify([fingerprint, value, id])).toString('base64url');
    return `${payload}.${this.sign(payload)}`;
  }

  decode(cursor: string, fingerprint: string): { value: unknown; id: string } {
    const invalid = (message: string) =>
      new ApiError('invalid_cursor', message, { errors: [{ path: 'cursor', code: 'invalid_cursor', message }] });
    // However it was damaged (cut short, pasted twice), a cursor this server did not issue is one code.
    const [payload, mac, extra] = cursor.split('.');
    if (!payload || !mac || extra !== undefined) throw invalid('The cursor is not one this server issued (malformed)');
    const expected = Buffer.from(this.sign(payload));
    const given = Buffer.from(mac);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
      throw invalid('The cursor was altered or was not issued by this server');
    }
    const [fp, value, id] = JSON.parse(Buffer.from(payload, 'base64url').toString()) as [string, unknown, string];
    if (fp !== fingerprint) {
      throw invalid('The cursor belongs to a list with other filters, sort or caller');
    }
    return { value, id };
  }

  private sign(payload: string): string {
    return createHmac('sha256', this.key).update(payload).digest('base64url');
  }
}

/**
 * Parses and validates list parameters against the resource's declared sortable and
 * filterable fields. Unknown or repeated parameters are 400.
 */
export function parseListQuery(
  resource: Resource,
  principal: Principal,
  params: Record<string, string | string[] | undefined>,
  cursors: CursorCodec,
): ListQuery {
  let limit = DEFAULT_LIMIT;
  let sort = { field: DEFAULT_SORT, desc: true };
  const filters: Filter[] = [];
  let q: string | null = null;
  let includeDeleted = false;
  let cursor: string | null = null;

  eachParameter(params, (param, rawValue) => {
    if (Array.isArray(rawValue)) throw bad(param, 'must not be repeated');
    // PostgreSQL text cannot hold U+0000: both stores refuse it, so they answer alike.
    if (rawValue.includes('\u0000')) throw bad(param, 'must not contain the NUL character (U+0000)');
    const raw = rawValue;
    if (param === 'limit') {
      const n = Number(raw);
      if (!/^\d+$/.test(raw) || n < 1 || n > MAX_LIMIT) throw bad('limit', `must be an integer from 1 to ${MAX_LIMIT}`);
      limit = n;
    } else if (param === 'cursor') {
      cursor = raw;
    } else if (param === 'sort') {
      const desc = raw.startsWith('-');
      const field = desc ? raw.slice(1) : raw;
      if (!resource.sortable.includes(field))
        throw bad('sort', `must be one of: ${resource.sortable.join(', ')} (prefix - for descending)`);
      sort = { field, desc };
    } else if (param === 'q') {
      q = searchText(raw);
    } else if (param === 'include_deleted') {
      if (raw !== 'true' && raw !== 'false') throw bad(param, 'must be true or false');
      includeDeleted = raw === 'true';
    } else if (param === 'tag' && resource.filterable.includes('tags')) {
      // No tag is stored empty (1–64 characters): an empty value would match nothing, as any
      // other filter's (`tag=`, `tag=a,`).
      const values = anyOf(param, splitAnyOf(raw));
      if (values.includes('')) throw bad(param, 'is empty, which no tag is: leave it out to match any value');
      filters.push({ field: 'tags', op: 'has_any', values });
    } else {
      const range = RANGE.exec(param);
      const name = range ? range[1] : param;
      const field = resource.filterable.includes(name) && name !== 'tags' ? resource.allFields[name] : undefined;
      if (!field) {
        // A parameter with no name (`?=5`) is named as the empty string it is.
        const shown = param || '""';
        throw new ApiError('unknown_parameter', `${shown} is not a parameter of this list`, {
          errors: [
            { path: param, code: 'unknown_parameter', message: `${shown} is not a list parameter of ${resource.name}` },
          ],
        });
      }
      if (range && !RANGE_KINDS.has(field.column ?? '')) throw bad(param, 'ranges apply to numbers and dates only');
      if (field.column === 'datetime') {
        filters.push(...datetimeFilters(param, field, name, range ? (range[2] as RangeOp) : 'in', raw));
      } else if (range) {
        filters.push({ field: name, op: range[2] as RangeOp, value: parseValue(param, field, raw) });
      } else {
        const values = anyOf(param, splitAnyOf(raw)).map((v) => parseValue(param, field, v));
        filters.push({ field: name, op: 'in', values });
      }
    }
  });

  const fingerprint = createHash('sha256')
    .update(
      JSON.stringify([
        resource.table,
        principal.tenantId,
        principal.appId,
        sort,
        // An any-of filter is a set: its values in any order, or spelt twice (`current=1,1.0`),
        // are the same list; one value is written as it always was.
        filters
          .map((f) => {
            if (!('values' in f) || f.values.length < 2) return JSON.stringify(f);
            const values = [...new Set(f.values.map((v) => JSON.stringify(v)))].sort();
            return JSON.stringify(values.length > 1 ? { ...f, values } : { ...f, values: [f.values[0]] });
          })
          .sort(),
        q,
        includeDeleted,
      ]),
    )
    .digest('base64url');
  return {
    limit,
    sort,
    filters,
    q,
    includeDeleted,
    after: cursor === null ? null : cursors.decode(cursor, fingerprint),
    fingerprint,
  };
}
