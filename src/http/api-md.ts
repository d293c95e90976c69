import {
  limitsText,
  type Manifest,
  type ManifestOperation,
  type ManifestResource,
  requiredUnlessText,
} from '../core/manifest-types.js';

const cell = (s: string) => s.replaceAll('|', '\\|').replaceAll('\n', ' ');

/** A Markdown table with padded columns, laid out as the formatter (Biome) lays it out. */
function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(3, h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)];
}

/**
 * The SDK call of an operation, with its arguments; a signed operation has none (another system
 * calls it at its signed URL, without a token).
 */
function signature(op: ManifestOperation): string {
  if (op.client_method === null) return `${op.name}: signed URL, no SDK method`;
  const args: Record<string, string> = {
    list: 'params?',
    get: 'id',
    create: 'body, { idempotencyKey? }?',
    update: 'id, patch, { ifVersion?, idempotencyKey? }?',
    delete: 'id, { cascade?, ifVersion?, idempotencyKey? }?',
    restore: 'id, { ifVersion?, idempotencyKey? }?',
  };
  // A custom write takes the body slot even without a body: `sync(id, undefined, { ifVersion })`.
  const options = op.headers.includes('If-Match') ? '{ ifVersion?, idempotencyKey? }?' : '{ idempotencyKey? }?';
  const custom = op.response === 'item_list' ? 'id, params?' : `id, ${op.has_body ? 'body' : 'undefined?'}, ${options}`;
  return `${op.client_method}(${args[op.name] ?? custom})`;
}

function answer(op: ManifestOperation, resource: ManifestResource): string {
  if (op.response === 'list') return `${op.success_status}, a page of ${resource.name}`;
  if (op.response === 'item_list') return `${op.success_status}, a page of items`;
  return `${op.success_status}, the ${resource.name}`;
}

function resourceSection(r: ManifestResource): string[] {
  const lines = [`### ${r.name} — \`${r.client_namespace}\``, '', r.description, ''];
  lines.push(
    ...table(
      ['method', 'HTTP', 'answer', 'summary'],
      r.operations.map((op) => [
        `\`${cell(signature(op))}\``,
        `\`${op.method} ${op.path}\``,
        cell(answer(op, r)),
        cell(op.summary),
      ]),
    ),
    '',
  );
  lines.push(
    `List parameters: \`limit\` (1–${r.list.max_limit}, default ${r.list.default_limit}), \`cursor\`, ` +
      `\`sort\` (${r.list.sortable.map((s) => `\`${s}\``).join(', ')}; \`-\` for descending, default \`${r.list.default_sort}\`), ` +
      `\`q\` (searches \`${r.title_field}\`), \`include_deleted\`; filters: ` +
      `${r.list.filterable.map((f) => `\`${f === 'tags' ? 'tag' : f}\``).join(', ')}.`,
  );
  lines.push('');
  const rows = r.fields.map((f) => {
    const flags = [
      f.read_only ? (f.computed ? 'computed' : 'read-only') : '',
      f.write_only ? 'write-only' : '',
      f.enum ? `one of ${f.enum.map((v) => `\`${v}\``).join(', ')}` : '',
      f.default !== null ? `default \`${JSON.stringify(f.default)}\`` : '',
      f.default_rule ? `default: ${f.default_rule}` : '',
      limitsText(f) ?? '',
    ].filter(Boolean);
    const notes = flags.length > 0 ? `${f.notes} _(${flags.join('; ')})_` : f.notes;
    const required = f.required ? (f.required_unless ? `yes, ${requiredUnlessText(f)}` : 'yes') : '';
    return [`\`${f.name}\`${f.always_present ? '\\*' : ''}`, f.type, required, cell(notes)];
  });
  lines.push(...table(['field', 'type', 'required', 'notes'], rows), '');
  return lines;
}

/**
 * `docs/api.md`: every SDK method, its route and answer, and every resource's fields, rendered
 * from the manifest (`npm run docs:api` writes it; a test checks it is up to date).
 *
 * @example
 * writeFileSync('docs/api.md', renderApiMd(buildManifest(modules)));
 */
export function renderApiMd(manifest: Manifest): string {
  const lines = [
    '<!-- Generated from the resource declarations by `npm run docs:api`; do not edit. -->',
    '',
    `# ${manifest.platform.name} API and SDK reference`,
    '',
    "`import { createClient } from 'edm/client'`, then `const client = createClient({ baseUrl, token })`.",
    'Every method below is typed from the same declarations that serve the routes; `list()` answers a page',
    'when awaited and walks every item with `for await`; writes take `{ idempotencyKey }` and retry safely;',
    'errors are classes by status (`NotFoundError`, `ConflictError`, …). The OpenAPI 3.1 document is at',
    '`GET /api/v1/openapi.json`, the manifest at `GET /api/v1/manifest`. `*` marks fields always present.',
    'A custom operation without a body still takes its options third (`sync(id, undefined, { ifVersion })`);',
    'one marked "signed URL, no SDK method" is called by another system at the signed URL a document shows.',
    '',
  ];
  for (const m of manifest.modules) {
    lines.push(`## ${m.name} — \`${m.client_namespace}\``, '', m.description, '');
    for (const r of m.resources) lines.push(...resourceSection(r));
  }
  return `${lines.join('\n').trimEnd()}\n`;
}
