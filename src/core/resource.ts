import type { TSchema } from '@sinclair/typebox';
import type { FieldError } from './errors.js';
import {
  type AnyField,
  boolean,
  datetime,
  type InputValueOf,
  idPattern,
  integer,
  text,
  type ValueOf,
} from './fields.js';
import type { ServerKeys } from './secrets.js';
import type { OperationCall, PrepareCall, RowPage, TableDef, Tx, WriteEvent } from './tables.js';

/**
 * The platform fields of the seed page, declared once for every resource. Their notes are the
 * seed's, word for word. `version` is listed last, as on the reference page.
 */
export const platformFields = markPlatform({
  id: text({
    type: 'uuid',
    readOnly: true,
    alwaysPresent: true,
    notes: 'Server-assigned ULID with type prefix (e.g. per_…).',
  }),
  tenant_id: text({ readOnly: true, alwaysPresent: true, notes: "Tenant scope — auto-stamped from the caller's JWT." }),
  app_id: text({
    readOnly: true,
    notes:
      "App scope. Stamped ONLY when the caller's JWT was minted for a specific Application (integration API keys). Absent for human-user sessions. Filters reads when present.",
  }),
  created_at: datetime({ readOnly: true, alwaysPresent: true, notes: 'Server stamp.' }),
  updated_at: datetime({ readOnly: true, alwaysPresent: true, notes: 'Server stamp; updated on every patch.' }),
  created_by: text({ type: 'uuid', readOnly: true, notes: "Person id from the caller's JWT (sub)." }),
  updated_by: text({ type: 'uuid', readOnly: true, notes: "Person id from the last writer's JWT (sub)." }),
  // A field with a default is never null in an answer (null in a write takes the default).
  source: text({ maxLength: 200, default: 'edm', nonNull: true, notes: "Provenance tag — defaults to 'edm'." }),
  source_type: text({
    enum: ['frontend', 'backend', 'server', 'system', 'api'],
    serverOnly: ['system'],
    default: 'api',
    nonNull: true,
    notes: "Where the write originated. Defaults to 'api'.",
  }),
  is_deleted: boolean({
    readOnly: true,
    nonNull: true,
    notes: 'Soft-delete flag. Excluded from default list queries.',
  }),
  deleted_at: datetime({ readOnly: true, notes: 'Stamped when soft-deleted; null otherwise.' }),
  deleted_by: text({ type: 'uuid', readOnly: true, notes: 'Person id who soft-deleted; null otherwise.' }),
  schema_version: integer({
    type: 'number',
    readOnly: true,
    nonNull: true,
    notes: 'Document schema version. Bumped on incompatible writes.',
  }),
  version: integer({
    type: 'number',
    readOnly: true,
    nonNull: true,
    notes: 'Optimistic-lock version counter, incremented on each write.',
  }),
} as const);

function markPlatform<T extends Record<string, AnyField>>(fields: T): T {
  return Object.fromEntries(Object.entries(fields).map(([k, f]) => [k, { ...f, platform: true }])) as T;
}

export type PlatformFields = typeof platformFields;
export type FieldMap = Record<string, AnyField>;

/** A stored row or response document: snake_case wire names, one per field, everywhere. */
export type Doc = Record<string, unknown>;

export interface Principal {
  sub: string;
  tenantId: string;
  appId: string | null;
  /** `null` for human sessions (full access inside the tenant). */
  scopes: ReadonlySet<string> | null;
}

/** What a resource's domain hooks know about the write they run in. */
export interface HookContext {
  principal: Principal;
  now: number;
  op: 'create' | 'update' | 'delete' | 'restore' | 'system';
  /** The client's body (create) or merge patch (update); null for other writes. */
  input: Doc | null;
  /** Operation-specific details (a check-in's note, confidence and time). */
  event: WriteEvent | null;
  /** The keys EDM_SECRET_KEY derives (a signed URL a document shows). */
  keys: ServerKeys;
  /**
   * The write restores a row another build wrote (`edm import`): a rule added since, for values
   * an earlier build took (a blank title, a weight below 0.000001, over 50 connector headers), is
   * not applied to it, so a backup taken before an upgrade restores after it. Rules of storage
   * (U+0000, lengths, types) still are.
   */
  restoring?: boolean;
}

/** What an upgrade on read may use beside the document: the keys a signed URL it shows needs. */
export interface UpgradeContext {
  keys: ServerKeys;
}

/**
 * Domain behaviour plugged into the generic write path, in this order: prepare → validate
 * (400) → validateAcross (400, updates) → [state 409, references 422] → derive → write →
 * afterWrite, all in one transaction.
 */
export interface ResourceHooks {
  /**
   * Names a lock of the tenant an update with this body takes before anything else, even its
   * row's lock, and holds to its end (PostgreSQL: an advisory lock; SQLite writes one at a time):
   * for a rule over rows no single write locks. Taken first, so a holder never waits for a row
   * lock a waiter holds. Null: none.
   */
  serialize?(patch: Doc): string | null;
  /** Fills defaults and derived fields from the document alone; `before` is the stored document on update. */
  prepare?(doc: Doc, before: Doc | null, ctx: HookContext): void;
  /** Cross-field rules; a non-empty answer is a 400 naming the fields. */
  validate?(doc: Doc, before: Doc | null, ctx: HookContext): FieldError[];
  /**
   * Body rules of an update that read other rows (a query that would lead back to its own key
   * result through others): a 400 like `validate`'s, before the state's 409s and the
   * references' 422s, as PRODUCT.md orders them. May throw ApiErrors.
   */
  validateAcross?(doc: Doc, before: Doc, ctx: HookContext, tx: Tx): Promise<void>;
  /**
   * State rules an update must meet, from the row and the body alone (a 409, such as
   * `not_manual`): after the body's 400s and before the references' 422s, as PRODUCT.md orders them.
   */
  guard?(doc: Doc, before: Doc, ctx: HookContext): void;
  /** Derives fields that depend on other rows (a status from the cycle); may throw ApiErrors. */
  derive?(doc: Doc, before: Doc | null, ctx: HookContext, tx: Tx): Promise<void>;
  /**
   * Upgrades a document stored under an older `schema_version` (given) to the current shape, on
   * read; the next write stores it at the current version. Most start with `fillNullDefaults`.
   */
  upgrade?(doc: Doc, fromVersion: number, ctx: UpgradeContext): void;
  /** Follows a committed-together write: logs, roll-ups, queues. `before` is null on create. */
  afterWrite?(after: Doc, before: Doc | null, ctx: HookContext, tx: Tx): Promise<void>;
}

/**
 * An operation beyond the six every resource has (list, get, create, update, delete, restore),
 * e.g. a key result's check-ins. Routes, manifest, OpenAPI and the SDK derive from it.
 */
export interface CustomOperation {
  /** SDK path under the resource namespace, dot-separated: `checkIns.create`. */
  name: string;
  method: 'GET' | 'POST';
  /** Appended to the resource's base path; `{id}` is the resource id: `/{id}/check-ins`. */
  path: string;
  summary: string;
  /** JSON Schema of the body (POST). */
  body?: TSchema;
  /**
   * The body's fields, when it is declared as fields (`operationBody`): the manifest shows them
   * as a schema table beside the operation (a check-in's value, note, confidence, at).
   */
  bodyFields?: Readonly<Record<string, AnyField>>;
  /** `resource`: answers the resource document (with ETag); `list`: a list envelope of `item`. */
  response: { kind: 'resource'; status: 200 | 201 } | { kind: 'list'; item: TSchema };
  /** A valid example body, for docs and the Playground. */
  example?: Doc;
  /**
   * What the operation answers to `example`, for docs: for a `resource` answer, the members it
   * changes in the resource's own example; for a `list`, one item.
   */
  responseExample?: Doc;
  /**
   * The operation replaces what the caller read (a connector's webhook URL), as an update does:
   * under `EDM_REQUIRE_IF_MATCH` it needs If-Match (428). Default: it adds to the row (a
   * check-in, a sync) and needs none.
   */
  overwrites?: boolean;
  /**
   * For a `signed` operation: the internal field that says which of a row's signed URLs is the
   * current one (a URL of another generation is refused with 401 before anything else is done:
   * no rate-limit budget, no idempotency key, no lock). Without one, every URL a row had holds.
   */
  signedGeneration?: string;
  /**
   * `signed`: called by another system without a token, at the URL `signedUrl` gives (its
   * `tenant_id` and `signature` query parameters: an HMAC of the operation, tenant and id
   * under a key EDM_SECRET_KEY derives); the call acts as the platform in that tenant. Not in
   * the SDK. Default: a bearer token, as every other route.
   */
  auth?: 'signed';
  /**
   * The rows the operation acts on, of those a caller can see: another is 404, as a missing one,
   * before its preconditions, parameters and body are looked at (a webhook's URL names a live
   * webhook connector). Default: any.
   */
  acts?(row: Doc): boolean;
  /**
   * Work that waits on the outside world (a connector's fetch), done before the transaction
   * opens, so no lock or SQLite writer waits on it; `run` gets its answer as `prepared`.
   */
  prepare?(call: PrepareCall): Promise<unknown>;
  /** Does the work, inside the transaction of the call; answers the resource or a page. */
  run(call: OperationCall): Promise<Doc | RowPage>;
}

export interface ResourceOptions<F extends FieldMap> {
  module: string;
  /** Singular PascalCase name (`KeyResult`). */
  name: string;
  /** Kebab-case plural URL segment (`key-results`). */
  path: string;
  idPrefix: string;
  schemaVersion: number;
  description: string;
  fields: F;
  /** The field `q` searches. */
  titleField: keyof F & string;
  sortable: readonly string[];
  filterable: readonly string[];
  hooks?: ResourceHooks;
  operations?: readonly CustomOperation[];
  /** Stored columns the API never shows (running sums of roll-ups, sweep deadlines). */
  internal?: Readonly<Record<string, AnyField>>;
  /** Auxiliary tables the resource's domain code uses (logs, queues). */
  tables?: readonly TableDef[];
  /**
   * References whose rows this resource's writes go on to change (a roll-up into its parent).
   * On PostgreSQL an update locks them in the statement that locks the row (a join), and the
   * reference check of a create or a changed reference reads them locked: each is read once.
   */
  lockReferences?: readonly (keyof F & string)[];
  /**
   * Rows whose writes take the tenant lock `lock` (as ResourceHooks.serialize names one) before
   * any row lock: those that, as stored, meet any of `when` (a column above or equal to a value).
   * For writes that go on to lock rows elsewhere in an order no single write controls (a key
   * result that queries read recomputes them, under other objectives): holding the tenant's
   * lock first, two such writes wait for each other before either locks a row. On PostgreSQL the
   * write's locking read takes it, before the row's lock, in the same statement; SQLite writes
   * one at a time already.
   */
  serializeRows?: {
    lock: string;
    when: readonly (readonly [column: string, op: '>' | '=', value: string | number])[];
  };
  /**
   * How an import (`edm import`) rebuilds a read-only log the document holds (a key result's
   * history): the row is created at its `created_at` with `from` set to the value of the entry
   * its create wrote (the one at `created_at`; the oldest where a log was cut short), then every
   * other entry goes through the custom operation `operation`, oldest first: its body from
   * `body`, given the entry and its time (`at`, which a back-dated entry, older than the row,
   * keeps). A row `when` turns down (a key result whose values come from a query) is created
   * without `from`, its log not replayed, the server deriving its value again, unless
   * `switched` applies to it.
   */
  replay?: {
    field: keyof F & string;
    from: keyof F & string;
    operation: string;
    body: (entry: Doc, at: string) => Doc;
    when?: (doc: Doc) => boolean;
    /**
     * A row `when` turns down that `applies` to, with entries besides its create's (a key result
     * a query or a connector feeds now: its log holds what they wrote, and what a person wrote
     * before or between, which no query or sync computes again as it was): created with
     * `manual`'s values in place of its own, its whole log replayed, then given its own values of
     * those fields by an update at the import's end (a deleted row's, before its delete), from
     * when the server derives its value again. `holds`: a row it applies to whose file has no log (a CSV) keeps its `from` value
     * (created with it, then updated), where the server would otherwise derive another (a
     * connector's baseline until its next sync).
     */
    switched?: { applies: (doc: Doc) => boolean; manual: Doc; holds?: (doc: Doc) => boolean };
    /**
     * Writes again an entry the platform wrote (`source_type: system`: a connector's reading, a
     * query's recomputation) as the platform wrote it, at the time the import is at (`tx.now`),
     * to the row `id`. Without it, such entries go through `operation` as the others do.
     */
    system?: (tx: Tx, tenantId: string, id: string, entry: Doc) => Promise<void>;
    /**
     * Sets back, from the row `doc` of the file, what its log does not tell: `run` after the
     * row's last entry is replayed (after its create, with none), at that time, where `needed`
     * says the row differs from what the replay leaves, given the entries replayed through
     * `operation` as the newest at their time (oldest first).
     */
    settle?: {
      needed: (doc: Doc, replayed: readonly Doc[]) => boolean;
      run: (tx: Tx, tenantId: string, id: string, doc: Doc) => Promise<void>;
    };
  };
  /**
   * Columns an older row's `upgrade` hook derives again (not a declared default, which `edm
   * migrate` sets by itself): the migration sets them too, on rows stored under an older schema
   * version, so lists filter and sort on the value the row answers. SQL both stores run, over the
   * row's columns: `set` is the value, `where` which of those rows need it.
   */
  upgradedColumns?: readonly { column: keyof F & string; set: string; where: string }[];
}

export interface Resource<F extends FieldMap = FieldMap> extends Omit<ResourceOptions<F>, 'titleField'> {
  readonly titleField: keyof F & string;
  /** Every field, platform ones included, in reference-page order. */
  readonly allFields: Readonly<Record<string, AnyField>>;
  /** SQL table name (`okr_key_results`). */
  readonly table: string;
  /** SDK namespace member (`keyResults`). */
  readonly clientName: string;
  /** `/api/v1/okr/key-results` */
  readonly basePath: string;
  readonly idPattern: string;
}

/**
 * The stored fields an answer never shows null that have a default (`source`, a cycle's `state`,
 * a key result's `weight`): a write sending null gives them the default. Builds before they were
 * declared `nonNull` stored that null, which an upgrade (`fillNullDefaults`) and `edm migrate`
 * (for the columns lists filter and sort on) turn into the default.
 */
export function nullDefaultedFields(resource: Pick<Resource, 'allFields'>): [string, AnyField][] {
  return Object.entries(resource.allFields).filter(
    ([, field]) => field.nonNull && field.default !== undefined && field.column !== null,
  );
}

/**
 * For an `upgrade` hook: each field of `nullDefaultedFields` the document holds as null takes its
 * default, as a write sending null gives it now (answered as it was stored, the compiled
 * serializer would turn the null into `""` or `0`).
 *
 * @example
 * hooks: { upgrade: (doc) => fillNullDefaults(cycles, doc) },
 */
export function fillNullDefaults(resource: Pick<Resource, 'allFields'>, doc: Doc): void {
  for (const [name, field] of nullDefaultedFields(resource)) {
    if (doc[name] === null || doc[name] === undefined) doc[name] = field.default;
  }
}

/** kebab-case → camelCase: `key-results` → `keyResults` (client names, operation ids). */
export const camel = (kebab: string) => kebab.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/**
 * Declares a resource; storage, validation, serialization, routes, the manifest, OpenAPI and
 * SDK types are all derived from it.
 *
 * @example
 * export const cycles = defineResource({
 *   module: 'okr', name: 'Cycle', path: 'cycles', idPrefix: 'cyc', schemaVersion: 1,
 *   description: 'A time box objectives are planned in.', titleField: 'name',
 *   fields: { name: text({ required: true, notes: 'Display name.' }) },
 *   sortable: ['created_at', 'name'], filterable: ['state'],
 * });
 */
export function defineResource<
  const F extends FieldMap,
  const P extends string,
  // No default: a default would win over inference from inline operations with methods.
  const Ops extends readonly CustomOperation[],
  const S extends string = string,
  const Fl extends string = string,
>(
  options: ResourceOptions<F> & { path: P; operations?: Ops; sortable: readonly S[]; filterable: readonly Fl[] },
): Resource<F> & ResourceTypeInfo<P, Ops, S, Fl> {
  const { version, ...leading } = platformFields;
  for (const name of Object.keys(options.fields)) {
    if (name in platformFields) throw new Error(`${options.name}.${name} redeclares a platform field`);
  }
  // A plain object (V8 keeps it fast; one without a prototype would be a dictionary): lookups by
  // a client's keys use Object.hasOwn, so a body's `constructor` or `toString` is no field.
  const allFields: Record<string, AnyField> = { ...leading, ...options.fields, version };
  for (const name of [...options.sortable, ...options.filterable]) {
    if (!(name in allFields)) throw new Error(`${options.name}: unknown sortable/filterable field ${name}`);
  }
  return {
    ...options,
    operations: options.operations ?? ([] as unknown as Ops),
    allFields,
    table: `${options.module}_${options.path.replaceAll('-', '_')}`,
    clientName: camel(options.path) as CamelCase<P>,
    basePath: `/api/v1/${options.module}/${options.path}`,
    idPattern: idPattern(options.idPrefix),
  };
}

/**
 * What `defineResource` keeps as literal types beside `Resource<F>`, so the SDK can name
 * `client.okr.keyResults`, its custom operations and its list parameters.
 */
export interface ResourceTypeInfo<
  P extends string,
  Ops extends readonly CustomOperation[],
  S extends string,
  Fl extends string,
> {
  readonly path: P;
  readonly clientName: CamelCase<P>;
  readonly operations: Ops;
  readonly sortable: readonly S[];
  readonly filterable: readonly Fl[];
}

/** `key-results` → `keyResults` */
export type CamelCase<S extends string> = S extends `${infer H}-${infer T}` ? `${H}${Capitalize<CamelCase<T>>}` : S;

const idForms = new WeakMap<Resource, RegExp>();
/** Whether `value` has the form of an id of `resource` (its prefix and a ULID). */
export function isIdOf(resource: Resource, value: string): boolean {
  let pattern = idForms.get(resource);
  if (!pattern) {
    pattern = new RegExp(resource.idPattern);
    idForms.set(resource, pattern);
  }
  return pattern.test(value);
}

/**
 * What a signed operation's signature covers: the operation, the tenant and the row, and the
 * row's URL generation once its URL was replaced (`generation` > 0; 0 is the first URL's). The
 * generation goes with the operation, in the part the route fixes, and the tenant and id hold
 * no U+0000 (checked before a signature is): one message is never another's split otherwise.
 */
export function signedMessage(
  resource: Resource,
  operation: string,
  tenantId: string,
  id: string,
  generation = 0,
): string {
  const op = generation > 0 ? `${operation}#${generation}` : operation;
  return `${resource.basePath}/{id}/${op}\u0000${tenantId}\u0000${id}`;
}

/**
 * A signed URL's `signature` parameter: the HMAC, after `<generation>.` once the URL was
 * replaced (the first URL's has none, as every URL had before URLs could be replaced).
 */
export function parseSignature(signature: string): { generation: number; mac: string } | null {
  const m = /^(?:([1-9]\d{0,8})\.)?([A-Za-z0-9_-]{43})$/.exec(signature);
  return m ? { generation: m[1] ? Number(m[1]) : 0, mac: m[2] as string } : null;
}

/** The URL (path and query) of a signed operation on one row: `…/{id}/<op>?tenant_id=…&signature=…`. */
export function signedUrl(
  keys: ServerKeys,
  resource: Resource,
  operation: string,
  tenantId: string,
  id: string,
  generation = 0,
) {
  const op = resource.operations?.find((o) => o.name === operation);
  if (op?.auth !== 'signed') throw new Error(`${resource.name}.${operation} is not a signed operation`);
  const mac = keys.sign(signedMessage(resource, operation, tenantId, id, generation));
  const signature = generation > 0 ? `${generation}.${mac}` : mac;
  const path = `${resource.basePath}${op.path.replace('{id}', encodeURIComponent(id))}`;
  return `${path}?tenant_id=${encodeURIComponent(tenantId)}&signature=${signature}`;
}

/** What a background job may do: read a due queue and write as the platform, per tenant. */
export interface JobContext {
  now: number;
  /** The server's clock (ms) as it is read (a job's reads outside its transactions take time). */
  clock(): number;
  /** Where the server may connect outside itself (connectors). */
  outbound: OutboundPolicy;
  /**
   * Rows of a queue table whose `column` is at or before the clock's time (read at each call),
   * earliest first; `byTenant`: shared
   * out by tenant (each tenant's earliest, then each one's second, and so on), so one tenant's
   * backlog does not come before every other tenant's rows; `since`: only rows whose `column` is
   * after it (those that came due since).
   */
  queue(
    table: TableDef,
    column: string,
    limit: number,
    options?: { byTenant?: boolean; since?: string },
  ): Promise<Record<string, unknown>[]>;
  /** Runs `fn` in one transaction as the platform (principal `system`) inside a tenant. */
  transaction<T>(tenantId: string, fn: (tx: Tx) => Promise<T>): Promise<T>;
}

/**
 * Where work on a tenant's behalf may connect (EDM_CONNECTOR_ALLOW_HOSTS,
 * EDM_CONNECTOR_TIMEOUT_MS): private, loopback, link-local and metadata addresses are refused
 * unless `allowHosts` names the host (a name, or an address literal).
 */
export interface OutboundPolicy {
  allowHosts: readonly string[];
  timeoutMs: number;
}

export const DEFAULT_OUTBOUND: OutboundPolicy = { allowHosts: [], timeoutMs: 10_000 };

/** Periodic platform work a module needs (the status sweep, connector syncs). */
export interface Job {
  name: string;
  intervalMs: number;
  /**
   * Also run once, for the tenant, after writes made as of past times (`edm seed`, `edm import`),
   * so that what depends on the time (a status's pace) is as of now, not as of the last row's
   * time. Only a job that stays inside the store (not connector syncs).
   */
  catchUp?: boolean;
  /**
   * Also run soon after an API create, update or restore of these resources (by name) is
   * answered 2xx, where the server runs its jobs on timers: a new or changed connector is read
   * at once, not at the next tick. Runs are never doubled: a wake during a run runs it once more.
   */
  wakeAfter?: readonly string[];
  /** Answers how many things it changed. */
  run(ctx: JobContext): Promise<number>;
}

/** In a demo step's body: the id of the row an earlier step created `as` this name. */
export interface DemoRef {
  ref: string;
}

/** A text naming rows of earlier steps: each `{name}` becomes that row's id (a metric query). */
export interface DemoText {
  text: string;
}

/**
 * One write of a module's demo data (`edm seed`), made through the same paths as an API call:
 * a create, or a custom operation on a row an earlier step created.
 */
export interface DemoStep {
  /** Days before now (0 or less) when it happens: timestamps and histories read as of then. */
  day: number;
  /** The resource, by name (`KeyResult`). */
  resource: string;
  /** A custom operation of the resource (`checkIns.create`) on the row named by `on`; else a create. */
  operation?: string;
  on?: string;
  /** A name for the row a create makes, for later steps' `{ ref }` values. */
  as?: string;
  body: Record<string, unknown>;
}

/** A module: a name and its resources, in the order the manifest lists them. */
export interface ModuleDef {
  name: string;
  description: string;
  resources: readonly Resource[];
  jobs?: readonly Job[];
  /** Demo data for one tenant, as of `now` (ms): what `edm seed` writes. */
  demo?: (now: number) => readonly DemoStep[];
}

/**
 * Declares a module, keeping its name and resource tuple as literal types (the SDK derives
 * `client.<module>.<resource>` from them).
 *
 * @example
 * export const okr = defineModule({ name: 'okr', description: 'Objectives and Key Results.', resources: [cycles] });
 */
export function defineModule<const N extends string, const R extends readonly Resource[]>(module: {
  name: N;
  description: string;
  resources: R;
  jobs?: readonly Job[];
  demo?: (now: number) => readonly DemoStep[];
}): Omit<ModuleDef, 'name' | 'resources'> & { readonly name: N; readonly resources: R } {
  // Not `ModuleDef & …`: `resources` would become `Resource[] & R`, widening each element's fields.
  return module;
}

// ---- Static types derived from declarations (used by the SDK; type-only) ----

export type AllFieldsOf<F extends FieldMap> = Omit<PlatformFields, 'version'> &
  F & { version: PlatformFields['version'] };

type IsWriteOnly<T> = T extends { access: 'writeOnly' } ? true : false;
type IsWritable<T> = T extends { access: 'write' | 'writeOnly' } ? true : false;
type IsRequired<T> = T extends { required: true } ? true : false;
/** Required in a create's body: required, and not one the create's hooks may fill in (optionalOnCreate). */
type IsRequiredOnCreate<T> = T extends { optionalOnCreate: true } ? false : IsRequired<T>;

/** The document a read answers: `null` is possible unless the field is always present or required. */
export type ResourceObject<R> =
  R extends Resource<infer F>
    ? {
        [K in keyof AllFieldsOf<F> as IsWriteOnly<AllFieldsOf<F>[K]> extends true
          ? never
          : K]: AllFieldsOf<F>[K] extends { alwaysPresent: true } | { nonNull: true } | { required: true }
          ? ValueOf<AllFieldsOf<F>[K]>
          : ValueOf<AllFieldsOf<F>[K]> | null;
      }
    : never;

/** An `optionalOnCreate` field a create may leave out only under other fields' values (requiredUnless). */
type IsConditional<T> = T extends { optionalOnCreate: true; requiredUnless: Readonly<Record<string, string>> }
  ? IsWritable<T>
  : false;
/** The values a conditional field is required unless, as declared (the spec's index signature left out). */
type UnlessOf<T> = T extends { requiredUnless: infer U }
  ? { -readonly [Q in keyof U as string extends Q ? never : Q]: U[Q] }
  : never;
type UnionToIntersection<U> = (U extends unknown ? (x: U) => void : never) extends (x: infer I) => void ? I : never;
/**
 * Each conditional field: sent, or left out where the fields it is required unless hold their
 * values (a key result's `target`, left out by a milestone's create alone). Each field's two
 * ways are boxed, so that the fields' are intersected, not a field's two ways.
 */
type ConditionalBoxes<F> = {
  [K in keyof F]: IsConditional<F[K]> extends true
    ? { way: { [P in K]: InputValueOf<F[P]> } | ({ [P in K]?: InputValueOf<F[P]> | null } & UnlessOf<F[K]>) }
    : never;
}[keyof F];
type ConditionalOnCreate<F> = [ConditionalBoxes<F>] extends [never]
  ? unknown
  : UnionToIntersection<ConditionalBoxes<F>> extends { way: infer W }
    ? W
    : unknown;

/** The body a create accepts. */
export type CreateBody<R> =
  R extends Resource<infer F>
    ? {
        [K in keyof AllFieldsOf<F> as IsWritable<AllFieldsOf<F>[K]> extends true
          ? IsRequiredOnCreate<AllFieldsOf<F>[K]> extends true
            ? K
            : never
          : never]: InputValueOf<AllFieldsOf<F>[K]>;
      } & {
        [K in keyof AllFieldsOf<F> as IsWritable<AllFieldsOf<F>[K]> extends true
          ? IsRequiredOnCreate<AllFieldsOf<F>[K]> extends true
            ? never
            : IsConditional<AllFieldsOf<F>[K]> extends true
              ? never
              : K
          : never]?: InputValueOf<AllFieldsOf<F>[K]> | null;
      } & ConditionalOnCreate<AllFieldsOf<F>>
    : never;

/**
 * The JSON Merge Patch an update accepts (`version` is the optional lock token): `null` clears
 * a field (or has the hooks fill in one they fill on create), except a required one or one
 * declared `notNullInWrites`.
 */
export type UpdateBody<R> =
  R extends Resource<infer F>
    ? {
        [K in keyof AllFieldsOf<F> as IsWritable<AllFieldsOf<F>[K]> extends true ? K : never]?: IsRequiredOnCreate<
          AllFieldsOf<F>[K]
        > extends true
          ? InputValueOf<AllFieldsOf<F>[K]>
          : AllFieldsOf<F>[K] extends { notNullInWrites: true }
            ? InputValueOf<AllFieldsOf<F>[K]>
            : InputValueOf<AllFieldsOf<F>[K]> | null;
      } & { version?: number }
    : never;
