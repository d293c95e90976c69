import fastJson from 'fast-json-stringify';
import { responseSchema } from './json-schema.js';
import type { Doc, Resource } from './resource.js';

const cache = new WeakMap<Resource, (doc: Doc) => string>();

/**
 * The JSON a read answers for a document, by a serializer compiled once per resource from its
 * declaration (fast-json-stringify). Writes store this form beside the row, so reads send it as is.
 */
export function serializeDoc(resource: Resource, doc: Doc): string {
  let serialize = cache.get(resource);
  if (!serialize) {
    serialize = fastJson(responseSchema(resource) as unknown as Parameters<typeof fastJson>[0]) as (doc: Doc) => string;
    cache.set(resource, serialize);
  }
  return serialize(doc);
}

/** The list envelope around documents already in their JSON form. */
export function listJson(data: readonly string[], hasMore: boolean, nextCursor: string | null): string {
  return `{"object":"list","data":[${data.join(',')}],"has_more":${hasMore},"next_cursor":${nextCursor === null ? 'null' : JSON.stringify(nextCursor)}}`;
}
