import fastJson from 'fast-json-stringify';
import { listSchema, responseSchema } from '../core/json-schema.js';
import type { Doc, Resource } from '../core/resource.js';
import type { ListPage } from '../store/engine.js';

export interface Serializers {
  doc(doc: Doc): string;
  list(page: ListPage): string;
}

const cache = new WeakMap<Resource, Serializers>();

/** Serializers compiled once per resource from its declaration (fast-json-stringify). */
export function serializers(resource: Resource): Serializers {
  let s = cache.get(resource);
  if (!s) {
    s = {
      doc: fastJson(responseSchema(resource) as unknown as Parameters<typeof fastJson>[0]) as (doc: Doc) => string,
      list: fastJson(listSchema(resource) as unknown as Parameters<typeof fastJson>[0]) as (page: ListPage) => string,
    };
    cache.set(resource, s);
  }
  return s;
}
