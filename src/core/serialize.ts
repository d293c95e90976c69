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

/**
 * The list envelope around documents already in their JSON form, joined by commas: a buffer
 * when they come as one (bytes copied, never decoded), else a string.
 */
export function listJson(documents: string | Buffer, hasMore: boolean, nextCursor: string | null): string | Buffer {
  const tail = `],"has_more":${hasMore},"next_cursor":${nextCursor === null ? 'null' : JSON.stringify(nextCursor)}}`;
  if (typeof documents === 'string') return `{"object":"list","data":[${documents}${tail}`;
  return Buffer.concat([LIST_HEAD, documents, Buffer.from(tail)]);
}
