import { createHash } from 'node:crypto';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import {
  CompiledQuery,
  type Expression,
  type ExpressionBuilder,
  type RawBuilder,
  type SelectQueryBuilder,
  type SqlBool,
  sql,
} from 'kysely';
import { type Clock, isoTime } from '../core/clock.js';
import { ApiError, type FieldError, fieldError } from '../core/errors.js';
import { type AnyField, type ColumnKind, mentionedIds } from '../core/fields.js';
import { newId } from '../core/ids.js';
import {
  type CursorCodec,
  DEFAULT_LIMIT,
  DEFAULT_SORT,
  eachParameter,
  type Filter,
  type ListQuery,
  MAX_LIMIT,
  searchText,
} from '../core/list-query.js';
import {
  type CustomOperation,
  DEFAULT_OUTBOUND,
  type Doc,
  type HookContext,
  isIdOf,
  type Job,
  type JobContext,
  type ModuleDef,
  type OutboundPolicy,
  type Principal,
  type Resource,
} from '../core/resource.js';
import type { ServerKeys } from '../core/secrets.js';
import { documentMember, JsonText, serializeDoc } from '../core/serialize.js';
import type { ResourceOps, Row, RowLock, RowPage, SelectOptions, TableDef, Tx, WriteEvent } from '../core/tables.js';
import {
  asObject,
  checkWritableKeys,
  isStorableText,
  mergePatch,
  refuseBody,
  validateDocument,
} from '../core/validation.js';
import type { DB, Store } from './database.js';
import { GroupCommit } from './group-commit.js';
import { deferWrite, NAMED_MAX_PARAMETERS, verify, type WriteCheck } from './pg-batch.js';
import {
  DOC_COLUMN,
  filterIndex,
  memberTable,
  memberTables,
  primaryKeyIndex,
  SEARCH_COLUMN,
  storedFields,
} from './schema.js';
import { inSortOrder } from './sort-order.js';

/**
 * A filter's "any of" values, the last repeated up to the next power of two: a statement's shape
 * counts its parameters, and a caller choosing how many values to send would choose how many
 * statements are prepared and kept (1–100 values: 8 shapes, not 100). Repeats match nothing more.
 */
function padded<T>(values: readonly T[]): readonly T[] {
  const size = 2 ** Math.ceil(Math.log2(Math.max(1, values.length)));
  return size === values.length ? values : [...values, ...Array<T>(size - values.length).fill(values.at(-1) as T)];
}

/**
 * The most rows a SQLite list's probe counts of one filter (see Engine.narrowIndex): a filter
 * matching fewer is read through its own index, its rows sorted; one matching more leaves the
 * walk of the sort's index, which then finds a page within ~limit × tenant rows ÷ PROBE_ROWS
 * where the filter's rows are spread along the sort (not where they gather at its far end).
 */
export const PROBE_ROWS = 500;

type AnyRow = Record<string, Record<string, unknown>>;

/** A list filter's condition (filter i of the list), its values in slots. */
type FilterCondition = (
  f: Filter,
  i: number,
  slot: (name: string) => string,
) => (eb: ExpressionBuilder<AnyRow, string>) => Expression<SqlBool>;

export interface EngineOptions {
  store: Store;
  clock: Clock;
  modules: readonly ModuleDef[];
  cursors: CursorCodec;
  /** Seals write-only secrets at rest (FieldSpec.sealed) and signs webhook URLs. */
  keys: ServerKeys;
  /** Where connectors may connect (default: public addresses only, 10 s). */
  outbound?: OutboundPolicy;
  /** EDM_REQUIRE_IF_MATCH: writes without If-Match or a body `version` are 428. */
  requireIfMatch: boolean;
  /** Writes restore rows another build wrote (`edm import`; see HookContext.restoring). */
  restoring?: boolean;
}

/** Preconditions of a write: the versions an `If-Match` names (`any` for `*`), or null without one. */
export interface WriteConditions {
  ifMatch: readonly number[] | 'any' | null;
  /**
   * The versions an `If-None-Match` names (`any` for `*`), or null/absent without one: a write
   * to a row it names (any row, for `*`) is refused with 412 (RFC 9110 §13.1.2).
   */
  ifNoneMatch?: readonly number[] | 'any' | null;
  /** A precondition header that could not be read: answered once the row is found (404 first). */
  invalid?: ApiError;
  /**
   * false: a write EDM_REQUIRE_IF_MATCH does not cover (a custom operation's: a check-in or a
   * sync appends an event to the row, as a create adds one, and overwrites nothing the caller read).
   */
  required?: boolean;
  /**
   * The route's own checks that PRODUCT.md's order puts after 404 and 412/428 (its query
   * parameters; a body on a write that takes none): run once the row is read and its
   * preconditions hold, before the write's body is read.
   */
  deferred?: () => void;
}

export const NO_CONDITIONS: WriteConditions = { ifMatch: null };

/** 412 (with `current_version`) unless an If-Match's versions, if any, name `version`: a write's or a GET's. */
export function checkIfMatch(ifMatch: WriteConditions['ifMatch'], version: number): void {
  if (Array.isArray(ifMatch) && !ifMatch.includes(version)) {
    throw new ApiError('precondition_failed', `If-Match does not name the current version ${version}`, {
      extra: { current_version: version },
    });
  }
}
/** A custom operation's update: its If-Match was answered when it read the row (ops.get). */
const OPERATION_CONDITIONS: WriteConditions = { ifMatch: null, required: false };

/**
 * A page of a list: its documents already in their JSON form (see DOC_COLUMN), as one buffer
 * joined by commas (SQLite's packed page) or one string each.
 */
export interface ListPage {
  documents: Buffer | readonly string[];
  has_more: boolean;
  next_cursor: string | null;
}

interface Child {
  resource: Resource;
  field: string;
}

/** Live rows referring to a row, per resource; `outside`: how many of them the caller's application cannot see. */
type Dependents = { resource: Resource; count: number; outside: number }[];

/** How many dependents lie outside the caller's application (0 for a person's token). */
const outsideScope = (dependents: Dependents) => dependents.reduce((n, d) => n + d.outside, 0);

/** Server-set values and hook details of an update made on the caller's behalf (a check-in). */
export interface UpdateExtra {
  internal?: Doc;
  event?: WriteEvent;
  /** The row as this transaction already read it, locked (a custom operation's `get`). */
  before?: Doc;
  /** Rows this transaction already read, with their locks (the references read with `before`). */
  rows?: WriteRows;
}

const SLOT = '\u0000slot:';
/** The column a locking read answers whether it took its row's tenant lock in (see serialGuard). */
const SERIAL_COLUMN = '_serial';

/** Rows one write has read or written, by resource, tenant and id (see Engine.tx). */
type WriteRows = Map<string, { doc: Doc | null; lock: number }>;

/** Row locks a write's reads take on PostgreSQL, weakest first (SQLite has one writer: all are `update`). */
const LOCKS = { none: 0, share: 1, update: 2 } as const;

/** By-id reads waiting to be sent together (Engine.readById). */
interface PendingReads {
  resource: Resource;
  principal: Principal;
  waiting: Map<
    string,
    { resolve: (row: Record<string, unknown> | undefined) => void; reject: (err: unknown) => void }[]
  >;
}

/** System writes a cascade holds back (Engine.heldWrites). */
interface HeldWrites {
  /** The rows the cascade is to delete and has not yet: their system writes are held back. */
  deleting: Set<string>;
  /** By row: as stored (the first write's `before`) and as the writes left it. */
  writes: Map<string, { resource: Resource; stored: Doc; latest: Doc }>;
}

/**
 * The row key of a write to the one row of `table` that `values` name by its whole primary key
 * (then writes to other rows of the table may share its batch: pg-batch.ts), else undefined.
 */
function tableRowKey(table: TableDef, values: Row): string | undefined {
  let key = table.name;
  for (const column of table.primaryKey) {
    const value = values[column];
    if (typeof value !== 'string' && typeof value !== 'number') return undefined;
    key += `\u0000${value}`;
  }
  return key;
}

/** How many rows one statement of Tx.upsertMany writes at most. */
const UPSERT_ROWS = 256;

/** How many rows a cascading delete reads (and locks) with one statement. */
const CASCADE_CHUNK = 500;

/** The most ids one batched read names. */
const MAX_READ_BATCH = 100;

/** A write whose caller needs no count from it: it may be batched with the next (pg-batch.ts). */
const ANY_ROWS: WriteCheck = {};

const columnLists = new WeakMap<Resource, string[]>();
/**
 * The columns a full read of a resource's row selects: named, never `*`, so a statement a
 * session has prepared keeps its result type when a later migration adds a column.
 */
function columnsOf(resource: Resource): string[] {
  let columns = columnLists.get(resource);
  if (!columns) {
    const fields = storedFields(resource);
    columns = fields.map(([name]) => name);
    // Fields kept in the document alone are read from it.
    if (fields.some(([, f]) => f.inDocument)) columns.push(DOC_COLUMN);
    columnLists.set(resource, columns);
  }
  return columns;
}

const memberLists = new WeakMap<Resource, { field: string; table: string }[]>();
/** A resource's JSON list fields that have a member table (memberTables), kept per resource. */
function membersOf(resource: Resource): { field: string; table: string }[] {
  let tables = memberLists.get(resource);
  if (!tables) {
    tables = memberTables(resource);
    memberLists.set(resource, tables);
  }
  return tables;
}

const NO_MEMBERS: ReadonlySet<string> = new Set();

/** The text members of a JSON list field's value (what `json_each` reads of it, as a member table holds them). */
function textMembers(value: unknown): Set<string> {
  return new Set(Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : []);
}

const writtenLists = new WeakMap<Resource, [string, AnyField][]>();
/** The fields a write puts in columns of their own: the stored ones but those kept in the document alone. */
function writtenFields(resource: Resource): [string, AnyField][] {
  let fields = writtenLists.get(resource);
  if (!fields) {
    fields = storedFields(resource).filter(([, f]) => !f.inDocument);
    writtenLists.set(resource, fields);
  }
  return fields;
}

/** The stored document of a row (read as text: only `getJson` reads it as bytes), or null when the row has none. */
function storedDocument(value: unknown): Doc | null {
  return typeof value === 'string' ? (JSON.parse(value) as Doc) : null;
}

const rowKey = (resource: Resource, tenantId: string, id: string) => `${resource.table}\u0000${tenantId}\u0000${id}`;

/** How many times a PostgreSQL transaction is tried when the server aborts it as transient. */
const TRANSACTION_ATTEMPTS = 3;

/**
 * The most milliseconds a transaction waits before its next attempt, times the attempts made: a
 * deadlock's victim that starts again at once can take its first row back before the survivor,
 * just woken, takes it, and deadlock with it again (seen on CI). A random pause lets the survivor
 * finish first.
 */
const RETRY_PAUSE_MS = 4;

/** A tenant lock (Engine.serialize) a transaction takes. */
interface SerialLock {
  tenantId: string;
  lock: string;
}

/** The hooks' transaction handle, with what the engine itself uses of it. */
interface EngineTx extends Tx {
  readonly rows: WriteRows;
}

/** Documents whose stored row is at an older schema version than the one they were upgraded to. */
const upgradedOnRead = new WeakSet<Doc>();
/**
 * Rows read with a sealed value this server's key cannot open (sealed under another
 * EDM_SECRET_KEY): the value reads as absent, and a caller's next write of the row clears it.
 */
const unopenedSeals = new WeakSet<Doc>();

const kindOf = (column: ColumnKind): Pick<AnyField, 'column'> => ({ column });

/**
 * The generic behaviour of every declared resource: create, read, update, soft delete,
 * restore and list, with the platform rules of PRODUCT.md §1 in their check order, and the
 * resource's domain hooks at fixed points. Writes run inside a transaction the caller opens
 * (so idempotency records commit with the work).
 */
/** The platform itself, writing inside a tenant (jobs: the status sweep, connector syncs). */
const systemPrincipal = (tenantId: string): Principal => ({ sub: 'system', tenantId, appId: null, scopes: null });

export class Engine {
  readonly store: Store;
  readonly clock: Clock;
  private readonly byPrefix = new Map<string, Resource>();
  private readonly children = new Map<Resource, Child[]>();
  /** Per resource, the `restrict` references to it: rows that keep it from being deleted. */
  private readonly holders = new Map<Resource, Child[]>();
  /** What each resource's `lockReferences` name: the field and the resource it references. */
  private readonly lockTargets = new Map<Resource, { name: string; target: Resource }[]>();
  /** Fields whose text names rows of another resource (FieldSpec.mentions), by resource. */
  private readonly mentionFields = new Map<Resource, { name: string; target: Resource }[]>();
  /**
   * Each resource's reference fields in the order a write checks and locks them: `restrict`
   * ones first (see checkReferences), then the rest as declared.
   */
  private readonly references = new Map<Resource, { name: string; field: AnyField; target: Resource | undefined }[]>();
  /** Each resource's `restrict` references (FieldSpec.restrict): the rows its rows hold. */
  private readonly restricts = new Map<Resource, { name: string; target: Resource }[]>();
  private readonly groupCommit: GroupCommit | null;
  private readonly shapes = new Map<string, { sql: string; slots: (string | { value: unknown })[] }>();
  /** By-id reads waiting for the end of this turn of the event loop, by scope (see readById). */
  private readonly pendingReads = new Map<string, PendingReads>();
  /**
   * A cascading delete's system writes to rows it goes on to delete (the roll-up each deleted key
   * result makes of its objective), by the cascade's `rows`: held back, kept in `rows` (where
   * every read of the cascade finds them), and written once per row before the row is read again
   * to be deleted (writeHeld). Deleting a cycle of 40,000 key results wrote its objectives 40,000
   * times.
   */
  private readonly heldWrites = new WeakMap<WriteRows, HeldWrites>();
  /** Whether writes name their rows (WriteCheck.row): only PostgreSQL's batches read it. */
  private readonly namesRows: boolean;

  constructor(private readonly options: EngineOptions) {
    this.store = options.store;
    this.clock = options.clock;
    this.groupCommit = options.store.kind === 'sqlite' ? new GroupCommit(options.store.db, options.store.exec) : null;
    this.namesRows = options.store.kind === 'postgres';
    const resources = options.modules.flatMap((m) => m.resources);
    for (const r of resources) this.byPrefix.set(r.idPrefix, r);
    for (const r of resources) {
      for (const [name, field] of Object.entries(r.allFields)) {
        if (!(field.parent || field.restrict) || !field.ref) continue;
        const parent = this.byPrefix.get(field.ref);
        if (!parent) throw new Error(`${r.name}.${name} references unknown prefix ${field.ref}`);
        const map = field.parent ? this.children : this.holders;
        map.set(parent, [...(map.get(parent) ?? []), { resource: r, field: name }]);
      }
      const targets = (r.lockReferences ?? []).map((name) => {
        const target = this.byPrefix.get(r.allFields[name]?.ref ?? '');
        if (!target) throw new Error(`${r.name}.lockReferences: ${name} is not a reference to a known resource`);
        return { name, target };
      });
      if (targets.length) this.lockTargets.set(r, targets);
      const mentions = Object.entries(r.allFields).flatMap(([name, field]) => {
        const target = field.mentions ? this.byPrefix.get(field.mentions) : undefined;
        return target ? [{ name, target }] : [];
      });
      if (mentions.length) this.mentionFields.set(r, mentions);
      const references = Object.entries(r.allFields)
        .filter(([, field]) => field.ref)
        .map(([name, field]) => ({ name, field, target: this.byPrefix.get(field.ref as string) }))
        .sort((a, b) => Number(!a.field.restrict) - Number(!b.field.restrict));
      this.references.set(r, references);
      const restricts = references.flatMap(({ name, field, target }) =>
        field.restrict && target ? [{ name, target }] : [],
      );
      if (restricts.length) this.restricts.set(r, restricts);
    }
  }

  get resources(): Resource[] {
    return [...this.byPrefix.values()];
  }

  /**
   * Runs `fn` in one transaction (on SQLite, a savepoint of a group commit: see GroupCommit). On
   * PostgreSQL a transaction the server aborted as a deadlock's victim or for a serialization
   * failure is run again from the start, up to TRANSACTION_ATTEMPTS times in all: nothing of it
   * was kept, and the transactions it met have moved on (a short random pause first: see
   * RETRY_PAUSE_MS). `fn` must do nothing outside it.
   */
  async transaction<T>(fn: (trx: DB) => Promise<T>): Promise<T> {
    if (this.groupCommit) return this.groupCommit.run(fn);
    // Tenant locks an attempt found held where it held row locks already (trySerialize): the
    // next attempt takes them first, waiting for them, before any row lock.
    const first: SerialLock[] = [];
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.store.db.transaction().execute(async (trx) => {
          for (const { tenantId, lock } of first) await this.serialize(trx, tenantId, lock);
          return fn(trx);
        });
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        if (code === '40P01') this.deadlocks++;
        if (attempt >= TRANSACTION_ATTEMPTS || (code !== '40P01' && code !== '40001')) throw err;
        const wanted = (err as { serial?: SerialLock }).serial;
        if (wanted) first.push(wanted);
        this.retriedTransactions++;
        await sleep(Math.random() * RETRY_PAUSE_MS * attempt);
      }
    }
  }

  /** PostgreSQL transactions run again after a deadlock or a serialization failure (see transaction). */
  retriedTransactions = 0;

  /** PostgreSQL transactions aborted as a deadlock's victim (retried or not). */
  deadlocks = 0;

  // ---- rows ----

  private toRow(resource: Resource, doc: Doc): Record<string, unknown> {
    const row: Record<string, unknown> = {};
    for (const [name, field] of writtenFields(resource)) row[name] = this.encode(resource, doc, name, field);
    const title = doc[resource.titleField];
    row[SEARCH_COLUMN] = typeof title === 'string' ? searchText(title) : null;
    row[DOC_COLUMN] = serializeDoc(resource, doc);
    return row;
  }

  /**
   * The columns a write changes: unchanged values (JSON ones keep their reference through a
   * write) are left out, so untouched indexes and large JSON columns are not rewritten.
   */
  private changedColumns(resource: Resource, before: Doc, doc: Doc, byCaller: boolean): Record<string, unknown> {
    // A row upgraded on read is written back whole, at the current schema version.
    if (upgradedOnRead.has(before)) return this.toRow(resource, doc);
    const set: Record<string, unknown> = {};
    // A caller's write clears a sealed value this server cannot open; the platform's own (a
    // background sync) leaves it, so a process started with the wrong EDM_SECRET_KEY erases
    // nothing by itself.
    const unopened = byCaller && unopenedSeals.has(before);
    for (const [name, field] of writtenFields(resource)) {
      if (doc[name] !== before[name] || (unopened && field.sealed)) set[name] = this.encode(resource, doc, name, field);
    }
    if (doc[resource.titleField] !== before[resource.titleField]) {
      const title = doc[resource.titleField];
      set[SEARCH_COLUMN] = typeof title === 'string' ? searchText(title) : null;
    }
    set[DOC_COLUMN] = serializeDoc(resource, doc);
    return set;
  }

  /** A column's stored value: a sealed field's plaintext sealed, bound to its row and field. */
  private encode(resource: Resource, doc: Doc, name: string, field: AnyField): unknown {
    const value = doc[name];
    if (!field.sealed || typeof value !== 'string') return this.store.encode(field, value);
    return this.options.keys.seal(value, this.sealContext(resource, doc, name));
  }

  private sealContext(resource: Resource, row: Record<string, unknown>, name: string): string {
    return `${resource.table}\u0000${row.tenant_id}\u0000${row.id}\u0000${name}`;
  }

  private fromRow(resource: Resource, row: Record<string, unknown>): Doc {
    const doc: Doc = {};
    let kept: Doc | null | undefined;
    for (const [name, field] of Object.entries(resource.allFields)) {
      if (field.column === null) {
        doc[name] = null;
      } else if (field.inDocument) {
        // From the stored document, as text where it can be cut out exactly (JsonText: a write
        // that keeps or appends to it neither parses nor re-serializes it), else parsed; from the
        // column only for a row stored without one (or before the document had this field).
        const stored = row[DOC_COLUMN];
        let value = typeof stored === 'string' ? documentMember(resource, stored, name) : undefined;
        if (value === undefined) {
          kept ??= storedDocument(stored);
          value = kept?.[name] as JsonText | null | undefined;
        }
        doc[name] = value !== undefined ? value : this.store.decode(field, row[name]);
      } else if (field.sealed && typeof row[name] === 'string') {
        try {
          doc[name] = this.options.keys.open(row[name], this.sealContext(resource, row, name));
        } catch {
          // Sealed under another server secret (EDM_SECRET_KEY changed): as if never given, so
          // the row can still be edited, given a new secret or deleted, and its uses say so.
          doc[name] = null;
          unopenedSeals.add(doc);
        }
      } else {
        doc[name] = this.store.decode(field, row[name]);
      }
    }
    for (const [name, field] of Object.entries(resource.internal ?? {}))
      doc[name] = this.store.decode(field, row[name]);
    const stored = Number(doc.schema_version);
    if (stored < resource.schemaVersion) {
      // An upgrade sees values, never a member's stored text.
      for (const [name, value] of Object.entries(doc)) if (value instanceof JsonText) doc[name] = value.value;
      resource.hooks?.upgrade?.(doc, stored, { keys: this.options.keys });
      doc.schema_version = resource.schemaVersion;
      upgradedOnRead.add(doc);
    }
    return doc;
  }

  private encodeRow(table: TableDef, row: Row): Row {
    const out: Row = {};
    for (const [k, v] of Object.entries(row)) out[k] = this.store.encode(kindOf(table.columns[k]) as AnyField, v);
    return out;
  }

  private decodeRow(table: TableDef, row: Row): Row {
    const out: Row = {};
    for (const [k, kind] of Object.entries(table.columns)) out[k] = this.store.decode(kindOf(kind) as AnyField, row[k]);
    return out;
  }

  private live(resource: Resource): unknown {
    return this.store.encode(resource.allFields.is_deleted, false);
  }

  /** Rows the principal may see: its tenant, and its app when the token names one. */
  private visible(db: DB, resource: Resource, principal: Principal) {
    let q = db.selectFrom(resource.table).where('tenant_id', '=', principal.tenantId);
    if (principal.appId !== null) q = q.where('app_id', '=', principal.appId);
    return q;
  }

  /** `visible` for a shaped query (see run): the tenant and the app are slots. */
  private visibleIn(resource: Resource, principal: Principal, slot: (name: string) => string) {
    return this.visible(this.store.db, resource, {
      ...principal,
      tenantId: slot('tenant'),
      appId: principal.appId === null ? null : slot('app'),
    });
  }

  /**
   * What a read answered with the stored JSON selects. SQLite answers a blob as bytes: the
   * stored JSON goes from the page to the socket without being decoded into a string and
   * encoded again (two-byte strings, for any non-ASCII character in a document, cost the most).
   * PostgreSQL's driver decodes every value, so there the column is read as it is.
   */
  private jsonColumns() {
    const doc =
      this.store.kind === 'sqlite' ? sql<Buffer>`cast(${sql.ref(DOC_COLUMN)} as blob)`.as(DOC_COLUMN) : DOC_COLUMN;
    return [doc, 'schema_version', 'version'] as const;
  }

  private async load(db: DB, resource: Resource, principal: Principal, id: string, lock: boolean): Promise<Doc> {
    const { rows } = await this.execute(db, this.loadQuery(resource, principal, id, lock));
    const row = rows[0] as Record<string, unknown> | undefined;
    if (!row) throw new ApiError('not_found', `No ${resource.name} with id ${id}`);
    return lock ? this.lockedRow(db, resource, principal.tenantId, row) : this.fromRow(resource, row);
  }

  /**
   * A row a locking read answered (loadForWrite, load), with the tenant lock of `serializeRows`
   * settled: the read's guard took it where the row met `when` as the read's snapshot saw it.
   * A row that meets it only as locked (a write committed in between put it in the graph) takes
   * it now if no one holds it, and otherwise starts the transaction again (a serialization
   * failure, which Engine.transaction retries): waiting for it while holding the row could close
   * a loop with its holder.
   */
  private async lockedRow(db: DB, resource: Resource, tenantId: string, row: Record<string, unknown>): Promise<Doc> {
    const took = Number(row[SERIAL_COLUMN] ?? 0) > 0;
    const doc = this.fromRow(resource, row); // the declared fields only: not the guard's column
    const rule = resource.serializeRows;
    if (rule && this.store.kind === 'postgres') {
      if (took) this.heldSerials(db).add(rule.lock);
      else if (this.meetsSerial(resource, doc)) await this.trySerialize(db, tenantId, rule.lock);
    }
    return doc;
  }

  /**
   * The row a write starts from, locked. On PostgreSQL the rows its `lockReferences` name are
   * locked by the same statement (an inner join, `FOR UPDATE`) and kept in `rows` for
   * the write's hooks, so a key-result write locks its objective without a round trip of its
   * own; the objective's lock is taken first (parent before child, as every write does).
   * When the join finds nothing (no such row, or a reference that names no row), the row is
   * read alone.
   */
  private async loadForWrite(
    db: DB,
    resource: Resource,
    principal: Principal,
    id: string,
    rows: WriteRows,
  ): Promise<Doc> {
    const targets = this.store.kind === 'postgres' ? this.lockTargets.get(resource) : undefined;
    if (!targets) return this.load(db, resource, principal, id, true);
    // Locked: the row and its references. Unlocked: whether the join finds the row as of now.
    const joined = (lock: boolean) =>
      this.run(
        db,
        `loadref|${resource.table}|${principal.appId !== null}|${lock}`,
        (slot) => {
          // The references first in FROM: FOR UPDATE takes the rows' locks in that order, parent
          // before child (an objective before its key result), the order every write takes them in.
          const from = [...targets.map(({ target }, i) => `${target.table} as r${i}`), `${resource.table} as k`];
          let q = db.selectFrom(from);
          targets.forEach(({ name }, i) => {
            q = q.whereRef(`r${i}.tenant_id`, '=', 'k.tenant_id').whereRef(`r${i}.id`, '=', `k.${name}`);
          });
          let select = q
            .select([
              ...columnsOf(resource).map((c) => `k.${c}`),
              ...targets.flatMap(({ target }, i) => columnsOf(target).map((c) => `r${i}.${c} as r${i}__${c}`)),
            ])
            .where('k.tenant_id', '=', slot('tenant'))
            .where('k.id', '=', slot('id'));
          if (principal.appId !== null) select = select.where('k.app_id', '=', slot('app'));
          if (!lock) return select;
          const guard = this.serialGuard(resource, slot);
          // FOR UPDATE with no OF locks the rows of every table in FROM: the references and the row.
          return (guard ? select.select(guard.as(SERIAL_COLUMN)) : select).forUpdate();
        },
        { tenant: principal.tenantId, app: principal.appId, id, serial: this.serialKey(resource, principal.tenantId) },
      );
    // The join finds nothing for a row that is not there, and for one moved to another parent
    // while this statement waited: PostgreSQL reads a row it waited for again, and drops it from
    // a join it no longer meets, keeping the locks it took meanwhile (the old parent's, the row's
    // too where it waited for that). Going on from there, this write would take the new parent
    // after the row, while a write that started after the move holds that parent and waits for
    // the row: a deadlock. So the transaction starts again (a serialization failure, which
    // Engine.transaction retries), holding nothing, and locks the new parent first. A row the
    // join does not find now either (none, or a reference naming no row) is read alone.
    const row = (await joined(true)).rows[0];
    if (!row && (await joined(false)).rows.length) {
      throw Object.assign(new Error(`${resource.name} ${id} moved while this write waited: it starts again`), {
        code: '40001',
      });
    }
    if (!row) return this.load(db, resource, principal, id, true);
    targets.forEach(({ name, target }, i) => {
      const referenced: Record<string, unknown> = {};
      for (const c of columnsOf(target)) referenced[c] = row[`r${i}__${c}`];
      rows.set(rowKey(target, principal.tenantId, row[name] as string), {
        doc: this.fromRow(target, referenced),
        lock: LOCKS.update,
      });
    });
    return this.lockedRow(db, resource, principal.tenantId, row);
  }

  /** The advisory lock key of a tenant lock (ResourceHooks.serialize, ResourceOptions.serializeRows). */
  private serialKey(resource: Resource, tenantId: string): string | null {
    return resource.serializeRows ? `${tenantId}\n${resource.serializeRows.lock}` : null;
  }

  /** The tenant locks each transaction holds (by its handle): each is taken once. */
  private readonly serials = new WeakMap<DB, Set<string>>();

  private heldSerials(db: DB): Set<string> {
    const held = this.serials.get(db) ?? new Set<string>();
    this.serials.set(db, held);
    return held;
  }

  /**
   * Takes the tenant lock `lock` for this transaction, waiting for it (PostgreSQL; SQLite writes
   * one at a time): before any row lock, so its holder never waits for a row the waiter holds.
   */
  private async serialize(db: DB, tenantId: string, lock: string): Promise<void> {
    if (this.store.kind !== 'postgres' || this.heldSerials(db).has(lock)) return;
    const key = `${tenantId}\n${lock}`;
    await this.execute(db, sql`SELECT pg_advisory_xact_lock(hashtextextended(${key}, 0))`.compile(db));
    this.heldSerials(db).add(lock);
  }

  /**
   * Takes the tenant lock `lock` where row locks are held already: only if it is free, else the
   * transaction starts again (serialization failure: Engine.transaction retries it), and then
   * takes it first.
   */
  private async trySerialize(db: DB, tenantId: string, lock: string): Promise<void> {
    if (this.store.kind !== 'postgres' || this.heldSerials(db).has(lock)) return;
    const key = `${tenantId}\n${lock}`;
    const { rows } = await this.execute(
      db,
      sql<{ ok: boolean }>`SELECT pg_try_advisory_xact_lock(hashtextextended(${key}, 0)) AS ok`.compile(db),
    );
    if ((rows[0] as { ok?: boolean } | undefined)?.ok !== true) {
      throw Object.assign(new Error(`the tenant lock ${lock} is held: the transaction starts again, taking it first`), {
        code: '40001',
        serial: { tenantId, lock } satisfies SerialLock,
      });
    }
    this.heldSerials(db).add(lock);
  }

  /** Whether a stored row meets its resource's `serializeRows` (then its writes take that lock). */
  private meetsSerial(resource: Resource, doc: Doc | null): boolean {
    return (resource.serializeRows?.when ?? []).some(([column, op, value]) =>
      op === '=' ? doc?.[column] === value : Number(doc?.[column] ?? 0) > (value as number),
    );
  }

  /**
   * The column of a locking read that takes the tenant lock of `serializeRows` before the row
   * locks (PostgreSQL): a subquery that names no column of the outer query is an InitPlan,
   * evaluated once, when the first row is formed and before the row lock takes it; it locks only
   * where the stored row meets `when` in the read's snapshot, and answers whether it did (1 or 0;
   * lockedRow settles the rest).
   */
  private serialGuard(resource: Resource, slot: (name: string) => string) {
    const rule = resource.serializeRows;
    if (!rule) return null;
    const when = sql.join(
      rule.when.map(([column, op, value]) => sql`${sql.ref(`g.${column}`)} ${sql.raw(op)} ${sql.lit(value)}`),
      sql` OR `,
    );
    return sql<number>`(SELECT count(*) FROM (SELECT pg_advisory_xact_lock(hashtextextended(${slot('serial')}, 0)) FROM ${sql.table(resource.table)} AS g WHERE g.tenant_id = ${slot('tenant')} AND g.id = ${slot('id')} AND (${when})) AS serial)`;
  }

  /**
   * The by-id read is the hottest query: its SQL is compiled once per shape (resource, app
   * scope, lock) and only its parameters change.
   */
  private loadQuery(resource: Resource, principal: Principal, id: string, lock: boolean, json = false): CompiledQuery {
    return this.shaped(
      `load|${resource.table}|${principal.appId !== null}|${lock}|${json}`,
      (slot) => {
        const q = this.visibleIn(resource, principal, slot)
          .where('id', '=', slot('id'))
          .$if(json, (qb) => qb.select(this.jsonColumns()))
          .$if(!json, (qb) => qb.select(columnsOf(resource)));
        if (!lock || this.store.kind !== 'postgres') return q;
        const guard = this.serialGuard(resource, slot);
        return (guard ? q.select(guard.as(SERIAL_COLUMN)) : q).forUpdate();
      },
      { tenant: principal.tenantId, app: principal.appId, id, serial: this.serialKey(resource, principal.tenantId) },
    );
  }

  /**
   * Runs a query whose SQL depends only on `key`. It is built and compiled once, with a named
   * slot for each value; later runs only fill the slots. Kysely compiles every query it runs,
   * which costs more than a point read or a single-row write on SQLite.
   */
  private async run(
    db: DB,
    key: string,
    build: (slot: (name: string) => string) => { compile(): CompiledQuery },
    values: Record<string, unknown>,
    write?: WriteCheck,
  ): Promise<{ rows: Record<string, unknown>[]; numAffectedRows?: bigint }> {
    return this.execute(db, this.shaped(key, build, values), write);
  }

  /**
   * Runs a compiled statement on `db`. Inside a group commit on SQLite it runs synchronously on
   * the connection the batch holds: the query builder's executor adds promises and bookkeeping
   * to every statement, which a write of half a dozen statements pays half a dozen times.
   */
  private async execute(
    db: DB,
    query: CompiledQuery,
    write?: WriteCheck,
  ): Promise<{ rows: Record<string, unknown>[]; numAffectedRows?: bigint }> {
    // A read outside any transaction (on a SQLite file, on the read connection's snapshot).
    if (!write && db === this.store.db) return { rows: await this.read(query) };
    const { exec } = this.store;
    if (exec && this.groupCommit?.holds(db)) {
      const { rows, changes } = exec(query.sql, query.parameters);
      if (write) verify(write, changes);
      return { rows, numAffectedRows: BigInt(changes) };
    }
    if (!write) return db.executeQuery<Record<string, unknown>>(query);
    // A write nobody reads the result of: in a PostgreSQL transaction it may be held back and
    // sent with the writes after it (pg-batch.ts), which then runs its check; else it ran now.
    const result = await db.executeQuery<Record<string, unknown>>(deferWrite(query, write));
    if (result.numAffectedRows !== undefined) verify(write, Number(result.numAffectedRows));
    return result;
  }

  /** The compiled query of a shape (see run), with this call's values in its slots. */
  private shaped(
    key: string,
    build: (slot: (name: string) => string) => { compile(): CompiledQuery },
    values: Record<string, unknown>,
  ): CompiledQuery {
    let shape = this.shapes.get(key);
    if (!shape) {
      const compiled = build((name) => `${SLOT}${name}`).compile();
      const slots = compiled.parameters.map((p) =>
        typeof p === 'string' && p.startsWith(SLOT) ? p.slice(SLOT.length) : { value: p },
      );
      shape = { sql: compiled.sql, slots };
      // Shapes are few (resources × sorts × filter combinations); the bound only guards odd
      // callers, the oldest dropped first, so a caller making thousands does not leave every
      // later shape compiled again on each request. A read of more than NAMED_MAX_PARAMETERS (a
      // list under wide any-of filters) is compiled each time, as its statement is prepared each
      // time (database.ts, cachingStatements): 5,000 of them held ~80 MB.
      if (!(slots.length > NAMED_MAX_PARAMETERS && compiled.sql.startsWith('select'))) {
        if (this.shapes.size >= 5000) this.shapes.delete(this.shapes.keys().next().value as string);
        this.shapes.set(key, shape);
      }
    }
    const params = shape.slots.map((s) => (typeof s === 'string' ? values[s] : s.value));
    return CompiledQuery.raw(shape.sql, params);
  }

  private slotted(row: Record<string, unknown>, slot: (name: string) => string) {
    return Object.fromEntries(Object.keys(row).map((k) => [k, slot(k)]));
  }

  /**
   * The transaction handle domain hooks and custom operations use. Rows it finds are kept for
   * the rest of the write (`rows`, shared with the writes it makes itself), so a parent read by
   * the reference check, the derive hook and the roll-up is read once.
   */
  tx(db: DB, principal: Principal, at: number | (() => number), rows: WriteRows = new Map()): EngineTx {
    const engine = this;
    const sqlite = engine.store.kind === 'sqlite';
    const read = async (resource: Resource, tenantId: string, id: string, lock: RowLock | 'none') => {
      const mode = sqlite ? 'none' : lock;
      const { rows: found } = await engine.run(
        db,
        `find|${resource.table}|${mode}`,
        (slot) => {
          const q = db
            .selectFrom(resource.table)
            .select(columnsOf(resource))
            .where('tenant_id', '=', slot('tenant'))
            .where('id', '=', slot('id'));
          return mode === 'update' ? q.forUpdate() : mode === 'share' ? q.forShare() : q;
        },
        { tenant: tenantId, id },
      );
      const doc = found[0] ? engine.fromRow(resource, found[0]) : null;
      rows.set(rowKey(resource, tenantId, id), { doc, lock: sqlite ? LOCKS.update : LOCKS[lock] });
      return doc;
    };
    const handle: EngineTx = {
      // A time given as a function is read once, when first asked for (see Tx.now).
      get now() {
        if (typeof at !== 'number') at = at();
        return at;
      },
      rows,
      async find(resource, tenantId, id, lock = 'update') {
        const seen = rows.get(rowKey(resource, tenantId, id));
        if (seen && seen.lock >= LOCKS[lock]) return seen.doc;
        return read(resource, tenantId, id, lock);
      },
      async peek(resource, tenantId, id) {
        const seen = rows.get(rowKey(resource, tenantId, id));
        return seen ? seen.doc : read(resource, tenantId, id, 'none');
      },
      async lock(resource, tenantId, ids) {
        // SQLite takes no row locks: there, only the rows are read.
        const targets = sqlite ? [] : (engine.lockTargets.get(resource) ?? []);
        const serial = sqlite ? undefined : resource.serializeRows;
        const referenced = targets.map(() => new Set<string>());
        let serialize = false;
        for (const id of targets.length || serial ? ids : []) {
          const doc = await handle.peek(resource, tenantId, id);
          targets.forEach(({ name }, i) => {
            if (typeof doc?.[name] === 'string') referenced[i].add(doc[name] as string);
          });
          serialize ||= engine.meetsSerial(resource, doc);
        }
        // Rows under more than one parent (a sync feeding key results of two objectives) take it
        // too: a write holding it locks parents in no set order (see movesOf).
        serialize ||= referenced.some((parents) => parents.size > 1);
        // Where the rows' own writes take it before theirs (serializeRows): this write holds row
        // locks already (its own row, a connector), so only a free lock is taken, else it restarts.
        if (serial && serialize) await engine.trySerialize(db, tenantId, serial.lock);
        for (const [i, { target }] of targets.entries()) {
          for (const id of [...referenced[i]].sort()) await handle.find(target, tenantId, id);
        }
        const locked = new Map<string, Doc>();
        for (const id of [...ids].sort()) {
          const doc = await handle.find(resource, tenantId, id);
          if (doc) locked.set(id, doc);
        }
        return locked;
      },
      async findLive(resource, tenantId, where) {
        let q = db
          .selectFrom(resource.table)
          .select(columnsOf(resource))
          .where('tenant_id', '=', tenantId)
          .where('is_deleted', '=', engine.live(resource));
        for (const [k, v] of Object.entries(where)) q = q.where(k, '=', v);
        // In id order (Tx.lock takes rows so), sorted here: an ORDER BY id let SQLite, which has no
        // statistics, walk the whole tenant along its primary key rather than the filter's index
        // (a cycle's dates moved on a tenant of 100,000 key results held the writer for 25 s).
        const rows = await q.execute();
        rows.sort((x, y) => ((x.id as string) < (y.id as string) ? -1 : (x.id as string) > (y.id as string) ? 1 : 0));
        return rows.map((r) => engine.fromRow(resource, r));
      },
      async liveIdsWhereIn(resource, tenantId, column, values) {
        const ids: string[] = [];
        for (let at = 0; at < values.length; at += 500) {
          const rows = await db
            .selectFrom(resource.table)
            .select('id')
            .where('tenant_id', '=', tenantId)
            .where('is_deleted', '=', engine.live(resource))
            .where(column, 'in', values.slice(at, at + 500))
            .execute();
          for (const row of rows) ids.push(row.id as string);
        }
        return ids;
      },
      systemWrite: (resource, before, changes) =>
        engine.systemWrite(db, resource, principal, before, changes, handle.now, rows),
      async bump(resource, tenantId, id, internal, delta) {
        if (!resource.internal?.[internal]) throw new Error(`${resource.name} has no internal field ${internal}`);
        await engine.run(
          db,
          `bump|${resource.table}|${internal}`,
          (slot) =>
            db
              .updateTable(resource.table)
              .set({ [internal]: sql`coalesce(${sql.ref(internal)}, 0) + ${sql.val(slot('delta'))}` })
              .where('tenant_id', '=', slot('tenant'))
              .where('id', '=', slot('id')),
          { tenant: tenantId, id, delta },
          engine.rowCheck(() => rowKey(resource, tenantId, id)),
        );
        // A copy: a write in flight may hold the cached document as its `before`.
        const key = rowKey(resource, tenantId, id);
        const seen = rows.get(key);
        if (seen?.doc)
          rows.set(key, { ...seen, doc: { ...seen.doc, [internal]: Number(seen.doc[internal] ?? 0) + delta } });
      },
      async insert(table, row) {
        const encoded = engine.encodeRow(table, row);
        await engine.run(
          db,
          `ins|${table.name}|${Object.keys(encoded)}`,
          (slot) => db.insertInto(table.name).values(engine.slotted(encoded, slot)),
          encoded,
          engine.rowCheck(() => tableRowKey(table, encoded)),
        );
      },
      async upsert(table, row) {
        await handle.upsertMany(table, [row]);
      },
      async upsertMany(table, given) {
        // One row per primary key, the last named (a statement may not upsert one row twice).
        let unique = given;
        if (given.length > 1) {
          const byKey = new Map<string, Row>();
          for (const row of given) byKey.set(table.primaryKey.map((k) => String(row[k])).join('\u0000'), row);
          unique = [...byKey.values()];
        }
        const all = unique.map((row) => engine.encodeRow(table, row));
        // Statements of UPSERT_ROWS rows, the rest in powers of two: a few shapes for any count.
        for (let at = 0; at < all.length; ) {
          const left = all.length - at;
          const n = left >= UPSERT_ROWS ? UPSERT_ROWS : 2 ** Math.floor(Math.log2(left));
          const chunk = all.slice(at, at + n);
          at += n;
          const columns = Object.keys(chunk[0] as Row);
          // A row's values under its columns' names; with more rows, each name after its row's place.
          const slotOf = n === 1 ? (_: number, c: string) => c : (i: number, c: string) => `${i}\u0000${c}`;
          let values = chunk[0] as Row;
          if (n > 1) {
            values = {};
            for (const [i, row] of chunk.entries()) for (const c of columns) values[slotOf(i, c)] = row[c];
          }
          await engine.run(
            db,
            `ups|${table.name}|${n}|${columns}`,
            (slot) => {
              const excluded = Object.fromEntries(
                columns.filter((c) => !table.primaryKey.includes(c)).map((c) => [c, sql.ref(`excluded.${c}`)] as const),
              );
              return db
                .insertInto(table.name)
                .values(chunk.map((_, i) => Object.fromEntries(columns.map((c) => [c, slot(slotOf(i, c))]))))
                .onConflict((oc) => oc.columns([...table.primaryKey]).doUpdateSet(excluded));
            },
            values,
            n === 1 ? engine.rowCheck(() => tableRowKey(table, chunk[0] as Row)) : ANY_ROWS,
          );
        }
      },
      async remove(table, where) {
        const encoded = engine.encodeRow(table, where);
        await engine.run(
          db,
          `del|${table.name}|${Object.keys(encoded)}`,
          (slot) => {
            let q = db.deleteFrom(table.name);
            for (const k of Object.keys(encoded)) q = q.where(k, '=', slot(k));
            return q;
          },
          encoded,
          engine.rowCheck(() => tableRowKey(table, encoded)),
        );
      },
      async claim(table, where, column, atMost, next) {
        const kind = kindOf(table.columns[column]) as AnyField;
        let q = db
          .updateTable(table.name)
          .set({ [column]: engine.store.encode(kind, next) })
          .where(column, '<=', engine.store.encode(kind, atMost));
        for (const [k, v] of Object.entries(engine.encodeRow(table, where))) q = q.where(k, '=', v);
        // Not deferred: the count is the answer.
        const result = await engine.execute(db, q.compile());
        return Number(result.numAffectedRows ?? 0) === 1;
      },
      async select(table, where, options: SelectOptions = {}) {
        let q = db.selectFrom(table.name).select(Object.keys(table.columns));
        for (const [k, v] of Object.entries(engine.encodeRow(table, where))) q = q.where(k, '=', v);
        if (options.atMost) {
          const [col, v] = options.atMost;
          q = q.where(col, '<=', engine.store.encode(kindOf(table.columns[col]) as AnyField, v));
        }
        for (const [col, dir] of options.orderBy ?? []) q = q.orderBy(col, dir);
        if (options.limit !== undefined) q = q.limit(engine.limitOf(options.limit));
        return (await q.execute()).map((r) => engine.decodeRow(table, r));
      },
    };
    return handle;
  }

  /**
   * Resource operations for a custom operation, bound to its caller and transaction; a `write`
   * operation's `get` also locks what the row's updates lock (see loadForWrite). A read
   * operation's `get` locks nothing: it runs outside any transaction (`db` is the store's).
   */
  ops(
    db: DB,
    principal: Principal,
    write = true,
    target?: {
      resource: Resource;
      id: string;
      cond: WriteConditions;
      body?: unknown;
      acts?: (row: Doc) => boolean;
      overwrites?: boolean;
    },
  ): ResourceOps {
    // A row the operation got (locked, in its transaction) is what its update starts from.
    const got = new Map<string, Doc>();
    const rows: WriteRows = new Map();
    return {
      get: async (resource, id) => {
        const doc = write
          ? await this.loadForWrite(db, resource, principal, id, rows)
          : await this.load(db, resource, principal, id, false);
        // The operation's own row answers its If-Match as soon as it is read (and locked): 404,
        // then 412, then the body's 400 (PRODUCT.md's check order).
        if (target && resource === target.resource && id === target.id) {
          if (target.acts && !target.acts(doc))
            throw new ApiError('not_found', `No ${resource.name} with id ${id} takes this call`);
          // One that adds to the row (a check-in, a sync) needs no If-Match under EDM_REQUIRE_IF_MATCH.
          this.checkPreconditions(
            doc,
            target.overwrites ? target.cond : { ...target.cond, required: false },
            undefined,
          );
          // An operation that takes no body (a sync): a member sent is unknown (400), after 404 and 412.
          refuseBody(target.body);
        }
        got.set(rowKey(resource, principal.tenantId, id), doc);
        return doc;
      },
      update: (resource, id, patch, extra = {}) => {
        if (!write) throw new Error(`a read operation cannot update ${resource.name} ${id}`);
        const key = rowKey(resource, principal.tenantId, id);
        const before = got.get(key);
        got.delete(key);
        return this.update(db, resource, principal, id, patch, OPERATION_CONDITIONS, { ...extra, before, rows });
      },
      page: (table, where, order, params) => this.page(db, principal, table, where, order, params),
    };
  }

  /**
   * Runs a custom operation of `resource` on row `id` as its route does, in `db`'s transaction
   * (a read operation's, outside any): the HTTP routes, `edm seed` and `edm import` call it.
   */
  operate(
    db: DB,
    resource: Resource,
    principal: Principal,
    op: CustomOperation,
    id: string,
    body: unknown,
    query: Record<string, string | string[] | undefined> = {},
    prepared?: unknown,
    cond: WriteConditions = NO_CONDITIONS,
  ): Promise<Doc | RowPage> {
    return op.run({
      resource,
      principal,
      id,
      body,
      query,
      // Dated when first asked for: after the operation has locked its row (see Tx.now).
      tx: this.tx(db, principal, () => this.clock.now()),
      ops: this.ops(db, principal, op.method !== 'GET', this.operationTarget(resource, op, id, body, cond)),
      prepared,
    });
  }

  /**
   * A custom operation's `prepare` (outside any transaction), for `operate`'s `prepared`. Its
   * row answers If-Match and a refused body here already, so a call that will fail reads nothing
   * from the outside world; `operate` checks both again under the row's lock.
   */
  prepare(
    resource: Resource,
    principal: Principal,
    op: CustomOperation,
    id: string,
    body: unknown,
    cond: WriteConditions = NO_CONDITIONS,
  ): Promise<unknown> {
    if (!op.prepare) return Promise.resolve(undefined);
    return op.prepare({
      resource,
      principal,
      id,
      body,
      ops: this.ops(this.store.db, principal, false, this.operationTarget(resource, op, id, body, cond)),
      outbound: this.outbound,
      now: this.clock.now(),
      clock: () => this.clock.now(),
    });
  }

  /** What a custom operation's own row is checked against when it is read (see ops). */
  private operationTarget(resource: Resource, op: CustomOperation, id: string, body: unknown, cond: WriteConditions) {
    // The body an operation that takes none was sent (refused when its row is read), if any.
    const unasked = op.method === 'POST' && !op.body ? body : undefined;
    return {
      resource,
      id,
      cond,
      body: unasked,
      overwrites: op.overwrites === true,
      ...(op.acts ? { acts: op.acts } : {}),
    };
  }

  get outbound(): OutboundPolicy {
    return this.options.outbound ?? DEFAULT_OUTBOUND;
  }

  // ---- jobs ----

  /**
   * Runs one background job now (the app schedules them; tests call this with a set clock), over
   * every tenant's queued rows or, with `tenantId`, over that tenant's only.
   */
  async runJob(job: Job, tenantId?: string): Promise<number> {
    return job.run(
      this.jobContext(this.store.db, tenantId, async (t, fn) => {
        // A turn of the event loop before each of a job's transactions, so requests are read
        // between them: on SQLite a transaction runs without one (its statements are synchronous),
        // and a sweep of 20,000 key results in a row held requests up to 121 ms (p99 87).
        await nextTurn();
        return this.transaction((db) => fn(this.tx(db, systemPrincipal(t), this.clock.now())));
      }),
    );
  }

  /**
   * After writes made as of past times (`edm seed`, `edm import`): runs the modules' catch-up
   * jobs (Job.catchUp) for the tenant at the clock's time, in one transaction (an import of many
   * rows has many due: one transaction each took longer than the import's own), or in the
   * caller's transaction `within` (an import bringing a row up to its delete's time). Answers how
   * many things they changed.
   */
  async catchUp(tenantId: string, within?: DB): Promise<number> {
    const jobs = this.options.modules.flatMap((m) => m.jobs ?? []).filter((job) => job.catchUp);
    if (jobs.length === 0) return 0;
    const run = async (db: DB) => {
      let changed = 0;
      for (const job of jobs) {
        // Its queue is read inside the transaction too: it sees what the job has done so far.
        changed += await job.run(
          this.jobContext(db, tenantId, (t, fn) => fn(this.tx(db, systemPrincipal(t), this.clock.now()))),
        );
      }
      return changed;
    };
    return within ? run(within) : this.transaction(run);
  }

  private jobContext(db: DB, tenantId: string | undefined, transaction: JobContext['transaction']): JobContext {
    const now = this.clock.now();
    return {
      now,
      clock: () => this.clock.now(),
      outbound: this.outbound,
      queue: async (table, column, limit, options) => {
        const at = (time: string) => this.store.encode(kindOf(table.columns[column]) as AnyField, time);
        return (
          await db
            .selectFrom(table.name)
            .select(Object.keys(table.columns))
            // Due as the clock reads now: a job that looks again later sees what came due meanwhile.
            .where(column, '<=', at(isoTime(this.clock.now())))
            .$if(options?.since !== undefined, (q) => q.where(column, '>', at(options?.since as string)))
            .$if(tenantId !== undefined, (q) => q.where('tenant_id', '=', tenantId as string))
            // Each row's rank among its tenant's due rows first: every tenant's earliest, then its second…
            .$if(options?.byTenant === true, (q) =>
              q
                .orderBy(sql`row_number() over (partition by tenant_id order by ${sql.ref(column)})`)
                .orderBy(column)
                .orderBy('tenant_id'),
            )
            .$if(options?.byTenant !== true, (q) => q.orderBy(column))
            .limit(this.limitOf(limit))
            .execute()
        ).map((r) => this.decodeRow(table, r));
      },
      transaction,
    };
  }

  // ---- reads ----

  async get(resource: Resource, principal: Principal, id: string): Promise<Doc> {
    return this.load(this.store.db, resource, principal, id, false);
  }

  /**
   * A row's internal field as stored, read outside any transaction (a signed URL's generation,
   * checked before the call is admitted); undefined when the tenant has no such row. The
   * statement's text is built once per field.
   */
  async internalValue(resource: Resource, tenantId: string, id: string, name: string): Promise<unknown> {
    const key = `${resource.table}\u0000${name}`;
    let text = this.internalReads.get(key);
    if (text === undefined) {
      if (!resource.internal?.[name]) throw new Error(`${resource.name} has no internal field ${name}`);
      text = this.store.db
        .selectFrom(resource.table)
        .select(sql.ref(name).as('value'))
        .where('tenant_id', '=', '')
        .where('id', '=', '')
        .compile().sql;
      this.internalReads.set(key, text);
    }
    const [row] = await this.read(CompiledQuery.raw(text, [tenantId, id]));
    return row === undefined ? undefined : row.value;
  }

  private readonly internalReads = new Map<string, string>();

  /**
   * A read as the JSON it answers (the stored form, sent as is), with the version for the ETag.
   * On SQLite the stored form comes as bytes (see `loadQuery`), never decoded into a string.
   */
  async getJson(
    resource: Resource,
    principal: Principal,
    id: string,
  ): Promise<{ json: string | Buffer; version: number }> {
    const row =
      this.store.kind === 'postgres'
        ? await this.readById(resource, principal, id)
        : (await this.read(this.loadQuery(resource, principal, id, false, true)))[0];
    if (!row) throw new ApiError('not_found', `No ${resource.name} with id ${id}`);
    if (this.isCurrent(resource, row))
      return { json: row[DOC_COLUMN] as string | Buffer, version: Number(row.version) };
    const doc = await this.get(resource, principal, id);
    return { json: serializeDoc(resource, doc), version: doc.version as number };
  }

  /**
   * A by-id read as `getJson` answers it, on PostgreSQL: the reads of one turn of the event loop
   * in one scope (resource, tenant, app) go to the server as one statement, `id = any($ids)`.
   * Each read was a round trip of its own, a socket write and read on both sides, and the
   * driver's work per statement: under load that cost more than the rest of the request. A read
   * waits at most for the end of the turn it was made in.
   */
  private readById(resource: Resource, principal: Principal, id: string): Promise<Record<string, unknown> | undefined> {
    const scope = `${resource.table}\u0000${principal.tenantId}\u0000${principal.appId === null ? '' : `app:${principal.appId}`}`;
    let pending = this.pendingReads.get(scope);
    if (!pending) {
      pending = { resource, principal, waiting: new Map() };
      this.pendingReads.set(scope, pending);
      if (this.pendingReads.size === 1) setImmediate(() => this.sendReads());
    }
    const waiting = pending.waiting;
    return new Promise((resolve, reject) => {
      const readers = waiting.get(id);
      if (readers) readers.push({ resolve, reject });
      else waiting.set(id, [{ resolve, reject }]);
    });
  }

  private sendReads(): void {
    const batches = [...this.pendingReads.values()];
    this.pendingReads.clear();
    for (const { resource, principal, waiting } of batches) {
      const ids = [...waiting.keys()];
      for (let at = 0; at < ids.length; at += MAX_READ_BATCH) {
        const some = ids.slice(at, at + MAX_READ_BATCH);
        const fail = (err: unknown) => {
          for (const id of some) for (const r of waiting.get(id) ?? []) r.reject(err);
        };
        // Outside any request: whatever goes wrong must reach the reads, never escape the turn.
        Promise.resolve()
          .then(() => this.read(this.loadManyQuery(resource, principal, some)))
          .then((rows) => {
            const byId = new Map(rows.map((row) => [row.id as string, row]));
            for (const id of some) for (const r of waiting.get(id) ?? []) r.resolve(byId.get(id));
          }, fail);
      }
    }
  }

  /** The rows of `ids` in the principal's scope, in their stored JSON (see readById). */
  private loadManyQuery(resource: Resource, principal: Principal, ids: string[]): CompiledQuery {
    return this.shaped(
      `loadmany|${resource.table}|${principal.appId !== null}`,
      (slot) =>
        this.visibleIn(resource, principal, slot)
          .where(sql<SqlBool>`${sql.ref('id')} = any(${slot('ids')}::text[])`)
          .select(['id', ...this.jsonColumns()]),
      { tenant: principal.tenantId, app: principal.appId, ids },
    );
  }

  /** A read outside any write: on SQLite files, synchronously on the read-only connection. */
  private async read(query: CompiledQuery): Promise<Record<string, unknown>[]> {
    if (this.store.read) return this.store.read(query.sql, query.parameters);
    return (await this.store.db.executeQuery<Record<string, unknown>>(query)).rows;
  }

  /** Rows of `ids` in the principal's scope read whole, as documents upgraded to the current schema version. */
  private async readUpgraded(resource: Resource, principal: Principal, ids: string[]): Promise<Map<string, Doc>> {
    const rows = await this.read(
      this.shaped(
        `upgrade|${resource.table}|${principal.appId !== null}|${ids.length}`,
        (slot) =>
          this.visibleIn(resource, principal, slot)
            .where(
              'id',
              'in',
              ids.map((_, i) => slot(`id${i}`)),
            )
            .select(columnsOf(resource)),
        { tenant: principal.tenantId, app: principal.appId, ...Object.fromEntries(ids.map((id, i) => [`id${i}`, id])) },
      ),
    );
    return new Map(rows.map((row) => [row.id as string, this.fromRow(resource, row)]));
  }

  /** Whether a row's stored JSON is at the resource's current schema version. */
  private isCurrent(resource: Resource, row: Record<string, unknown>): boolean {
    const json = row[DOC_COLUMN];
    return (typeof json === 'string' || Buffer.isBuffer(json)) && Number(row.schema_version) === resource.schemaVersion;
  }

  async list(resource: Resource, principal: Principal, query: ListQuery): Promise<ListPage> {
    const { store } = this;
    const { field: sortField, desc } = query.sort;
    const sortSpec = resource.allFields[sortField];
    const nullable = !sortSpec.alwaysPresent;
    // The SQL depends on the list's shape (sort, which filters, how many values); the values go
    // in slots, so a list's query is compiled once per shape like the by-id reads.
    const values: Record<string, unknown> = {
      tenant: principal.tenantId,
      app: principal.appId,
      limit: query.limit + 1,
    };
    const shape = ['list', resource.table, principal.appId !== null, sortField, desc, query.includeDeleted];
    // On SQLite the LIMIT is written into the statement (see `limitOf`), so it is part of the shape.
    if (store.kind === 'sqlite') shape.push(`limit ${query.limit + 1}`);
    query.filters.forEach((f, i) => {
      const spec = resource.allFields[f.field];
      if (f.op === 'in') {
        const list = padded(f.values);
        list.forEach((v, j) => {
          values[`f${i}.${j}`] = store.encode(spec, v);
        });
        shape.push(`${f.field} in ${list.length}`);
      } else if (f.op === 'has_any') {
        const list = padded(f.values);
        if (store.kind === 'postgres') values[`f${i}`] = f.values;
        else
          list.forEach((v, j) => {
            values[`f${i}.${j}`] = v;
          });
        shape.push(`${f.field} has_any ${store.kind === 'postgres' ? 'array' : list.length}`);
      } else {
        values[`f${i}`] = store.encode(spec, f.value);
        shape.push(`${f.field} ${f.op}`);
      }
    });
    if (query.q !== null) {
      values.q = query.q;
      shape.push('q');
    }
    if (query.after) {
      values.afterValue = store.encode(sortSpec, query.after.value);
      values.afterId = query.after.id;
      shape.push(query.after.value === null ? 'after null' : 'after');
    }
    // A sort on a field that may be empty, past a cursor with a value (and on PostgreSQL from the
    // first page): the rows with a value and the rows without are read as two ranges (below).
    const split = nullable && (query.after ? query.after.value !== null : store.kind === 'postgres');
    // SQLite: the filter on a JSON list (`tag=`) whose member table the page is read through (narrowIndex).
    let members = -1;
    const condition: FilterCondition = (f, i, slot) => (eb) => {
      const many = (n: number) => Array.from({ length: n }, (_, j) => slot(`f${i}.${j}`));
      if (f.op === 'in') {
        const width = padded(f.values).length;
        return width === 1 ? eb(f.field, '=', slot(`f${i}.0`)) : eb(f.field, 'in', many(width));
      }
      if (f.op === 'has_any') {
        const any = this.hasAny(f.field, store.kind === 'postgres' ? slot(`f${i}`) : many(padded(f.values).length));
        if (i !== members) return any;
        // The rows the member table names, found by the table's primary key (narrowIndex).
        const named = store.db
          .selectFrom(memberTable(resource, f.field) as string)
          .select('id')
          .where('tenant_id', '=', slot('tenant'))
          .where('value', 'in', many(padded(f.values).length));
        return eb.and([any, eb('id', 'in', named)]);
      }
      const op = { gte: '>=', gt: '>', lte: '<=', lt: '<' }[f.op] as '>=' | '>' | '<=' | '<';
      return eb(f.field, op, slot(`f${i}`));
    };
    // A search that matches few rows: their ids, the rows the page reads by primary key (see searchedIds).
    const searched = query.q !== null ? await this.searchedIds(resource, query, values) : null;
    if (searched !== null) {
      values.searched = searched;
      shape.push('searched');
    }
    // SQLite: the index of a filter that matches few rows, which the page is read through (see narrowIndex).
    const narrowed =
      store.kind === 'sqlite' && searched === null && query.filters.length > 0
        ? await this.narrowIndex(resource, query, values, condition)
        : null;
    const indexed =
      searched !== null && store.kind === 'sqlite' ? primaryKeyIndex(resource.table) : (narrowed?.index ?? null);
    if (indexed !== null) shape.push(`indexed by ${indexed}`);
    if (narrowed?.members !== undefined) {
      members = narrowed.members;
      shape.push(`members of ${members}`);
    }
    // `packed`: the SQLite page row, whose order the caller checks (see packed()).
    const filtered = (slot: (name: string) => string, packed = false) => {
      let q = this.visibleIn(resource, principal, slot).select([DOC_COLUMN, 'schema_version', 'id', sortField]);
      if (!query.includeDeleted) q = q.where('is_deleted', '=', this.live(resource));
      query.filters.forEach((f, i) => {
        q = q.where(condition(f, i, slot));
      });
      if (query.q !== null) q = q.where(this.searchHolds(slot));
      if (searched !== null) {
        q = q.where(
          store.kind === 'postgres'
            ? sql<SqlBool>`${sql.ref('id')} = any(${sql.val(slot('searched'))}::text[])`
            : sql<SqlBool>`${sql.ref('id')} in (select value from json_each(${slot('searched')}))`,
        );
      }
      const dir = desc ? 'desc' : 'asc';
      const limit = this.limitOf(query.limit + 1, slot('limit'));
      if (split) {
        // Rows with a value in sort order, then rows without one (nulls last either way): each
        // half is one index range that stops after a page, and only the two halves' first
        // pages are merged. As one condition (`(col, id) > (v, id) OR col IS NULL`), neither
        // store could seek: every page scanned the tenant's rows after the cursor (SQLite) or
        // sorted them (PostgreSQL, whose index also cannot give DESC with NULLS LAST).
        const valued = (
          query.after
            ? q.where(this.keysetAfter(sortField, desc, false, slot('afterValue'), slot('afterId')))
            : q.where(sortField, 'is not', null)
        )
          .orderBy(sortField, dir)
          .orderBy('id', dir)
          .limit(limit);
        const empty = q.where(sortField, 'is', null).orderBy('id', dir).limit(limit);
        const halves = store.db
          .selectFrom(valued.as('valued'))
          .selectAll()
          .unionAll(store.db.selectFrom(empty.as('empty')).selectAll());
        const page = store.db.selectFrom(halves.as('halves')).select([DOC_COLUMN, 'schema_version', 'id', sortField]);
        // The packed page checks the order itself, and SQLite joins the halves in order: sorting
        // them again (a temporary b-tree of whole documents per half) made a deep page take ~70%
        // longer than page 1 (~25% without it).
        if (packed) return page.limit(limit);
        return page
          .orderBy(sortField, (ob) => (desc ? ob.desc() : ob.asc()).nullsLast())
          .orderBy('id', dir)
          .limit(limit);
      }
      if (query.after) {
        const value = query.after.value === null ? null : slot('afterValue');
        q = q.where(this.keysetAfter(sortField, desc, nullable, value, slot('afterId')));
      }
      q = nullable
        ? q.orderBy(sortField, (ob) => (desc ? ob.desc() : ob.asc()).nullsLast())
        : q.orderBy(sortField, dir);
      q = q.orderBy('id', dir).limit(limit);
      if (!(store.kind === 'postgres' && query.q !== null && searched === null && sortField === DEFAULT_SORT)) return q;
      // PostgreSQL, a search under the default sort: the page's ids first, from that sort's
      // index, which includes the search text and the deleted flag (resourceTable), so that an
      // index-only scan tests each row's text without reading it from the table (a plain index
      // scan reads the row before any condition). Then those rows. A text no title holds, on a
      // tenant of 100,000 key results: 95–125 → 20–31 ms.
      return store.db
        .selectFrom(resource.table)
        .select([DOC_COLUMN, 'schema_version', 'id', sortField])
        .where('tenant_id', '=', slot('tenant'))
        .where('id', 'in', q.clearSelect().select('id'))
        .orderBy(sortField, dir)
        .orderBy('id', dir)
        .limit(limit);
    };
    const cursorAfter = (value: unknown, id: string) =>
      this.options.cursors.encode(query.fingerprint, store.decode(sortSpec, value), id);

    if (store.kind === 'sqlite') {
      const packed = (
        await this.read(
          this.shaped(
            `${shape.join('|')}|packed`,
            (slot) => this.indexedBy(this.packed(filtered(slot, true), sortField), resource.table, indexed),
            values,
          ),
        )
      )[0];
      // No rows: one row of NULLs (an aggregate without GROUP BY).
      if (typeof packed?.ids !== 'string') return { documents: [], has_more: false, next_cursor: null };
      const ids = packed.ids.split(',');
      const keys = JSON.parse(packed.keys as string) as unknown[];
      const hasMore = ids.length > query.limit;
      // The packed form holds only documents at the current schema version (`oldest` is -1 for
      // a row stored without one, by an older build: group_concat would skip it), in the order
      // the query asked for.
      if (
        Buffer.isBuffer(packed.body) &&
        Number(packed.oldest) === resource.schemaVersion &&
        inSortOrder(keys, ids, desc, nullable)
      ) {
        if (!hasMore) return { documents: packed.body, has_more: false, next_cursor: null };
        // The row past the page only told that more follow: cut its document (and its comma).
        const sizes = packed.sizes as string;
        const extra = Number(sizes.slice(sizes.lastIndexOf(',') + 1));
        return {
          documents: packed.body.subarray(0, packed.body.length - extra - 1),
          has_more: true,
          next_cursor: cursorAfter(keys[query.limit - 1], ids[query.limit - 1]),
        };
      }
    }

    const rows = await this.read(
      this.shaped(shape.join('|'), (slot) => this.indexedBy(filtered(slot), resource.table, indexed), values),
    );
    const hasMore = rows.length > query.limit;
    const page = rows.slice(0, query.limit);
    // Rows stored under an older schema version, answered as upgraded: all of the page's read
    // whole by one query (one each made a list of such rows 4–13 times slower).
    const older: string[] = [];
    for (const row of page) if (!this.isCurrent(resource, row)) older.push(row.id as string);
    const upgraded = older.length ? await this.readUpgraded(resource, principal, older) : null;
    const data: string[] = [];
    for (const row of page) {
      const doc = upgraded?.get(row.id as string);
      if (doc) data.push(serializeDoc(resource, doc));
      else if (!upgraded || this.isCurrent(resource, row)) data.push(row[DOC_COLUMN] as string);
    }
    const last = page[page.length - 1];
    return {
      documents: data,
      has_more: hasMore,
      next_cursor: hasMore && last ? cursorAfter(last[sortField], last.id as string) : null,
    };
  }

  /**
   * SQLite only: the index a list's page is read through (null leaves the choice to SQLite,
   * which reads an id's filter by its index). PLANNER_MODEL tells it that a value of an
   * enum, or a range, matches many rows, so under a sort on another field it reads the sort's
   * index until it has a page: where the filter matches few rows that is most of the tenant
   * (100–250 ms on a tenant of 100,000 key results for `progress_pct[gte]=99` or `status=at_risk`
   * under `sort=title`). So each such filter's rows are counted first, up to PROBE_ROWS, from its
   * own index alone (neither the app nor deleted rows are told apart: an upper bound), and the
   * one matching fewest, if under PROBE_ROWS, is the index the page is read by, its rows then
   * sorted; where each matches more, the sort's index is. A filter on a JSON list (`tag=`) has
   * no index of its own: its rows are counted in its member table (memberTable; a row holding
   * two of the values counts twice), and where it is the one matching fewest, the page reads
   * the rows the member table names by the primary key (`members`: the filter's number). A
   * filter on an id is read by its index already (PLANNER_MODEL's perId), and one on the sort's
   * own field, or on one value under the default sort, is a range of an index in the page's
   * order. The count costs ~35–50 µs where it reaches PROBE_ROWS (a status most key results
   * have, under `sort=title`).
   */
  private async narrowIndex(
    resource: Resource,
    query: ListQuery,
    values: Record<string, unknown>,
    condition: FilterCondition,
  ): Promise<{ index: string; members?: number } | null> {
    const probes: { i: number; f: Filter; index: string; members: string | null }[] = [];
    // An index holding one value's rows in the page's order (the default sort's), to read where no filter is narrow.
    let ordered: string | null = null;
    for (const [i, f] of query.filters.entries()) {
      if (f.op === 'has_any') {
        const members = memberTable(resource, f.field);
        if (members !== null) probes.push({ i, f, index: primaryKeyIndex(resource.table), members });
        continue;
      }
      const index = filterIndex(resource, f.field);
      if (index === null || f.field === query.sort.field) continue;
      if (index.selective) return null;
      // One value under the default sort is one range of its index, in order: no walk to spare.
      if (index.byCreated && f.op === 'in' && f.values.length === 1 && query.sort.field === DEFAULT_SORT) {
        ordered ??= index.name;
        continue;
      }
      probes.push({ i, f, index: index.name, members: null });
    }
    let best: { index: string; rows: number; members?: number } | null = null;
    for (const { i, f, index, members } of probes) {
      const n = f.op === 'in' || f.op === 'has_any' ? padded(f.values).length : 0;
      const width = n > 0 ? ` ${n}` : '';
      const key = `probe|${resource.table}|${members ?? index}|${f.field} ${f.op}${width}|${i}`;
      const [row] = await this.read(
        this.shaped(
          key,
          (slot) => {
            const counted =
              members === null
                ? this.store.db
                    .selectFrom(resource.table)
                    .select(sql`1`.as('one'))
                    .where('tenant_id', '=', slot('tenant'))
                    .where(condition(f, i, slot))
                : this.store.db
                    .selectFrom(members)
                    .select(sql`1`.as('one'))
                    .where('tenant_id', '=', slot('tenant'))
                    .where(
                      'value',
                      'in',
                      Array.from({ length: n }, (_, j) => slot(`f${i}.${j}`)),
                    );
            const count = this.store.db
              .selectFrom(counted.limit(this.limitOf(PROBE_ROWS)).as('probe'))
              .select((eb) => eb.fn.countAll().as('n'));
            return members === null ? this.indexedBy(count, resource.table, index) : count;
          },
          values,
        ),
      );
      const rows = Number(row?.n);
      if (rows < PROBE_ROWS && (best === null || rows < best.rows)) {
        best = { index, rows, members: members === null ? undefined : i };
      }
    }
    if (best !== null) return { index: best.index, members: best.members };
    if (ordered !== null || probes.length === 0) return ordered === null ? null : { index: ordered };
    // Every filter counted matches many rows: the sort's index, read until a page is full. Left
    // to SQLite, a value of a sort's field (`target=100`), which PLANNER_MODEL takes for one
    // row, had all its rows read and sorted (88 ms for 50,000 under `sort=title`).
    const sorted = filterIndex(resource, query.sort.field)?.name;
    return sorted === undefined ? null : { index: sorted };
  }

  /**
   * The ids of the rows a list's search (`q=`) matches, where they are fewer than PROBE_ROWS (on
   * SQLite as a JSON array): the page then reads those rows by primary key and sorts them. Null
   * where they are more (the sort's index is walked until a page is full, the text tested on the
   * way, which finds a page within ~limit × the tenant's rows ÷ PROBE_ROWS rows where they are
   * spread along the sort), where a filter on an id narrows the list already (its index is read),
   * and under the default sort with no filter, whose page walks the index this reads (`filtered`
   * in list()). The ids are found in the default sort's index, which carries the search text (on
   * PostgreSQL as included columns, with the deleted flag, for an index-only scan; see
   * resourceTable), so no table row is read: on a tenant of 100,000 key results, a text no title
   * holds walked all its rows in the table, 95–145 ms on PostgreSQL and 95–141 ms on SQLite
   * under another sort, against 20–35 and 15–23 ms now. Neither the app nor (on SQLite) deleted
   * rows are told apart here: the page's own conditions do.
   */
  private async searchedIds(
    resource: Resource,
    query: ListQuery,
    values: Record<string, unknown>,
  ): Promise<string[] | string | null> {
    const { store } = this;
    // Under the default sort and no filter, the page walks that index itself (see `filtered` in list()).
    if (query.sort.field === DEFAULT_SORT && query.filters.length === 0) return null;
    if (query.filters.some((f) => filterIndex(resource, f.field)?.selective)) return null;
    const postgres = store.kind === 'postgres';
    const live = postgres && !query.includeDeleted;
    // One row: the ids (an array; on SQLite JSON) where they are fewer than PROBE_ROWS, else null.
    const [row] = await this.read(
      this.shaped(
        `searched|${resource.table}|${live}`,
        (slot) => {
          let q = store.db.selectFrom(resource.table).select('id').where('tenant_id', '=', slot('tenant'));
          if (live) q = q.where('is_deleted', '=', this.live(resource));
          // In that index's order: PostgreSQL takes a search to match a third of the rows, and
          // without an order a scan of the whole table, stopping at the 500th, looked cheaper.
          q = q.where(this.searchHolds(slot)).orderBy(DEFAULT_SORT).orderBy('id').limit(this.limitOf(PROBE_ROWS));
          const ids = postgres ? sql`coalesce(array_agg(id), '{}')` : sql`json_group_array(id)`;
          const found = store.db
            .selectFrom(q.as('probe'))
            .select(sql`case when count(*) < ${sql.lit(PROBE_ROWS)} then ${ids} end`.as('ids'));
          return this.indexedBy(
            found,
            resource.table,
            postgres ? null : (filterIndex(resource, DEFAULT_SORT)?.name ?? null),
          );
        },
        values,
      ),
    );
    const ids = row?.ids;
    if (ids === null || ids === undefined) return null;
    return postgres ? (ids as string[]) : (ids as string);
  }

  /** A list's search: the row's search text (its title folded, searchText) holds the text in slot `q`. */
  private searchHolds(slot: (name: string) => string): Expression<SqlBool> {
    const fn = this.store.kind === 'postgres' ? sql`strpos` : sql`instr`;
    return sql<SqlBool>`${fn}(${sql.ref(SEARCH_COLUMN)}, ${slot('q')}) > 0`;
  }

  /**
   * A query whose reads of `table` go through `index` (SQLite's `INDEXED BY`, which Kysely does
   * not write); the query itself where `index` is null.
   */
  private indexedBy(
    q: { compile(): CompiledQuery },
    table: string,
    index: string | null,
  ): { compile(): CompiledQuery } {
    if (index === null) return q;
    return {
      compile: () => {
        const compiled = q.compile();
        const from = `from "${table}"`;
        if (!compiled.sql.includes(from)) throw new Error(`no read of ${table} to index: ${compiled.sql}`);
        return CompiledQuery.raw(compiled.sql.replaceAll(from, `${from} indexed by "${index}"`), [
          ...compiled.parameters,
        ]);
      },
    };
  }

  /**
   * A LIMIT's value. SQLite plans with the value of a bound LIMIT, so a statement whose LIMIT is
   * a parameter is compiled again each time it runs with its parameters bound (better-sqlite3
   * binds them on every run): measured +10 µs on a one-row read and +60–80 µs, half the query,
   * on a 50-row page. There the validated integer is written into the SQL; on PostgreSQL it
   * stays a parameter (`slot`, or the value itself).
   */
  private limitOf(n: number, slot?: string): number | RawBuilder<number> {
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`invalid LIMIT ${n}`);
    if (this.store.kind === 'sqlite') return sql.lit(n);
    return slot === undefined ? n : (slot as unknown as number);
  }

  /**
   * A page as one row (SQLite): its documents joined by commas as one blob, so 50 documents
   * become one buffer the answer is assembled from, not 50 strings decoded from UTF-8 and
   * encoded again. It holds the page and the row after it (which tells that more follow), and
   * beside the blob: the oldest schema version among the rows (-1 if one has no document),
   * each document's size in bytes (to cut the extra one off), the sort keys
   * as JSON (SQLite writes reals with 17 digits, so they read back exact: the cursor's value)
   * and the ids, both in the order the documents were joined. SQLite joins an ordered
   * subquery's rows in its order, but does not promise to: the caller checks the keys and ids
   * against the sort (`inSortOrder`). Checked by SQLite instead, the ids once more under an
   * aggregate ORDER BY cost ~15 µs of a 50-row page's ~85 (a temporary b-tree per page), and
   * row_number() twice that.
   */
  private packed(
    rows: SelectQueryBuilder<Record<string, Record<string, unknown>>, string, Record<string, unknown>>,
    sortField: string,
  ) {
    const doc = sql.ref(DOC_COLUMN);
    const key = sql.ref(sortField);
    return this.store.db
      .selectFrom(rows.as('page'))
      .select([
        sql`cast(group_concat(${doc}, ',') as blob)`.as('body'),
        sql`group_concat(octet_length(${doc}))`.as('sizes'),
        sql`json_group_array(${key})`.as('keys'),
        sql`group_concat(id)`.as('ids'),
        sql`min(iif(${doc} is null, -1, schema_version))`.as('oldest'),
      ]);
  }

  /** Rows strictly after (value, id) in the sort order; nulls sort last. */
  private keysetAfter(
    column: string,
    desc: boolean,
    nullable: boolean,
    value: unknown,
    id: string,
  ): Expression<SqlBool> {
    const cmp = sql.raw(desc ? '<' : '>');
    const col = sql.ref(column);
    const idCol = sql.ref('id');
    if (value === null) return sql<SqlBool>`(${col} IS NULL AND ${idCol} ${cmp} ${id})`;
    // A row-value comparison is one index range on (tenant_id, column, id) in both stores, so a
    // deep page seeks where the last one ended instead of scanning past the rows before it.
    const after = sql<SqlBool>`(${col}, ${idCol}) ${cmp} (${value}, ${id})`;
    return nullable ? sql<SqlBool>`(${after} OR ${col} IS NULL)` : after;
  }

  /** Rows whose JSON list column holds any of the values: one array parameter on PostgreSQL, one per value on SQLite. */
  private hasAny(column: string, values: string | string[]): Expression<SqlBool> {
    if (this.store.kind === 'postgres') {
      return sql<SqlBool>`${sql.ref(column)} ?| ${sql.val(values)}::text[]`;
    }
    return sql<SqlBool>`EXISTS (SELECT 1 FROM json_each(${sql.ref(column)}) WHERE json_each.value IN (${sql.join(values as string[])}))`;
  }

  /** Keyset pages of a log table, newest first; cursors bound to the caller and the filter. */
  async page(
    db: DB,
    principal: Principal,
    table: TableDef,
    where: Row,
    order: { column: string; id: string },
    params: Record<string, string | string[] | undefined>,
  ): Promise<RowPage> {
    let limit = DEFAULT_LIMIT;
    let cursor: string | null = null;
    eachParameter(params, (name, value) => {
      if (Array.isArray(value)) {
        throw new ApiError('invalid_parameter', `${name}: must not be repeated`, {
          errors: [{ path: name, code: 'invalid_parameter', message: 'must not be repeated' }],
        });
      }
      if (name === 'limit') {
        if (!/^\d+$/.test(value ?? '') || Number(value) < 1 || Number(value) > MAX_LIMIT) {
          throw new ApiError('invalid_parameter', `limit: must be an integer from 1 to ${MAX_LIMIT}`, {
            errors: [
              { path: 'limit', code: 'invalid_parameter', message: `must be an integer from 1 to ${MAX_LIMIT}` },
            ],
          });
        }
        limit = Number(value);
      } else if (name === 'cursor') cursor = value ?? null;
      else {
        throw new ApiError('unknown_parameter', `${name || '""'} is not a parameter of this list`, {
          errors: [
            { path: name, code: 'unknown_parameter', message: `${name || '""'} is not a parameter of this list` },
          ],
        });
      }
    });
    const fingerprint = createHash('sha256')
      .update(JSON.stringify([table.name, principal.tenantId, principal.appId, where]))
      .digest('base64url');
    let q = db.selectFrom(table.name).select(Object.keys(table.columns));
    for (const [k, v] of Object.entries(this.encodeRow(table, where))) q = q.where(k, '=', v);
    if (cursor !== null) {
      const after = this.options.cursors.decode(cursor, fingerprint);
      const value = this.store.encode(kindOf(table.columns[order.column]) as AnyField, after.value);
      const col = sql.ref(order.column);
      const idCol = sql.ref(order.id);
      // A row-value comparison: one index range from the cursor on (see keysetAfter).
      q = q.where(sql<SqlBool>`(${col}, ${idCol}) < (${value}, ${after.id})`);
    }
    const query = q
      .orderBy(order.column, 'desc')
      .orderBy(order.id, 'desc')
      .limit(this.limitOf(limit + 1))
      .compile();
    const rows = (await this.execute(db, query)).rows.map((r) => this.decodeRow(table, r));
    const hasMore = rows.length > limit;
    const data = rows.slice(0, limit);
    const last = data[data.length - 1];
    return {
      object: 'list',
      data,
      has_more: hasMore,
      next_cursor:
        hasMore && last ? this.options.cursors.encode(fingerprint, last[order.column], String(last[order.id])) : null,
    };
  }

  // ---- writes ----

  private context(
    principal: Principal,
    op: HookContext['op'],
    input: Doc | null,
    event: WriteEvent | null,
  ): HookContext {
    return {
      principal,
      now: this.clock.now(),
      op,
      input,
      event,
      keys: this.options.keys,
      restoring: this.options.restoring === true,
    };
  }

  private checkPreconditions(current: Doc, cond: WriteConditions, bodyVersion: unknown): void {
    if (cond.invalid) throw cond.invalid;
    checkIfMatch(cond.ifMatch, current.version as number);
    const none = cond.ifNoneMatch;
    if (none === 'any' || (Array.isArray(none) && none.includes(current.version as number))) {
      throw new ApiError(
        'precondition_failed',
        none === 'any'
          ? `If-None-Match: * holds only where no ${current.id} exists`
          : `If-None-Match names the current version ${current.version}`,
        { extra: { current_version: current.version } },
      );
    }
    // A body version that is no version (null, text) is no precondition: 428 before the body's 400.
    const locks = typeof bodyVersion === 'number' && Number.isInteger(bodyVersion) && bodyVersion >= 1;
    // `If-Match: *` holds for any version: it says the row exists, not which version was read,
    // so it guards no update from overwriting another (RFC 6585 §3's lost update).
    const unlocked = cond.ifMatch === null || cond.ifMatch === 'any';
    if (this.options.requireIfMatch && cond.required !== false && unlocked && !locks) {
      throw new ApiError(
        'precondition_required',
        cond.ifMatch === 'any'
          ? 'This server requires the version read on writes that replace what was read: If-Match: * names none (send the ETag, or a body version on a PATCH)'
          : 'This server requires If-Match on writes that replace what was read (a PATCH may send a body version instead)',
      );
    }
    cond.deferred?.();
  }

  /**
   * 422 unless every reference the write sets names a live row of the caller's tenant (any app).
   * The rows read stay in the write's `tx` for the hooks that read them again.
   */
  private async checkReferences(tx: EngineTx, resource: Resource, principal: Principal, doc: Doc, before: Doc | null) {
    const errors: FieldError[] = [];
    // `restrict` references first: they are locked before the parent, the order a write of the
    // row they name takes them in (a connector's sync: the connector, then the objectives).
    for (const { name, field, target } of this.references.get(resource) ?? []) {
      const value = doc[name];
      if (typeof value !== 'string' || (before && before[name] === value)) continue;
      const locks = resource.lockReferences?.includes(name);
      // A parent, or a row this one comes to hold (`restrict`), is held (FOR SHARE) until the
      // write commits: a DELETE of it waits, then counts this row among its live children or
      // holders (409), instead of leaving a live row on a deleted one; one that deleted it
      // first is seen here (422).
      const row = !target
        ? null
        : locks
          ? await tx.find(target, principal.tenantId, value, 'update')
          : field.parent || field.restrict
            ? await tx.find(target, principal.tenantId, value, 'share')
            : await tx.peek(target, principal.tenantId, value);
      const found = row !== null && row.is_deleted === false;
      if (!found) {
        errors.push({
          path: `/${name}`,
          code: 'invalid_reference',
          message: `${name} must name a live ${target?.name ?? 'resource'} of this tenant; ${value} does not`,
        });
      }
    }
    if (errors.length) throw fieldError('invalid_reference', errors);
  }

  async create(db: DB, resource: Resource, principal: Principal, body: Doc): Promise<Doc> {
    checkWritableKeys(resource, body, false);
    const ctx = this.context(principal, 'create', body, null);
    const now = isoTime(ctx.now);
    const doc: Doc = {};
    for (const [name, field] of Object.entries(resource.allFields)) {
      doc[name] = field.access === 'read' ? null : (body[name] ?? field.default ?? null);
    }
    for (const [name, field] of Object.entries(resource.internal ?? {})) doc[name] = field.default ?? null;
    Object.assign(doc, {
      id: newId(resource.idPrefix),
      tenant_id: principal.tenantId,
      app_id: principal.appId,
      created_at: now,
      updated_at: now,
      created_by: principal.sub,
      updated_by: principal.sub,
      is_deleted: false,
      schema_version: resource.schemaVersion,
      version: 1,
    });
    resource.hooks?.prepare?.(doc, null, ctx);
    validateDocument(resource, doc, null, ctx);
    // Before the references' locks, as an update with this body takes it (a query's create
    // locks the rows it reads, as a change of a query does).
    const serial = resource.hooks?.serialize?.(body);
    if (serial) await this.serialize(db, principal.tenantId, serial);
    const tx = this.tx(db, principal, ctx.now);
    await this.checkReferences(tx, resource, principal, doc, null);
    await resource.hooks?.derive?.(doc, null, ctx, tx);
    const row = this.toRow(resource, doc);
    await this.run(
      db,
      `ins|${resource.table}`,
      (slot) => db.insertInto(resource.table).values(this.slotted(row, slot)),
      row,
      this.rowCheck(() => rowKey(resource, principal.tenantId, doc.id as string)),
    );
    await this.writeMembers(db, resource, null, doc);
    await resource.hooks?.afterWrite?.(doc, null, ctx, tx);
    return doc;
  }

  async update(
    db: DB,
    resource: Resource,
    principal: Principal,
    id: string,
    body: unknown,
    cond: WriteConditions,
    extra: UpdateExtra = {},
  ): Promise<Doc> {
    const rows: WriteRows = extra.rows ?? new Map();
    if (!extra.before && body !== null && typeof body === 'object' && !Array.isArray(body)) {
      const lock = resource.hooks?.serialize?.(body as Doc);
      // SQLite runs one write at a time already; PostgreSQL takes a transaction-level advisory lock.
      if (lock) await this.serialize(db, principal.tenantId, lock);
      // A move to another parent takes its tenant lock here, before any row lock (see movesOf).
      const moves = await this.movesOf(db, resource, principal, id, body as Doc, rows);
      if (moves.length && resource.serializeRows) {
        await this.serialize(db, principal.tenantId, resource.serializeRows.lock);
      }
      // Rows a field of the body names inside its text (FieldSpec.mentions: a query's `kr(…)`)
      // are locked before this one, parent first (Tx.lock): a write to one of them that reaches
      // this row (recomputing a query) takes them in that order too.
      const mentions = this.store.kind === 'postgres' ? this.mentionFields.get(resource) : undefined;
      for (const { name, target } of mentions ?? []) {
        if (!(name in body)) continue;
        const ids = mentionedIds(target.idPrefix, (body as Doc)[name]).filter((m) => m !== id);
        if (ids.length) await this.tx(db, principal, this.clock.now(), rows).lock(target, principal.tenantId, ids);
      }
      // A row the body names in a `restrict` reference is held before this row and its parent
      // are locked: the order the named row's own writes take them in (see checkReferences).
      for (const { name, target } of this.store.kind === 'postgres' ? (this.restricts.get(resource) ?? []) : []) {
        const value = (body as Doc)[name];
        // Only an id of its form: anything else is the body's 400, after the row's 404 and 412.
        if (typeof value === 'string' && isIdOf(target, value)) {
          await this.tx(db, principal, this.clock.now(), rows).find(target, principal.tenantId, value, 'share');
        }
      }
      for (const { target, from, to } of moves) {
        await this.tx(db, principal, this.clock.now(), rows).lock(target, principal.tenantId, [from, to]);
      }
    }
    const before = extra.before ?? (await this.loadForWrite(db, resource, principal, id, rows));
    this.checkPreconditions(before, cond, (body as Doc | null)?.version);
    const patch = asObject(body);
    checkWritableKeys(resource, patch, true);
    const ctx = this.context(principal, 'update', patch, extra.event ?? null);
    const doc: Doc = { ...before };
    for (const [name, value] of Object.entries(patch)) {
      if (name === 'version') continue;
      const isObject = value !== null && typeof value === 'object' && !Array.isArray(value);
      const field = resource.allFields[name];
      // null removes the member (RFC 7396): a field with a default takes it, as on a create.
      doc[name] =
        value === null
          ? (field.default ?? null)
          : isObject && field.column === 'json'
            ? mergePatch(before[name], value)
            : value;
    }
    Object.assign(doc, extra.internal);
    resource.hooks?.prepare?.(doc, before, ctx);
    validateDocument(resource, doc, before, ctx);
    const tx = this.tx(db, principal, ctx.now, rows);
    await resource.hooks?.validateAcross?.(doc, before, ctx, tx);
    if (before.is_deleted)
      throw new ApiError('resource_deleted', `${resource.name} ${id} is deleted; restore it first`);
    if (patch.version !== undefined && patch.version !== before.version) {
      throw new ApiError(
        'version_conflict',
        `The body names version ${patch.version}; the current version is ${before.version}`,
        { extra: { current_version: before.version } },
      );
    }
    resource.hooks?.guard?.(doc, before, ctx);
    await this.checkReferences(tx, resource, principal, doc, before);
    await resource.hooks?.derive?.(doc, before, ctx, tx);
    Object.assign(doc, {
      updated_at: isoTime(ctx.now),
      updated_by: principal.sub,
      schema_version: resource.schemaVersion,
      version: (before.version as number) + 1,
    });
    await this.writeBack(db, resource, before, doc);
    await resource.hooks?.afterWrite?.(doc, before, ctx, tx);
    return doc;
  }

  /** The check of a write that needs no count, naming its row where the store batches by row. */
  private rowCheck(key: () => string | undefined): WriteCheck {
    if (!this.namesRows) return ANY_ROWS;
    const row = key();
    return row === undefined ? ANY_ROWS : { row };
  }

  /** The version check and the write are one statement: of concurrent writers at one version, one wins. */
  private async writeBack(db: DB, resource: Resource, before: Doc, doc: Doc, byCaller = true): Promise<Doc> {
    const set = this.changedColumns(resource, before, doc, byCaller);
    await this.run(
      db,
      `upd|${resource.table}|${Object.keys(set)}`,
      (slot) =>
        db
          .updateTable(resource.table)
          .set(this.slotted(set, slot))
          .where('tenant_id', '=', slot('\u0000tenant'))
          .where('id', '=', slot('\u0000id'))
          .where('version', '=', slot('\u0000version')),
      { ...set, '\u0000tenant': before.tenant_id, '\u0000id': before.id, '\u0000version': before.version },
      {
        rows: 1,
        row: this.namesRows ? rowKey(resource, before.tenant_id as string, before.id as string) : undefined,
        error: () =>
          new ApiError('version_conflict', `${resource.name} ${before.id} was changed by another writer`, {
            extra: { current_version: null },
          }),
      },
    );
    await this.writeMembers(db, resource, before, doc, set);
    return doc;
  }

  /**
   * SQLite: the rows of a row's member tables (memberTable) that a write changes, in the write's
   * transaction: the values its JSON list field no longer holds deleted, the new ones added (all
   * of them for a new row, `before` null). `set`: the columns an update writes; a field it leaves
   * out is unchanged. A statement per value: a key result holds a few tags, and each statement
   * keeps one shape.
   */
  private async writeMembers(
    db: DB,
    resource: Resource,
    before: Doc | null,
    doc: Doc,
    set?: Record<string, unknown>,
  ): Promise<void> {
    if (this.store.kind !== 'sqlite') return;
    for (const { field, table } of membersOf(resource)) {
      if (set && !(field in set)) continue;
      const holds = textMembers(doc[field]);
      const held = before ? textMembers(before[field]) : NO_MEMBERS;
      const key = { tenant: doc.tenant_id, id: doc.id };
      for (const value of held) {
        if (holds.has(value)) continue;
        await this.run(
          db,
          `members-|${table}`,
          (slot) =>
            db
              .deleteFrom(table)
              .where('tenant_id', '=', slot('tenant'))
              .where('value', '=', slot('value'))
              .where('id', '=', slot('id')),
          { ...key, value },
          ANY_ROWS,
        );
      }
      for (const value of holds) {
        if (held.has(value)) continue;
        await this.run(
          db,
          `members+|${table}`,
          (slot) =>
            db
              .insertInto(table)
              .orIgnore()
              .values({ tenant_id: slot('tenant'), value: slot('value'), id: slot('id') }),
          { ...key, value },
          ANY_ROWS,
        );
      }
    }
  }

  /** A write the platform makes itself: version and updated_at advance, updated_by stays. */
  private async systemWrite(
    db: DB,
    resource: Resource,
    principal: Principal,
    before: Doc,
    changes: Doc,
    now: number,
    rows: WriteRows = new Map(),
  ): Promise<Doc> {
    const doc: Doc = {
      ...before,
      ...changes,
      updated_at: isoTime(now),
      schema_version: resource.schemaVersion,
      version: (before.version as number) + 1,
    };
    const key = rowKey(resource, doc.tenant_id as string, doc.id as string);
    const held = this.heldWrites.get(rows);
    if (held?.deleting.has(key)) {
      held.writes.set(key, { resource, stored: held.writes.get(key)?.stored ?? before, latest: doc });
    } else {
      await this.writeBack(db, resource, before, doc, false);
    }
    rows.set(key, { doc, lock: LOCKS.update });
    const ctx: HookContext = { principal, now, op: 'system', input: null, event: null, keys: this.options.keys };
    await resource.hooks?.afterWrite?.(doc, before, ctx, this.tx(db, principal, now, rows));
    return doc;
  }

  async remove(
    db: DB,
    resource: Resource,
    principal: Principal,
    id: string,
    cond: WriteConditions,
    cascade: boolean,
    /**
     * `false` (an import replaying its source's deletes) deletes a row whose holders are live:
     * a store written before a reference was declared `restrict` may hold such rows, and its
     * export imports as it was.
     */
    checkHolders = true,
  ): Promise<Doc> {
    const rows: WriteRows = new Map();
    // A cascade writes descendants whose writes take a tenant lock first (serializeRows): so does it.
    let lockedFirst: Set<string> | undefined;
    if (cascade) {
      for (const lock of this.descendantSerials(resource)) await this.serialize(db, principal.tenantId, lock);
      lockedFirst = await this.lockChildrenFirst(db, resource, principal, id, rows);
    }
    let before = await this.loadForWrite(db, resource, principal, id, rows);
    // A child restored (or created) between the first look and the row's lock, which it needed
    // the row for (FOR SHARE), would be locked by the cascade after the row, against the order:
    // a deadlock with a restore of one of them. Started again, holding nothing, the first look
    // finds it. (No child can come meanwhile now: the row is held.)
    const since = lockedFirst && (await this.childrenFirst(db, resource, principal, id));
    if (since?.some(({ ids }) => ids.some((child) => !lockedFirst?.has(child)))) {
      const again = `${resource.name} ${id} gained children while its delete waited: it starts again`;
      throw Object.assign(new Error(again), { code: '40001' });
    }
    if (before.is_deleted) throw new ApiError('not_found', `${resource.name} ${id} is already deleted`);
    this.checkPreconditions(before, cond, undefined);
    const now = this.clock.now();
    const version = (before.version as number) + 1;
    if (cascade) {
      const cascaded: WriteRows = new Map();
      this.heldWrites.set(cascaded, {
        deleting: new Set([rowKey(resource, principal.tenantId, id)]),
        writes: new Map(),
      });
      await this.cascadeDelete(db, resource, principal, [id], now, checkHolders, cascaded);
      await this.writeHeld(db, cascaded);
      // Children's roll-ups may have written this row (system writes): delete its current state,
      // at the version it had before them + 1.
      before = await this.load(db, resource, principal, id, false);
    } else {
      const dependents = await this.liveDependents(db, this.children.get(resource), before, principal);
      if (dependents.length) {
        const outside = outsideScope(dependents);
        throw new ApiError(
          'has_dependents',
          `${resource.name} ${id} has live ${dependents.map((d) => `${d.resource.name} (${d.count})`).join(', ')}; ${
            outside === 0
              ? 'delete them first or pass cascade=true'
              : `${outside} of them outside this application's scope, which its cascade does not delete: a person's token or their own application's can`
          }`,
          { extra: { dependents: Object.fromEntries(dependents.map((d) => [d.resource.path, d.count])) } },
        );
      }
    }
    return this.markDeleted(db, resource, principal, before, now, true, rows, checkHolders, version);
  }

  /** `rows`: what the write read already, locked (its references, see loadForWrite). */
  private async markDeleted(
    db: DB,
    resource: Resource,
    principal: Principal,
    before: Doc,
    now: number,
    deleted: boolean,
    rows: WriteRows = new Map(),
    checkHolders = true,
    /**
     * The version it takes, where not `before`'s + 1: a cascade's row, which the roll-ups of its
     * children deleted before it wrote in the same transaction, takes the version it had before
     * them + 1 (one request, one write: no client saw those).
     */
    version = (before.version as number) + 1,
  ) {
    if (deleted && checkHolders) {
      // Rows that refer to it without belonging to it (FieldSpec.restrict): cascade or not, 409.
      const holders = await this.liveDependents(db, this.holders.get(resource), before, principal);
      if (holders.length) {
        const outside = outsideScope(holders);
        throw new ApiError(
          'has_dependents',
          `${resource.name} ${before.id} is referred to by live ${holders.map((d) => `${d.resource.name} (${d.count})`).join(', ')}; ${
            outside === 0
              ? 'point them elsewhere or delete them first'
              : `${outside} of them outside this application's scope: a person's token or their own application's can point them elsewhere or delete them`
          }`,
          { extra: { dependents: Object.fromEntries(holders.map((d) => [d.resource.path, d.count])) } },
        );
      }
    }
    const ts = isoTime(now);
    const doc: Doc = {
      ...before,
      is_deleted: deleted,
      deleted_at: deleted ? ts : null,
      deleted_by: deleted ? principal.sub : null,
      updated_at: ts,
      updated_by: principal.sub,
      version,
    };
    const ctx: HookContext = {
      principal,
      now,
      op: deleted ? 'delete' : 'restore',
      input: null,
      event: null,
      keys: this.options.keys,
    };
    const tx = this.tx(db, principal, now, rows);
    // A restored row's derived fields are computed again: the rows they depend on may have
    // changed while it was deleted (a key result's status, from its cycle's dates and the time).
    if (!deleted) await resource.hooks?.derive?.(doc, before, ctx, tx);
    await this.writeBack(db, resource, before, doc);
    await resource.hooks?.afterWrite?.(doc, before, ctx, tx);
    // The row as its hooks left it (a restored query key result catches up: a system write).
    const later = rows.get(rowKey(resource, doc.tenant_id as string, doc.id as string))?.doc;
    return later && (later.version as number) > (doc.version as number) ? later : doc;
  }

  /**
   * A move to another parent (a `lockReferences` field the body changes: a key result to another
   * objective): the parent it leaves and the one it joins, learned from the row read unlocked.
   * The update locks both first, in id order (Tx.lock), so two moves in opposite directions queue
   * instead of each holding one (PostgreSQL). Before any row lock (the rows a body names in a
   * `restrict` reference or a mention included) it takes the tenant lock of `serializeRows`: a
   * write holding that lock (a check-in that a query under another objective reads) locks its own
   * parent and then the query's, in no set order, so a move holding one parent while it waited
   * for the other deadlocked with it; and waiting for that lock while holding a row that its
   * holder goes on to lock would close a loop too.
   */
  private async movesOf(
    db: DB,
    resource: Resource,
    principal: Principal,
    id: string,
    body: Doc,
    rows: WriteRows,
  ): Promise<{ target: Resource; from: string; to: string }[]> {
    const targets = this.store.kind === 'postgres' ? this.lockTargets.get(resource) : undefined;
    // Text no store holds (U+0000) names no row: nothing to lock, and PostgreSQL would refuse
    // the statement before the write's own checks could answer in their order (412 before 400).
    const moved = targets?.filter(({ name }) => typeof body[name] === 'string' && isStorableText(body[name]));
    if (!moved?.length) return [];
    const current = await this.tx(db, principal, this.clock.now(), rows).peek(resource, principal.tenantId, id);
    if (!current) return [];
    return moved
      .filter(({ name }) => typeof current[name] === 'string' && current[name] !== body[name])
      .map(({ name, target }) => ({ target, from: current[name] as string, to: body[name] as string }));
  }

  /**
   * Before a cascading delete locks its row: the live children whose own writes lock that row
   * after theirs (it is not among their `lockReferences`: a key result's write reads its cycle
   * after its objective), in id order (Tx.lock), so the delete takes them in the order they
   * do. Children that lock it first (a key result its objective) are locked after it, as before.
   */
  private async lockChildrenFirst(
    db: DB,
    resource: Resource,
    principal: Principal,
    id: string,
    rows: WriteRows,
  ): Promise<Set<string> | undefined> {
    if (this.store.kind !== 'postgres') return undefined;
    const locked = new Set<string>();
    for (const { child, ids } of await this.childrenFirst(db, resource, principal, id)) {
      if (ids.length)
        await this.tx(db, principal, this.clock.now(), rows).lock(child.resource, principal.tenantId, ids);
      for (const childId of ids) locked.add(childId);
    }
    return locked;
  }

  /** The live children that lockChildrenFirst locks (those that lock the row after theirs), by child. */
  private async childrenFirst(db: DB, resource: Resource, principal: Principal, id: string) {
    const found: { child: Child; ids: string[] }[] = [];
    for (const child of this.children.get(resource) ?? []) {
      if (child.resource.lockReferences?.includes(child.field)) continue;
      const live = await db
        .selectFrom(child.resource.table)
        .select('id')
        .where('tenant_id', '=', principal.tenantId)
        .where(child.field, '=', id)
        .where('is_deleted', '=', this.live(child.resource))
        .execute();
      found.push({ child, ids: live.map((r) => r.id as string) });
    }
    return found;
  }

  /** The `serializeRows` locks of the resources a cascading delete of `resource` may reach, sorted. */
  private descendantSerials(resource: Resource, seen = new Set<Resource>()): string[] {
    const locks = new Set<string>();
    for (const { resource: child } of this.children.get(resource) ?? []) {
      if (seen.has(child)) continue;
      seen.add(child);
      if (child.serializeRows) locks.add(child.serializeRows.lock);
      for (const lock of this.descendantSerials(child, seen)) locks.add(lock);
    }
    return [...locks].sort();
  }

  /** How many live rows of each of `referrers` refer to `row`. */
  private async liveDependents(db: DB, referrers: readonly Child[] | undefined, row: Doc, principal?: Principal) {
    const found: Dependents = [];
    for (const child of referrers ?? []) {
      const live = db
        .selectFrom(child.resource.table)
        .select((eb) => eb.fn.countAll().as('n'))
        .where('tenant_id', '=', row.tenant_id as string)
        .where(child.field, '=', row.id as string)
        .where('is_deleted', '=', this.live(child.resource));
      const n = Number((await live.executeTakeFirst())?.n ?? 0);
      if (n === 0) continue;
      // An application's caller cannot see, move or delete the rows of a person or of another
      // application: how many of them there are, so its answer says who can.
      const appId = principal?.appId ?? null;
      const outside =
        appId === null
          ? 0
          : Number(
              (
                await live
                  .where((eb) => eb.or([eb('app_id', 'is', null), eb('app_id', '!=', appId)]))
                  .executeTakeFirst()
              )?.n ?? 0,
            );
      found.push({ resource: child.resource, count: n, outside });
    }
    return found;
  }

  /**
   * Soft-deletes the live descendants of the given parents, deepest first, in the caller's
   * transaction. An application deletes only what it could delete one by one: a descendant of
   * another application's or of a person's is 409 has_dependents, and the transaction undoes
   * what this one deleted before it.
   */
  private async cascadeDelete(
    db: DB,
    resource: Resource,
    principal: Principal,
    parentIds: string[],
    now: number,
    checkHolders: boolean,
    /**
     * The rows the cascade has read or written, shared by all its deletes (so a parent each child's
     * roll-up writes is read once), with the system writes held back (see heldWrites).
     */
    rows: WriteRows,
  ) {
    const held = this.heldWrites.get(rows) as HeldWrites;
    for (const child of this.children.get(resource) ?? []) {
      const found = await db
        .selectFrom(child.resource.table)
        .select(['id', 'app_id', 'version', `${child.field} as parent`])
        .where('tenant_id', '=', principal.tenantId)
        .where(child.field, 'in', parentIds)
        .where('is_deleted', '=', this.live(child.resource))
        .execute();
      // By id (as bytes compare: no collation's order), not as the store's scan found them: rows
      // are deleted in this order, and the first one still held is the one a 409 names, the same
      // on every store however the rows were last written.
      found.sort((x, y) => ((x.id as string) < (y.id as string) ? -1 : 1));
      const outside = principal.appId === null ? [] : found.filter((r) => r.app_id !== principal.appId);
      if (outside.length > 0) {
        // The parents that hold them, not every parent at this depth.
        const holders = [...new Set(outside.map((r) => r.parent as string))].sort();
        throw new ApiError(
          'has_dependents',
          `${resource.name} ${holders.join(', ')} has live ${child.resource.name} (${outside.length}) outside this application's scope: cascade deletes only what this application could delete itself`,
          { extra: { dependents: { [child.resource.path]: outside.length } } },
        );
      }
      if (found.length === 0) continue;
      const ids = await this.holdersFirst(
        db,
        child.resource,
        principal,
        found.map((r) => r.id as string),
      );
      const keyOf = (childId: string) => rowKey(child.resource, principal.tenantId, childId);
      for (const childId of ids) held.deleting.add(keyOf(childId));
      await this.cascadeDelete(db, child.resource, principal, ids, now, checkHolders, rows);
      // What their own children's roll-ups made of them, written before they are read again.
      await this.writeHeld(db, rows);
      const tx = this.tx(db, principal, now, rows);
      // Each at the version it had before its own children's roll-ups + 1 (see markDeleted).
      const versions = new Map(found.map((r) => [r.id as string, Number(r.version)]));
      // Read (and on PostgreSQL locked) a chunk at a time, in id order as one by one: unless
      // holdersFirst put holders first, which are then read one by one in its order.
      const inIdOrder = ids.every((childId, i) => i === 0 || (ids[i - 1] as string) < childId);
      for (let at = 0; at < ids.length; at += CASCADE_CHUNK) {
        const chunk = ids.slice(at, at + CASCADE_CHUNK);
        if (inIdOrder) await this.readLocked(db, child.resource, principal.tenantId, chunk, rows);
        for (const childId of chunk) {
          const before = (await tx.find(child.resource, principal.tenantId, childId)) as Doc;
          const version = (versions.get(childId) as number) + 1;
          await this.markDeleted(db, child.resource, principal, before, now, true, rows, checkHolders, version);
          // Done with: kept no longer (a cascade of 100,000 rows would hold them all), and a later
          // system write to it is made at once, as outside a cascade.
          rows.delete(keyOf(childId));
          held.deleting.delete(keyOf(childId));
        }
      }
    }
  }

  /**
   * Rows by id, read as Tx.find reads one (locked for update on PostgreSQL), in id order, into
   * `rows`: a cascade's chunk in one statement instead of one each.
   */
  private async readLocked(db: DB, resource: Resource, tenantId: string, ids: string[], rows: WriteRows) {
    let q = db
      .selectFrom(resource.table)
      .select(columnsOf(resource))
      .where('tenant_id', '=', tenantId)
      .where('id', 'in', ids)
      .orderBy('id');
    if (this.store.kind === 'postgres') q = q.forUpdate();
    const { rows: found } = await this.execute(db, q.compile());
    for (const row of found) {
      rows.set(rowKey(resource, tenantId, row.id as string), { doc: this.fromRow(resource, row), lock: LOCKS.update });
    }
  }

  /** Writes the system writes a cascade held back (see heldWrites): each row once, as it is now. */
  private async writeHeld(db: DB, rows: WriteRows) {
    const held = this.heldWrites.get(rows);
    if (!held) return;
    for (const { resource, stored, latest } of held.writes.values()) {
      await this.writeBack(db, resource, stored, latest, false);
    }
    held.writes.clear();
  }

  /**
   * Rows a cascade deletes together, ordered so that one held by another of them through a
   * `restrict` reference of its own resource (an objective others of the cycle align to) comes
   * after its holders: deleted one by one, each finds the rows of the cascade that held it
   * deleted already. Rows outside the cascade still hold theirs (409 has_dependents).
   */
  private async holdersFirst(db: DB, resource: Resource, principal: Principal, ids: string[]): Promise<string[]> {
    const fields = (this.holders.get(resource) ?? []).filter((h) => h.resource === resource).map((h) => h.field);
    if (fields.length === 0 || ids.length < 2) return ids;
    const found = await db
      .selectFrom(resource.table)
      .select(['id', ...fields])
      .where('tenant_id', '=', principal.tenantId)
      .where('id', 'in', ids)
      .execute();
    const held = new Map(
      found.map((r) => [r.id as string, fields.map((f) => r[f]).filter((v) => typeof v === 'string')]),
    );
    // Depth below the cascade's topmost rows: a row's holders are deeper than it. (Alignments
    // make no loop; a loop a store holds anyway ends the walk where it closes.)
    const depth = new Map<string, number>();
    const depthOf = (id: string, seen: Set<string>): number => {
      const known = depth.get(id);
      if (known !== undefined) return known;
      seen.add(id);
      let d = 0;
      for (const up of held.get(id) ?? []) if (held.has(up) && !seen.has(up)) d = Math.max(d, depthOf(up, seen) + 1);
      depth.set(id, d);
      return d;
    };
    for (const id of ids) depthOf(id, new Set());
    return [...ids].sort((a, b) => (depth.get(b) as number) - (depth.get(a) as number));
  }

  async restore(db: DB, resource: Resource, principal: Principal, id: string, cond: WriteConditions): Promise<Doc> {
    const rows: WriteRows = new Map();
    // The rows it holds by `restrict` references (a key result's connector) are held first, as a
    // create or an update that names them takes them (see checkReferences): found without a lock,
    // then locked before the row and its parent. A deleted row cannot change meanwhile (a write
    // to it is 409), so they are still its references under the lock.
    const restricts = this.store.kind === 'postgres' ? this.restricts.get(resource) : undefined;
    const serial = this.store.kind === 'postgres' ? resource.hooks?.serialize : undefined;
    if (restricts || serial) {
      const seen = await this.load(db, resource, principal, id, false);
      // First, the tenant lock an update setting what it holds would take (an objective's
      // alignment, a key result's query or connector): a restore brings those back, and the rules
      // over many rows they are checked against must see it, and be seen by it, one at a time.
      const lock = serial?.(Object.fromEntries(Object.entries(seen).filter(([, value]) => value !== null)));
      if (lock) await this.serialize(db, principal.tenantId, lock);
      const tx = this.tx(db, principal, this.clock.now(), rows);
      for (const { name, target } of restricts ?? []) {
        if (typeof seen[name] === 'string') await tx.find(target, principal.tenantId, seen[name] as string, 'share');
      }
    }
    const before = await this.loadForWrite(db, resource, principal, id, rows);
    this.checkPreconditions(before, cond, undefined);
    if (!before.is_deleted) throw new ApiError('not_deleted', `${resource.name} ${id} is not deleted`);
    for (const [name, field] of Object.entries(resource.allFields)) {
      const parentId = before[name];
      if (!(field.parent || field.restrict) || !field.ref || typeof parentId !== 'string') continue;
      const parent = this.byPrefix.get(field.ref) as Resource;
      // Held until the restore commits (PostgreSQL), as a create holds its parent (checkReferences).
      const query = db
        .selectFrom(parent.table)
        .select('is_deleted')
        .where('tenant_id', '=', principal.tenantId)
        .where('id', '=', parentId);
      const row = await (this.store.kind === 'postgres' ? query.forShare() : query).executeTakeFirst();
      if (!row || this.store.decode(parent.allFields.is_deleted, row.is_deleted) === true) {
        throw new ApiError(
          'parent_deleted',
          `${resource.name} ${id} ${field.parent ? 'belongs' : 'refers'} to deleted ${parent.name} ${parentId}; restore it first`,
          { errors: [{ path: `/${name}`, code: 'parent_deleted', message: `${parent.name} ${parentId} is deleted` }] },
        );
      }
    }
    return this.markDeleted(db, resource, principal, before, this.clock.now(), false, rows);
  }
}
