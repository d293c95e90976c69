import { type ListEnvelope, Page, PagePromise } from './pagination.js';
import { operationRoute, resourcePath } from './routes.js';
import {
  type ApiRequest,
  type ClientOptions,
  type LockOptions,
  type QueryValue,
  type RequestOptions,
  Transport,
} from './transport.js';
import type { Client } from './types.js';

type Query = Readonly<Record<string, QueryValue>>;

/** Members a namespace must not answer: awaiting or inspecting it must not call the API. */
const INERT = new Set(['then', 'catch', 'finally', 'toJSON', 'constructor', 'prototype', 'valueOf', 'toString']);

/** A namespace whose members are made on first access: `client.okr`, `client.okr.keyResults`. */
function namespace<T extends object>(make: (name: string) => T): Record<string, T> {
  const cache = new Map<string, T>();
  return new Proxy(Object.create(null) as Record<string, T>, {
    get(_target, prop) {
      if (typeof prop !== 'string' || INERT.has(prop)) return undefined;
      let member = cache.get(prop);
      if (!member) {
        member = make(prop);
        cache.set(prop, member);
      }
      return member;
    },
  });
}

function paged<T>(
  transport: Transport,
  path: () => string,
  params: Query = {},
  options?: RequestOptions,
): PagePromise<T> {
  const fetchPage = async (cursor: string | undefined): Promise<Page<T>> => {
    const query = cursor === undefined ? params : { ...params, cursor };
    const envelope = await transport.request<ListEnvelope<T>>({
      method: 'GET',
      path: path(),
      query,
      options,
      list: true,
    });
    return new Page(envelope, (next) => fetchPage(next));
  };
  return new PagePromise(() => fetchPage(undefined));
}

/**
 * The path of one row. An empty id, `.` or `..` would name another path once the URL is resolved
 * (`…/key-results/` is the list): refused before anything is sent.
 */
function withId(base: string, id: string, suffix = ''): string {
  if (typeof id !== 'string' || id === '' || id === '.' || id === '..') {
    throw new TypeError(`An id is a non-empty string other than "." and "..": got ${JSON.stringify(id)}`);
  }
  return `${base}/${encodeURIComponent(id)}${suffix}`;
}

/** Sends the request `build` makes; a request it cannot make (a bad id) is a rejected promise. */
function send<T>(transport: Transport, build: () => ApiRequest): Promise<T> {
  let req: ApiRequest;
  try {
    req = build();
  } catch (err) {
    return Promise.reject(err);
  }
  return transport.request<T>(req);
}

/** A custom operation (or a namespace of them) by dotted name, routed by `operationRoute`. */
function operation(transport: Transport, base: string, name: string): unknown {
  const call = (id: string, arg?: unknown, options?: LockOptions) => {
    const route = operationRoute(name);
    const path = () => withId(base, id, route.path.slice('/{id}'.length));
    if (route.paged) return paged(transport, path, arg as Query, options);
    return send(transport, () => ({ method: route.method, path: path(), body: arg, options }));
  };
  const members = new Map<string, unknown>();
  return new Proxy(call, {
    get(target, prop, receiver) {
      if (typeof prop !== 'string' || INERT.has(prop)) return Reflect.get(target, prop, receiver);
      if (!members.has(prop)) members.set(prop, operation(transport, base, `${name}.${prop}`));
      return members.get(prop);
    },
  });
}

function resourceClient(transport: Transport, base: string): object {
  const methods: Record<string, unknown> = {
    list: (params?: Query, options?: RequestOptions) => paged(transport, () => base, params, options),
    get: (id: string, options?: RequestOptions) =>
      send(transport, () => ({ method: 'GET', path: withId(base, id), options })),
    create: (body: unknown, options?: LockOptions) => transport.request({ method: 'POST', path: base, body, options }),
    update: (id: string, patch: unknown, options?: LockOptions) =>
      send(transport, () => ({ method: 'PATCH', path: withId(base, id), body: patch, options })),
    delete: (id: string, options?: LockOptions & { cascade?: boolean }) =>
      send(transport, () => ({
        method: 'DELETE',
        path: withId(base, id),
        query: options?.cascade === undefined ? undefined : { cascade: options.cascade },
        options,
      })),
    restore: (id: string, options?: LockOptions) =>
      send(transport, () => ({ method: 'POST', path: withId(base, id, '/restore'), options })),
  };
  const custom = new Map<string, unknown>();
  return new Proxy(methods, {
    get(target, prop, receiver) {
      if (typeof prop !== 'string' || prop in target || INERT.has(prop)) return Reflect.get(target, prop, receiver);
      if (!custom.has(prop)) custom.set(prop, operation(transport, base, prop));
      return custom.get(prop);
    },
  });
}

/**
 * Creates a client of the API: `client.<module>.<resource>.<method>`, typed from the server's
 * resource declarations. It needs nothing but `fetch`, in Node and in browsers.
 *
 * @example
 * import { createClient } from 'edm/client';
 *
 * const client = createClient({ baseUrl: 'http://127.0.0.1:8080', token: process.env.EDM_TOKEN });
 * const objective = await client.okr.objectives.create({ title: 'Delight our customers' });
 * const kr = await client.okr.keyResults.create({ objective_id: objective.id, title: 'NPS ≥ 50', target: 50 });
 * await client.okr.keyResults.checkIns.create(kr.id, { value: 42, confidence: 7 });
 * for await (const item of client.okr.keyResults.list({ objective_id: objective.id })) console.log(item.title);
 */
export function createClient(options: ClientOptions): Client {
  const transport = new Transport(options);
  return namespace((module) =>
    namespace((resource) => resourceClient(transport, resourcePath(module, resource))),
  ) as unknown as Client;
}
