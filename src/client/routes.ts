/**
 * The REST conventions the client follows, so it needs no table of routes: a module or
 * resource named in camelCase lives at its kebab-case path, and a custom operation's name says
 * its method and path. The server's declarations follow the same conventions (a test checks
 * every declared operation against `operationRoute`).
 */

/** `keyResults` → `key-results` */
export function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** `/api/v1/okr/key-results` for `client.okr.keyResults`. */
export function resourcePath(module: string, resource: string): string {
  return `/api/v1/${kebab(module)}/${kebab(resource)}`;
}

export interface OperationRoute {
  method: 'GET' | 'POST';
  /** Under the resource path; `{id}` is the resource id. */
  path: string;
  /** Answers a list envelope (paginated) rather than the resource. */
  paged: boolean;
}

/**
 * Where a custom operation lives, from its dotted name: `<sub>.list` is `GET /{id}/<sub>`
 * (paginated), `<sub>.create` is `POST /{id}/<sub>`, and any other name is an action,
 * `POST /{id}/<name>` (`sync` → `POST /{id}/sync`).
 *
 * @example
 * operationRoute('checkIns.create'); // { method: 'POST', path: '/{id}/check-ins', paged: false }
 */
export function operationRoute(name: string): OperationRoute {
  const segments = name.split('.');
  const verb = segments[segments.length - 1];
  if (segments.length > 1 && (verb === 'list' || verb === 'create')) {
    const path = `/{id}/${segments.slice(0, -1).map(kebab).join('/')}`;
    return verb === 'list' ? { method: 'GET', path, paged: true } : { method: 'POST', path, paged: false };
  }
  return { method: 'POST', path: `/{id}/${segments.map(kebab).join('/')}`, paged: false };
}
