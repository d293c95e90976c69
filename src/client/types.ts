/**
 * The client's types, inferred from the resource declarations (type-only imports: nothing of
 * the server is loaded at run time).
 */
import type { Static, TSchema } from '@sinclair/typebox';
import type {
  AllFieldsOf,
  CamelCase,
  CreateBody,
  CustomOperation,
  ModuleDef,
  Resource,
  ResourceObject,
  UpdateBody,
} from '../core/resource.js';
import type { modules } from '../modules/index.js';
import type { PagePromise } from './pagination.js';
import type { LockOptions, RequestOptions, WriteOptions } from './transport.js';

type Simplify<T> = { [K in keyof T]: T[K] } & {};

/** The modules the server declares. */
export type Modules = typeof modules;

/** A resource's document, as reads answer it. */
export type Document<R> = Simplify<ResourceObject<R>>;
/** The body `create()` takes. */
export type CreateParams<R> = Simplify<CreateBody<R>>;
/** The JSON Merge Patch `update()` takes (`null` clears a field). */
export type UpdateParams<R> = Simplify<UpdateBody<R>>;

type RangeOp = 'gte' | 'gt' | 'lte' | 'lt';
type SortOf<R> = R extends { sortable: readonly (infer S extends string)[] } ? S | `-${S}` : string;
type FiltersOf<R> = R extends { filterable: readonly (infer K extends string)[] } ? K : never;
type ValueAt<R, K> = K extends keyof ResourceObject<R> ? NonNullable<ResourceObject<R>[K]> : never;
type FieldAt<R, K> = R extends Resource<infer F> ? (K extends keyof AllFieldsOf<F> ? AllFieldsOf<F>[K] : never) : never;
/**
 * What a range filter on a field takes: a number's a number, a date's `YYYY-MM-DD`, a
 * date-time's a timestamp or a Date; a field that is none of these (an id, an enum) takes none.
 */
type RangeValue<R, K> =
  ValueAt<R, K> extends number
    ? number
    : FieldAt<R, K> extends { type: 'date' }
      ? string
      : FieldAt<R, K> extends { type: 'date-time' }
        ? string | Date
        : never;
type Ranged<R> = {
  [K in Exclude<FiltersOf<R>, 'tags'>]: [RangeValue<R, K>] extends [never] ? never : K;
}[Exclude<FiltersOf<R>, 'tags'>];

/** Parameters of `list()`: paging, sort, search and the resource's declared filters. */
export type ListParams<R> = {
  /** Page size, 1–200 (default 50). */
  limit?: number;
  /** The `next_cursor` of a previous page (iteration passes it for you). */
  cursor?: string;
  /** A sortable field, `-` prefixed for descending (default `-created_at`). */
  sort?: SortOf<R>;
  /** Case-insensitive search in the title field. */
  q?: string;
  /** Include soft-deleted rows. */
  include_deleted?: boolean;
} & {
  /** Equality filter; an array matches any of its values (one value alone is one value: `'a,b'` is the tag "a,b"). */
  [K in Exclude<FiltersOf<R>, 'tags'>]?: ValueAt<R, K> | readonly ValueAt<R, K>[];
} & {
  [K in Ranged<R> as `${K}[${RangeOp}]`]?: RangeValue<R, K>;
} & ('tags' extends FiltersOf<R> ? { /** Has any of these tags. */ tag?: string | readonly string[] } : unknown);

/** Parameters of a custom list operation (`checkIns.list`). */
export interface PageParams {
  limit?: number;
  cursor?: string;
}

/** `delete()` options: optimistic locking, and `cascade` to soft-delete live dependents too. */
export interface DeleteOptions extends LockOptions {
  cascade?: boolean;
}

/** The six operations every resource answers. */
export interface ResourceMethods<R> {
  /**
   * Lists resources, newest first unless `sort` says otherwise. Await it for one page, or
   * `for await` it to walk every item across pages.
   *
   * @example
   * const page = await client.okr.keyResults.list({ objective_id: objectiveId, limit: 20 });
   * for await (const kr of client.okr.keyResults.list({ status: ['at_risk', 'off_track'] })) {
   *   console.log(kr.title);
   * }
   */
  list(params?: ListParams<R>, options?: RequestOptions): PagePromise<Document<R>>;

  /**
   * Retrieves one resource by id (a soft-deleted one too, with `is_deleted: true`).
   *
   * @example
   * const kr = await client.okr.keyResults.get('kr_01JBZ7Q3V5R4N8KX2M6T9WCH1D');
   */
  get(id: string, options?: RequestOptions): Promise<Document<R>>;

  /**
   * Creates a resource. Retries reuse one idempotency key, so a retried create never makes two;
   * pass your own `idempotencyKey` to make retries across processes safe too.
   *
   * @example
   * const kr = await client.okr.keyResults.create(
   *   { objective_id: objective.id, title: 'Grow MRR to 120k', baseline: 80000, target: 120000, unit: 'MRR' },
   *   { idempotencyKey: 'import-row-17' },
   * );
   */
  create(body: CreateParams<R>, options?: WriteOptions): Promise<Document<R>>;

  /**
   * Updates a resource by JSON Merge Patch: absent fields are unchanged, `null` clears one.
   * `ifVersion` sends `If-Match`: if another write came first, a PreconditionFailedError.
   *
   * @example
   * const kr = await client.okr.keyResults.get(id);
   * await client.okr.keyResults.update(id, { current: 95000 }, { ifVersion: kr.version });
   */
  update(id: string, patch: UpdateParams<R>, options?: LockOptions): Promise<Document<R>>;

  /**
   * Soft-deletes a resource and answers it (`is_deleted: true`). With live dependents it is a
   * ConflictError (`has_dependents`) unless `cascade: true`.
   *
   * @example
   * await client.okr.objectives.delete(objective.id, { cascade: true });
   */
  delete(id: string, options?: DeleteOptions): Promise<Document<R>>;

  /**
   * Undeletes a soft-deleted resource.
   *
   * @example
   * await client.okr.keyResults.restore('kr_01JBZ7Q3V5R4N8KX2M6T9WCH1D');
   */
  restore(id: string, options?: LockOptions): Promise<Document<R>>;
}

type BodyOf<Op> = Op extends { body: infer B extends TSchema }
  ? unknown extends Static<B>
    ? Record<string, unknown>
    : Static<B>
  : undefined;

/**
 * A custom operation's method, typed from its declaration. A write to the row (a check-in, a
 * sync) honours `If-Match`, so it takes `ifVersion`; one without a body still takes its options
 * third: `client.okr.connectors.sync(id, undefined, { ifVersion: 3 })`.
 */
export type OperationMethod<Op, R> = Op extends { response: { kind: 'list'; item: infer I extends TSchema } }
  ? (id: string, params?: PageParams, options?: RequestOptions) => PagePromise<Static<I>>
  : BodyOf<Op> extends undefined
    ? (id: string, body?: undefined, options?: LockOptions) => Promise<Document<R>>
    : (id: string, body: BodyOf<Op>, options?: LockOptions) => Promise<Document<R>>;

/** Custom operations as nested namespaces: `checkIns.create` → `.checkIns.create(id, body)`. */
type OperationTree<O extends CustomOperation, Prefix extends string, R> = {
  readonly [N in O['name'] as N extends `${Prefix}${infer Rest}`
    ? Rest extends `${infer Head}.${string}`
      ? Head
      : Rest
    : never]: N extends `${Prefix}${infer Rest}`
    ? Rest extends `${infer Head}.${string}`
      ? OperationTree<O, `${Prefix}${Head}.`, R>
      : OperationMethod<Extract<O, { name: N }>, R>
    : never;
};

type OperationsOf<R> = R extends { operations: readonly (infer O extends CustomOperation)[] }
  ? string extends O['name']
    ? unknown // declared without literal names: nothing to type
    : OperationTree<Exclude<O, { auth: 'signed' }>, '', R> // signed ones are other systems' to call
  : unknown;

/** `client.<module>.<resource>`: the six operations, then the resource's custom ones. */
export type ResourceClient<R> = ResourceMethods<R> & OperationsOf<R>;

/** `client.<module>`: one member per resource. */
export type ModuleClient<Rs extends readonly Resource[]> = {
  readonly [R in Rs[number] as R['clientName']]: ResourceClient<R>;
};

/** The client of a set of modules: `client.okr.keyResults`, … */
export type ClientOf<Ms extends readonly ModuleDef[]> = {
  readonly [M in Ms[number] as CamelCase<M['name']>]: ModuleClient<M['resources']>;
};

/** The client of this server's modules. */
export type Client = ClientOf<Modules>;

/**
 * Resource documents by module and resource, for annotations.
 *
 * @example
 * import type { Schemas } from 'edm/client';
 * type KeyResult = Schemas['okr']['keyResults'];
 */
export type Schemas = {
  [M in Modules[number] as CamelCase<M['name']>]: {
    [R in M['resources'][number] as R['clientName']]: Document<R>;
  };
};
