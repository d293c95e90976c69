import { isoTime, ManualClock } from '../core/clock.js';
import { ApiError, fieldError } from '../core/errors.js';
import { mentionedIds } from '../core/fields.js';
import { CursorCodec, MAX_LIMIT, parseListQuery } from '../core/list-query.js';
import { isJsonNumberText } from '../core/manifest-types.js';
import type { CustomOperation, Doc, ModuleDef, Principal, Resource } from '../core/resource.js';
import { ServerKeys } from '../core/secrets.js';
import type { RowPage } from '../core/tables.js';
import { isDateTime } from '../core/validation.js';
import { HISTORY_SIZE } from '../modules/okr/check-ins.js';
import type { Store } from '../store/database.js';
import { Engine, NO_CONDITIONS } from '../store/engine.js';
import { dataTables, isUnmigrated, keepPlannerStats, migrate, schemaProbe } from '../store/schema.js';

/** How far ahead of this machine's clock a source time may be (another server's clock): 5 minutes. */
const CLOCK_SKEW_MS = 5 * 60 * 1000;

/**
 * The `format` member of an export document. v2: a log a resource replays (a key result's
 * `history`) holds every entry; in v1 it held what the API answers (the newest 100).
 */
export const EXPORT_FORMAT = 'edm.export.v2';

/** The versions `edm import` reads: a v1 file's logs are replayed as far as they go. */
const IMPORT_FORMATS = [EXPORT_FORMAT, 'edm.export.v1'];

export interface TransferOptions {
  store: Store;
  modules: readonly ModuleDef[];
  tenant: string;
  /** Whose writes an import's are (`created_by`, a check-in's `by`). */
  sub: string;
  secretKey: Uint8Array;
  /** Told after each page or row: what is being done, how far, of how many (for a progress bar). */
  progress?: (label: string, done: number, total: number) => void;
  /** The time an import counts as now (default: the system clock's); tests set it. */
  now?: number;
}

/** A file or an option an export or import cannot use (the CLI's exit code 1). */
export class TransferError extends Error {}

/** An engine on the store, and the cursor codec its lists use (export pages through them). */
function engineFor(o: TransferOptions, clock = new ManualClock(Date.now())): { engine: Engine; cursors: CursorCodec } {
  const cursors = new CursorCodec(o.secretKey);
  return {
    engine: new Engine({
      store: o.store,
      clock,
      modules: o.modules,
      cursors,
      keys: new ServerKeys(o.secretKey),
      requireIfMatch: false,
      // An import restores rows an earlier build may have written under its own rules.
      restoring: true,
    }),
    cursors,
  };
}

const principalOf = (o: TransferOptions): Principal => ({ sub: o.sub, tenantId: o.tenant, appId: null, scopes: null });

/** The resources of the modules, by name; `only` narrows to one (an unknown name is refused). */
function pick(o: TransferOptions, only?: string): Resource[] {
  const all = o.modules.flatMap((m) => m.resources);
  if (only === undefined) return all;
  const found = all.find((r) => r.name === only);
  if (!found) throw new TransferError(`no resource ${only}: one of ${all.map((r) => r.name).join(', ')}`);
  return [found];
}

/**
 * How many rows each resource has in the tenant, asked before an export writes anything, so a
 * store without the schema fails with a message, not half a file.
 */
async function totals(o: TransferOptions, resources: Resource[], includeDeleted: boolean): Promise<number[]> {
  try {
    await schemaProbe(o.store, resources).execute(o.store.db);
  } catch (err) {
    if (isUnmigrated(err)) {
      throw new TransferError(
        'this database has no EDM schema of this build yet: none, or one an earlier build made (edm migrate creates or upgrades it, adding what is missing)',
        { cause: err },
      );
    }
    throw err;
  }
  return Promise.all(resources.map((r) => countOf(o.store, r, o.tenant, includeDeleted)));
}

async function countOf(store: Store, resource: Resource, tenant: string, includeDeleted: boolean): Promise<number> {
  let q = store.db
    .selectFrom(resource.table)
    .select((eb) => eb.fn.countAll<number | string>().as('n'))
    .where('tenant_id', '=', tenant);
  if (!includeDeleted) q = q.where('is_deleted', '=', store.encode(resource.allFields.is_deleted, false));
  // In the export's snapshot, as its pages are (on SQLite its own connection, `read`; `db` is the
  // writer's, which sees what commits meanwhile: a total the bar never reached).
  const compiled = q.compile();
  const [row] = store.read ? store.read(compiled.sql, compiled.parameters) : ((await q.execute()) as { n: unknown }[]);
  return Number(row?.n ?? 0);
}

/**
 * The list operation of the log a resource's replay rebuilds: the GET at the path of the replay's
 * operation (a key result's `GET …/{id}/check-ins`, beside the `POST` an import replays through).
 */
function logListOf(resource: Resource): CustomOperation | undefined {
  const replay = resource.replay;
  const write = replay && resource.operations?.find((x) => x.name === replay.operation);
  return (
    write && resource.operations?.find((x) => x.method === 'GET' && x.path === write.path && x.response.kind === 'list')
  );
}

/**
 * Every row of a resource in a tenant, as the API answers them, page by page in `created_at`
 * order: each page as its JSON documents comma-joined, and parsed. A log an import replays (a
 * key result's `history`, which the API cuts to the newest HISTORY_SIZE) is the row's whole log
 * instead, read through its list operation as `GET …/{id}/check-ins` pages it, oldest first, its
 * entries in the document's shape.
 */
async function* pages(
  o: TransferOptions,
  { engine, cursors }: ReturnType<typeof engineFor>,
  resource: Resource,
  includeDeleted: boolean,
): AsyncGenerator<{ json: string; rows: Doc[] }> {
  const principal = principalOf(o);
  const logList = logListOf(resource);
  const replay = logList && resource.replay;
  let cursor: string | null = null;
  do {
    const params: Record<string, string> = { limit: '200', sort: 'created_at' };
    if (includeDeleted) params.include_deleted = 'true';
    if (cursor) params.cursor = cursor;
    const page = await engine.list(resource, principal, parseListQuery(resource, principal, params, cursors));
    const docs = page.documents;
    let json = Buffer.isBuffer(docs) ? docs.toString('utf8') : docs.join(',');
    const rows = JSON.parse(`[${json}]`) as Doc[];
    if (replay && logList) {
      let whole = 0;
      for (const row of rows) {
        const shown = row[replay.field];
        // A row shorter than the cut keeps what the API shows, which is whole: reading every
        // row's log again made an export of 2,000 key results 10× (SQLite) to 20× (PostgreSQL)
        // slower. So does one whose log an import does not replay (neither `when` nor
        // `switched` takes it); one it replays has it whole.
        const replayed = (replay.when?.(row) ?? true) || replay.switched?.applies(row) === true;
        if (!Array.isArray(shown) || shown.length < HISTORY_SIZE || !replayed) continue;
        const keys = Object.keys(shown[0] as Doc);
        const entries: Doc[] = [];
        let next: string | null = null;
        do {
          const query: Record<string, string> = { limit: String(MAX_LIMIT), ...(next ? { cursor: next } : {}) };
          const part = (await engine.operate(
            o.store.db,
            resource,
            principal,
            logList,
            row.id as string,
            undefined,
            query,
          )) as RowPage;
          entries.push(...part.data);
          next = part.next_cursor;
        } while (next);
        row[replay.field] = entries.reverse().map((e) => Object.fromEntries(keys.map((k) => [k, e[k] ?? null])));
        whole++;
      }
      if (whole > 0) json = rows.map((row) => JSON.stringify(row)).join(',');
    }
    if (rows.length > 0) yield { json, rows };
    cursor = page.next_cursor;
  } while (cursor);
}

/**
 * Writes a tenant's rows as one JSON document (`edm export`): `{ format, tenant_id,
 * exported_at, resources: { Cycle: [...], Objective: [...], KeyResult: [...] } }`, each row as
 * the API answers it but for a replayed log (a key result's `history`), which holds every entry
 * (see pages). Streams page by page; answers how many rows per resource.
 * @example await exportJson({ store, modules, tenant: 'acme', sub, secretKey }, (s) => out.write(s))
 */
export function exportJson(
  given: TransferOptions & { resource?: string; includeDeleted?: boolean },
  write: (chunk: string) => void | Promise<void>,
): Promise<Record<string, number>> {
  // One snapshot for the whole file: a server writing meanwhile cannot leave a key result in it
  // whose objective it lacks (read before the objective was created), nor the other way round.
  return given.store.snapshot((store) => exportJsonFrom({ ...given, store }, write));
}

async function exportJsonFrom(
  o: TransferOptions & { resource?: string; includeDeleted?: boolean },
  write: (chunk: string) => void | Promise<void>,
): Promise<Record<string, number>> {
  const lists = engineFor(o);
  const counts: Record<string, number> = {};
  const chosen = pick(o, o.resource);
  const sizes = await totals(o, chosen, o.includeDeleted ?? false);
  await write(
    `{"format":${JSON.stringify(EXPORT_FORMAT)},"tenant_id":${JSON.stringify(o.tenant)},"exported_at":${JSON.stringify(new Date().toISOString())},"resources":{`,
  );
  for (const [i, resource] of chosen.entries()) {
    const total = sizes[i];
    await write(`${i > 0 ? ',' : ''}${JSON.stringify(resource.name)}:[`);
    let done = 0;
    for await (const page of pages(o, lists, resource, o.includeDeleted ?? false)) {
      await write(`${done > 0 ? ',' : ''}${page.json}`);
      done += page.rows.length;
      o.progress?.(`exporting ${resource.name}`, done, total);
    }
    await write(']');
    counts[resource.name] = done;
  }
  await write('}}\n');
  return counts;
}

/**
 * The columns of a resource's CSV: every field but read-only JSON values (a key result's
 * history, whose full log is the check-ins list); writable ones (tags) are JSON text.
 */
export function csvColumns(resource: Resource): string[] {
  return Object.entries(resource.allFields)
    .filter(([, f]) => f.type !== 'json' || f.access === 'write')
    .map(([name]) => name);
}

/**
 * Text a spreadsheet would take for a formula (CWE-1236: `=HYPERLINK(…)`, `@SUM(…)`, `+1-1`, and a
 * tab or carriage return before one), or that starts with the apostrophe that escapes it.
 */
const FORMULA_START = /^[=+\-@\t\r']/;
/** Such text as csvCell writes it: after an apostrophe. */
const ESCAPED_FORMULA = /^'[=+\-@\t\r']/;

/**
 * A value as a CSV cell: null is an empty cell, an empty string `""` (parseCsv tells them apart).
 * Text a spreadsheet would run as a formula is written after an apostrophe, which shows it as
 * text; an import takes it off again (fromCell).
 */
function csvCell(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (value === '') return '""';
  let text = typeof value === 'object' ? JSON.stringify(value) : String(value);
  if (typeof value === 'string' && FORMULA_START.test(value)) text = `'${text}`;
  return /[",\r\n]/.test(text) || text !== text.trim() ? `"${text.replaceAll('"', '""')}"` : text;
}

/**
 * Writes one resource's rows of a tenant as CSV (RFC 4180, a header row of field names): empty
 * for null, `""` for an empty string, lists as JSON text; read-only JSON fields (a key result's
 * history) are left out.
 */
export function exportCsv(
  given: TransferOptions & { resource: string; includeDeleted?: boolean },
  write: (chunk: string) => void | Promise<void>,
): Promise<number> {
  return given.store.snapshot((store) => exportCsvFrom({ ...given, store }, write));
}

async function exportCsvFrom(
  o: TransferOptions & { resource: string; includeDeleted?: boolean },
  write: (chunk: string) => void | Promise<void>,
): Promise<number> {
  const [resource] = pick(o, o.resource);
  const lists = engineFor(o);
  const columns = csvColumns(resource);
  const [total] = await totals(o, [resource], o.includeDeleted ?? false);
  await write(`${columns.join(',')}\r\n`);
  let done = 0;
  for await (const page of pages(o, lists, resource, o.includeDeleted ?? false)) {
    const { rows } = page;
    await write(rows.map((row) => `${columns.map((c) => csvCell(row[c])).join(',')}\r\n`).join(''));
    done += rows.length;
    o.progress?.(`exporting ${resource.name}`, done, total);
  }
  return done;
}

/**
 * Parses CSV text (RFC 4180: quoted fields, doubled quotes, CRLF or LF) into rows of cells: an
 * empty cell is null, a quoted empty one (`""`) the empty string. Blank lines are skipped.
 */
export function parseCsv(text: string, lines?: number[]): (string | null)[][] {
  const rows: (string | null)[][] = [];
  /** The line of the file each row of `rows` starts on (a quoted cell may hold line breaks). */
  const starts: number[] = [];
  let row: (string | null)[] = [];
  // Cells are slices of the text, not built a character at a time (a 35 MB file's cells, each a
  // chain of one-character pieces, held ~550 MB): an unquoted cell is the text from `start` to its
  // end; a quoted one, `cell`, is its pieces between doubled quotes, each from `start` to the next.
  let cell = '';
  let start = 0;
  let quoted = false;
  // Whether the cell began with a quote: `""` is an empty string, nothing at all is null.
  let wasQuoted = false;
  // A quoted cell's closing quote was read: only a comma or a line break may follow (RFC 4180).
  let closed = false;
  let line = 1;
  let rowLine = 1;
  const end = (at: number) => {
    const value = wasQuoted ? cell : text.slice(start, at);
    row.push(value === '' && !wasQuoted ? null : value);
    cell = '';
    wasQuoted = false;
    closed = false;
  };
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  start = i;
  for (; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"') {
        cell += text.slice(start, i);
        if (text[i + 1] === '"') {
          cell += '"';
          i++;
          start = i + 1;
        } else {
          quoted = false;
          closed = true;
        }
      } else if (c === '\n' || (c === '\r' && text[i + 1] !== '\n')) line++;
    } else if (c === ',') {
      end(i);
      start = i + 1;
    } else if (c === '\n' || c === '\r') {
      const at = i;
      if (c === '\r' && text[i + 1] === '\n') i++;
      end(at);
      rows.push(row);
      starts.push(rowLine);
      row = [];
      rowLine = ++line;
      start = i + 1;
    } else if (closed) {
      throw new TransferError(
        `line ${line}: text after a quoted field's closing quote (write a quote inside one as "")`,
      );
    } else if (c === '"' && i === start) {
      quoted = true;
      wasQuoted = true;
      start = i + 1;
    }
  }
  if (quoted) throw new TransferError('the CSV ends inside a quoted field');
  if (start < text.length || wasQuoted || row.length > 0) {
    end(text.length);
    rows.push(row);
    starts.push(rowLine);
  }
  const kept = rows.map((r, n) => [r, starts[n]] as const).filter(([r]) => !(r.length === 1 && r[0] === null));
  // One at a time: spread into push's arguments, 125,000 rows passed the call stack's bound.
  if (lines) for (const [, at] of kept) lines.push(at as number);
  return kept.map(([r]) => r);
}

/**
 * A CSV cell as the field's value: an empty one is null; numbers (as JSON writes them: `0x10` is
 * text, refused as a number would be by the API), booleans and lists are parsed. A cell that is
 * none of its column's values stays text, for the write's validation to name.
 */
function fromCell(resource: Resource, name: string, cell: string | null): unknown {
  if (cell === null) return null;
  const field = resource.allFields[name];
  switch (field.column) {
    case 'real':
    case 'integer':
      return isJsonNumberText(cell) && Number.isFinite(Number(cell)) ? Number(cell) : cell;
    case 'boolean':
      return cell === 'true' ? true : cell === 'false' ? false : cell;
    default:
      if (field.type === 'json') {
        try {
          return JSON.parse(cell);
        } catch {
          return cell;
        }
      }
      // The apostrophe an export writes before text a spreadsheet would run (csvCell): only there,
      // so an earlier build's export, or a hand-written file, keeps `'Tis the season` as it is.
      return ESCAPED_FORMULA.test(cell) ? cell.slice(1) : cell;
  }
}

interface ImportRow {
  resource: Resource;
  /** Where it came from, for errors: `KeyResult 3` (the third in the file) or `line 4`. */
  where: string;
  doc: Doc;
}

/**
 * Events in the order they are played: by `compare` (ties in the order given), but each after
 * the events it `needs`, which are played first where they come later (an event that needs one
 * that needs it, in a loop of rows naming each other, which no export holds, goes without it:
 * the import refuses it when it comes to write the reference, naming the row and the field).
 */
function playOrder<E>(events: readonly E[], compare: (a: E, b: E) => number, needs: (event: E) => E[]): E[] {
  const sorted = events
    .map((event, i) => ({ event, i }))
    .sort((a, b) => compare(a.event, b.event) || a.i - b.i)
    .map(({ event }) => event);
  const played = new Set<E>();
  const playing = new Set<E>();
  const out: E[] = [];
  const play = (event: E) => {
    if (played.has(event) || playing.has(event)) return;
    playing.add(event);
    for (const first of needs(event)) play(first);
    playing.delete(event);
    played.add(event);
    out.push(event);
  };
  for (const event of sorted) play(event);
  return out;
}

/**
 * Writes rows into a tenant (`edm import`), in one transaction, through the engine's create and
 * check-in paths: the same validation, progress, statuses and roll-ups as API calls. Ids are
 * new; references to rows of the same import are rewritten to theirs, others kept (rows that
 * already exist in the tenant). A log the resource declares a `replay` for (a key result's
 * history, JSON only) is replayed through its operation (check-ins) at the entries' times, so
 * `history` and the check-in log read as in the source, written by the importer.
 * Timestamps come from the source (`created_at`, each snapshot's `at`, `deleted_at`); a deleted
 * row is created and deleted again, so live rows may name it.
 * A JSON import with `resource` takes only that resource's rows of the file.
 * Any invalid row (a member that is no field of its resource, a time that is none or in the
 * future, or what the API refuses): nothing is written, and the error names the row and the field.
 */
export async function importRows(
  o: TransferOptions,
  input: { json: unknown; resource?: string } | { csv: string; resource: string },
): Promise<Record<string, number>> {
  const all = o.modules.flatMap((m) => m.resources);
  await migrate(o.store, all);
  const rows: ImportRow[] = [];
  /** A v1 export: its logs hold the newest HISTORY_SIZE entries (the API's history). */
  let cut = false;
  const refused = (where: string, message: string) => new TransferError(`${where}: ${message}; nothing was imported`);
  if ('json' in input) {
    const doc = input.json as { format?: unknown; resources?: Record<string, unknown> };
    cut = doc?.format === 'edm.export.v1';
    if (
      !IMPORT_FORMATS.includes(doc?.format as string) ||
      typeof doc.resources !== 'object' ||
      doc.resources === null
    ) {
      throw new TransferError(`not an EDM export: expected "format": "${EXPORT_FORMAT}" and "resources"`);
    }
    let lists = Object.entries(doc.resources);
    if (input.resource !== undefined) {
      const [only] = pick(o, input.resource);
      lists = lists.filter(([name]) => name === only.name);
      if (lists.length === 0) throw new TransferError(`the file has no resources.${only.name}`);
    }
    for (const [name, list] of lists) {
      const [resource] = pick(o, name);
      if (!Array.isArray(list)) throw new TransferError(`resources.${name} must be an array`);
      list.forEach((item, i) => {
        if (item === null || typeof item !== 'object' || Array.isArray(item)) {
          throw new TransferError(`${name} ${i + 1}: not an object`);
        }
        const where = `${name} ${i + 1}${item.id ? ` (${item.id})` : ''}`;
        // An exported row carries the server's fields too (id, version, …): those are fields,
        // taken from the file or set anew; a name that is none is a mistake, not to be dropped.
        const unknown = Object.keys(item).find((key) => !Object.hasOwn(resource.allFields, key));
        if (unknown !== undefined) throw refused(where, `${unknown} is not a field of ${name}`);
        rows.push({ resource, where, doc: item as Doc });
      });
    }
  } else {
    const [resource] = pick(o, input.resource);
    const at: number[] = [];
    const [header, ...lines] = parseCsv(input.csv, at);
    if (!header) throw new TransferError('the CSV is empty');
    for (const [i, name] of header.entries()) {
      if (name === null || !Object.hasOwn(resource.allFields, name))
        throw new TransferError(`CSV column ${name ?? '(empty)'} is not a field of ${resource.name}`);
      if (header.indexOf(name) !== i) throw new TransferError(`CSV column ${name} appears twice in the header`);
    }
    lines.forEach((cells, i) => {
      if (cells.length !== header.length) {
        throw new TransferError(`line ${at[i + 1]}: ${cells.length} cells, the header has ${header.length}`);
      }
      const doc: Doc = {};
      header.forEach((name, j) => {
        doc[name as string] = fromCell(resource, name as string, cells[j]);
      });
      rows.push({ resource, where: `line ${at[i + 1]}`, doc });
    });
  }

  // What the import reads itself rather than writes through the API: the ids rows are named by
  // (one row each: two rows of one id would leave the references to it to the last), and whether
  // a row is deleted (a CSV's `TRUE` or `yes` is no answer; read as not true, it revived the row).
  const seen = new Map<string, string>();
  for (const { doc, where } of rows) {
    if (doc.is_deleted != null && typeof doc.is_deleted !== 'boolean') {
      throw refused(where, `is_deleted must be true or false, not ${JSON.stringify(doc.is_deleted)}`);
    }
    if (doc.id == null) continue;
    if (typeof doc.id !== 'string') throw refused(where, `id must be a string, not ${JSON.stringify(doc.id)}`);
    const first = seen.get(doc.id);
    if (first !== undefined) throw refused(where, `id ${doc.id} is the id of ${first} too`);
    seen.set(doc.id, where);
  }

  // Per resource, once: the fields a create takes, the references among them, and its replay.
  const plans = new Map(
    all.map((r) => {
      // The platform's client-settable fields too (`source`, `source_type`: provenance).
      const writable = Object.entries(r.allFields).filter(([, f]) => f.access === 'write');
      const op = r.replay && r.operations?.find((x) => x.name === r.replay?.operation);
      if (r.replay && !op) throw new Error(`${r.name}.replay names no operation ${r.replay.operation}`);
      return [
        r,
        {
          writable: writable.map(([name]) => name),
          refs: new Set(writable.filter(([, f]) => f.ref !== undefined).map(([name]) => name)),
          // Texts that name rows inside them (a metric query): [field, id prefix].
          mentions: writable.flatMap(([name, f]) => (f.mentions ? [[name, f.mentions] as const] : [])),
          replay: r.replay && op ? { ...r.replay, op } : null,
        },
      ];
    }),
  );
  // Every resource of a row is among `all` (pick() checked its name).
  const planOf = (r: Resource) => plans.get(r) as typeof plans extends Map<Resource, infer P> ? P : never;
  const idsOf = ({ resource, doc }: Pick<ImportRow, 'resource' | 'doc'>) => {
    const plan = planOf(resource);
    return [
      ...[...plan.refs].map((name) => doc[name] as string),
      ...plan.mentions.flatMap(([name, prefix]) => mentionedIds(prefix, doc[name])),
    ];
  };
  // The rows of this import a row names (others exist in the tenant already, or nowhere).
  const byId = new Map(rows.filter((r) => typeof r.doc.id === 'string').map((r) => [r.doc.id as string, r]));
  const named = (row: Pick<ImportRow, 'resource' | 'doc'>) => idsOf(row).flatMap((id) => byId.get(id) ?? []);
  // Deleted rows too (an export with --include-deleted): created, then deleted again at their
  // deleted_at, so a live row may name one (a query reading a key result deleted since, an
  // objective aligned to one), as in the source.
  const now = o.now ?? Date.now();
  const clock = new ManualClock(now);
  const { engine } = engineFor(o, clock);
  const principal = principalOf(o);
  // A row an application wrote is written as that application (its app_id), so it sees it still.
  const writer = (doc: Doc): Principal =>
    typeof doc.app_id === 'string' && doc.app_id !== '' ? { ...principal, appId: doc.app_id } : principal;
  const newIds = new Map<string, string>();
  const counts: Record<string, number> = {};
  // A source time (`field` names it in an error): a date-time, and not in the future (the API
  // takes no check-in there, and a row made later than its import is no copy of the source),
  // beyond what two machines' clocks may differ by: a file exported a moment ago on a server
  // whose clock runs ahead imports, its times up to CLOCK_SKEW_MS ahead taken as now.
  const timeOf = (row: ImportRow, field: string, iso: unknown) => {
    const ms = typeof iso === 'string' && isDateTime(iso) ? Date.parse(iso) : Number.NaN;
    if (!Number.isFinite(ms)) {
      throw refused(
        row.where,
        `${field} must be an RFC 3339 date-time${iso === undefined ? '' : `, not ${JSON.stringify(iso)}`}`,
      );
    }
    if (ms > now + CLOCK_SKEW_MS) throw refused(row.where, `${field} must not be in the future (${iso})`);
    return Math.min(ms, now);
  };
  // Every write as an event at its source time: each row's create (at created_at, with the value
  // of the log entry written then), then each other log entry through the replay operation
  // (never before its row; a back-dated one, older than its row, keeps its own time as the
  // check-in's `at`), then a deleted row's delete (at deleted_at). Played in time order, so a
  // query reading another key result is recomputed at that one's check-ins, as it was in the
  // source. (A v1 export's log lost its entries past the newest 100: its row is created at the
  // oldest it kept.)
  type Event =
    /** `startEntry`: the log entry whose value the create starts at (its errors name that entry). */
    | { at: number; row: ImportRow; body: Doc; create: true; startEntry?: number }
    | { at: number; row: ImportRow; entry: Doc; index: number; time: number }
    /** A row's own values of the fields it was created without (`replay.switched`), set back. */
    | { at: number; row: ImportRow; patch: Doc }
    /** After a row's last entry: what its log does not tell, set back from the file (replay.settle). */
    | { at: number; row: ImportRow; settle: true }
    | { at: number; row: ImportRow; remove: true };
  const events: Event[] = [];
  const createOf = new Map<ImportRow, Event>();
  for (const row of rows) {
    const { resource, doc } = row;
    const plan = planOf(resource);
    const body: Doc = {};
    for (const name of plan.writable) if (name in doc) body[name] = doc[name];
    // A row the platform wrote last says `system`, which no client may send: the default it is.
    if (body.source_type === 'system') delete body.source_type;
    const replayed = plan.replay && (plan.replay.when?.(doc) ?? true);
    const switched = !replayed && plan.replay?.switched?.applies(doc) ? plan.replay.switched : null;
    const replay = replayed || switched ? plan.replay : null;
    const logged = replay ? doc[replay.field] : undefined;
    if (
      replay &&
      logged != null &&
      !(Array.isArray(logged) && logged.every((e) => e !== null && typeof e === 'object'))
    ) {
      throw refused(row.where, `${replay.field} must be a list of entries`);
    }
    const entries = (logged ?? []) as Doc[];
    const allTimes = entries.map((entry, i) => timeOf(row, `${replay?.field}[${i}].at`, entry.at));
    // The entries replayed, by their index in the file's log.
    let kept = entries.map((_, i) => i);
    // A row without created_at (a file not written by an export) is created now.
    const created = doc.created_at == null ? now : timeOf(row, 'created_at', doc.created_at);
    // A row that takes its values from elsewhere now (ResourceOptions.replay.switched), with
    // entries besides its create's: created with `manual`'s values, its whole log replayed, then
    // given its own values of those fields as late as it can be: at the import's end (a deleted
    // one, before its delete). After its last entry its source moved its value no more, so read
    // then it holds the value it had (attached at that entry, an edit of its query since, which
    // wrote none, read what its new reads held then). One with no log in the file (a CSV) that
    // `holds` its value is created with it, then switched. A log a v1 export cut short of one
    // that does not hold its value (a query's) is not replayed: the server derives it again.
    let switchTo: { patch: Doc; at: number } | null = null;
    if (switched) {
      const whole = !(cut && entries.length >= HISTORY_SIZE && switched.holds?.(doc) !== true);
      if ((entries.length > 1 && whole) || (entries.length === 0 && switched.holds?.(doc) === true)) {
        Object.assign(body, switched.manual);
        switchTo = {
          patch: Object.fromEntries(Object.keys(switched.manual).map((name) => [name, doc[name] ?? null])),
          at: doc.is_deleted === true && doc.deleted_at != null ? timeOf(row, 'deleted_at', doc.deleted_at) : now,
        };
      } else kept = [];
    }
    if (plan.replay && !(replayed || switchTo)) delete body[plan.replay.from];
    const log = kept.map((i) => entries[i]);
    const times = kept.map((i) => allTimes[i]);
    // The time of its last entry, or of its create (a loop: a log of 100,000 entries spread into
    // Math.max's arguments would pass the call stack's bound).
    const lastOf = (from: number) => times.reduce((last, time) => Math.max(last, time), from);
    // With a log to replay, the row starts at the value its create wrote: the entry at created_at
    // (back-dated check-ins may come before it in the log), else the oldest kept (a v1 export).
    const atCreate = times.indexOf(created);
    const first = Math.max(atCreate, 0);
    const startsAtEntry = replay != null && log.length > 0 && replay.from in body;
    if (startsAtEntry && replay) body[replay.from] = log[first].value;
    const at = atCreate >= 0 ? created : (times[0] ?? created);
    const create: Event = { at, row, body, create: true, ...(startsAtEntry ? { startEntry: kept[first] } : {}) };
    createOf.set(row, create);
    events.push(create);
    for (const [i, entry] of log.entries()) {
      if (i !== first) events.push({ at: Math.max(at, times[i]), row, entry, index: kept[i], time: times[i] });
    }
    // The entries replayed through the operation as the newest at their time: after the create
    // (a back-dated one older than the row is not), the platform's apart (replay.system).
    const settle = plan.replay?.settle;
    const through = (i: number) =>
      i !== first && times[i] >= at && !(replay?.system && log[i].source_type === 'system');
    if (
      settle?.needed(
        doc,
        log.filter((_, i) => through(i)),
      )
    ) {
      events.push({ at: lastOf(at), row, settle: true });
    }
    if (switchTo) events.push({ at: Math.max(at, switchTo.at), row, patch: switchTo.patch });
    if (doc.is_deleted === true) {
      const deleted = doc.deleted_at == null ? now : timeOf(row, 'deleted_at', doc.deleted_at);
      events.push({ at: lastOf(Math.max(at, deleted)), row, remove: true });
    }
  }
  // A create needs the creates of the rows its body names (not those a switched row is given by
  // its update, which needs them), and a row's other events its create. A row that names one
  // created after it (an objective whose cycle is newer, a key result moved
  // to a newer objective, a query reading a newer key result: the source pointed it there by a
  // later write, which the file does not show) has that one created first, at that one's own
  // created_at, and is itself created at its own: every row's created_at, values and history,
  // and the roll-ups and queries they feed, are the source's, and its other events play at their
  // own times. (Holding the row back until the newer one's time instead lost the history of the
  // queries reading it, and let a row it names be deleted before it was created.) At one time,
  // events in the file's order, which is the source's (its ids, from one server, sort by
  // creation), entries in log order, each after what it needs; deletes after the rest of their
  // time (a cascade's rows may have been created at the very time of their delete).
  const played = playOrder(
    events,
    (a, b) => a.at - b.at || Number('remove' in a) - Number('remove' in b),
    (event) =>
      'create' in event
        ? named({ resource: event.row.resource, doc: event.body }).flatMap((target) => createOf.get(target) ?? [])
        : 'patch' in event
          ? [createOf.get(event.row) as Event, ...named(event.row).flatMap((target) => createOf.get(target) ?? [])]
          : [createOf.get(event.row) as Event],
  );
  const createdIds = new Map<ImportRow, string>();
  await engine.transaction(async (db) => {
    // PostgreSQL: the tables it fills are analyzed as they grow (see keepPlannerStats).
    const stats = o.store.kind === 'postgres' ? await keepPlannerStats(db, dataTables(all)) : null;
    for (const [n, event] of played.entries()) {
      await stats?.grown(n);
      const { row } = event;
      const { resource, doc } = row;
      const plan = planOf(resource);
      clock.set(event.at);
      try {
        // References to rows of this import, by value or inside a text, become their new ids. One
        // to a row of the file not written yet is a loop (see playOrder): kept as it is, it would
        // name the source's row where the file is imported into its own tenant.
        const newIdOf = (name: string, id: string) => {
          const to = newIds.get(id);
          if (to === undefined && byId.has(id)) {
            throw refused(
              row.where,
              `${name} names ${id}, a row of this file that names this one in turn (a loop of references, which no export holds)`,
            );
          }
          return to;
        };
        const rewritten = (given: Doc) => {
          const body = { ...given };
          for (const name of plan.refs) {
            const to = typeof body[name] === 'string' ? newIdOf(name, body[name] as string) : undefined;
            if (to) body[name] = to;
          }
          for (const [name, prefix] of plan.mentions) {
            for (const id of new Set(mentionedIds(prefix, body[name]))) {
              const to = newIdOf(name, id);
              if (to) body[name] = (body[name] as string).replaceAll(id, to);
            }
          }
          return body;
        };
        if ('patch' in event) {
          const id = createdIds.get(row) as string;
          // The update may read rows deleted since (a query's reads, at their last values), but
          // only rows of the file: one it names that the file does not hold must be live, as a
          // create's references must, into the file's own tenant too.
          for (const [name, prefix] of plan.mentions) {
            const target = all.find((r) => r.idPrefix === prefix);
            for (const named of mentionedIds(prefix, event.patch[name])) {
              if (byId.has(named) || !target) continue;
              const found = await engine.tx(db, principal, event.at).peek(target, principal.tenantId, named);
              if (found?.is_deleted !== false) {
                throw fieldError('invalid_reference', [
                  {
                    path: `/${name}`,
                    code: 'invalid_reference',
                    message: `${name} names ${named}, which must be a live ${target.name} of this tenant`,
                  },
                ]);
              }
            }
          }
          await engine.update(db, resource, writer(doc), id, rewritten(event.patch), NO_CONDITIONS);
        } else if ('create' in event) {
          const body = rewritten(event.body);
          const created = await engine.create(db, resource, writer(doc), body);
          createdIds.set(row, created.id as string);
          if (typeof doc.id === 'string') newIds.set(doc.id, created.id as string);
          counts[resource.name] = (counts[resource.name] ?? 0) + 1;
        } else if ('remove' in event) {
          // A parent deleted with its children (a cascade) comes first at their common time: its
          // cascade deletes them, and their own deletes find them deleted already. Rows that hold
          // it (`restrict`) may be live, as in the source: a store of an earlier build, where an
          // objective aligned to another was deleted before the API refused that. First, what
          // the source's server kept true as time passed (a status's pace, by the catch-up jobs)
          // is brought to the delete's time: a deleted row keeps what it had then.
          await engine.catchUp(principal.tenantId, db);
          try {
            await engine.remove(db, resource, principal, createdIds.get(row) as string, NO_CONDITIONS, true, false);
          } catch (err) {
            if (!(err instanceof ApiError && err.code === 'not_found')) throw err;
          }
        } else if ('settle' in event) {
          const settle = plan.replay?.settle as NonNullable<NonNullable<typeof plan.replay>['settle']>;
          await settle.run(
            engine.tx(db, writer(doc), event.at),
            principal.tenantId,
            createdIds.get(row) as string,
            doc,
          );
        } else {
          const replay = plan.replay as NonNullable<typeof plan.replay>;
          const id = createdIds.get(row) as string;
          if (replay.system && event.entry.source_type === 'system') {
            await replay.system(engine.tx(db, writer(doc), event.at), principal.tenantId, id, event.entry);
          } else {
            const body = replay.body(event.entry, isoTime(event.time));
            await engine.operate(db, resource, writer(doc), replay.op, id, body);
          }
        }
      } catch (err) {
        if (err instanceof ApiError) {
          // A replayed log entry's error names the entry (`history[50].value: …`), as does the
          // create's error on the value it took from its first entry.
          const entry = 'entry' in event ? `${plan.replay?.field}[${event.index}].` : '';
          const start = 'create' in event ? event.startEntry : undefined;
          const from = start === undefined ? undefined : plan.replay?.from;
          const named = (message: string) =>
            from !== undefined && message.startsWith(`${from}:`)
              ? `${plan.replay?.field}[${start}].value${message.slice(from.length)}`
              : `${entry}${message}`;
          const fields = err.errors?.map((e) => named(e.message)).join('; ');
          throw new TransferError(`${row.where}: ${fields || `${entry}${err.message}`}; nothing was imported`);
        }
        throw err;
      }
      o.progress?.('importing', n + 1, events.length);
    }
  });
  // Each status was set as of its row's last time: bring the paces to now, as a server's sweep would.
  clock.set(now);
  await engine.catchUp(o.tenant);
  return counts;
}
