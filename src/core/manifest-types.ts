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
