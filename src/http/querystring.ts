import { parse } from 'fast-querystring';
import { MALFORMED_PARAMETERS } from '../core/list-query.js';

type Parsed = Record<string, string | string[]> & { [MALFORMED_PARAMETERS]?: Set<string> };

/** A name or value of a query string, decoded (`+` is a space, as in a form); null if it does not decode. */
function decoded(text: string): string | null {
  try {
    return decodeURIComponent(text.replaceAll('+', ' '));
  } catch {
    return null;
  }
}

/**
 * Fastify's query string parser (fast-querystring), which keeps a name or value it cannot
 * decode as its raw text, and here also notes the parameters whose value that was, so that the
 * routes answer 400 naming them (`checkDecoded`) instead of reading `%zz` as the text "%zz".
 */
export function parseQueryString(raw: string): Parsed {
  const parsed = parse(raw) as Parsed;
  if (!raw.includes('%')) return parsed;
  let malformed: Set<string> | undefined;
  for (const pair of raw.split('&')) {
    const eq = pair.indexOf('=');
    if (eq < 0) continue;
    // A name that does not decode is kept raw, and no parameter's name holds a %: it is an
    // unknown parameter, and answered as one.
    const name = decoded(pair.slice(0, eq));
    if (name === null || decoded(pair.slice(eq + 1)) !== null) continue;
    malformed ??= new Set();
    malformed.add(name);
  }
  if (malformed) parsed[MALFORMED_PARAMETERS] = malformed;
  return parsed;
}

/** A URL's path as the router matches it: escapes decoded, but an escaped slash (`%2F`), which stays inside its segment. */
export function routerPath(path: string): string {
  try {
    return decodeURIComponent(path.replace(/%2f/gi, '%252F'));
  } catch {
    return path;
  }
}

/**
 * A request's URL as the router reads it, one spelling for all that name the same operation
 * (what an idempotency fingerprint hashes): the path's escapes decoded and a trailing slash
 * dropped, then the parameters as parsed, in name order (none: no `?`).
 */
export function routedUrl(url: string, query: Record<string, unknown>): string {
  const at = url.indexOf('?');
  // An escaped `?` or `#` stays one: `/x%3Fa=b` names a row `x?a=b`, not `x` with a parameter.
  const path = routerPath((at === -1 ? url : url.slice(0, at)).replace(/%(3f|23)/gi, '%25$1'));
  const names = Object.keys(query).sort();
  const params = new URLSearchParams(names.flatMap((name) => [query[name]].flat().map((v) => [name, String(v)])));
  const search = names.length ? `?${params}` : '';
  return `${path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path}${search}`;
}
