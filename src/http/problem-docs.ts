import type { FastifyInstance, FastifyReply } from 'fastify';
import { ApiError, type ErrorCode, errorRegistry, fieldErrorRegistry } from '../core/errors.js';

/**
 * A problem's `type` (`/problems/<code>`) resolves to a page about its code (RFC 9457 §3.1.1:
 * a type URI, dereferenced, gives human-readable documentation). Page and docs/errors.md are
 * rendered from the one registry, so neither can drift from what the server answers.
 */

/** Checks run in this order (the same sentence on the page and in docs/errors.md). */
const CHECK_ORDER = '401 → 403 → idempotency replay/conflict → 404 → 412/428 → 400 → 409 → 422';

const EXAMPLE = `{
  "type": "/problems/validation_failed",
  "title": "Validation failed",
  "status": 400,
  "detail": "/target: target must be ≤ 1e15",
  "code": "validation_failed",
  "errors": [{ "path": "/target", "code": "out_of_range", "message": "…" }],
  "request_id": "req_…"
}`;

const codes = Object.keys(errorRegistry) as ErrorCode[];

/** docs/errors.md (`npm run docs:api` writes it; a test holds the committed file to this). */
/** A Markdown table, its columns padded to their widest cell. */
function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => [...(r[i] as string)].length)));
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => c + ' '.repeat((widths[i] as number) - [...c].length)).join(' | ')} |`;
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)];
}

export function renderErrorsMd(): string {
  const rows = codes.map((code) => {
    const e = errorRegistry[code];
    return [`\`${code}\``, String(e.status), e.title, e.when];
  });
  const fields = Object.entries(fieldErrorRegistry).map(([code, when]) => [`\`${code}\``, when]);
  return [
    '# Error codes',
    '',
    'Every error is an RFC 9457 `application/problem+json` document:',
    '',
    '```json',
    EXAMPLE,
    '```',
    '',
    '`code` is stable and comes from one registry (`src/core/errors.ts`), which this page is',
    "written from (`npm run docs:api`). `type` is `/problems/<code>`, relative to the server's own",
    'address: the server answers it with a page about that code (and `/problems` lists them all).',
    '`request_id` is also the `x-request-id` header of every response. Checks run in this order:',
    `${CHECK_ORDER}.`,
    '',
    ...table(['code', 'status', 'title', 'when'], rows),
    '',
    '## Field error codes',
    '',
    "Each entry of a problem's `errors[]` names one field (a JSON Pointer into the body), header or",
    'query parameter, and carries one of these codes, as stable as the problem codes (the OpenAPI',
    "document's `Problem` schema lists them too):",
    '',
    ...table(['code', 'when'], fields),
    '',
  ].join('\n');
}

const escapeHtml = (text: string) =>
  text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string,
  );

/** The registry's texts are Markdown with `code` spans only: escaped, then the spans marked up. */
const inline = (markdown: string) => escapeHtml(markdown).replace(/`([^`]+)`/g, '<code>$1</code>');

const STYLE =
  'body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#1f2328}' +
  'code,pre{font-family:ui-monospace,monospace;background:#f6f8fa;border-radius:4px}code{padding:0 .25em}' +
  'pre{padding:1rem;overflow-x:auto}table{border-collapse:collapse}td,th{text-align:left;padding:.25rem .75rem .25rem 0;vertical-align:top}';

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeHtml(title)}</title><style>${STYLE}</style></head>
<body>${body}</body></html>
`;
}

function codePage(code: ErrorCode): string {
  const e = errorRegistry[code];
  return page(
    `${code}: ${e.title}`,
    `<p><a href="/problems">All error codes</a></p>
<h1><code>${code}</code></h1>
<p><strong>${e.status}</strong> · ${escapeHtml(e.title)}</p>
<p>${inline(e.when)}</p>
<p>The answer is an RFC 9457 <code>application/problem+json</code> document whose <code>type</code> is
<code>/problems/${code}</code> and whose <code>code</code> is <code>${code}</code>; <code>detail</code> says what
was wrong with this request, and <code>request_id</code> (also the <code>x-request-id</code> header) finds it in the
server's log.</p>`,
  );
}

function indexPage(): string {
  const rows = codes
    .map((code) => {
      const e = errorRegistry[code];
      return `<tr><td><a href="/problems/${code}"><code>${code}</code></a></td><td>${e.status}</td><td>${escapeHtml(e.title)}</td></tr>`;
    })
    .join('\n');
  return page(
    'Error codes',
    `<h1>Error codes</h1>
<p>Every error is an RFC 9457 <code>application/problem+json</code> document with a stable <code>code</code>:</p>
<pre>${escapeHtml(EXAMPLE)}</pre>
<p>Checks run in this order: ${escapeHtml(CHECK_ORDER)}.</p>
<table><thead><tr><th>code</th><th>status</th><th>title</th></tr></thead><tbody>
${rows}
</tbody></table>`,
  );
}

/** Pages of fixed text: no script, no outside resource, nothing framed. */
const PROBLEM_PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'";

/** `GET /problems` and `GET /problems/:code`: public, as the documents are. */
export function problemDocs(app: FastifyInstance): void {
  // Rendered once: the registry does not change while the process runs.
  const pages = new Map<string, string>(codes.map((code) => [code, codePage(code)]));
  const index = indexPage();
  const send = (reply: FastifyReply, html: string) =>
    reply
      .type('text/html; charset=utf-8')
      .header('cache-control', 'public, max-age=3600')
      .header('content-security-policy', PROBLEM_PAGE_CSP)
      .send(html);
  app.get('/problems', async (_request, reply) => send(reply, index));
  app.get<{ Params: { code: string } }>('/problems/:code', async (request, reply) => {
    const html = pages.get(request.params.code);
    if (html === undefined) throw new ApiError('not_found', `No error code ${request.params.code}: see /problems`);
    return send(reply, html);
  });
}
