import { type Static, type TLiteral, type TSchema, type TUnion, Type } from '@sinclair/typebox';

/** How a field is kept in a table; `null` means the field is not a column (derived on read). */
export type ColumnKind = 'text' | 'real' | 'integer' | 'boolean' | 'datetime' | 'date' | 'json';

/** `write`: a client may set it; `read`: server-owned; `writeOnly`: accepted, never returned. */
export type Access = 'write' | 'read' | 'writeOnly';

/** Bounds every number the API accepts (PRODUCT.md §1: finite, |x| ≤ 1e15). */
export const NUMBER_LIMIT = 1e15;

export interface FieldSpec<S extends TSchema = TSchema, R extends boolean = boolean, A extends Access = Access> {
  /** JSON Schema of a non-null value; `null` is allowed wherever the field is not required. */
  readonly schema: S;
  /** The type shown on the reference page (`uuid`, `string`, `date-time`, `json`, …). */
  readonly type: string;
  readonly column: ColumnKind | null;
  readonly notes: string;
  /** Required on create. */
  readonly required: R;
  readonly access: A;
  /** Computed by the server from other fields (also read-only). */
  readonly computed: boolean;
  /** Marked `*` on the reference page: never null in a response. */
  readonly alwaysPresent: boolean;
  /** Never null in a response, though not starred on the reference page: the server always sets it. */
  readonly nonNull?: boolean;
  /** A PATCH may not send `null` for it (the resource's validate hook refuses it): not nullable in the update schema. */
  readonly notNullInWrites?: boolean;
  /** A constant default applied on create when the field is absent. */
  readonly default?: unknown;
  readonly enum?: readonly string[];
  /** Values of `enum` only the platform writes: a client sending one gets 400 (`source_type: system`). */
  readonly serverOnly?: readonly string[];
  readonly pattern?: string;
  /** Id prefix of the referenced resource. */
  readonly ref?: string;
  /** The referenced resource owns this one (soft-delete dependents, restore rules). */
  readonly parent?: boolean;
  /**
   * The referenced row cannot be deleted while live rows hold it (409 `has_dependents`, with
   * `?cascade=true` too: it does not own them), and a row holding it is not restored while it
   * is deleted (409 `parent_deleted`).
   */
  readonly restrict?: boolean;
  /**
   * Id prefix of rows a text names inside it (a metric query's `kr("kr_…")`): an import
   * creates them first and rewrites their ids to the new ones.
   */
  readonly mentions?: string;
  /**
   * Stored sealed (AES-256-GCM under a key `EDM_SECRET_KEY` derives): a write-only secret such
   * as a connector's credentials. Hooks and the server's own work see the plaintext; no answer,
   * export or log does.
   */
  readonly sealed?: boolean;
  /**
   * A credential in a computed value (a signed URL): answered only to callers who may write the
   * resource; `null` to a token with read scope alone (see `redactCredentials` in serialize.ts).
   */
  readonly credential?: boolean;
  /**
   * Required in the stored document, but a create's body may leave it out: the resource's hooks
   * fill it in where they can (a milestone's `target`, 1) and refuse the create where not.
   */
  readonly optionalOnCreate?: boolean;
  /**
   * For an `optionalOnCreate` field: the values of other fields under which a create may leave
   * it out (a target, unless `metric_type` is `milestone`). The create's JSON Schema says so
   * (if/else); the hooks enforce it.
   */
  readonly requiredUnless?: Readonly<Record<string, string>>;
  /**
   * A default a create's hooks derive from other fields, in words (`current`: "baseline"), where
   * no constant `default` is: shown by the manifest, the Playground and the documents.
   */
  readonly defaultRule?: string;
  /** Declared by the platform for every resource. */
  readonly platform: boolean;
  /**
   * Written only into the row's stored document (the JSON reads answer), not into its own
   * column, which stays empty: for a large read-only value no list filters or sorts on (a key
   * result's history), kept once per row instead of twice. The column is still declared and
   * read for rows stored without a document. A write's hooks may find such a field as the
   * stored text (`JsonText`, see `documentMember` in serialize.ts; `jsonValue` reads either).
   */
  readonly inDocument?: boolean;
  readonly example?: unknown;
}

export type AnyField = FieldSpec<TSchema, boolean, Access>;

export interface CommonOptions {
  /** Free text shown in the schema table (the seed's notes, word for word, for seed fields). */
  notes: string;
  required?: boolean;
  /** Server-owned (a client sending it gets 400). */
  readOnly?: boolean;
  /** Computed from other fields; implies read-only. */
  computed?: boolean;
  writeOnly?: boolean;
  alwaysPresent?: boolean;
  /** Never null in a response (the server always sets it), without the reference page's star. */
  nonNull?: boolean;
  /** Not `null` in a PATCH (FieldSpec.notNullInWrites). */
  notNullInWrites?: boolean;
  /**
   * `false` for fields derived on read rather than stored in a column; `'document'` for a value
   * kept only in the stored document (see `FieldSpec.inDocument`; never `writeOnly`, since the
   * document holds what reads answer).
   */
  stored?: boolean | 'document';
  /** A credential: shown only to callers who may write the resource (FieldSpec.credential). */
  credential?: boolean;
  /** Required, but a create may leave it out for its hooks to fill in (FieldSpec.optionalOnCreate). */
  optionalOnCreate?: boolean;
  /** When a create may leave an `optionalOnCreate` field out (FieldSpec.requiredUnless). */
  requiredUnless?: Readonly<Record<string, string>>;
  /** A default derived from other fields, in words (FieldSpec.defaultRule). */
  defaultRule?: string;
  /** Overrides the type label shown in the manifest. */
  type?: string;
  /** A realistic value for docs, the Playground's prefilled bodies and test fixtures. */
  example?: unknown;
}

type RequiredOf<O> = O extends { required: true } ? true : false;
type AccessOf<O> = O extends { readOnly: true }
  ? 'read'
  : O extends { computed: true }
    ? 'read'
    : O extends { writeOnly: true }
      ? 'writeOnly'
      : 'write';

/** `alwaysPresent: true` and `nonNull: true` are kept as literals so the SDK's response types drop `| null`. */
export type Field<S extends TSchema, O> = FieldSpec<S, RequiredOf<O>, AccessOf<O>> &
  (O extends { alwaysPresent: true } ? { readonly alwaysPresent: true } : unknown) &
  (O extends { nonNull: true } ? { readonly nonNull: true } : unknown) &
  (O extends { notNullInWrites: true } ? { readonly notNullInWrites: true } : unknown) &
  (O extends { optionalOnCreate: true } ? { readonly optionalOnCreate: true } : unknown) &
  (O extends { requiredUnless: infer U extends Readonly<Record<string, string>> }
    ? { readonly requiredUnless: U }
    : unknown) &
  (O extends { serverOnly: readonly (infer V extends string)[] } ? { readonly serverOnly: readonly V[] } : unknown);

function make<S extends TSchema, O extends CommonOptions>(
  schema: S,
  type: string,
  column: ColumnKind,
  o: O,
  extra: Partial<AnyField> = {},
): Field<S, O> {
  const access: Access = o.readOnly || o.computed ? 'read' : o.writeOnly ? 'writeOnly' : 'write';
  if (o.stored === 'document' && access === 'writeOnly') {
    throw new Error('a write-only field cannot be kept in the stored document, which holds what reads answer');
  }
  return {
    schema,
    type: o.type ?? type,
    column: o.stored === false ? null : column,
    notes: o.notes,
    required: (o.required ?? false) as RequiredOf<O>,
    access: access as AccessOf<O>,
    computed: o.computed ?? false,
    alwaysPresent: o.alwaysPresent ?? false,
    ...(o.nonNull ? { nonNull: true } : {}),
    ...(o.notNullInWrites ? { notNullInWrites: true } : {}),
    ...(o.credential ? { credential: true } : {}),
    ...(o.optionalOnCreate ? { optionalOnCreate: true } : {}),
    ...(o.requiredUnless ? { requiredUnless: o.requiredUnless } : {}),
    ...(o.defaultRule ? { defaultRule: o.defaultRule } : {}),
    platform: false,
    ...(o.stored === 'document' ? { inDocument: true } : {}),
    ...(o.example !== undefined ? { example: o.example } : {}),
    ...extra,
  } as Field<S, O>;
}

export interface TextOptions extends CommonOptions {
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  enum?: readonly string[];
  /** Values of `enum` only the platform writes (see FieldSpec.serverOnly). */
  serverOnly?: readonly string[];
  default?: string;
  /** Id prefix of rows the text names inside it (see FieldSpec.mentions). */
  mentions?: string;
  /** Stored sealed (see FieldSpec.sealed); only for write-only fields. */
  sealed?: boolean;
}

type TextSchema<O> = O extends { enum: readonly (infer E extends string)[] }
  ? TUnion<TLiteral<E>[]>
  : ReturnType<typeof Type.String>;

/**
 * A string field; with `enum`, one of the listed values.
 * @example title: text({ required: true, maxLength: 200, notes: 'Short, descriptive title.' })
 */
export function text<const O extends TextOptions>(o: O): Field<TextSchema<O>, O> {
  if (o.sealed && !o.writeOnly) throw new Error('a sealed field must be write-only: answers never show it');
  const schema = o.enum
    ? Type.Union(o.enum.map((v) => Type.Literal(v)))
    : Type.String({
        ...(o.minLength !== undefined ? { minLength: o.minLength } : {}),
        ...(o.maxLength !== undefined ? { maxLength: o.maxLength } : {}),
        ...(o.pattern !== undefined ? { pattern: o.pattern } : {}),
      });
  return make(schema as TextSchema<O>, o.enum ? 'enum' : 'string', 'text', o, {
    ...(o.enum ? { enum: o.enum } : {}),
    ...(o.serverOnly ? { serverOnly: o.serverOnly } : {}),
    ...(o.pattern ? { pattern: o.pattern } : {}),
    ...(o.default !== undefined ? { default: o.default } : {}),
    ...(o.mentions ? { mentions: o.mentions } : {}),
    ...(o.sealed ? { sealed: true } : {}),
  });
}

/** Every id of rows with the given prefix that a text names (see FieldSpec.mentions). */
export function mentionedIds(prefix: string, text: unknown): string[] {
  if (typeof text !== 'string') return [];
  return text.match(new RegExp(`(?<![\\w])${idPattern(prefix).slice(1, -1)}(?![\\w])`, 'g')) ?? [];
}

export interface NumberOptions extends CommonOptions {
  min?: number;
  max?: number;
  default?: number;
}

function numberSchema(o: NumberOptions, integer: boolean) {
  const bounds = {
    minimum: Math.max(o.min ?? -NUMBER_LIMIT, -NUMBER_LIMIT),
    maximum: Math.min(o.max ?? NUMBER_LIMIT, NUMBER_LIMIT),
  };
  return integer ? Type.Integer(bounds) : Type.Number(bounds);
}

/** A finite JSON number, |x| ≤ 1e15 unless narrower bounds are given. */
export function number<const O extends NumberOptions>(o: O): Field<ReturnType<typeof Type.Number>, O> {
  return make(numberSchema(o, false) as ReturnType<typeof Type.Number>, 'number', 'real', o, {
    ...(o.default !== undefined ? { default: o.default } : {}),
  });
}

export function integer<const O extends NumberOptions>(o: O): Field<ReturnType<typeof Type.Integer>, O> {
  return make(numberSchema(o, true) as ReturnType<typeof Type.Integer>, 'integer', 'integer', o, {
    ...(o.default !== undefined ? { default: o.default } : {}),
  });
}

export function boolean<const O extends CommonOptions & { default?: boolean }>(
  o: O,
): Field<ReturnType<typeof Type.Boolean>, O> {
  return make(Type.Boolean(), 'boolean', 'boolean', o, o.default !== undefined ? { default: o.default } : {});
}

/**
 * An RFC 3339 UTC timestamp with milliseconds. Its `type` is the literal `'date-time'` for the
 * SDK's types (range filters take a time); it takes no `type` of its own, so that holds.
 */
export function datetime<const O extends Omit<CommonOptions, 'type'>>(
  o: O,
): Field<ReturnType<typeof Type.String>, O> & { readonly type: 'date-time' } {
  return make(Type.String({ format: 'date-time' }), 'date-time', 'datetime', o) as Field<
    ReturnType<typeof Type.String>,
    O
  > & { readonly type: 'date-time' };
}

/** A calendar date `YYYY-MM-DD` (UTC); its `type` is the literal `'date'` (see datetime). */
export function date<const O extends Omit<CommonOptions, 'type'>>(
  o: O,
): Field<ReturnType<typeof Type.String>, O> & { readonly type: 'date' } {
  return make(Type.String({ format: 'date' }), 'date', 'date', o) as Field<ReturnType<typeof Type.String>, O> & {
    readonly type: 'date';
  };
}

export interface RefOptions extends CommonOptions {
  /** The referenced resource owns this one. */
  parent?: boolean;
  /** The referenced row is not deleted while live rows hold it (see FieldSpec.restrict). */
  restrict?: boolean;
}

/**
 * The id of another resource of the same tenant, named by its id prefix.
 * @example objective_id: ref('obj', { required: true, parent: true, notes: 'ID of the Objective…' })
 */
export function ref<const O extends RefOptions>(prefix: string, o: O): Field<ReturnType<typeof Type.String>, O> {
  const pattern = idPattern(prefix);
  return make(Type.String({ pattern }), 'string', 'text', o, {
    ref: prefix,
    pattern,
    ...(o.parent ? { parent: true } : {}),
    ...(o.restrict ? { restrict: true } : {}),
  });
}

export interface StringListOptions extends CommonOptions {
  maxItems?: number;
  itemMinLength?: number;
  itemMaxLength?: number;
}

/** A list of distinct strings (tags), stored as JSON. */
export function stringList<const O extends StringListOptions>(
  o: O,
): Field<ReturnType<typeof Type.Array<ReturnType<typeof Type.String>>>, O> {
  const schema = Type.Array(Type.String({ minLength: o.itemMinLength ?? 0, maxLength: o.itemMaxLength ?? 10_000 }), {
    uniqueItems: true,
    ...(o.maxItems !== undefined ? { maxItems: o.maxItems } : {}),
  });
  return make(schema, 'json', 'json', o);
}

/** Arbitrary JSON (a typed schema may be given). */
export function json<S extends TSchema, const O extends CommonOptions>(schema: S, o: O): Field<S, O> {
  return make(schema, 'json', 'json', o);
}

/** The id pattern for a prefix: `<prefix>_` + a 26-character Crockford ULID. */
export function idPattern(prefix: string): string {
  return `^${prefix}_[0-9A-HJKMNP-TV-Z]{26}$`;
}

export type ValueOf<F> = F extends FieldSpec<infer S, boolean, Access> ? Static<S> : never;

/** The value a client may send: ValueOf without the values only the platform writes. */
export type InputValueOf<F> = F extends { serverOnly: readonly (infer V)[] } ? Exclude<ValueOf<F>, V> : ValueOf<F>;

/** The values of a field's enum a client may send. */
export function clientEnum(field: AnyField): readonly string[] | undefined {
  return field.enum && field.serverOnly ? field.enum.filter((v) => !field.serverOnly?.includes(v)) : field.enum;
}
