import { camelName, type ManifestOperation, type ManifestResource, viaSdk } from './manifest';
import { type BuiltRequest, bodySlot, requestUrl, sdkOptions, signedHeaders } from './request';

const IDENT = /^[A-Za-z_$][\w$]*$/;
const WIDTH = 72;

/**
 * Characters past U+001F without a visible form of their own: DEL and the C1 controls, the soft
 * hyphen, the zero-width and direction marks and overrides (U+202E reverses the rest of a line
 * as shown), the line and paragraph separators, the invisible operators and the BOM. Written as
 * they are, a copied snippet could read otherwise than what it sends.
 */
const INVISIBLE =
  '\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb';
/** The same in JSON text: C0 controls aside (JSON.stringify escapes those in strings; a pretty-printed body's line breaks are its own). */
const INVISIBLE_IN_JSON = new RegExp(`[${INVISIBLE}]`, 'g');
/** What a single-quoted literal writes as an escape: see quote. */
const ESCAPED_IN_LITERAL = new RegExp(
  `[\\\\'\\u0000-\\u001f${INVISIBLE}]|[\\ud800-\\udbff](?![\\udc00-\\udfff])|(?<![\\ud800-\\udbff])[\\udc00-\\udfff]`,
  'g',
);
const unicodeEscape = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;

/**
 * A string as a single-quoted JavaScript literal. Line breaks, control characters, characters
 * without a visible form (INVISIBLE) and a UTF-16 surrogate without its pair are written as
 * escapes: a file saved as UTF-8 could not hold a lone surrogate (it would turn into U+FFFD), and
 * a copied line break would end the literal.
 */
function quote(s: string): string {
  const escaped = s.replace(ESCAPED_IN_LITERAL, (c) => {
    if (c === '\\' || c === "'") return `\\${c}`;
    if (c === '\n') return '\\n';
    if (c === '\r') return '\\r';
    if (c === '\t') return '\\t';
    return unicodeEscape(c);
  });
  return `'${escaped}'`;
}

/**
 * A member name in an object literal: bare where it can be, quoted otherwise, and `__proto__` as
 * a computed name, the only form that makes a member of it (written bare or quoted, it sets the
 * object's prototype, and the member is not sent).
 */
function key(k: string): string {
  if (k === '__proto__') return `[${quote(k)}]`;
  return IDENT.test(k) ? k : quote(k);
}

function flat(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (typeof value === 'string') return quote(value);
  if (typeof value !== 'object') return String(value);
  if (Array.isArray(value)) return `[${value.map(flat).join(', ')}]`;
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length === 0) return '{}';
  return `{ ${entries.map(([k, v]) => `${key(k)}: ${flat(v)}`).join(', ')} }`;
}

/**
 * A value as a JavaScript literal in the house style (single quotes, bare keys), wrapped when it
 * would not fit: `indent` is the indentation of its lines, `column` where its first character sits.
 */
export function jsLiteral(value: unknown, indent = 0, column = indent): string {
  const one = flat(value);
  if (one.length + column <= WIDTH || value === null || typeof value !== 'object') return one;
  const pad = ' '.repeat(indent + 2);
  const end = ' '.repeat(indent);
  if (Array.isArray(value)) {
    return `[\n${value.map((v) => `${pad}${jsLiteral(v, indent + 2)},`).join('\n')}\n${end}]`;
  }
  const lines = Object.entries(value as Record<string, unknown>).map(
    ([k, v]) => `${pad}${key(k)}: ${jsLiteral(v, indent + 2, indent + 2 + key(k).length + 2)},`,
  );
  return `{\n${lines.join('\n')}\n${end}}`;
}

/** Quotes a word for a POSIX shell. */
export function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** An argument of an SDK call: a value to print as a literal, or code (a variable name). */
export type Arg = { value: unknown } | { code: string };

/**
 * The arguments of the SDK method for a call: path ids, then the body, then query options. A
 * custom write without a body keeps the body slot before its options: `sync(id, undefined, {…})`.
 */
export function sdkArgs(op: ManifestOperation, built: BuiltRequest): Arg[] {
  const args: Arg[] = built.pathValues.map((p) => (p.value ? { value: p.value } : { code: p.name }));
  const options = sdkOptions(built);
  if (op.has_body)
    args.push(
      built.bodyError ? { code: '{ /* the body cannot be sent yet: see the console */ }' } : { value: built.body },
    );
  else if (options && bodySlot(op)) args.push({ code: 'undefined' });
  if (options) args.push({ value: options });
  return args;
}

function resultName(op: ManifestOperation, resource: ManifestResource): string {
  return op.response === 'resource' ? camelName(resource.name) : 'page';
}

const render = (arg: Arg, indent: number, column = indent) =>
  'code' in arg ? arg.code : jsLiteral(arg.value, indent, column);

/** `const keyResult = await client.okr.keyResults.create({…});`, wrapped the way a formatter would. */
export function sdkCall(op: ManifestOperation, resource: ManifestResource, args: Arg[]): string {
  const head = `const ${resultName(op, resource)} = await ${op.client_method ?? 'fetch'}(`;
  const one = `${head}${args.map((a) => ('code' in a ? a.code : flat(a.value))).join(', ')});`;
  if (one.length <= WIDTH + 8) return one;
  if (args.length === 1) return `${head}${render(args[0], 0, head.length)});`;
  return `${head}\n${args.map((a) => `  ${render(a, 2)},`).join('\n')}\n);`;
}

/** `createClient(…)` for a server, the token read from the environment. */
export function clientSetup(baseUrl: string): string[] {
  return [
    "import { createClient } from 'edm/client';",
    '',
    'const client = createClient({',
    `  baseUrl: ${quote(baseUrl)},`,
    '  token: process.env.EDM_TOKEN,',
    '});',
  ];
}

/**
 * A signed operation as the other system calls it: plain `fetch` to the signed URL (its
 * `tenant_id` and `signature` in the query), without a token. `url` is the URL to show.
 */
export function signedFetch(op: ManifestOperation, resource: ManifestResource, built: BuiltRequest, url: string) {
  const headers: Record<string, string> = {};
  if (op.has_body) headers['content-type'] = 'application/json';
  Object.assign(headers, signedHeaders(built));
  const lines = [
    `// Not an SDK method: another system ${op.method}s to the signed URL a ${resource.name} shows, without a token.`,
    `await fetch(${quote(url)}, {`,
    `  method: ${quote(op.method)},`,
  ];
  if (Object.keys(headers).length > 0) lines.push(`  headers: ${jsLiteral(headers, 2, 11)},`);
  if (op.has_body) lines.push(`  body: JSON.stringify(${built.bodyError ? '{}' : jsLiteral(built.body, 2, 23)}),`);
  lines.push('});');
  return lines.join('\n');
}

/** The call as a complete SDK program (a signed operation, which has no SDK method: as fetch). */
export function sdkSnippet(
  op: ManifestOperation,
  resource: ManifestResource,
  built: BuiltRequest,
  baseUrl: string,
): string {
  if (!viaSdk(op))
    return [...leftOut(built, '//'), signedFetch(op, resource, built, baseUrl + requestUrl(built))].join('\n');
  const lines = [...clientSetup(baseUrl), ...leftOut(built, '//'), sdkCall(op, resource, sdkArgs(op, built))];
  // Run as it is, the program prints what the call answered: the document, or a page's rows.
  const name = resultName(op, resource);
  lines.push(op.response === 'resource' ? `console.log(${name});` : `console.log(${name}.data);`);
  return lines.join('\n');
}

/** The call as curl (the token read from $EDM_TOKEN). */
export function curlSnippet(op: ManifestOperation, built: BuiltRequest, baseUrl: string): string {
  // A path parameter not filled in stays `{id}`, which curl would read as a glob (and GET `/id`);
  // one of `.` or `..`, which curl would resolve as a step of the path (GET of the list, for a get),
  // is sent as it is (and refused), as the console refuses it.
  const globOff = built.missing.length > 0 ? ' -g' : '';
  const asIs = built.paramError !== null ? ' --path-as-is' : '';
  const parts = [
    `curl${globOff}${asIs}${op.method === 'GET' ? '' : ` -X ${op.method}`} ${shellQuote(baseUrl + requestUrl(built))}`,
  ];
  if (viaSdk(op)) parts.push(`-H "Authorization: Bearer $EDM_TOKEN"`);
  if (built.ifVersion !== null) parts.push(`-H ${shellQuote(`If-Match: "${built.ifVersion}"`)}`);
  if (built.idempotencyKey !== null) parts.push(`-H ${shellQuote(`Idempotency-Key: ${built.idempotencyKey}`)}`);
  if (op.has_body) {
    parts.push(`-H 'Content-Type: application/json'`);
    const json = built.bodyError ? '{}' : JSON.stringify(built.body);
    const text = json.length > 60 ? JSON.stringify(built.body, null, 2) : json;
    parts.push(`-d ${shellQuote(text.replace(INVISIBLE_IN_JSON, unicodeEscape))}`);
  }
  // As the SDK snippet says so in its body: the editor's text is not the body shown.
  const notes = [...leftOut(built, '#')];
  if (op.has_body && built.bodyError)
    notes.push('# The body cannot be sent yet (see the console): {} stands in for it.');
  return [...notes, parts.join(' \\\n  ')].join('\n');
}

/** Comment lines naming the headers the console refuses as typed, which a snippet leaves out. */
function leftOut(built: BuiltRequest, comment: string): string[] {
  const notes = built.invalidHeaders.map((name) => `${comment} ${name} is not valid yet (see the console): left out.`);
  // Sent as shown, `…/key-results/.` would be the list (curl and URLs resolve the step).
  if (built.paramError) notes.unshift(`${comment} Not sent: ${built.paramError} (see the console).`);
  // The console sends nothing without them; the snippet shows where each goes.
  else if (built.missing.length > 0)
    notes.unshift(`${comment} Not sent: fill in ${built.missing.join(', ')} first (see the console).`);
  return notes;
}
