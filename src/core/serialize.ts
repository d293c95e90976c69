import fastJson from 'fast-json-stringify';
import { responseSchema } from './json-schema.js';
import type { Doc, Resource } from './resource.js';

const cache = new WeakMap<Resource, (doc: Doc) => string>();

/**
 * The JSON a read answers for a document, by a serializer compiled once per resource from its
 * declaration (fast-json-stringify). Writes store this form beside the row, so reads send it as is.
 */
export function serializeDoc(resource: Resource, doc: Doc): string {
  // A write serializes its document for storage, then for its answer: the second is a lookup.
  const memo = written.get(doc);
  if (memo && memo.version === doc.version && memo.updatedAt === doc.updated_at) return memo.json;
  let serialize = cache.get(resource);
  if (!serialize) {
    serialize = fastJson(responseSchema(resource) as unknown as Parameters<typeof fastJson>[0]) as (doc: Doc) => string;
    cache.set(resource, serialize);
  }
  const json = serialize(doc);
  written.set(doc, { version: doc.version, updatedAt: doc.updated_at, json });
  return json;
}

const written = new WeakMap<Doc, { version: unknown; updatedAt: unknown; json: string }>();

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
