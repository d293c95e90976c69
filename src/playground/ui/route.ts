/** Where the page is: `/playground/{module}/{resource}#{operation}`. */
export interface Route {
  module: string | null;
  resource: string | null;
  op: string | null;
}

export const BASE = '/playground';

export function parseRoute(pathname: string, hash: string): Route {
  const rest = pathname.startsWith(BASE) ? pathname.slice(BASE.length) : '';
  const [module = null, resource = null] = rest
    .split('/')
    .filter(Boolean)
    .map((s) => safeDecode(s));
  const op = hash.startsWith('#') ? safeDecode(hash.slice(1)) : hash ? safeDecode(hash) : '';
  return { module, resource, op: op || null };
}

export function routeHref(route: Route): string {
  let href = BASE;
  if (route.module) href += `/${encodeURIComponent(route.module)}`;
  if (route.module && route.resource) href += `/${encodeURIComponent(route.resource)}`;
  if (route.op) href += `#${route.op}`;
  return href;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
