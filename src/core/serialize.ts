import fastJson from 'fast-json-stringify';
import { type JsonSchema, responseSchema } from './json-schema.js';
import type { Doc, Resource } from './resource.js';

/** A member a stored document may hold as text (see JsonText): its key, and the key serialized after it. */
interface TextMember {
  key: string;
  next: string;
}

interface Layout {
  serialize: (doc: Doc) => string;
  /** Fields kept in the document alone whose text can be found in it exactly (see textMembers). */
  members: Map<string, TextMember>;
}

const layouts = new WeakMap<Resource, Layout>();

function layoutOf(resource: Resource): Layout {
  let layout = layouts.get(resource);
  if (!layout) {
    const schema = responseSchema(resource);
    layout = {
      serialize: fastJson(schema as unknown as Parameters<typeof fastJson>[0]) as (doc: Doc) => string,
      members: textMembers(resource, schema),
    };
    layouts.set(resource, layout);
  }
  return layout;
}

/**
 * The JSON a read answers for a document, by a serializer compiled once per resource from its
 * declaration (fast-json-stringify). Writes store this form beside the row, so reads send it as is.
 * A member held as text (JsonText) is spliced in as it is, never parsed or serialized again.
 * The text is ASCII (see asciiJson).
 */
export function serializeDoc(resource: Resource, doc: Doc): string {
  // A write serializes its document for storage, then for its answer: the second is a lookup.
  const memo = written.get(doc);
  if (memo && memo.version === doc.version && memo.updatedAt === doc.updated_at) return memo.json;
  const { serialize, members } = layoutOf(resource);
  // Allocated only for a document that holds a member as text (most serialize none).
  let texts: [string, string][] | null = null;
  for (const name of members.keys()) {
    const value = doc[name];
    if (value instanceof JsonText) {
      texts ??= [];
      texts.push([name, value.text]);
    }
  }
  let json: string;
  if (texts === null) json = asciiJson(serialize(doc));
  else {
    const copy: Doc = { ...doc };
    for (const [name] of texts) copy[name] = [];
    json = asciiJson(serialize(copy));
    for (const [name, text] of texts) {
      // The first `"name":` of the answer is the member's key (see textMembers); `[]` its placeholder.
      const key = `"${name}":[]`;
      const at = json.indexOf(key);
      if (at < 0) throw new Error(`${resource.name}.${name}: no placeholder in the serialized document`);
      // Stored by an earlier build, the text may hold characters past U+007F: escaped here too.
      json = `${json.slice(0, at + key.length - 2)}${asciiJson(text)}${json.slice(at + key.length)}`;
    }
  }
  written.set(doc, { version: doc.version, updatedAt: doc.updated_at, json });
  return json;
}

const written = new WeakMap<Doc, { version: unknown; updatedAt: unknown; json: string }>();

/**
 * A JSON value kept as the text a stored document holds for it: a field kept in the document
 * alone (`FieldSpec.inDocument`, a key result's history of up to 100 snapshots, ~16 KB) that a
 * write leaves alone or only appends to is neither parsed nor serialized again. `value` parses
 * it on first use; `JSON.stringify` sees the value.
 */
export class JsonText {
  #value: unknown;
  #parsed = false;
  constructor(readonly text: string) {}

  get value(): unknown {
    if (!this.#parsed) {
      this.#value = JSON.parse(this.text);
      this.#parsed = true;
    }
    return this.#value;
  }

  toJSON(): unknown {
    return this.value;
  }
}

/** A member's value, parsed when it is held as text. */
export function jsonValue(value: unknown): unknown {
  return value instanceof JsonText ? value.value : value;
}

/**
 * A member of a stored document, as text, without parsing the document: a JsonText, `null`, or
 * `undefined` when it cannot be found exactly (the member is absent, or the resource's layout
 * does not allow it: see textMembers), for the caller to parse the document instead.
 */
export function documentMember(resource: Resource, document: string, name: string): JsonText | null | undefined {
  const member = layoutOf(resource).members.get(name);
  if (!member) return undefined;
  const at = document.indexOf(member.key);
  if (at < 0) return undefined;
  const start = at + member.key.length;
  if (document.startsWith('null', start)) return null;
  if (document.charCodeAt(start) !== 0x5b /* [ */) return undefined;
  const close = document.indexOf(`],"${member.next}":`, start);
  if (close < 0) return undefined;
  const text = document.slice(start, close + 1);
  // An array of flat objects never holds `],"` (a quote inside a string is escaped): if it does,
  // the key after it was another one (a document stored by a build that ordered fields otherwise).
  return text.includes('],"') ? undefined : new JsonText(text);
}

/**
 * The fields kept in the document alone whose text can be cut out of a serialized document by
 * plain string search, exactly. In JSON a double quote inside a string is always escaped, so an
 * unescaped `"name":` is a key wherever it occurs; it is this member's key when nothing
 * serialized before it can hold an object (hence no key of that name). The member must be an
 * array of flat objects (scalar values only) with a key serialized after it: then
 * `],"<next key>":` cannot occur inside it, and its first occurrence after the key ends the array.
 */
function textMembers(resource: Resource, schema: JsonSchema): Map<string, TextMember> {
  const members = new Map<string, TextMember>();
  const properties = schema.properties as Record<string, JsonSchema>;
  const order = Object.keys(properties);
  order.forEach((name, i) => {
    if (!resource.allFields[name]?.inDocument) return;
    if (!isArrayOfFlatObjects(properties[name])) return;
    if (order.slice(0, i).some((before) => mayHold(properties[before], 'object'))) return;
    // Its end is found by the key after it (`version` follows every declared field).
    if (i === order.length - 1) return;
    members.set(name, { key: `"${name}":`, next: order[i + 1] });
  });
  return members;
}

const typesOf = (schema: JsonSchema): unknown[] => (Array.isArray(schema.type) ? schema.type : [schema.type]);
const UNIONS = ['anyOf', 'oneOf', 'allOf'] as const;

/** Whether values of a schema may be, or contain, JSON values of `type`. */
function mayHold(schema: unknown, type: 'object' | 'array'): boolean {
  if (typeof schema !== 'object' || schema === null) return false;
  const s = schema as JsonSchema;
  if (typesOf(s).includes(type) || s[type === 'object' ? 'properties' : 'items'] !== undefined) return true;
  if (s.items !== undefined && mayHold(s.items, type)) return true;
  const unions = UNIONS.filter((key) => Array.isArray(s[key]));
  if (unions.some((key) => (s[key] as unknown[]).some((branch) => mayHold(branch, type)))) return true;
  // A schema with no type, union, enum or const says nothing: its values may be anything.
  return s.type === undefined && unions.length === 0 && s.enum === undefined && s.const === undefined;
}

function isArrayOfFlatObjects(schema: JsonSchema): boolean {
  if (!typesOf(schema).includes('array')) return false;
  const items = schema.items as JsonSchema | undefined;
  if (items?.type !== 'object' || typeof items.properties !== 'object') return false;
  if (items.additionalProperties !== undefined && items.additionalProperties !== false) return false;
  return Object.values(items.properties as Record<string, unknown>).every(
    (p) => !mayHold(p, 'object') && !mayHold(p, 'array'),
  );
}

const serializers = new WeakMap<object, (value: unknown) => string>();

/** A serializer compiled once per schema object (fast-json-stringify), e.g. for one history entry; its text is ASCII. */
export function jsonSerializer(schema: object): (value: unknown) => string {
  let serialize = serializers.get(schema);
  if (!serialize) {
    const compiled = fastJson(schema as Parameters<typeof fastJson>[0]) as (value: unknown) => string;
    serialize = (value) => asciiJson(compiled(value));
    serializers.set(schema, serialize);
  }
  return serialize;
}

const NON_ASCII = /[\u0080-\uffff]/;
const HEX = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, '0'));

/**
 * JSON text with every UTF-16 unit past U+007F written as a `\u` escape: the same value to any
 * JSON reader (a surrogate pair becomes two escapes, which readers join again). Outside strings
 * JSON text is ASCII already, so the whole text can be rewritten unit by unit.
 *
 * Stored documents are kept this way because V8 holds ASCII text as a one-byte string: a
 * document with one `—` in its title was a two-byte string wherever it went, and PostgreSQL's
 * driver decodes every stored document it reads into such a string, which the answer then
 * encodes to UTF-8 again. A page of 50 such documents cost 176–189 µs of CPU to answer,
 * 129–150 µs once stored escaped (the same rows rewritten in place, one server, five rounds each).
 * The price is size: a character past U+07FF takes six bytes instead of three.
 *
 * A loop, not `replace` with a function: for a ~700-character document of Japanese text that
 * took ~14 µs, this ~5 (~0.3 µs for an ASCII document, ~1.5 for one with a `—`).
 */
export function asciiJson(json: string): string {
  // ASCII exactly when its UTF-8 takes one byte per unit: counted at memory speed (~1 µs for a
  // 16 KB history), where a regular expression's search took ~5–9 µs.
  if (Buffer.byteLength(json) === json.length) return json;
  const first = json.search(NON_ASCII);
  let out = '';
  let from = 0;
  for (let i = first; i < json.length; i++) {
    const unit = json.charCodeAt(i);
    if (unit > 0x7f) {
      out += `${json.slice(from, i)}\\u${HEX[unit >> 8]}${HEX[unit & 0xff]}`;
      from = i + 1;
    }
  }
  return out + json.slice(from);
}

const LIST_HEAD = Buffer.from('{"object":"list","data":[');

const encoder = new TextEncoder();

/**
 * The list envelope around documents already in their JSON form, as bytes. Documents that come
 * as one buffer joined by commas (SQLite's packed page) are copied, never decoded. Documents
 * that come as strings (PostgreSQL's driver decodes every value) are encoded once each, straight
 * into the answer: joined first, a page was copied once more as a ~50 KB string; sent as a
 * string, it was measured for its length in UTF-8 (Fastify's Content-Length) and then encoded by
 * the socket write, two passes over ~70 KB (two-byte strings, for any non-ASCII character in a
 * page, cost the most).
 */
export function listJson(documents: Buffer | readonly string[], hasMore: boolean, nextCursor: string | null): Buffer {
  const tail = `],"has_more":${hasMore},"next_cursor":${nextCursor === null ? 'null' : JSON.stringify(nextCursor)}}`;
  if (Buffer.isBuffer(documents)) return utf8([LIST_HEAD, documents, tail]);
  const parts: (string | Buffer)[] = [LIST_HEAD];
  for (let i = 0; i < documents.length; i++) {
    if (i > 0) parts.push(',');
    parts.push(documents[i]);
  }
  parts.push(tail);
  return utf8(parts);
}

/**
 * Strings and buffers as one buffer of UTF-8, each string encoded once. The buffer is sized for
 * mostly ASCII text and grows when a string needs more (up to three bytes per UTF-16 unit).
 */
export function utf8(parts: readonly (string | Buffer)[]): Buffer {
  let size = 0;
  for (const part of parts) size += part.length;
  let out: Buffer = Buffer.allocUnsafe(size + (size >> 4) + 64);
  let at = 0;
  for (const part of parts) {
    if (typeof part !== 'string') {
      if (at + part.length > out.length) out = grown(out, at, part.length);
      at += part.copy(out, at);
      continue;
    }
    let rest = part;
    for (;;) {
      const { read, written } = encoder.encodeInto(rest, out.subarray(at));
      at += written;
      if (read === rest.length) break;
      rest = rest.slice(read);
      out = grown(out, at, rest.length * 3);
    }
  }
  return out.subarray(0, at);
}

function grown(buffer: Buffer, used: number, more: number): Buffer {
  const bigger = Buffer.allocUnsafe(Math.max(buffer.length * 2, used + more));
  buffer.copy(bigger, 0, 0, used);
  return bigger;
}

/**
 * For a resource with credential fields (FieldSpec.credential), a function that answers a
 * document as JSON with them null, for callers who may only read; null for other resources.
 */
export function credentialRedactor(resource: Resource): ((doc: Doc) => string) | null {
  const names = Object.entries(resource.allFields)
    .filter(([, field]) => field.credential)
    .map(([name]) => name);
  if (names.length === 0) return null;
  return (doc) => {
    for (const name of names) if (doc[name] !== undefined) doc[name] = null;
    return serializeDoc(resource, doc);
  };
}
