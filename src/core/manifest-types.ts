/**
 * The shape of `GET /api/v1/manifest`: how the platform describes itself to the Playground and
 * to tools. Derived from the resource declarations (src/http/manifest.ts builds it).
 */
export interface Manifest {
  /** `dev_token`: this server mints development tokens at `POST /api/v1/dev/token` (local mode). */
  platform: { name: string; version: string; dev_token: boolean };
  modules: ManifestModule[];
}

export interface ManifestModule {
  name: string;
  description: string;
  /** `client.okr` */
  client_namespace: string;
  resources: ManifestResource[];
}

export interface ManifestResource {
  /** `KeyResult` */
  name: string;
  module: string;
  /** `/api/v1/okr/key-results` */
  path: string;
  description: string;
  id_prefix: string;
  schema_version: number;
  /** `client.okr.keyResults` */
  client_namespace: string;
  /** The field `q` searches. */
  title_field: string;
  operations: ManifestOperation[];
  fields: ManifestField[];
  list: {
    sortable: string[];
    /**
     * Fields a list filters on. Its query parameters are the list operation's `query`: a field
     * is filtered by its name (`status=`, ranges `field[gte]=`), but `tags` by `tag=` (has any of).
     */
    filterable: string[];
    default_sort: string;
    default_limit: number;
    max_limit: number;
  };
}

export interface ManifestOperation {
  /** `list`, `get`, `create`, `update`, `delete`, `restore`, `checkIns.create`, … */
  name: string;
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  /** Full path template: `/api/v1/okr/key-results/{id}` */
  path: string;
  summary: string;
  /**
   * `client.okr.keyResults.checkIns.create`; null for an operation the SDK has no method for
   * (`auth: 'signed_url'`: another system calls it at a signed URL, without a token).
   */
  client_method: string | null;
  /** Query parameters the operation takes (list filters, `cascade`, …). */
  query: ManifestParameter[];
  /** Whether a JSON body is sent. */
  has_body: boolean;
  /**
   * The fields of a custom operation's body (a check-in's `value`, `note`, `confidence`, `at`),
   * as the schema table shows a resource's; null where the resource's own fields are the body
   * (create, update) or none is sent.
   */
  body_fields: ManifestField[] | null;
  /** Request headers the operation honours beyond `Authorization` (the console offers them). */
  headers: ManifestHeader[];
  /** A valid example body (create, update, custom POSTs). */
  example: Record<string, unknown> | null;
  /** What the success answer holds. */
  response: 'resource' | 'list' | 'item_list';
  success_status: number;
  /**
   * How a call is admitted: a bearer token, or (`signed_url`) the signed URL a document shows,
   * with no token: another system's call, not in the SDK (a connector's webhook).
   */
  auth: 'bearer' | 'signed_url';
}

/** `Idempotency-Key` on writes; `If-Match` on writes to one row (update, delete, restore). */
export type ManifestHeader = 'If-Match' | 'Idempotency-Key';

/** What the API takes as an `Idempotency-Key`: 1–255 visible ASCII characters (the server and the console check it). */
export const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

/**
 * Whether `text` is a number as JSON writes one: not hex, binary, padded or with `+` (Number()
 * takes those). Query values and CSV cells are read so; the Playground sends others as typed.
 */
export const isJsonNumberText = (text: string): boolean => /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/.test(text);

export interface ManifestParameter {
  name: string;
  type: string;
  description: string;
  enum?: string[];
  /** A list filter: a comma-separated list of values matches any of them (`status=at_risk,off_track`). */
  multiple?: boolean;
  /** The call is refused without it (a signed URL's own parameters). */
  required?: boolean;
}

export interface ManifestField {
  name: string;
  /** The type shown on the reference page: `uuid`, `string`, `number`, `date-time`, `json`, `enum`, … */
  type: string;
  /** Required on create. */
  required: boolean;
  /** Never null in a response (the `*` of the reference page). */
  always_present: boolean;
  notes: string;
  enum: string[] | null;
  read_only: boolean;
  write_only: boolean;
  computed: boolean;
  default: unknown;
  pattern: string | null;
  /** Id prefix of the referenced resource. */
  ref: string | null;
  /** Platform field shared by every resource. */
  platform: boolean;
  /** A required field a create may leave out when these other fields hold these values (`{ metric_type: 'milestone' }`). */
  required_unless: Record<string, string> | null;
  /** A default a create derives from other fields, in words (`current`: "baseline"); null where none. */
  default_rule: string | null;
  /** The bounds the server enforces on a value, from the field's schema; null where it has none. */
  limits: FieldLimits | null;
}

/** A field's bounds (JSON Schema's words): lengths in characters, a list's items, a number's range. */
export interface FieldLimits {
  min_length?: number;
  max_length?: number;
  minimum?: number;
  maximum?: number;
  max_items?: number;
  unique_items?: boolean;
  item_min_length?: number;
  item_max_length?: number;
}

/**
 * The values of an any-of list parameter (`status=at_risk,off_track`): a comma inside a value is
 * written `\,`, a backslash `\\`; a backslash before any other character is itself. The SDK
 * writes arrays so (its own copy: the client imports nothing of the server), the Playground
 * reads and writes what is typed so.
 */
export function splitAnyOf(raw: string): string[] {
  if (!raw.includes('\\')) return raw.split(',');
  const values: string[] = [];
  let value = '';
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i] as string;
    if (c === '\\' && (raw[i + 1] === ',' || raw[i + 1] === '\\')) value += raw[++i];
    else if (c === ',') {
      values.push(value);
      value = '';
    } else value += c;
  }
  values.push(value);
  return values;
}

/** One value of an any-of list as a query holds it (see splitAnyOf). */
export function anyOfText(value: unknown): string {
  return String(value).replaceAll('\\', '\\\\').replaceAll(',', '\\,');
}

/** Every number's bounds (PRODUCT.md §1; fields.ts's NUMBER_LIMIT, not imported: the Playground loads this file): not worth a word in the table. */
const NUMBER_LIMIT = 1e15;

/**
 * A field's bounds in words for the schema table: `1–200 characters`, `at most 32 items, each
 * 1–64 characters, no repeats`, `0–100`, `≥ 0`. Null where it has none worth saying.
 */
export function limitsText(field: Pick<ManifestField, 'limits'>): string | null {
  const l = field.limits;
  if (!l) return null;
  const span = (min: number | undefined, max: number | undefined, unit: string) =>
    min !== undefined && min > 0 && max !== undefined
      ? `${min}–${max}${unit}`
      : max !== undefined
        ? `at most ${max}${unit}`
        : min !== undefined && min > 0
          ? `at least ${min}${unit}`
          : null;
  const parts: string[] = [];
  const chars = span(l.min_length, l.max_length, ' characters');
  if (chars) parts.push(chars);
  const low = l.minimum !== undefined && l.minimum > -NUMBER_LIMIT ? l.minimum : undefined;
  const high = l.maximum !== undefined && l.maximum < NUMBER_LIMIT ? l.maximum : undefined;
  if (low !== undefined && high !== undefined) parts.push(`${low}–${high}`);
  else if (low !== undefined) parts.push(`≥ ${low}`);
  else if (high !== undefined) parts.push(`≤ ${high}`);
  if (l.max_items !== undefined) parts.push(`at most ${l.max_items} items`);
  const each = span(l.item_min_length, l.item_max_length, ' characters');
  if (each) parts.push(`each ${each}`);
  if (l.unique_items) parts.push('no repeats');
  return parts.length > 0 ? parts.join(', ') : null;
}

/** When a create may leave a required field out, in words: `unless metric_type is milestone`. */
export function requiredUnlessText(field: Pick<ManifestField, 'required_unless'>): string | null {
  const unless = field.required_unless;
  if (!unless) return null;
  return `unless ${Object.entries(unless)
    .map(([name, value]) => `${name} is ${value}`)
    .join(' and ')}`;
}
