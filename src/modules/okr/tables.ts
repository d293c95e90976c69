import { defineTable } from '../../core/tables.js';

/**
 * Every snapshot of every key result: the full check-in log (`history` shows the newest 100).
 * Keyed, and on SQLite stored, in the order its pages read it (a key result's, by time): one
 * b-tree on SQLite, one index on PostgreSQL. Builds before 2026-12-03 keyed it by (tenant_id, id)
 * with an index on this key beside: a check-in or a PATCH of `current` wrote three b-trees on
 * SQLite (the table, its key's index and that one) and two indexes on PostgreSQL; one b-tree
 * writes 2–6% fewer WAL frames per write and the log takes ~40% less room (README, "Where the
 * time still goes"). A snapshot's id is the server's ULID, unique without a key of its own.
 */
export const snapshots = defineTable({
  name: 'okr_key_result_snapshots',
  columns: {
    tenant_id: 'text',
    id: 'text',
    key_result_id: 'text',
    at: 'datetime',
    value: 'real',
    progress_pct: 'real',
    by: 'text',
    source_type: 'text',
    note: 'text',
    confidence: 'integer',
    recorded_at: 'datetime',
  },
  notNull: ['tenant_id', 'id', 'key_result_id', 'at', 'value', 'recorded_at'],
  primaryKey: ['tenant_id', 'key_result_id', 'at', 'id'],
  clustered: true,
});

/**
 * The status sweep's queue: when each key result's status band ends. Platform-internal, small,
 * not distributed when tables are sharded by tenant.
 */
export const statusSweep = defineTable({
  name: 'okr_status_sweep',
  columns: { tenant_id: 'text', key_result_id: 'text', due_at: 'datetime' },
  primaryKey: ['tenant_id', 'key_result_id'],
  indexes: [['due_at']],
  queue: true,
});

/**
 * Which key results each live query key result reads (`kr("…")` in its query): the edges a
 * change of a current value follows to the queries to recompute. Tenant data.
 */
export const queryReads = defineTable({
  name: 'okr_key_result_query_reads',
  columns: { tenant_id: 'text', key_result_id: 'text', reads_id: 'text' },
  primaryKey: ['tenant_id', 'key_result_id', 'reads_id'],
  indexes: [['tenant_id', 'reads_id', 'key_result_id']],
});
