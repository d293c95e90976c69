import { constants, existsSync } from 'node:fs';
import { access } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import type { AnyField, ColumnKind } from '../core/fields.js';
import { DEFAULT_SORT, SEARCH_FOLD, searchText } from '../core/list-query.js';
import { nullDefaultedFields, type Resource } from '../core/resource.js';
import type { TableDef } from '../core/tables.js';
import { type DB, SQLITE_BUSY_TIMEOUT_MS, type Store } from './database.js';

/** Hidden column holding the lower-cased title that `q` searches (lowered in JS so both stores agree). */
export const SEARCH_COLUMN = '_search';

/** Hidden column holding the document's response JSON, written with the row and sent as is by reads. */
export const DOC_COLUMN = '_doc';

/** Facts about the schema's data (platform-internal, undistributed): `search_fold`. */
export const META_TABLE = 'edm_meta';

/** Idempotency records: tenant data (the key leads with tenant_id), kept 24 h. */
export const IDEMPOTENCY_TABLE = 'edm_idempotency_keys';

const NOT_NULL = new Set(['id', 'tenant_id', 'created_at', 'updated_at', 'is_deleted', 'schema_version', 'version']);

/** The columns of a resource's table: its stored fields, then its internal ones. */
export function storedFields(resource: Resource): [string, AnyField][] {
  return [...Object.entries(resource.allFields), ...Object.entries(resource.internal ?? {})].filter(
    ([, f]) => f.column !== null,
  );
}

/** The tables holding these resources' rows: each resource's own and those declared beside it. */
export function dataTables(resources: readonly Resource[]): string[] {
  return resources.flatMap((r) => [r.table, ...(r.tables ?? []).map((t) => t.name)]);
}

/** The name of an index an auxiliary table declares (TableDef.indexes) on these columns. */
function auxIndexName(table: string, columns: readonly string[]): string {
  return `${table}_${columns.join('_')}`;
}

/** DDL of an auxiliary table (a log or a queue) declared beside a resource. */
function auxTable(store: Store, def: TableDef): TableSpec {
  const notNull = new Set(def.notNull ?? def.primaryKey);
  return {
    name: def.name,
    columns: Object.entries(def.columns).map(([name, kind]) => ({
      name,
      type: store.columnType(kind),
      notNull: notNull.has(name),
    })),
    primaryKey: [...def.primaryKey],
    withoutRowid: store.kind === 'sqlite' && def.clustered === true,
    indexes: (def.indexes ?? []).map((columns) => ({
      name: auxIndexName(def.name, columns),
      columns: [...columns],
    })),
  };
}

interface TableSpec {
  name: string;
  columns: { name: string; type: string; notNull: boolean }[];
  primaryKey: string[];
  /** SQLite: the table is its primary key's b-tree (TableDef.clustered). */
  withoutRowid?: boolean;
  /**
   * `gin` (PostgreSQL only) indexes a jsonb column's members, for `tag=` filters. `rows`: what
   * SQLite's planner is told of it (see plannerStats).
   */
  indexes: {
    name: string;
    columns: string[];
    using?: 'gin';
    rows?: readonly number[];
    /** PostgreSQL storage parameters (`WITH (…)`), set on an index an earlier build made too. */
    storage?: Readonly<Record<string, number>>;
    /** PostgreSQL: columns the index carries beside its key (`INCLUDE (…)`), for index-only scans. */
    include?: string[];
    /** A column the index holds only the rows with a value of (ListIndex's `present`). */
    present?: string;
  }[];
  /** Indexes earlier builds made that this one replaced: dropped where they exist. */
  retired?: string[];
  /** SQLite's planner statistics for the primary key (see plannerStats). */
  primaryKeyRows?: readonly number[];
}

/**
 * What SQLite's planner is told of a resource's table (its `sqlite_stat1` rows), instead of
 * what `ANALYZE` would measure: rows in all, rows a tenant holds, and rows one value of a filter
 * matches — few for an id (an objective's key results, an owner's), many for a value of an
 * enum (a status). Without statistics SQLite takes a tenant for ~10 rows, and a filtered list
 * walked the whole tenant in its sort's index until it had a page (an objective's key results:
 * ~50–110 ms on a tenant of 100,000). Measured statistics would follow the data, but they
 * cost a scan of every index (seconds on a large store, under the write lock), and SQLite's
 * value histograms (`sqlite_stat4`) make it prepare a statement again whenever the values
 * bound to it change. A model keeps plans the same on every store, large or small.
 */
export const PLANNER_MODEL = { rows: 1_000_000, perTenant: 10_000, perId: 10, perEnumValue: 2_500 } as const;

/** A b-tree index a list reads (see filterIndex). */
export interface ListIndex {
  name: string;
  field: string;
  columns: string[];
  /** What SQLite's planner is told of it (PLANNER_MODEL, see plannerStats). */
  rows: number[];
  /** The field holds ids: each value taken to match few rows (PLANNER_MODEL's perId). */
  selective: boolean;
  /** One value's rows in `created_at` order, the default sort's. */
  byCreated: boolean;
  /**
   * The column whose empty rows the index leaves out (`WHERE col IS NOT NULL`, presentIn): an
   * equality filter's, since no filter matches an empty value. Null for a sort's, which orders
   * empty values too.
   */
  present: string | null;
}

/** The condition a partial index's rows meet, which a read through it must state too. */
function presentIn(column: string): string {
  return `${quotedName(column)} IS NOT NULL`;
}

/**
 * The b-tree index whose key begins (tenant_id, field), which a list's filter on the field can
 * read: a sort's, which ends with id (the tie-break), or an equality filter's, which ends with
 * the default sort's key, so a filtered list under the default sort is one index range (builds
 * before 2026-12-02 indexed (tenant_id, field) alone, as `_filter_`), and holds only the rows
 * with a value (`present`: no filter matches an empty one; a row without one writes no entry,
 * nor on PostgreSQL does each new version of it; builds before 2026-12-03 indexed every row).
 * Every index of tenant data leads with tenant_id. Null for a field without one (a JSON column's).
 */
export function filterIndex(resource: Resource, field: string): ListIndex | null {
  const { rows, perTenant, perId, perEnumValue } = PLANNER_MODEL;
  if (field === DEFAULT_SORT || resource.sortable.includes(field)) {
    return {
      name: `${resource.table}_sort_${field}`,
      field,
      columns: ['tenant_id', field, 'id'],
      rows: [rows, perTenant, 1, 1],
      selective: false,
      byCreated: false,
      present: null,
    };
  }
  const f = resource.allFields[field];
  if (!resource.filterable.includes(field) || f.column === null || f.column === 'json') return null;
  const selective = !f.enum;
  return {
    name: `${resource.table}_by_${field}`,
    field,
    columns: ['tenant_id', field, DEFAULT_SORT, 'id'],
    rows: [rows, perTenant, selective ? perId : perEnumValue, 1, 1],
    selective,
    byCreated: true,
    present: field,
  };
}

/** The b-tree indexes a resource's lists read: each sort's, then each equality filter's (filterIndex). */
function listIndexes(resource: Resource): ListIndex[] {
  return [...new Set([DEFAULT_SORT, ...resource.sortable, ...resource.filterable])].flatMap(
    (field) => filterIndex(resource, field) ?? [],
  );
}

/** The columns of a resource's table, as `migrate` creates them (what `/readyz` checks are there). */
export function resourceColumns(store: Store, resource: Resource): string[] {
  return resourceTable(store, resource).columns.map((c) => c.name);
}

function resourceTable(store: Store, resource: Resource): TableSpec {
  const columns = storedFields(resource).map(([name, f]) => ({
    name,
    type: store.columnType(f.column ?? 'text'),
    notNull: NOT_NULL.has(name),
  }));
  columns.push({ name: SEARCH_COLUMN, type: store.columnType('text'), notNull: false });
  // Plain text, not jsonb: the stored bytes are the answer, key order and all.
  columns.push({ name: DOC_COLUMN, type: store.columnType('text'), notNull: false });
  const lists = listIndexes(resource);
  const indexes: TableSpec['indexes'] = lists.map(({ name, field, columns, rows, present }) => {
    if (present !== null) return { name, columns, rows, present };
    if (field !== DEFAULT_SORT) return { name, columns, rows };
    // The default sort's index carries the search text too. SQLite: so a `q=` list under that
    // sort tests each row in the index and reads from the table only the rows that hold the
    // text (SQLite seeks a table row only once a condition needs a column the index lacks): a
    // text no title holds, on a tenant of 100,000 key results, 70–78 → 8–11 ms (engine only).
    // Both: a search's rows are found there, read from no table row (Engine.searchedIds;
    // PostgreSQL's index-only scan needs the deleted flag there too).
    return store.kind === 'sqlite'
      ? { name, columns: [...columns, SEARCH_COLUMN], rows: [...rows, 1] }
      : { name, columns, rows, include: ['is_deleted', SEARCH_COLUMN] };
  });
  const retired = lists.filter((i) => i.byCreated).map((i) => `${resource.table}_filter_${i.field}`);
  if (store.kind === 'postgres') {
    // `tag=a,b` is `tags ?| array[…]`: a GIN index answers it (it has no leading column; the
    // query's tenant_id condition is combined with it, and on Citus it runs on one shard).
    for (const { field } of memberTables(resource)) {
      indexes.push({ name: `${resource.table}_filter_${field}`, columns: [field], using: 'gin', storage: GIN_STORAGE });
    }
  }
  const { rows, perTenant } = PLANNER_MODEL;
  return {
    name: resource.table,
    columns,
    primaryKey: ['tenant_id', 'id'],
    indexes,
    retired,
    primaryKeyRows: [rows, perTenant, 1],
  };
}

/**
 * SQLite: the table holding the members of a JSON list field a list filters on (a key result's
 * `tags`), one row per tenant, value and row id, which a `tag=` filter matching few rows reads
 * instead of walking the tenant's rows in the sort's index (Engine.narrowIndex; a tag no row had
 * took 130–210 ms on a tenant of 100,000 key results). The engine writes it with the row
 * (Engine.writeMembers). Null for other fields. PostgreSQL answers such a filter from a GIN index
 * on the column instead (resourceTable).
 */
export function memberTable(resource: Resource, field: string): string | null {
  if (!resource.filterable.includes(field) || resource.allFields[field]?.column !== 'json') return null;
  return `${resource.table}_has_${field}`;
}

/** SQLite's name for the index of a table's primary key (a table with a rowid and a key of its own). */
export function primaryKeyIndex(table: string): string {
  return `sqlite_autoindex_${table}_1`;
}

/**
 * The JSON list fields of a resource that lists filter on, with their member tables
 * (memberTable; SQLite's), whose GIN indexes PostgreSQL keeps instead.
 */
export function memberTables(resource: Resource): { field: string; table: string }[] {
  return resource.filterable.flatMap((field) => {
    const table = memberTable(resource, field);
    return table === null ? [] : [{ field, table }];
  });
}

/**
 * Creates a member table (memberTable). The engine writes its rows with the row's own writes
 * (Engine.writeMembers); a table created here is filled from the rows already stored, with the
 * text members of each one's JSON, which is what the filter's `json_each` reads. (SQLite triggers
 * would keep it whatever wrote the row, but any trigger on the table made each insert of a key
 * result cost ~5–8× as much, measured in bulk: 32 → 236 µs, one that did nothing 120 µs more.)
 */
async function ensureMembers(
  db: DB,
  resource: Resource,
  field: string,
  table: string,
  existing: Map<string, Set<string>>,
): Promise<void> {
  if (existing.has(table)) return;
  await sql`CREATE TABLE ${sql.table(table)} (tenant_id TEXT NOT NULL, value TEXT NOT NULL, id TEXT NOT NULL,
    CONSTRAINT ${sql.id(`${table}_pkey`)} PRIMARY KEY (tenant_id, value, id)) WITHOUT ROWID`.execute(db);
  if (!existing.has(resource.table)) return;
  await sql`INSERT OR IGNORE INTO ${sql.table(table)} (tenant_id, value, id)
    SELECT r.tenant_id, m.value, r.id FROM ${sql.table(resource.table)} AS r, json_each(r.${sql.id(field)}) AS m
    WHERE json_valid(r.${sql.id(field)}) AND m.type = 'text'`.execute(db);
}

/**
 * The GIN indexes' storage parameters. A GIN index takes new entries into a pending list, which
 * every search reads through and a write moves into the index once it outgrows
 * `gin_pending_list_limit` (4 MB by default, or at a VACUUM). Every write of a key result takes an
 * entry (its updates cannot be HOT: they change indexed columns), so under writes the list
 * filled to its 4 MB, and a `tag=` list read it whole: measured on 30,000 key results updated
 * in bulk, a tag no row has took 2.4–8.1 ms as the list grew to 491 pages, against 0.5–1.0 ms at
 * 256 kB (which took the same updates 14.3–14.8 s, against 16.4–17.6 at 4 MB: the writer that
 * outgrows the list moves a smaller one).
 */
const GIN_STORAGE = { gin_pending_list_limit: 256 } as const;

/** Columns of the tables that exist, by table: on PostgreSQL, in the schema being migrated only. */
async function existingTables(store: Store, db: DB, schema: string | null): Promise<Map<string, Set<string>>> {
  const tables = new Map<string, Set<string>>();
  if (store.kind === 'postgres') {
    const { rows } = await sql<{ table: string; column: string }>`
      SELECT c.relname AS table, a.attname AS column
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
      WHERE n.nspname = ${schema} AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped`.execute(db);
    for (const r of rows) tables.set(r.table, (tables.get(r.table) ?? new Set()).add(r.column));
  } else {
    for (const t of await db.introspection.getTables()) tables.set(t.name, new Set(t.columns.map((c) => c.name)));
  }
  return tables;
}

/** An index as it exists: see existingIndexes. */
interface ExistingIndex {
  /** The table it indexes. */
  table: string;
  /** PostgreSQL storage parameters, as `name=value`. */
  options: string[];
  /** Key columns, then included ones, in order. */
  columns: string[];
  /** It holds only the rows its `WHERE` admits. */
  partial: boolean;
}

/**
 * The indexes that exist (in the schema being migrated, on PostgreSQL). Checked before creating
 * one: PostgreSQL's `CREATE INDEX IF NOT EXISTS` locks its table (SHARE) before it finds the
 * index there, and a migration holds what it locked to its end, so a migration with nothing to
 * do (every `edm import`, every `edm serve` at start) would queue behind running servers'
 * writes, and they behind it, table after table, into deadlocks.
 */
async function existingIndexes(store: Store, db: DB, schema: string | null): Promise<Map<string, ExistingIndex>> {
  // With their columns, in order, and whether they hold only some rows (an index whose columns
  // or partiality changed is made again: ensureTable).
  if (store.kind === 'postgres') {
    // With their storage parameters (`reloptions`, as `name=value`), and their key columns
    // followed by the columns they include.
    const { rows } = await sql<{
      name: string;
      table: string;
      options: string[] | null;
      columns: string[];
      partial: boolean;
    }>`
      SELECT c.relname AS name, t.relname AS table, c.reloptions AS options,
        array(SELECT a.attname::text FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
          ORDER BY a.attnum) AS columns,
        x.indpred IS NOT NULL AS partial
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_catalog.pg_index x ON x.indexrelid = c.oid
      JOIN pg_catalog.pg_class t ON t.oid = x.indrelid
      WHERE n.nspname = ${schema} AND c.relkind IN ('i', 'I')`.execute(db);
    return new Map(
      rows.map((r) => [r.name, { table: r.table, options: r.options ?? [], columns: r.columns, partial: r.partial }]),
    );
  }
  const { rows } = await sql<{ name: string; table: string; column: string | null; partial: number }>`
    SELECT m.name AS name, m.tbl_name AS "table", i.name AS "column", l.partial AS partial
    FROM sqlite_master m, pragma_index_info(m.name) i, pragma_index_list(m.tbl_name) l
    WHERE m.type = 'index' AND l.name = m.name ORDER BY m.name, i.seqno`.execute(db);
  const found = new Map<string, ExistingIndex>();
  for (const { name, table, column, partial } of rows) {
    const index = found.get(name) ?? { table, options: [], columns: [], partial: partial === 1 };
    index.columns.push(column ?? '');
    found.set(name, index);
  }
  return found;
}

/**
 * The index an earlier build declared on what is now a table's key (the check-in log's, before
 * 2026-12-03), where it exists: named as a declared index is (auxIndexName), on the key's columns,
 * of every row. A twin of the key, not kept. Null where there is none, or an index of that name
 * is another (an operator's), which stays.
 */
function keyTwin(spec: TableSpec, indexes: Map<string, ExistingIndex>): string | null {
  const name = auxIndexName(spec.name, spec.primaryKey);
  const found = indexes.get(name);
  const twin =
    found !== undefined &&
    found.table.toLowerCase() === spec.name.toLowerCase() &&
    !found.partial &&
    found.columns.join() === spec.primaryKey.join() &&
    !spec.indexes.some((i) => i.name === name);
  return twin ? name : null;
}

/** A table's primary key as it exists: see existingKey. */
interface ExistingKey {
  columns: string[];
  /** PostgreSQL: the constraint's name. */
  constraint: string | null;
  /** SQLite: the table is the key's b-tree. */
  withoutRowid: boolean;
}

/** The primary key of a table that exists (in the schema being migrated, on PostgreSQL). */
async function existingKey(store: Store, db: DB, schema: string | null, table: string): Promise<ExistingKey> {
  if (store.kind === 'postgres') {
    const { rows } = await sql<{ name: string; columns: string[] }>`
      SELECT c.conname AS name,
        array(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, i)
          JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum ORDER BY k.i) AS columns
      FROM pg_catalog.pg_constraint c
      JOIN pg_catalog.pg_class t ON t.oid = c.conrelid
      JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
      WHERE n.nspname = ${schema} AND t.relname = ${table} AND c.contype = 'p'`.execute(db);
    return { columns: rows[0]?.columns ?? [], constraint: rows[0]?.name ?? null, withoutRowid: false };
  }
  const key = await sql<{ name: string }>`
    SELECT name FROM pragma_table_info(${table}) WHERE pk > 0 ORDER BY pk`.execute(db);
  const list = await sql<{ wr: number }>`SELECT wr FROM pragma_table_list(${table})`.execute(db);
  return { columns: key.rows.map((r) => r.name), constraint: null, withoutRowid: list.rows[0]?.wr === 1 };
}

/** Creates the table `spec` declares; under `copy`, a name that must not be taken (rekey's copy). */
async function createTable(db: DB, spec: TableSpec, copy?: string): Promise<void> {
  let create = copy === undefined ? db.schema.createTable(spec.name).ifNotExists() : db.schema.createTable(copy);
  for (const c of spec.columns) {
    create = create.addColumn(c.name, sql.raw(c.type), (col) => (c.notNull ? col.notNull() : col));
  }
  create = create.addPrimaryKeyConstraint(`${spec.name}_pkey`, spec.primaryKey as never);
  await (spec.withoutRowid ? create.modifyEnd(sql`WITHOUT ROWID`) : create).execute();
}

/**
 * Gives a table an earlier build keyed otherwise this build's primary key, inside the
 * migration's transaction (the check-in log's, 2026-12-03). The rows stay as they were, and so
 * does what an operator added. PostgreSQL replaces the key's constraint in place (a unique
 * index built on the table, which holds its reads and writes meanwhile). SQLite makes the table
 * again (a `WITHOUT ROWID` table cannot become one in place), as SQLite's documentation has a
 * table's schema changed: a new table under another name, every row copied into it in the new
 * key's order, the old table dropped and the new one renamed, then the old one's indexes and
 * triggers made again from their SQL. The renaming runs under `legacy_alter_table`: views and
 * other tables' triggers name the table, and read the new one once it has the name (the
 * renaming that rewrites them would refuse: for that moment, the table they name is gone). A
 * column an operator added is refused, before anything changes: its definition (a default, a
 * collation, a check, a generated value) cannot be read back whole to be made again.
 */
async function rekey(
  store: Store,
  db: DB,
  spec: TableSpec,
  key: ExistingKey,
  indexes: Map<string, ExistingIndex>,
): Promise<void> {
  const table = quotedName(spec.name);
  const columns = spec.primaryKey.map(quotedName).join(', ');
  if (store.kind === 'postgres') {
    const drop = key.constraint === null ? '' : `DROP CONSTRAINT ${quotedName(key.constraint)}, `;
    await sql
      .raw(`ALTER TABLE ${table} ${drop}ADD CONSTRAINT ${quotedName(`${spec.name}_pkey`)} PRIMARY KEY (${columns})`)
      .execute(db);
    return;
  }
  // Every column, generated ones too.
  const had = await sql<{ name: string }>`SELECT name FROM pragma_table_xinfo(${spec.name})`.execute(db);
  const extra = had.rows.filter((c) => !spec.columns.some((d) => d.name === c.name)).map((c) => c.name);
  if (extra.length > 0) {
    throw new Error(
      `${spec.name} has columns this build does not declare (${extra.join(', ')}): its key changes this release, ` +
        'which on SQLite makes the table again, and their definitions cannot be made again as they are. ' +
        'Move them to a table of your own and drop them (ALTER TABLE … DROP COLUMN), then run edm migrate again',
    );
  }
  // Its indexes and triggers (a trigger keeps the table's name as written), but the key's twin.
  const twin = keyTwin(spec, indexes);
  const saved = await sql<{ name: string; sql: string }>`
    SELECT name, sql FROM sqlite_master
    WHERE lower(tbl_name) = lower(${spec.name}) AND type IN ('index', 'trigger') AND sql IS NOT NULL
    ORDER BY type, name`.execute(db);
  const copy = `${spec.name}_rekeyed`;
  await createTable(db, spec, copy);
  const all = spec.columns.map((c) => quotedName(c.name)).join(', ');
  await sql.raw(`INSERT INTO ${quotedName(copy)} (${all}) SELECT ${all} FROM ${table} ORDER BY ${columns}`).execute(db);
  await sql.raw(`DROP TABLE ${table}`).execute(db);
  const legacy = (await sql<{ legacy_alter_table: number }>`PRAGMA legacy_alter_table`.execute(db)).rows[0];
  await sql`PRAGMA legacy_alter_table = ON`.execute(db);
  try {
    await sql.raw(`ALTER TABLE ${quotedName(copy)} RENAME TO ${table}`).execute(db);
  } finally {
    await sql.raw(`PRAGMA legacy_alter_table = ${legacy?.legacy_alter_table ? 'ON' : 'OFF'}`).execute(db);
  }
  for (const { name, sql: statement } of saved.rows) if (name !== twin) await sql.raw(statement).execute(db);
  // The old key's own index (a table with a rowid and a key) and the twin went with the table;
  // the others are there again, as they were.
  for (const [name, index] of indexes) {
    const gone = name.startsWith('sqlite_autoindex_') || name === twin;
    if (gone && index.table.toLowerCase() === spec.name.toLowerCase()) indexes.delete(name);
  }
  // What an `ANALYZE` measured of the old table's b-trees (kept under the table's name by the
  // drop): no longer what is there.
  for (const stat of ['sqlite_stat1', 'sqlite_stat4']) {
    const found = await sql`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ${stat}`.execute(db);
    if (found.rows.length > 0) await sql`DELETE FROM ${sql.table(stat)} WHERE tbl = ${spec.name}`.execute(db);
  }
}

async function ensureTable(
  store: Store,
  db: DB,
  schema: string | null,
  spec: TableSpec,
  existing: Map<string, Set<string>>,
  indexes: Map<string, ExistingIndex>,
): Promise<void> {
  const have = existing.get(spec.name);
  if (!have) {
    await createTable(db, spec);
  } else {
    for (const c of spec.columns) {
      if (!have.has(c.name)) await db.schema.alterTable(spec.name).addColumn(c.name, sql.raw(c.type)).execute();
    }
    const key = await existingKey(store, db, schema, spec.name);
    if (key.columns.join() !== spec.primaryKey.join() || key.withoutRowid !== (spec.withoutRowid ?? false)) {
      await rekey(store, db, spec, key, indexes);
    }
    // The key's twin, left from before the key changed or made again by an earlier build's
    // migration: dropped. An operator's indexes stay.
    const twin = keyTwin(spec, indexes);
    if (twin !== null) {
      await db.schema.dropIndex(twin).execute();
      indexes.delete(twin);
    }
  }
  for (const index of spec.indexes) {
    const storage = Object.entries(index.storage ?? {}).map(([name, value]) => `${name} = ${value}`);
    const found = indexes.get(index.name);
    const columns = [...index.columns, ...(index.include ?? [])].join();
    if (found && (found.columns.join() !== columns || found.partial !== (index.present !== undefined))) {
      // An index an earlier build made with other columns, or of all rows (an equality filter's,
      // before 2026-12-03), is made again, inside the migration's transaction (SQLite: ~0.2–0.3 s
      // per 100,000 rows under the write lock; PostgreSQL holds the table's writes, and its reads
      // too once dropped, while it builds).
      await db.schema.dropIndex(index.name).execute();
    } else if (found) {
      // An index an earlier build made without them: set (a lock that neither reads nor writes wait for).
      const missing = storage.filter((s) => !found.options.includes(s.replace(' = ', '=')));
      if (missing.length > 0)
        await sql`ALTER INDEX ${sql.id(index.name)} SET (${sql.raw(missing.join(', '))})`.execute(db);
      continue;
    }
    let create = db.schema.createIndex(index.name).ifNotExists().on(spec.name).columns(index.columns);
    if (index.using) create = create.using(index.using);
    const include = index.include ? ` include (${index.include.map((c) => `"${c}"`).join(', ')})` : '';
    const options = storage.length > 0 ? ` with (${storage.join(', ')})` : '';
    const where = index.present ? ` WHERE ${presentIn(index.present)}` : '';
    await sql.raw(`${create.compile().sql}${include}${options}${where}`).execute(db);
  }
  // After the indexes that replace them, so no list is left without one.
  for (const name of spec.retired ?? []) {
    if (indexes.has(name)) await db.schema.dropIndex(name).ifExists().execute();
  }
}

/**
 * Writes the planner statistics of the resources' tables (PLANNER_MODEL) into SQLite's
 * `sqlite_stat1`, where they differ from what is there, and drops any value histograms
 * (`sqlite_stat4`, which an operator's `ANALYZE` writes: see PLANNER_MODEL). Other tables keep
 * what they have: SQLite's defaults, or what an `ANALYZE` measured. `ANALYZE sqlite_schema`
 * creates the statistics tables and loads the statistics into this connection; other
 * connections load them when they next read the schema (the schema version does not change for
 * statistics alone: a migration that changes indexes too, or a new process).
 */
async function plannerStats(db: DB, tables: readonly TableSpec[]): Promise<void> {
  const want = new Map<string, string>();
  for (const t of tables) {
    if (t.primaryKeyRows) want.set(`${t.name}\0${primaryKeyIndex(t.name)}`, t.primaryKeyRows.join(' '));
    for (const index of t.indexes) if (index.rows) want.set(`${t.name}\0${index.name}`, index.rows.join(' '));
  }
  await sql`ANALYZE sqlite_schema`.execute(db);
  const names = tables.map((t) => t.name);
  const { rows } = await sql<{ tbl: string; idx: string | null; stat: string }>`
    SELECT tbl, idx, stat FROM sqlite_stat1 WHERE tbl IN (${sql.join(names)})`.execute(db);
  // Only where SQLite was built with histograms (better-sqlite3's is).
  const stat4 = (await sql`SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat4'`.execute(db)).rows.length > 0;
  const histograms = stat4 ? (await sql`SELECT 1 FROM sqlite_stat4 LIMIT 1`.execute(db)).rows.length : 0;
  const have = new Map(rows.map((r) => [`${r.tbl}\0${r.idx}`, r.stat]));
  const same = have.size === want.size && [...want].every(([key, stat]) => have.get(key) === stat);
  if (same && histograms === 0) return;
  await sql`DELETE FROM sqlite_stat1 WHERE tbl IN (${sql.join(names)})`.execute(db);
  if (stat4) await sql`DELETE FROM sqlite_stat4`.execute(db);
  for (const [key, stat] of want) {
    const [tbl, idx] = key.split('\0');
    await sql`INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (${tbl}, ${idx}, ${stat})`.execute(db);
  }
  await sql`ANALYZE sqlite_schema`.execute(db);
}

/** How many rows (events) a long PostgreSQL transaction writes between looks at its tables' sizes. */
const SIZE_CHECK_EVERY = 128;

/** Below this size (bytes: 8 pages) a table is read whole in no time, whatever its plan: not analyzed yet. */
const SMALL_TABLE = 65_536;

/**
 * PostgreSQL, in one transaction that writes many rows (an import): keeps the planner's
 * statistics of `tables`, and the plans made from them, in step with the tables' sizes.
 * Autovacuum analyzes no rows that are not committed, and a prepared statement's generic plan,
 * chosen after its fifth run, is made for the sizes the tables had then and kept while they
 * grow: one made while a table was near empty scans it whole on every run (3,000 key results
 * into a new schema once took 198 s instead of 12–14). So every SIZE_CHECK_EVERY rows written
 * the tables' sizes are read (one statement), and the tables that have doubled since they were
 * last analyzed (or since the start; past SMALL_TABLE) are analyzed (ANALYZE counts the
 * transaction's own rows): the new statistics invalidate the plans cached on them, which are
 * made again for what they hold.
 *
 * Where they cannot be analyzed now (another transaction analyzing them, which holds their
 * lock until it ends: a second import beside this one; waited for 10 ms at most) or at all (a
 * table this role does not own), the session's plans are discarded instead each time the tables
 * double (`DISCARD PLANS`: made again, for the sizes the tables have then), and an analyze is
 * tried again at the next look. Planning every run instead (`plan_cache_mode =
 * force_custom_plan`, what imports did before) plans for the values of each run, and the
 * statistics another tenant's rows left (another import, committed meanwhile) told it this
 * tenant has no rows, so any index that begins with the tenant served a read by id: one import
 * of two at once took 45–67 s instead of 7–10. Generic plans count on no one tenant's share.
 * An import of 20,000 key results into a new schema: ~49 s planning every run, ~31 s this way.
 * `grown(written)` is called with the rows written so far (events played: each writes one or more).
 */
export async function keepPlannerStats(
  db: DB,
  tables: readonly string[],
): Promise<{ grown(written: number): Promise<void> }> {
  const sizes = async () =>
    (
      await sql<{ size: string }>`
        SELECT pg_relation_size(t) AS size FROM unnest(${tables}::regclass[]) WITH ORDINALITY AS u(t, i) ORDER BY i`.execute(
        db,
      )
    ).rows.map((r) => Number(r.size));
  const { rows } = await sql<{ owned: boolean; timeout: string }>`
    SELECT coalesce(bool_and(pg_has_role(relowner, 'USAGE')), false) AS owned,
      current_setting('lock_timeout') AS timeout
    FROM pg_class WHERE oid = ANY(${tables}::regclass[])`.execute(db);
  const { owned, timeout } = rows[0] as { owned: boolean; timeout: string };
  let analyzable = owned;
  // Each table's size when it was last analyzed, and when the plans were last made again.
  let analyzed = await sizes();
  let planned = analyzed;
  const doubled = (now: number[], since: number[]) =>
    tables.filter((_, i) => now[i] >= 2 * Math.max(since[i], SMALL_TABLE));
  /** Whether `names` were analyzed: false where another transaction holds their lock, or they are not this role's. */
  const analyze = async (names: string[]): Promise<boolean> => {
    // Within a savepoint, waiting at most a moment for the tables' lock: a transaction
    // analyzing them holds it until it ends, and this one must not wait for a whole import.
    await sql`SAVEPOINT edm_analyze`.execute(db);
    try {
      await sql`SELECT set_config('lock_timeout', '10ms', true)`.execute(db);
      await sql.raw(`ANALYZE ${names.map(quotedName).join(', ')}`).execute(db);
      await sql`SELECT set_config('lock_timeout', ${timeout}, true)`.execute(db);
      await sql`RELEASE SAVEPOINT edm_analyze`.execute(db);
      return true;
    } catch (err) {
      // 55P03: the lock was not free; 42501: not this role's to analyze.
      const code = (err as { code?: string }).code;
      if (code !== '55P03' && code !== '42501') throw err;
      if (code === '42501') analyzable = false;
      await sql`ROLLBACK TO SAVEPOINT edm_analyze`.execute(db);
      await sql`RELEASE SAVEPOINT edm_analyze`.execute(db);
      return false;
    }
  };
  return {
    async grown(written) {
      if (written === 0 || written % SIZE_CHECK_EVERY !== 0) return;
      const now = await sizes();
      const grown = doubled(now, analyzed);
      if (grown.length === 0) return;
      if (analyzable && (await analyze(grown))) {
        analyzed = analyzed.map((size, i) => (grown.includes(tables[i]) ? now[i] : size));
        planned = planned.map((size, i) => (grown.includes(tables[i]) ? now[i] : size));
        return;
      }
      if (doubled(now, planned).length === 0) return;
      await sql`DISCARD PLANS`.execute(db);
      planned = now;
    },
  };
}

/** The idempotency table's columns: kind, and whether it is NOT NULL. */
const IDEMPOTENCY_SPEC: readonly (readonly [string, ColumnKind, boolean])[] = [
  ['tenant_id', 'text', true],
  ['scope', 'text', true],
  ['key', 'text', true],
  ['fingerprint', 'text', true],
  ['state', 'text', true],
  ['claimed_at', 'datetime', true],
  ['lease_until', 'datetime', true],
  ['expires_at', 'datetime', true],
  ['status', 'integer', false],
  ['headers', 'text', false],
  ['body', 'text', false],
];

/** Every column of the idempotency table, for reads that name their columns. */
export const IDEMPOTENCY_COLUMNS = IDEMPOTENCY_SPEC.map(([name]) => name);

function idempotencyTable(store: Store): TableSpec {
  return {
    name: IDEMPOTENCY_TABLE,
    columns: IDEMPOTENCY_SPEC.map(([name, kind, notNull]) => ({ name, type: store.columnType(kind), notNull })),
    primaryKey: ['tenant_id', 'scope', 'key'],
    indexes: [{ name: `${IDEMPOTENCY_TABLE}_expires`, columns: ['expires_at'] }],
  };
}

function metaTable(store: Store): TableSpec {
  return {
    name: META_TABLE,
    columns: [
      { name: 'key', type: store.columnType('text'), notNull: true },
      { name: 'value', type: store.columnType('text'), notNull: true },
    ],
    primaryKey: ['key'],
    indexes: [],
  };
}

/**
 * Folds the search column of rows stored under an earlier searchText again (SEARCH_FOLD says
 * which one the data holds; tables created by this migration have no rows to fold). A keyset
 * walk in pages, writing only rows whose folded title changed (most titles fold as before).
 */
async function refold(db: DB, resources: readonly Resource[], existing: Map<string, Set<string>>): Promise<void> {
  const stored = await db.selectFrom(META_TABLE).select('value').where('key', '=', 'search_fold').executeTakeFirst();
  if (stored?.value === String(SEARCH_FOLD)) return;
  for (const resource of resources) {
    if (!existing.has(resource.table)) continue;
    const title = resource.titleField;
    if (resource.allFields[title].column === null) throw new Error(`${resource.name}.${title}: q needs a column`);
    let after: [string, string] | null = null;
    for (;;) {
      let q = db
        .selectFrom(resource.table)
        .select(['tenant_id', 'id', title, SEARCH_COLUMN])
        .orderBy('tenant_id')
        .orderBy('id')
        .limit(2000);
      if (after) q = q.where(sql<boolean>`(tenant_id, id) > (${after[0]}, ${after[1]})`);
      const rows = await q.execute();
      for (const row of rows) {
        const text = row[title];
        const folded = typeof text === 'string' ? searchText(text) : null;
        if (folded === row[SEARCH_COLUMN]) continue;
        await db
          .updateTable(resource.table)
          .set({ [SEARCH_COLUMN]: folded })
          .where('tenant_id', '=', row.tenant_id as string)
          .where('id', '=', row.id as string)
          .execute();
      }
      if (rows.length < 2000) break;
      const last = rows[rows.length - 1];
      after = [last.tenant_id as string, last.id as string];
    }
  }
  await db.deleteFrom(META_TABLE).where('key', '=', 'search_fold').execute();
  await db
    .insertInto(META_TABLE)
    .values({ key: 'search_fold', value: String(SEARCH_FOLD) })
    .execute();
}

/**
 * Brings the columns of rows stored under an older schema version to what their upgrade on read
 * answers, for the fields a write sending null now gives the default (nullDefaultedFields), then
 * for the columns the upgrade derives again (ResourceOptions.upgradedColumns): builds before
 * stored the null (or had no such column, added NULL by this migration), or a value the upgrade
 * replaces, and lists filter, sort and roll up on columns, not on the upgraded document. Only those columns change:
 * an older row is answered from its columns through the upgrade hook (never from its stored
 * document), so no answer, version or ETag changes; its next write stores it whole at the current
 * version. Nulls are looked for with a read first, so a migration with none to fill writes none.
 */
async function upgradeColumns(
  store: Store,
  db: DB,
  resources: readonly Resource[],
  existing: Map<string, Set<string>>,
): Promise<void> {
  for (const resource of resources) {
    // A table created by this migration has no rows.
    if (!existing.has(resource.table)) continue;
    const fields = nullDefaultedFields(resource);
    const found =
      fields.length > 0 &&
      (await db
        .selectFrom(resource.table)
        .select('id')
        .where('schema_version', '<', resource.schemaVersion)
        .where((eb) => eb.or(fields.map(([name]) => eb(name, 'is', null))))
        .limit(1)
        .executeTakeFirst());
    for (const [name, field] of found ? fields : []) {
      await db
        .updateTable(resource.table)
        .set({ [name]: store.encode(field, field.default) })
        .where(name, 'is', null)
        .where('schema_version', '<', resource.schemaVersion)
        .execute();
    }
    // Then the columns its upgrade derives again (ResourceOptions.upgradedColumns), from the
    // defaults just set (a key result's direction from a metric_type that was null).
    for (const { column, set, where } of resource.upgradedColumns ?? []) {
      await db
        .updateTable(resource.table)
        .set({ [column]: sql.raw(set) })
        .where(sql.raw<boolean>(where))
        .where('schema_version', '<', resource.schemaVersion)
        .execute();
    }
  }
}

/** A table's or a column's name quoted for SQL (both stores quote identifiers with double quotes). */
function quotedName(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * A statement that reads no row and fails unless the schema holds every resource's table with
 * every column this build stores (a schema of an earlier build lacks the columns added since),
 * and on SQLite every index a list may name in `INDEXED BY` (Engine.narrowIndex: a store of a
 * build before 2026-12-02 has its filters' indexes under other names) and every member table
 * (memberTable: added 2026-12-02 too).
 */
export function schemaProbe(store: Store, resources: readonly Resource[]) {
  const columns = resources.map(
    (r) =>
      `SELECT 1 FROM (SELECT ${resourceColumns(store, r).map(quotedName).join(', ')} FROM ${quotedName(r.table)} WHERE 1 = 0) AS probe`,
  );
  const indexes =
    store.kind === 'sqlite'
      ? resources.flatMap((r) => [
          // A partial index is read only under its condition (SQLite has no plan for it otherwise).
          ...listIndexes(r).map(
            ({ name, present }) =>
              `SELECT 1 FROM (SELECT 1 FROM ${quotedName(r.table)} INDEXED BY ${quotedName(name)} WHERE ${present === null ? '' : `${presentIn(present)} AND `}1 = 0) AS probe`,
          ),
          ...memberTables(r).map(
            ({ table }) => `SELECT 1 FROM (SELECT tenant_id, value, id FROM ${quotedName(table)} WHERE 1 = 0) AS probe`,
          ),
        ])
      : [];
  return sql.raw([...columns, ...indexes].join(' UNION ALL '));
}

/**
 * Why this PostgreSQL session would not work in the store's schema, or null: its `search_path`,
 * which EDM sets with the startup option `-c search_path=<schema>`, resolves to another one. A
 * pooler may drop that option (PgBouncer refuses it, or with `ignore_startup_parameters` ignores
 * it): the tables would be made, read and written in `public`, where another deployment's are.
 */
export async function searchPathProblem(store: Store, db: DB = store.db): Promise<string | null> {
  if (store.kind !== 'postgres' || store.schema === null) return null;
  const { rows } = await sql<{ s: string | null; there: boolean; usable: boolean | null }>`
    SELECT current_schema() AS s, n.oid IS NOT NULL AS there,
           CASE WHEN n.oid IS NOT NULL THEN has_schema_privilege(n.oid, 'USAGE') END AS usable
      FROM (SELECT 1) AS one LEFT JOIN pg_namespace n ON n.nspname = ${store.schema}`.execute(db);
  const current = rows[0]?.s ?? null;
  // A schema not made yet resolves to none: `edm migrate` makes it; until then there is nothing to read.
  if (current === store.schema || (current === null && !rows[0]?.there)) return null;
  // One this role may not use is left out of the search_path too: a grant missing, not a pooler.
  if (rows[0]?.usable === false) {
    return `this role may not use the schema ${store.schema} (?schema=): GRANT USAGE ON SCHEMA ${store.schema} TO <the role EDM logs in as>`;
  }
  return `this session works in ${current === null ? 'no schema' : `the schema ${current}`}, not in ${store.schema} (?schema=): something between EDM and PostgreSQL dropped the startup option that sets its search_path (PgBouncer's ignore_startup_parameters does); set it on the role instead (ALTER ROLE … SET search_path = ${store.schema}), or connect directly`;
}

/**
 * The `statement_timeout` a PostgreSQL session runs with, in milliseconds (null on SQLite). EDM
 * sets it as a startup parameter, which a pooler may drop (PgBouncer's ignore_startup_parameters).
 */
export async function sessionStatementTimeoutMs(store: Store): Promise<number | null> {
  if (store.kind !== 'postgres') return null;
  const { rows } = await sql<{ ms: number }>`
    SELECT setting::int AS ms FROM pg_settings WHERE name = 'statement_timeout'`.execute(store.db);
  return rows[0]?.ms ?? null;
}

/**
 * Whether a write would be taken now: PostgreSQL takes none on a standby (a primary demoted in a
 * failover) or under `default_transaction_read_only`; this session's setting says either way.
 * A SQLite file takes none once it, or its WAL, may not be written (a file system remounted
 * read-only after errors, a file made immutable): SQLite opens such a file read-only, and the
 * connection, open, says nothing until a write fails.
 */
export async function takesWrites(store: Store): Promise<boolean> {
  if (store.kind !== 'postgres') {
    if (store.file === null) return true;
    const files = [store.file, `${store.file}-wal`];
    const writable = await Promise.all(
      files.map((f) =>
        access(f, constants.W_OK).then(
          () => true,
          () => false,
        ),
      ),
    );
    // The WAL is there while the store is open in WAL mode; one missing is no refusal.
    return writable[0] && (writable[1] || !existsSync(files[1]));
  }
  const { rows } = await sql<{ ro: string }>`SELECT current_setting('transaction_read_only') AS ro`.execute(store.db);
  return rows[0]?.ro === 'off';
}

/**
 * Whether the database lacks a table or column this build uses: a server started with
 * `--no-migrate` (or `EDM_AUTO_MIGRATE=0`) before `edm migrate` ran, or a schema an earlier build
 * made. PostgreSQL's undefined_table and undefined_column; SQLite's "no such table/column".
 */
export function isUnmigrated(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (code === '42P01' || code === '42703') return true;
  return (
    code === 'SQLITE_ERROR' && /^(no such (table|column|index)\b|table \S+ has no column named )/.test(err.message)
  );
}

/** The meta row holding the fingerprint of the server secret the database was last served with. */
const SECRET_FINGERPRINT = 'secret_fingerprint';

/** The fingerprint (ServerKeys.fingerprint) of the server secret last served with; null: never served. */
export async function servedSecretFingerprint(db: DB): Promise<string | null> {
  const row = await db.selectFrom(META_TABLE).select('value').where('key', '=', SECRET_FINGERPRINT).executeTakeFirst();
  return (row?.value as string | undefined) ?? null;
}

/**
 * Records `fingerprint` (ServerKeys.fingerprint) as the server secret this database is served
 * with, and answers the one recorded before it (null: none was). A database another secret served
 * before holds connector secrets sealed, and webhook URLs and cursors signed, under that one.
 */
export async function recordSecretFingerprint(db: DB, fingerprint: string): Promise<string | null> {
  const before = await servedSecretFingerprint(db);
  if (before === fingerprint) return fingerprint;
  if (before !== null) {
    await db.updateTable(META_TABLE).set({ value: fingerprint }).where('key', '=', SECRET_FINGERPRINT).execute();
  } else {
    await db
      .insertInto(META_TABLE)
      .values({ key: SECRET_FINGERPRINT, value: fingerprint })
      .onConflict((oc) => oc.column('key').doNothing())
      .execute();
  }
  return before;
}

/** The meta row a readiness probe writes to learn whether the store takes writes again. */
const WRITE_PROBE = 'write_probe';

/** Writes the time `at` to the write probe's meta row (see the readiness check in app.ts). */
export async function recordWriteProbe(db: DB, at: string): Promise<void> {
  await db
    .insertInto(META_TABLE)
    .values({ key: WRITE_PROBE, value: at })
    .onConflict((oc) => oc.column('key').doUpdateSet({ value: at }))
    .execute();
}

/** The advisory lock key migrators of one PostgreSQL schema share: `(hashtext(MIGRATE_LOCK), hashtext(schema))`. */
export const MIGRATE_LOCK = 'edm.migrate';

/**
 * Creates or upgrades the schema for the given resources. Safe to run twice, and from two
 * processes at once: migrators of one PostgreSQL schema take a transaction-scoped advisory lock
 * first, of one SQLite file its write lock, so the second runs after the first committed and
 * finds everything in place.
 */
export async function migrate(store: Store, resources: readonly Resource[]): Promise<void> {
  const run = async (db: DB, schema: string | null) => {
    const existing = await existingTables(store, db, schema);
    const indexes = await existingIndexes(store, db, schema);
    const tables = resources.map((resource) => resourceTable(store, resource));
    for (const [i, resource] of resources.entries()) {
      await ensureTable(store, db, schema, tables[i], existing, indexes);
      for (const table of resource.tables ?? [])
        await ensureTable(store, db, schema, auxTable(store, table), existing, indexes);
      if (store.kind === 'sqlite') {
        for (const { field, table } of memberTables(resource))
          await ensureMembers(db, resource, field, table, existing);
      }
    }
    if (store.kind === 'sqlite') await plannerStats(db, tables);
    await ensureTable(store, db, schema, idempotencyTable(store), existing, indexes);
    await ensureTable(store, db, schema, metaTable(store), existing, indexes);
    await refold(db, resources, existing);
    await upgradeColumns(store, db, resources, existing);
  };
  if (store.kind === 'postgres') {
    await store.db.transaction().execute(async (trx) => {
      // Waiting for another migrator, and building indexes, may take longer than a request may.
      await sql`SET LOCAL statement_timeout = 0`.execute(trx);
      const schema =
        store.schema ?? (await sql<{ s: string | null }>`SELECT current_schema() AS s`.execute(trx)).rows[0]?.s ?? null;
      if (schema === null) throw new Error('no schema to migrate: the search_path names no existing schema');
      await sql`SELECT pg_advisory_xact_lock(hashtext(${MIGRATE_LOCK}), hashtext(${schema}))`.execute(trx);
      // Statements after the lock see what an earlier migrator committed (READ COMMITTED).
      // Made only where it is missing: CREATE SCHEMA IF NOT EXISTS asks for CREATE on the
      // database even when the schema is there, which a role that owns only its schema lacks.
      if (store.schema) {
        const { rows } = await sql<{ there: boolean }>`
          SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = ${store.schema}) AS there`.execute(trx);
        if (!rows[0]?.there) await sql`CREATE SCHEMA IF NOT EXISTS ${sql.id(store.schema)}`.execute(trx);
      }
      const wrong = await searchPathProblem(store, trx);
      if (wrong) throw new Error(wrong);
      await run(trx, schema);
    });
  } else {
    // One migrator at a time on a SQLite file too: the write lock is taken before the schema is
    // read, so a second migrator (an `edm serve` started beside an `edm migrate`) finds what the
    // first added, not the columns it read before, which it added again ("duplicate column").
    await lockSqlite(store.db);
    try {
      await run(store.db, null);
      await sql`COMMIT`.execute(store.db);
    } catch (err) {
      await sql`ROLLBACK`.execute(store.db).catch(() => {});
      throw err;
    }
  }
}

/** How long a SQLite migrator waits for another's write lock (a large store's indexes take a while). */
const SQLITE_MIGRATE_WAIT_MS = 10 * 60_000;

/**
 * Takes the SQLite file's write lock (BEGIN IMMEDIATE), waiting for another holder between
 * turns of the event loop: SQLite's own busy handler waits synchronously, and the holder may be
 * this very process (a test's other connection), which could then never let go.
 */
async function lockSqlite(db: DB): Promise<void> {
  await sql`PRAGMA busy_timeout = 0`.execute(db);
  try {
    for (const deadline = Date.now() + SQLITE_MIGRATE_WAIT_MS; ; ) {
      try {
        await sql`BEGIN IMMEDIATE`.execute(db);
        return;
      } catch (err) {
        if ((err as { code?: unknown }).code !== 'SQLITE_BUSY' || Date.now() > deadline) throw err;
      }
      await sleep(50);
    }
  } finally {
    await sql.raw(`PRAGMA busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`).execute(db);
  }
}
