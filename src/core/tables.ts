import type { ColumnKind } from './fields.js';
import type { Doc, OutboundPolicy, Principal, Resource } from './resource.js';

/** A row of an auxiliary table, in wire form (JSON values, ISO timestamps). */
export type Row = Record<string, unknown>;

/**
 * A table beside the resource tables: a resource's log (key-result snapshots) or a
 * platform-internal queue (the status sweep). Its DDL is derived like a resource's.
 */
export interface TableDef {
  name: string;
  columns: Readonly<Record<string, ColumnKind>>;
  notNull?: readonly string[];
  primaryKey: readonly string[];
  /**
   * The rows are kept in the primary key's order, as that key's one b-tree (SQLite: `WITHOUT
   * ROWID`; a table with a rowid and a key of its own is two, the rows and the key's index). For
   * a table of small rows read by ranges of its key. PostgreSQL keeps a heap either way.
   */
  clustered?: boolean;
  indexes?: readonly (readonly string[])[];
  /** A platform-internal queue: not tenant data, stays undistributed when tables are sharded. */
  queue?: boolean;
}

export function defineTable(t: TableDef): TableDef {
  return t;
}

export interface SelectOptions {
  orderBy?: readonly (readonly [string, 'asc' | 'desc'])[];
  limit?: number;
  /** Rows whose column is ≤ this value (queues: due items). */
  atMost?: readonly [string, unknown];
}

/**
 * How a hook's read locks the row until its write commits (PostgreSQL; SQLite has one writer):
 * `update` for a row the write will change (roll-ups, the sweep), `share` for one it only
 * reads but must not see change under it (a cycle's dates): shared locks do not wait for each other.
 */
export type RowLock = 'update' | 'share';

/**
 * What domain hooks may do inside the transaction of a write. Everything it reads or writes
 * commits or rolls back with that write.
 */
export interface Tx {
  /**
   * The write's time. A custom operation's is read from the clock when first asked for, so one
   * that locks its row first (a check-in) is dated after the writes it waited behind.
   */
  readonly now: number;
  /** A row of the tenant by id, deleted or not, whatever the caller's app; locked (default `update`). */
  find(resource: Resource, tenantId: string, id: string, lock?: RowLock): Promise<Doc | null>;
  /**
   * A row of the tenant by id without locking it (what the last committed write left, or this
   * transaction's own writes): for values a write reads but must not wait on.
   */
  peek(resource: Resource, tenantId: string, id: string): Promise<Doc | null>;
  /**
   * Locks rows of the tenant for update in the order every write takes them, parent first: the
   * rows their `lockReferences` name (read unlocked to learn them), then the rows, each
   * resource's in id order. Answers the rows found. Writes that lock other rows than their own
   * (recomputations, syncs, sweeps) lock them this way, so two that share rows wait for each
   * other instead of deadlocking.
   */
  lock(resource: Resource, tenantId: string, ids: readonly string[]): Promise<Map<string, Doc>>;
  /** Live rows of the tenant whose columns equal the given values. */
  findLive(resource: Resource, tenantId: string, where: Row): Promise<Doc[]>;
  /** The ids of the tenant's live rows whose `column` is one of `values` (a lookup per 500 values). */
  liveIdsWhereIn(resource: Resource, tenantId: string, column: string, values: readonly string[]): Promise<string[]>;
  /**
   * A write the platform makes itself: bumps `version` and `updated_at`, keeps `updated_by`,
   * records `source_type: system` provenance nowhere else, and runs the resource's afterWrite hooks.
   */
  systemWrite(resource: Resource, before: Doc, changes: Doc): Promise<Doc>;
  /**
   * Adds `delta` to an internal counter of a row (null counts as 0) without a new version: the
   * bookkeeping no answer shows (e.g. how many queries read a key result).
   */
  bump(resource: Resource, tenantId: string, id: string, internal: string, delta: number): Promise<void>;
  insert(table: TableDef, row: Row): Promise<void>;
  /** Insert, or replace the row with the same primary key. */
  upsert(table: TableDef, row: Row): Promise<void>;
  /**
   * `upsert` of many rows with the same columns, a few statements for any count (a row named
   * twice: the last one). On PostgreSQL they are written in the given order.
   */
  upsertMany(table: TableDef, rows: readonly Row[]): Promise<void>;
  remove(table: TableDef, where: Row): Promise<void>;
  /**
   * Sets `column` to `next` on the row `where` names if its value is at most `atMost`, and says
   * whether it did: of several processes claiming one due queue row, one wins.
   */
  claim(table: TableDef, where: Row, column: string, atMost: unknown, next: unknown): Promise<boolean>;
  select(table: TableDef, where: Row, options?: SelectOptions): Promise<Row[]>;
}

/** A page of an auxiliary table, in the list envelope. */
export interface RowPage {
  object: 'list';
  data: Row[];
  has_more: boolean;
  next_cursor: string | null;
}

/** The engine's resource operations, as custom operations call them. */
export interface ResourceOps {
  /** The resource as the caller sees it (404 otherwise). */
  get(resource: Resource, id: string): Promise<Doc>;
  /**
   * An update through the whole write path (validation, hooks, roll-ups). `internal` sets
   * server-owned fields; `event` reaches the hooks (e.g. a check-in's note).
   */
  update(resource: Resource, id: string, patch: Doc, extra?: { internal?: Doc; event?: WriteEvent }): Promise<Doc>;
  /** Keyset pages over a log table, newest first by `orderColumn`, then `idColumn`. */
  page(
    table: TableDef,
    where: Row,
    order: { column: string; id: string },
    params: Record<string, string | string[] | undefined>,
  ): Promise<RowPage>;
}

/** Operation-specific details passed to hooks (e.g. a check-in). */
export interface WriteEvent {
  kind: string;
  [detail: string]: unknown;
}

export interface OperationCall {
  /** The resource the operation is declared on. */
  resource: Resource;
  principal: Principal;
  id: string;
  body: unknown;
  query: Record<string, string | string[] | undefined>;
  tx: Tx;
  ops: ResourceOps;
  /** What the operation's `prepare` answered, outside the transaction (undefined without one). */
  prepared: unknown;
}

/** A custom operation's `prepare`: no transaction; `ops` reads (and locks nothing). */
export interface PrepareCall {
  resource: Resource;
  principal: Principal;
  id: string;
  body: unknown;
  ops: ResourceOps;
  outbound: OutboundPolicy;
  /** The server's clock (ms) as the call is prepared. */
  now: number;
  /** The server's clock (ms) as it is read: when what `prepare` reads was read. */
  clock(): number;
}
