import { sql } from 'kysely';
import type { AnyField } from '../core/fields.js';
import type { Resource } from '../core/resource.js';
import type { DB, Store } from './database.js';

/** Hidden column holding the lower-cased title that `q` searches (lowered in JS so both stores agree). */
export const SEARCH_COLUMN = '_search';

/** Idempotency records: tenant data (the key leads with tenant_id), kept 24 h. */
export const IDEMPOTENCY_TABLE = 'edm_idempotency_keys';

const NOT_NULL = new Set(['id', 'tenant_id', 'created_at', 'updated_at', 'is_deleted', 'schema_version', 'version']);

export function storedFields(resource: Resource): [string, AnyField][] {
  return Object.entries(resource.allFields).filter(([, f]) => f.column !== null);
}

interface TableSpec {
  name: string;
  columns: { name: string; type: string; notNull: boolean }[];
  primaryKey: string[];
  indexes: { name: string; columns: string[] }[];
}

function resourceTable(store: Store, resource: Resource): TableSpec {
  const columns = storedFields(resource).map(([name, f]) => ({
    name,
    type: store.columnType(f.column ?? 'text'),
    notNull: NOT_NULL.has(name),
  }));
  columns.push({ name: SEARCH_COLUMN, type: store.columnType('text'), notNull: false });
  const indexes: TableSpec['indexes'] = [];
  // Every index of tenant data leads with tenant_id; list sorts end with id (the tie-break).
  for (const field of new Set(['created_at', ...resource.sortable])) {
    indexes.push({ name: `${resource.table}_sort_${field}`, columns: ['tenant_id', field, 'id'] });
  }
  for (const field of resource.filterable) {
    const f = resource.allFields[field];
    if (resource.sortable.includes(field) || f.column === 'json') continue;
    indexes.push({ name: `${resource.table}_filter_${field}`, columns: ['tenant_id', field] });
  }
  return { name: resource.table, columns, primaryKey: ['tenant_id', 'id'], indexes };
}

async function ensureTable(db: DB, spec: TableSpec): Promise<void> {
  const existing = (await db.introspection.getTables()).find((t) => t.name === spec.name);
  if (!existing) {
    let create = db.schema.createTable(spec.name).ifNotExists();
    for (const c of spec.columns) {
      create = create.addColumn(c.name, sql.raw(c.type), (col) => (c.notNull ? col.notNull() : col));
    }
    await create.addPrimaryKeyConstraint(`${spec.name}_pkey`, spec.primaryKey as never).execute();
  } else {
    const have = new Set(existing.columns.map((c) => c.name));
    for (const c of spec.columns) {
      if (!have.has(c.name)) await db.schema.alterTable(spec.name).addColumn(c.name, sql.raw(c.type)).execute();
    }
  }
  for (const index of spec.indexes) {
    await db.schema.createIndex(index.name).ifNotExists().on(spec.name).columns(index.columns).execute();
  }
}

function idempotencyTable(store: Store): TableSpec {
  const t = (kind: Parameters<Store['columnType']>[0]) => store.columnType(kind);
  return {
    name: IDEMPOTENCY_TABLE,
    columns: [
      { name: 'tenant_id', type: t('text'), notNull: true },
      { name: 'scope', type: t('text'), notNull: true },
      { name: 'key', type: t('text'), notNull: true },
      { name: 'fingerprint', type: t('text'), notNull: true },
      { name: 'state', type: t('text'), notNull: true },
      { name: 'claimed_at', type: t('datetime'), notNull: true },
      { name: 'lease_until', type: t('datetime'), notNull: true },
      { name: 'expires_at', type: t('datetime'), notNull: true },
      { name: 'status', type: t('integer'), notNull: false },
      { name: 'headers', type: t('text'), notNull: false },
      { name: 'body', type: t('text'), notNull: false },
    ],
    primaryKey: ['tenant_id', 'scope', 'key'],
    indexes: [{ name: `${IDEMPOTENCY_TABLE}_expires`, columns: ['expires_at'] }],
  };
}

/**
 * Creates or upgrades the schema for the given resources. Safe to run twice, and from two
 * processes at once on PostgreSQL (an advisory lock serializes migrators).
 */
export async function migrate(store: Store, resources: readonly Resource[]): Promise<void> {
  const run = async (db: DB) => {
    for (const resource of resources) await ensureTable(db, resourceTable(store, resource));
    await ensureTable(db, idempotencyTable(store));
  };
  if (store.kind === 'postgres') {
    await store.db.transaction().execute(async (trx) => {
      await sql`SELECT pg_advisory_xact_lock(hashtext('edm.migrate'))`.execute(trx);
      await run(trx);
    });
  } else {
    await run(store.db);
  }
}
