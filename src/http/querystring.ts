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
