import { isDeepStrictEqual } from 'node:util';
import {
  FormatRegistry,
  type TNull,
  type TObject,
  type TOptional,
  type TSchema,
  type TUnion,
  Type,
} from '@sinclair/typebox';
import { type TypeCheck, TypeCompiler, type ValueError, ValueErrorType } from '@sinclair/typebox/compiler';
import { ApiError, type FieldError, type FieldErrorCode, fieldError } from './errors.js';
import { type AnyField, clientEnum, NUMBER_LIMIT } from './fields.js';
import type { Doc, HookContext, Resource } from './resource.js';

// RFC 3339 §5.6: hours 00–23, minutes and seconds 00–59 (a leap second is not accepted: V8
// cannot hold one), offsets within ±23:59, a fraction of any number of digits (held to the ms).
const RFC3339 = /^(\d{4}-\d{2}-\d{2})T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$/i;
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
/**
 * The instants both stores hold as RFC 3339 text: years 0001–9999 in UTC. PostgreSQL refuses
 * year 0 (and JavaScript would print it, or year 10000, in a form RFC 3339 does not have).
 */
const FIRST_INSTANT = Date.parse('0001-01-01T00:00:00Z');
export const END_INSTANT = Date.parse('+010000-01-01T00:00:00Z');

/** An RFC 3339 date-time of a real calendar day (no 30 February), in years 0001–9999 once in UTC. */
export function isDateTime(v: string): boolean {
  const m = RFC3339.exec(v);
  if (!m || !isDate(m[1])) return false;
  const t = Date.parse(v);
  return t >= FIRST_INSTANT && t < END_INSTANT;
}

/** A calendar date YYYY-MM-DD that exists, in years 0001–9999. */
export function isDate(v: string): boolean {
  const m = DATE.exec(v);
  if (!m || m[1] === '0000') return false;
  const d = new Date(`${v}T00:00:00Z`);
  return !Number.isNaN(d.getTime()) && d.toISOString().startsWith(v);
}

/** What a value of each format must be, said as the field's error. */
const FORMAT_TEXT: Record<string, string> = {
  'date-time': 'must be an RFC 3339 date-time (e.g. 2026-11-30T09:00:00Z) of a real day, in years 0001–9999',
  date: 'must be a date YYYY-MM-DD of a real day, in years 0001–9999',
};

FormatRegistry.Set('date-time', isDateTime);
FormatRegistry.Set('date', isDate);

const checkers = new WeakMap<TSchema, TypeCheck<TSchema>>();

function checker(schema: TSchema): TypeCheck<TSchema> {
  let c = checkers.get(schema);
  if (!c) {
    c = TypeCompiler.Compile(schema);
    checkers.set(schema, c);
  }
  return c;
}

const errorCodes: Partial<Record<ValueErrorType, FieldErrorCode>> = {
  [ValueErrorType.String]: 'invalid_type',
  [ValueErrorType.Number]: 'invalid_type',
  [ValueErrorType.Integer]: 'invalid_type',
  [ValueErrorType.Boolean]: 'invalid_type',
  [ValueErrorType.Array]: 'invalid_type',
  [ValueErrorType.Object]: 'invalid_type',
  [ValueErrorType.StringMaxLength]: 'too_long',
  [ValueErrorType.StringMinLength]: 'too_short',
  [ValueErrorType.StringPattern]: 'invalid_format',
  [ValueErrorType.StringFormat]: 'invalid_format',
  [ValueErrorType.NumberMaximum]: 'out_of_range',
  [ValueErrorType.NumberMinimum]: 'out_of_range',
  [ValueErrorType.IntegerMaximum]: 'out_of_range',
  [ValueErrorType.IntegerMinimum]: 'out_of_range',
  [ValueErrorType.ArrayMaxItems]: 'too_many_items',
  [ValueErrorType.ArrayUniqueItems]: 'not_unique',
};

/**
 * A string over its maxLength in UTF-16 code units (TypeBox's count) but not in characters (JSON
 * Schema's, and a person's): 64 emoji make a 64-character tag of 128 code units.
 */
function longOnlyInCodeUnits(e: ValueError): boolean {
  const max = (e.schema as { maxLength?: number }).maxLength;
  return e.type === ValueErrorType.StringMaxLength && typeof e.value === 'string' && !longerThan(e.value, max ?? 0);
}

/** Whether text holds more than `max` characters (code points, as every limit counts them). */
export function longerThan(text: string, max: number): boolean {
  if (text.length <= max) return false;
  let count = 0;
  for (const _ of text) if (++count > max) return true;
  return false;
}

/**
 * Text both stores hold as it is: no U+0000 (PostgreSQL refuses it) and no lone UTF-16
 * surrogate (PostgreSQL's driver would send U+FFFD in its place; SQLite keeps it).
 */
export function isStorableText(text: string): boolean {
  return !text.includes('\u0000') && text.isWellFormed();
}

/**
 * The first string in `value` (itself, an item, a member or a member's name) that neither store
 * can hold as text: U+0000, or a lone UTF-16 surrogate (JSON's `\ud800` escapes one), as a
 * JSON Pointer below `path`; null when there is none.
 */
function unstorableText(value: unknown, path: string): string | null {
  if (typeof value === 'string') return isStorableText(value) ? null : path;
  if (value === null || typeof value !== 'object') return null;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const bad = unstorableText(value[i], `${path}/${i}`);
      if (bad !== null) return bad;
    }
    return null;
  }
  for (const [key, member] of Object.entries(value)) {
    const at = `${path}/${pointerToken(key)}`;
    const bad = unstorableText(key, at) ?? unstorableText(member, at);
    if (bad !== null) return bad;
  }
  return null;
}

/** A member's name as a JSON Pointer reference token (RFC 6901: ~ as ~0, / as ~1). */
export function pointerToken(name: string): string {
  return name.replaceAll('~', '~0').replaceAll('/', '~1');
}

/** A JSON Pointer reference token read back as the member's name. */
function unescapeToken(token: string): string {
  return token.replaceAll('~1', '/').replaceAll('~0', '~');
}

/**
 * Where a list that holds each value once holds one twice: the index of the second and of the
 * first, or null when every item is distinct.
 */
function firstDuplicate(list: readonly unknown[]): { at: number; first: number } | null {
  for (let at = 1; at < list.length; at++) {
    for (let first = 0; first < at; first++) {
      if (isDeepStrictEqual(list[first], list[at])) return { at, first };
    }
  }
  return null;
}

/** What a number field's bounds are, said as its error: ±1e15 unless the field narrows them. */
function numberBounds(schema: unknown): string {
  const { minimum, maximum } = schema as { minimum?: number; maximum?: number };
  if (minimum === -NUMBER_LIMIT && maximum === NUMBER_LIMIT) return 'within ±1e15';
  return `from ${minimum ?? -NUMBER_LIMIT} to ${maximum ?? NUMBER_LIMIT}`;
}

/**
 * A character a person can see: not white space, a control or a format character (U+200B,
 * U+FEFF), nor another one Unicode says a font may show as nothing (U+3164 HANGUL FILLER, U+FE0F).
 */
const VISIBLE = /[^\p{White_Space}\p{Cc}\p{Cf}\p{Default_Ignorable_Code_Point}]/u;

/**
 * The JSON Pointer of a text that must not be empty (minLength 1: a title, a name, a tag) but
 * shows nothing, "   " or "\u200b"; null when there is none. Such a title passed its length.
 */
function blankText(schema: unknown, value: unknown, path: string): string | null {
  const s = schema as { minLength?: number; items?: unknown };
  if (typeof value === 'string') return (s.minLength ?? 0) >= 1 && !VISIBLE.test(value) ? path : null;
  if (Array.isArray(value) && s.items !== undefined) {
    for (let i = 0; i < value.length; i++) {
      const bad = blankText(s.items, value[i], `${path}/${i}`);
      if (bad !== null) return bad;
    }
  }
  return null;
}

/**
 * The problem with a value its field's schema takes: text that cannot be stored (U+0000, a lone
 * surrogate), or that must not be empty and shows nothing (not for a row restored as it was).
 */
function textProblems(name: string, field: AnyField, value: unknown, restoring: boolean): FieldError[] {
  const bad = unstorableText(value, `/${name}`);
  if (bad !== null) {
    const message = `${bad.slice(1)}: text must be valid Unicode without the NUL character (U+0000) or a lone surrogate`;
    return [{ path: bad, code: 'invalid_text', message }];
  }
  const blank = restoring ? null : blankText(field.schema, value, `/${name}`);
  if (blank === null) return [];
  const message = `${blank.slice(1)}: must show a character, not only spaces or invisible ones`;
  return [{ path: blank, code: 'blank', message }];
}

/**
 * Checks one value against a field; answers field errors with JSON Pointer paths. `restoring`:
 * a row another build wrote (HookContext.restoring) may hold blank text.
 */
export function checkField(name: string, field: AnyField, value: unknown, restoring = false): FieldError[] {
  if (value === null) {
    return field.required ? [{ path: `/${name}`, code: 'required', message: `${name} must not be null` }] : [];
  }
  const c = checker(field.schema);
  if (c.Check(value)) return textProblems(name, field, value, restoring);
  // The first error that counts, read lazily: a body of 500,000 items has as many errors, and
  // building them all cost a third of a second of the event loop for one 400.
  let errors = 0;
  let first: ValueError | undefined;
  for (const e of c.Errors(value)) {
    errors++;
    if (!longOnlyInCodeUnits(e)) {
      first = e;
      break;
    }
  }
  if (errors === 0) return [{ path: `/${name}`, code: 'invalid', message: `${name} is invalid` }];
  // Long only in UTF-16 units (limits count characters): valid by its schema, so its text is
  // checked as a valid value's is (a title of 101 emoji with a lone surrogate).
  if (!first) return textProblems(name, field, value, restoring);
  const path = `/${name}${first.path}`;
  if (field.enum && first.path === '') {
    // The values a client may send: not those only the platform writes (`source_type: system`).
    const allowed = (clientEnum(field) ?? field.enum).join(', ');
    return [{ path, code: 'invalid_enum', message: `${name} must be one of: ${allowed}` }];
  }
  // A JSON number beyond a double (1e400) parses as ±Infinity: a number out of bounds, not another type.
  if (
    (first.type === ValueErrorType.Number || first.type === ValueErrorType.Integer) &&
    typeof first.value === 'number' &&
    !Number.isFinite(first.value)
  ) {
    const kind = first.type === ValueErrorType.Integer ? 'an integer' : 'a finite number';
    const message = `${name}${first.path}: must be ${kind} ${numberBounds(first.schema)}`;
    return [{ path, code: 'out_of_range', message }];
  }
  // Which item is there twice, and where it was first.
  if (first.type === ValueErrorType.ArrayUniqueItems && Array.isArray(first.value)) {
    const dup = firstDuplicate(first.value);
    if (dup) {
      const label = `${name}${first.path}`;
      const message = `${label}: ${JSON.stringify(first.value[dup.at])} is listed twice (items ${dup.first} and ${dup.at})`;
      return [{ path: `${path}/${dup.at}`, code: 'not_unique', message }];
    }
  }
  // A member an object does not take (a connector's `config`): unknown, as one of the body's own is.
  if (first.type === ValueErrorType.ObjectAdditionalProperties) {
    const cut = first.path.lastIndexOf('/');
    const member = unescapeToken(first.path.slice(cut + 1));
    const parent = `${name}${first.path.slice(0, cut)}`;
    const message = `${JSON.stringify(member)} is not a member of ${parent}`;
    return [{ path, code: 'unknown_field', message }];
  }
  // A member that takes one of a few words (a connector's `config.auth`): which ones.
  const words = (first.schema as { anyOf?: { const?: unknown }[] }).anyOf;
  if (first.type === ValueErrorType.Union && words?.every((w) => typeof w.const === 'string')) {
    const message = `${name}${first.path} must be one of: ${words.map((w) => w.const).join(', ')}`;
    return [{ path, code: 'invalid_enum', message }];
  }
  if (field.pattern && first.type === ValueErrorType.StringPattern && first.path === '') {
    return [{ path, code: 'invalid_format', message: `${name} must match ${field.pattern}` }];
  }
  if (first.type === ValueErrorType.StringFormat) {
    const format = (first.schema as { format?: string }).format;
    const expected = FORMAT_TEXT[format ?? ''];
    if (expected) return [{ path, code: 'invalid_format', message: `${name}${first.path}: ${expected}` }];
  }
  const code = errorCodes[first.type] ?? 'invalid';
  return [{ path, code, message: `${name}${first.path ? first.path : ''}: ${first.message}` }];
}

/**
 * A request body that did not parse as JSON, kept as the body until the checks PRODUCT.md orders
 * before the body's run (404, then 412): reading it (asObject) is then 400 invalid_json. An
 * idempotency fingerprint takes the text it came as (see Idempotency.fingerprint).
 */
export class MalformedBody {
  constructor(
    readonly detail: string,
    readonly text: string,
    /** What to answer instead of 400 invalid_json (a body that is JSON, refused for a member it names). */
    readonly error?: ApiError,
  ) {}
}

/**
 * The JSON Pointer of the first member named `__proto__` (or `constructor` holding `prototype`)
 * in a JSON text, which the body parser refuses (it could reach an object's prototype); null if
 * the text is not JSON or has none. `JSON.parse` itself makes such a member a plain own member.
 */
export function prototypeMemberPath(text: string): string | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  // The keys on the way down, joined into a pointer only for the member found (a 1 MB body has
  // ~100,000 members: building every member's pointer cost 3× the parse).
  const keys: string[] = [];
  const found = (): string => keys.map((k) => `/${pointerToken(k)}`).join('');
  const walk = (v: unknown): boolean => {
    if (v === null || typeof v !== 'object') return false;
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        keys.push(String(i));
        if (walk(v[i])) return true;
        keys.pop();
      }
      return false;
    }
    for (const key of Object.keys(v)) {
      const member = (v as Record<string, unknown>)[key];
      keys.push(key);
      if (key === '__proto__') return true;
      if (
        key === 'constructor' &&
        member !== null &&
        typeof member === 'object' &&
        Object.hasOwn(member, 'prototype')
      ) {
        return true;
      }
      if (walk(member)) return true;
      keys.pop();
    }
    return false;
  };
  return walk(value) ? found() : null;
}

/** Members the parsed value holds, in every object of it. */
function heldMembers(value: unknown): number {
  if (value === null || typeof value !== 'object') return 0;
  let n = 0;
  if (Array.isArray(value)) {
    for (const item of value) n += heldMembers(item);
    return n;
  }
  for (const key in value) n += 1 + heldMembers((value as Record<string, unknown>)[key]);
  return n;
}

/**
 * The JSON Pointer of the first member a JSON text names twice in one object (`{"title":"a",
 * "title":"b"}`: JSON leaves which one counts to the reader, and a proxy in front may have read
 * the first where JSON.parse keeps the last), or null. `value` is the text parsed: its members
 * are counted against the text's first (`named`: bodyShapeProblem counts them), so a body
 * without one costs a count, not a walk.
 */
export function duplicateMemberPath(text: string, value: unknown, named: number): string | null {
  if (value === null || typeof value !== 'object' || named === heldMembers(value)) return null;
  let i = 0;
  const space = () => {
    while (i < text.length && /\s/.test(text[i] as string)) i++;
  };
  const string = (): string => {
    const start = i++;
    while (text.charCodeAt(i) !== 0x22) i += text.charCodeAt(i) === 0x5c ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  // Walks the (valid) text from i: the pointer of the first member named twice, or null.
  const walk = (path: string): string | null => {
    space();
    const c = text[i];
    if (c === '{' || c === '[') {
      i++;
      const names = c === '{' ? new Set<string>() : null;
      for (let index = 0; ; index++) {
        space();
        if (text[i] === '}' || text[i] === ']') {
          i++;
          return null;
        }
        let at = `${path}/${index}`;
        if (names) {
          const name = string();
          at = `${path}/${pointerToken(name)}`;
          if (names.has(name)) return at;
          names.add(name);
          space();
          i++; // the colon
        }
        const found = walk(at);
        if (found !== null) return found;
        space();
        if (text[i] === ',') i++;
      }
    }
    if (c === '"') string();
    else while (i < text.length && !/[\s,\]}]/.test(text[i] as string)) i++;
    return null;
  };
  return walk('');
}

/** How deep a request body's arrays and objects may nest: far beyond any field's shape. */
export const MAX_BODY_DEPTH = 64;

/**
 * How many members one object or array of a request body may hold: far beyond any field's (32
 * tags, 100 filter values). A 1 MiB body of one object of 90,000 members took ~50 ms to parse
 * alone, and as long again to refuse member by member.
 */
export const MAX_BODY_MEMBERS = 1000;

/** bodyShapeProblem's count of commas per level, for the default depth: one array for every call. */
const COMMAS = new Uint32Array(MAX_BODY_DEPTH + 1);

/**
 * Why JSON text is refused before it is parsed, or null: arrays and objects nested deeper than
 * `maxDepth` (they would overflow the stack of the recursive code that walks them: merge patch,
 * validation, fingerprints, and answer 500), or one holding more than `maxMembers` members.
 * Brackets and commas inside strings are text. One pass over the text, allocating nothing;
 * `named`, if given, takes the count of members the text names (its colons outside strings),
 * for duplicateMemberPath.
 */
export function bodyShapeProblem(
  text: string,
  maxDepth = MAX_BODY_DEPTH,
  maxMembers = MAX_BODY_MEMBERS,
  named?: { members: number },
): string | null {
  // Commas seen at each open level: a level's members are its commas plus one (a level's count
  // is reset as it opens).
  const commas = maxDepth <= MAX_BODY_DEPTH ? COMMAS : new Uint32Array(maxDepth + 1);
  let depth = 0;
  let inString = false;
  let colons = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // a backslash: the next character is escaped
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x3a) colons++;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > maxDepth) return `The body nests arrays and objects deeper than ${maxDepth} levels`;
      commas[depth] = 0;
    } else if (c === 0x5d || c === 0x7d) depth--;
    else if (c === 0x2c && depth > 0 && ++commas[depth] >= maxMembers) {
      return `The body has an object or array of more than ${maxMembers} members`;
    }
  }
  if (named) named.members = colons;
  return null;
}

/**
 * A write that takes no body (a delete, a restore, a sync): a member sent is unknown (400
 * naming it), and a body that is not JSON is 400 invalid_json. An empty body is no body,
 * whatever its Content-Type says.
 */
export function refuseBody(body: unknown): void {
  if (isNoBody(body)) return;
  validateInput({}, body);
}

/** No body, for a write that takes none: none sent, an empty one, or `{}`. */
export function isNoBody(body: unknown): boolean {
  if (body === undefined) return true;
  if (body instanceof MalformedBody) return body.text.trim() === '';
  return body !== null && typeof body === 'object' && !Array.isArray(body) && Object.keys(body).length === 0;
}

/** Parses a request body: a JSON object, or 400. */
export function asObject(body: unknown): Doc {
  if (body instanceof MalformedBody) throw body.error ?? new ApiError('invalid_json', body.detail);
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new ApiError('invalid_body', 'The request body must be a JSON object');
  }
  return body as Doc;
}

/**
 * Rejects fields a client may not send: unknown ones, server-owned ones, and values only the
 * platform writes (`source_type: system`). `allowVersion` admits the lock token of a PATCH.
 */
export function checkWritableKeys(resource: Resource, body: Doc, allowVersion: boolean): void {
  const unknown: FieldError[] = [];
  const readOnly: FieldError[] = [];
  for (const key of Object.keys(body)) {
    const field = Object.hasOwn(resource.allFields, key) ? resource.allFields[key] : undefined;
    if (!field)
      unknown.push({
        path: `/${pointerToken(key)}`,
        code: 'unknown_field',
        message: `${JSON.stringify(key)} is not a field of ${resource.name}`,
      });
    else if (field.access === 'read' && !(allowVersion && key === 'version')) {
      readOnly.push({ path: `/${key}`, code: 'read_only', message: `${key} is server-owned and cannot be written` });
    }
  }
  // One answer names every member refused: the unknown ones (the problem's code), then the
  // server-owned ones, each error with its own code.
  if (unknown.length) throw fieldError('unknown_field', [...unknown, ...readOnly]);
  if (readOnly.length) throw fieldError('read_only_field', readOnly);
  if (allowVersion && 'version' in body) {
    const v = body.version;
    if (!Number.isSafeInteger(v) || (v as number) < 1) {
      throw fieldError('validation_failed', [
        { path: '/version', code: 'invalid_type', message: 'version must be a positive integer' },
      ]);
    }
  }
  const reserved: FieldError[] = [];
  for (const [key, value] of Object.entries(body)) {
    const field = resource.allFields[key];
    if (typeof value !== 'string' || !field?.serverOnly?.includes(value)) continue;
    const allowed = clientEnum(field)?.join(', ');
    const message = `${key} '${value}' is reserved for the platform; use one of: ${allowed}`;
    reserved.push({ path: `/${key}`, code: 'invalid_enum', message });
  }
  if (reserved.length) throw fieldError('validation_failed', reserved);
}

/**
 * Validates a whole document (after defaults or a merge): each writable field's value, required
 * fields present, then the resource's own cross-field rules.
 */
export function validateDocument(resource: Resource, doc: Doc, before: Doc | null, ctx: HookContext): void {
  const errors: FieldError[] = [];
  for (const [name, field] of Object.entries(resource.allFields)) {
    if (field.access === 'read') continue;
    const value = doc[name] ?? null;
    if (value === null && field.required) {
      errors.push({ path: `/${name}`, code: 'required', message: `${name} is required` });
      continue;
    }
    // A value the write leaves as stored is not the caller's to answer for: a row stored under
    // older rules (a lone surrogate an earlier version took) still takes a check-in or a rename,
    // and a client that sends back the document it read (a list as a merge patch replaces it
    // whole: an equal one, not the same) still edits it.
    const stored = before?.[name] ?? null;
    if (before && (value === stored || (typeof value === 'object' && isDeepStrictEqual(value, stored)))) continue;
    errors.push(...checkField(name, field, value, ctx.restoring));
  }
  if (errors.length === 0 && resource.hooks?.validate) errors.push(...resource.hooks.validate(doc, before, ctx));
  if (errors.length) throw fieldError('validation_failed', errors);
}

/** RFC 7396 JSON Merge Patch. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const result: Doc =
    target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Doc) } : {};
  for (const [key, value] of Object.entries(patch as Doc)) {
    if (value === null) delete result[key];
    else result[key] = mergePatch(result[key], value);
  }
  return result;
}

/**
 * Validates the body of a custom operation against a small field map: unknown fields, required
 * ones and each value, all reported at once. Answers the body with absent fields as null.
 */
export function validateInput(fields: Readonly<Record<string, AnyField>>, body: unknown): Doc {
  const input = asObject(body);
  const unknown = Object.keys(input).filter((k) => !Object.hasOwn(fields, k));
  if (unknown.length) {
    throw fieldError(
      'unknown_field',
      unknown.map((k) => ({
        path: `/${pointerToken(k)}`,
        code: 'unknown_field',
        message: `${JSON.stringify(k)} is not accepted here`,
      })),
    );
  }
  const errors: FieldError[] = [];
  const out: Doc = {};
  for (const [name, field] of Object.entries(fields)) {
    const value = input[name] ?? null;
    if (value === null && field.required)
      errors.push({ path: `/${name}`, code: 'required', message: `${name} is required` });
    else errors.push(...checkField(name, field, value));
    out[name] = value;
  }
  if (errors.length) throw fieldError('validation_failed', errors);
  return out;
}

/** The schema of one member of an operation's body: required, or optional and nullable. */
type InputMember<F> = F extends { schema: infer S extends TSchema; required: infer R }
  ? R extends true
    ? S
    : TOptional<TUnion<[S, TNull]>>
  : never;

/**
 * The JSON Schema object of a custom operation's body, from the same field map; its static type
 * is the body's (the SDK's `checkIns.create` body), not a record of anything.
 */
/**
 * A custom operation's body declared as fields, once: its JSON Schema (validation, OpenAPI, the
 * SDK's types) and its fields (the manifest's table of them).
 */
export function operationBody<const M extends Readonly<Record<string, AnyField>>>(fields: M) {
  return { body: inputSchema(fields), bodyFields: fields };
}

export function inputSchema<const M extends Readonly<Record<string, AnyField>>>(
  fields: M,
): TObject<{ [K in keyof M]: InputMember<M[K]> }> {
  const properties: Record<string, TSchema> = {};
  for (const [name, field] of Object.entries(fields)) {
    const schema = { ...field.schema, description: field.notes };
    properties[name] = field.required ? schema : Type.Optional(Type.Union([schema, Type.Null()]));
  }
  return Type.Object(properties, { additionalProperties: false }) as unknown as TObject<{
    [K in keyof M]: InputMember<M[K]>;
  }>;
}
