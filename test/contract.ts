/**
 * Checks real responses against the OpenAPI document the app serves: the route and status are
 * documented, the media type is the documented one, required headers are there and no other
 * header the API sets is missing from it, and the body
 * validates against the schema the document gives for that route and status (ajv, 2020-12).
 */
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';

type Json = Record<string, unknown>;

// ajv-formats is CommonJS: its default export arrives wrapped under NodeNext resolution.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as unknown as (
  ajv: Ajv2020,
) => Ajv2020;

const DOC_ID = 'https://edm.invalid/openapi.json';

/** Headers of HTTP itself (framing, caching, the connection), which the document need not give. */
const HTTP_HEADERS = new Set([
  'content-type',
  'content-length',
  'date',
  'connection',
  'keep-alive',
  'transfer-encoding',
  'vary',
  'cache-control',
]);

const pointer = (...parts: string[]) => parts.map((p) => p.replaceAll('~', '~0').replaceAll('/', '~1')).join('/');

export interface CheckedResponse {
  method: string;
  /** Path and query as requested. */
  url: string;
  status: number;
  headers: Record<string, string | string[] | number | undefined>;
  /** The raw body text. */
  body: string;
}

export class ContractChecker {
  readonly #doc: Json;
  readonly #ajv: Ajv2020;
  readonly #validators = new Map<string, ValidateFunction>();
  readonly #routes: { template: string; pattern: RegExp }[];

  constructor(doc: Json) {
    this.#doc = doc;
    this.#ajv = new Ajv2020({ strict: false, allErrors: true, validateSchema: false });
    addFormats(this.#ajv);
    this.#ajv.addSchema({ ...doc, $id: DOC_ID });
    this.#routes = Object.keys(doc.paths as Json).map((template) => ({
      template,
      pattern: new RegExp(`^${template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\\?\{[^}]+\\?\}/g, '[^/]+')}$`),
    }));
  }

  #deref<T = Json>(value: unknown): T {
    let v = value as Json;
    while (v && typeof v.$ref === 'string') {
      const path = (v.$ref as string).replace(/^#\//, '').split('/');
      v = path.reduce<Json>((node, key) => node[key.replaceAll('~1', '/').replaceAll('~0', '~')] as Json, this.#doc);
    }
    return v as T;
  }

  #validator(ref: string): ValidateFunction {
    let v = this.#validators.get(ref);
    if (!v) {
      v = this.#ajv.compile({ $ref: `${DOC_ID}#/${ref}` });
      this.#validators.set(ref, v);
    }
    return v;
  }

  /** Every way the response breaks the document; empty when it conforms. */
  problems(res: CheckedResponse): string[] {
    // The server's router ignores a trailing slash: so does the check.
    // As the router reads it: escapes decoded (`%63ycles` is `cycles`), but an escaped slash.
    const raw = res.url.split('?')[0];
    let decoded = raw;
    try {
      decoded = decodeURIComponent(raw.replace(/%2f/gi, '%252F'));
    } catch {}
    const path = decoded.replace(/(.)\/$/, '$1');
    const method = res.method.toLowerCase();
    const where = `${res.method} ${path} → ${res.status}`;
    if (method === 'options' || method === 'head') return [];
    const route = this.#routes.find((r) => r.pattern.test(path));
    const item = route ? (this.#doc.paths as Record<string, Json>)[route.template] : undefined;
    const operation = item?.[method] as Json | undefined;
    if (!route || !operation) {
      if (!path.startsWith('/api/')) return [];
      // Unknown API routes answer a problem: 401 without a token (an anonymous caller learns
      // nothing), else 404; a documented path with another method, 405 naming the documented ones.
      if (res.status === 405 && item) {
        const documented = Object.keys(item)
          .filter((m) => m !== 'parameters')
          .map((m) => m.toUpperCase());
        const allowed = String(res.headers.allow ?? '').split(', ');
        const missing = documented.filter((m) => !allowed.includes(m));
        if (missing.length) return [`${where}: Allow (${res.headers.allow}) lacks ${missing.join(', ')}`];
      } else if (res.status !== 404 && res.status !== 401) return [`${where}: undocumented route`];
      return this.#body(where, res, 'components/schemas/Problem', 'application/problem+json');
    }
    const responses = operation.responses as Json;
    const key = [String(res.status), `${String(res.status)[0]}XX`, 'default'].find((k) => k in responses);
    if (!key) return [`${where}: status not documented (documented: ${Object.keys(responses).join(', ')})`];
    const response = this.#deref(responses[key]);
    const out: string[] = [];
    const declared = new Set<string>();
    for (const [name, header] of Object.entries((response.headers ?? {}) as Json)) {
      declared.add(name.toLowerCase());
      if (this.#deref(header).required && res.headers[name.toLowerCase()] === undefined) {
        out.push(`${where}: required header ${name} missing`);
      }
    }
    // A header the API sets that the document does not give for this answer: a client generated
    // from the document cannot read it (HTTP's own framing and caching headers, and CORS's, aside).
    for (const name of Object.keys(res.headers)) {
      if (declared.has(name) || HTTP_HEADERS.has(name) || name.startsWith('access-control-')) continue;
      out.push(`${where}: header ${name} is not in the document`);
    }
    const content = response.content as Json | undefined;
    if (!content) {
      if (res.body !== '') out.push(`${where}: a body where the document says none`);
      return out;
    }
    const type = String(res.headers['content-type'] ?? '')
      .split(';')[0]
      .trim();
    if (!(type in content))
      return [...out, `${where}: content-type ${type || '(none)'} is not one of ${Object.keys(content).join(', ')}`];
    const base =
      typeof responses[key] === 'object' && typeof (responses[key] as Json).$ref === 'string'
        ? ((responses[key] as Json).$ref as string).replace(/^#\//, '')
        : pointer('paths', route.template, method, 'responses', key);
    return [...out, ...this.#body(where, res, `${base}/${pointer('content', type, 'schema')}`, type)];
  }

  #body(where: string, res: CheckedResponse, schemaRef: string, type: string): string[] {
    const contentType = String(res.headers['content-type'] ?? '');
    if (!contentType.startsWith(type)) return [`${where}: content-type ${contentType} is not ${type}`];
    let body: unknown = res.body;
    if (/json/.test(type)) {
      try {
        body = JSON.parse(res.body);
      } catch {
        return [`${where}: body is not JSON`];
      }
    }
    const validate = this.#validator(schemaRef);
    if (validate(body)) return [];
    return (validate.errors ?? []).map((e) => `${where}: body${e.instancePath} ${e.message} (${e.schemaPath})`);
  }

  /** Throws with every problem found. */
  check(res: CheckedResponse): void {
    const found = this.problems(res);
    if (found.length > 0) throw new Error(`Response breaks the OpenAPI document:\n  ${found.join('\n  ')}`);
  }
}
