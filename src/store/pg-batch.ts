import type { Writable } from 'node:stream';
import {
  CompiledQuery,
  type DatabaseConnection,
  type Driver,
  PostgresDialect,
  type QueryResult,
  type TransactionSettings,
} from 'kysely';
import type pg from 'pg';

/**
 * What a deferrable write expects: `rows` affected rows exactly (else `error()` is thrown), or
 * nothing (an insert that fails raises its own error; a delete may find nothing).
 */
export interface WriteCheck {
  rows?: number;
  error?: () => Error;
  /**
   * The one row the write touches, named by its primary key (any text unique to it within its
   * table): writes to other rows of the same table may go in the same batch (see
   * BatchingConnection). Without it, a write waits for the writes to its table before it.
   */
  row?: string;
}

const deferrable = new WeakMap<CompiledQuery, WriteCheck>();

/**
 * Marks a write whose result its caller does not read: inside a PostgreSQL transaction it may
 * wait and go to the server together with the writes after it (see BatchingConnection). The
 * check runs on its affected-row count whenever it runs.
 */
export function deferWrite(query: CompiledQuery, check: WriteCheck = {}): CompiledQuery {
  deferrable.set(query, check);
  return query;
}

/** Throws the check's error unless the write changed the rows it expects. */
export function verify(check: WriteCheck, affected: number): void {
  if (check.rows !== undefined && affected !== check.rows) {
    throw check.error?.() ?? new Error(`a write changed ${affected} rows instead of ${check.rows}`);
  }
}

/** `insert into "t" …`, `update "t" …`, `delete from "t" …` as Kysely prints them: the table written. */
const WRITE = /^(?:insert into|update|delete from) "([^"]+)"/;

/**
 * The table a write targets, if it can join a batch: a plain statement of Kysely's, with no
 * RETURNING of its own and no literal in which a `$n` could be mistaken for a parameter.
 */
function batchTable(sql: string): string | null {
  const m = WRITE.exec(sql);
  if (!m || sql.includes("'") || sql.includes('$$') || / returning /i.test(sql)) return null;
  return m[1];
}

interface Pending {
  query: CompiledQuery;
  table: string;
  check: WriteCheck;
}

/** What a batch's count column prints when its write changed the wrong number of rows. */
const CHECK_FAILED = /edm-write-check-(\d+):(\d+)/;

/**
 * The statement that sends a batch: one write as it is if nothing checks its count, else `with
 * "w0" as (… returning 1), … select …` whose columns are the writes' counts. A count that
 * fails its check is cast to a number from `edm-write-check-<i>:<count>`, which raises
 * (SQLSTATE 22P02) inside the statement, so the failure needs no round trip of its own to
 * stop a COMMIT sent right behind it. (The cast depends on the count: PostgreSQL cannot fold it
 * at planning time, and evaluates it only in the branch taken.)
 */
function batchStatement(batch: Pending[]): CompiledQuery {
  if (batch.length === 1 && batch[0].check.rows === undefined) return batch[0].query;
  const parameters: unknown[] = [];
  for (const { query } of batch) parameters.push(...query.parameters);
  return CompiledQuery.raw(batchSql(batch), parameters);
}

/**
 * Batches come in few shapes (a key-result create is always its insert, its snapshot and its
 * objective's roll-up): the text of each shape is built once, and kept by the writes' own SQL
 * strings, which the engine compiles once per shape. Building it each time (renumbering every
 * `$n`, joining ~1.3 KB) and then hashing the new string to find its prepared statement's
 * name cost ~8 µs per write.
 */
interface BatchShape {
  sql?: string;
  /** Longer batches: by their next write's SQL, then by the row count its check expects. */
  next?: Map<string, Map<number | undefined, BatchShape>>;
}
const batchShapes: BatchShape = {};
let batchEntries = 0;
/** Entries of the cache (one per write of a shape), so statements of ever new shapes cannot fill memory. */
const MAX_BATCH_ENTRIES = 2000;

function batchSql(batch: Pending[]): string {
  let node: BatchShape = batchShapes;
  for (const { query, check } of batch) {
    let byRows: Map<number | undefined, BatchShape> | undefined = node.next?.get(query.sql);
    let child: BatchShape | undefined = byRows?.get(check.rows);
    if (!child) {
      if (batchEntries >= MAX_BATCH_ENTRIES) return buildBatchSql(batch);
      node.next ??= new Map();
      if (!byRows) {
        byRows = new Map();
        node.next.set(query.sql, byRows);
      }
      child = {};
      byRows.set(check.rows, child);
      batchEntries++;
    }
    node = child;
  }
  node.sql ??= buildBatchSql(batch);
  return node.sql;
}

function buildBatchSql(batch: Pending[]): string {
  const parts: string[] = [];
  const counts: string[] = [];
  let offset = 0;
  batch.forEach(({ query, check }, i) => {
    const sql = offset === 0 ? query.sql : query.sql.replace(/\$(\d+)/g, (_, n) => `$${Number(n) + offset}`);
    offset += query.parameters.length;
    parts.push(`"w${i}" as (${sql} returning 1)`);
    counts.push(
      check.rows === undefined
        ? `(select count(*) from "w${i}") as "w${i}"`
        : `(select case when count(*) = ${Number(check.rows)} then count(*) ` +
            `else ('edm-write-check-${i}:' || count(*))::bigint end from "w${i}") as "w${i}"`,
    );
  });
  return `with ${parts.join(', ')} select ${counts.join(', ')}`;
}

/** The error a batch raised, as the failing write's check would throw it. */
function batchError(batch: Pending[], error: unknown): unknown {
  const failed = (error as { code?: string }).code === '22P02' && CHECK_FAILED.exec(String((error as Error).message));
  if (!failed) return error;
  const check = batch[Number(failed[1])]?.check;
  return check ? (check.error?.() ?? new Error(`a write changed ${failed[2]} rows instead of ${check.rows}`)) : error;
}

const ignore = () => {};

const statementNames = new Map<string, string>();

/** How many statement shapes are prepared by name: each pooled session keeps each it has run. */
export const NAMED_STATEMENTS = 1000;
/**
 * Past this many parameters a read stays unnamed: a list's any-of filters (up to 100 values
 * each, padded to powers of two) make thousands of shapes of hundreds of parameters, and a
 * session kept ~26 KB per such prepared statement (one caller walking them all filled ten
 * sessions with ~1 GB). Reads by id and lists with a few values stay under it; writes (and the
 * batches of them, whose shapes the engine bounds) are named whatever their count.
 */
export const NAMED_MAX_PARAMETERS = 64;

/**
 * The name a statement with parameters is prepared under: a session parses and plans each once,
 * then only binds and executes it (the engine's statements come from a bounded set of shapes).
 * They name their columns, never `*`, so a migration that adds a column does not change a
 * prepared statement's result type. Statements without parameters (DDL, BEGIN, COMMIT) stay
 * unnamed, and so does a read of more than NAMED_MAX_PARAMETERS, and any past the first
 * NAMED_STATEMENTS shapes.
 */
export function statementName(sql: string, parameters: number): string | undefined {
  if (parameters > NAMED_MAX_PARAMETERS && sql.startsWith('select')) return undefined;
  let name = statementNames.get(sql);
  if (name === undefined && statementNames.size < NAMED_STATEMENTS) {
    name = `edm_${statementNames.size + 1}`;
    statementNames.set(sql, name);
  }
  return name;
}

const UNBOUNDED = /^set local statement_timeout\s*=\s*0\b/i;

/** How the driver's sessions run: see PgSession, BatchingConnection. */
export interface PgDriverOptions {
  prepare: boolean;
  batch: boolean;
  /** How long a statement's answer may take before its session is cut (0: no limit). */
  readTimeoutMs?: number;
}

/** One pooled node-postgres session, as the connection Kysely runs statements on. */
class PgSession implements DatabaseConnection {
  discarded = false;
  /** Set by `SET LOCAL statement_timeout = 0` until the session goes back to the pool: no read deadline. */
  unbounded = false;

  constructor(
    readonly client: pg.PoolClient,
    readonly prepare: boolean,
    /** How long a statement's answer may take before the session is given up (0: no limit). */
    readonly readTimeoutMs = 0,
  ) {}

  executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    // Cut (its answer came too late) or failed: the request is answered as the outage it is (503).
    if (this.discarded) {
      return Promise.reject(Object.assign(new Error('this PostgreSQL session was discarded'), { code: 'ECONNRESET' }));
    }
    const values = query.parameters as unknown[];
    const name = this.prepare && values.length > 0 ? statementName(query.sql, values.length) : undefined;
    const sent = this.client.query(name ? { name, text: query.sql, values } : { text: query.sql, values });
    // A transaction that lifts statement_timeout (a migration building indexes) waits as long as it takes.
    if (UNBOUNDED.test(query.sql)) this.unbounded = true;
    if (this.readTimeoutMs <= 0 || this.unbounded) return sent.then(answer<R>);
    // A server that stops answering (frozen, or a network that drops without a reset) would hold
    // the request and its pooled session for good: the server's statement_timeout cannot fire
    // there. Past the deadline the session is cut and leaves the pool, and the request fails as
    // unavailable (503), so the pool fills again once the server answers.
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.discarded = true;
        (this.client as unknown as { connection: { stream: Writable } }).connection.stream.destroy();
        const err = new Error(`PostgreSQL did not answer within ${this.readTimeoutMs} ms`);
        reject(Object.assign(err, { code: 'ETIMEDOUT' }));
      }, this.readTimeoutMs);
    });
    return Promise.race([sent, deadline])
      .finally(() => clearTimeout(timer))
      .then(answer<R>);
  }

  streamQuery<R>(_query: CompiledQuery, _chunkSize?: number): AsyncIterableIterator<QueryResult<R>> {
    throw new Error('streaming query results is not supported on PostgreSQL here');
  }

  /**
   * Runs `send` with the socket corked, so what it sends (statements pipelined behind each
   * other) leaves in one write: one packet for the server to read instead of one per statement.
   */
  together<T>(send: () => T): T {
    const { stream } = (this.client as unknown as { connection: { stream: Writable } }).connection;
    stream.cork();
    try {
      return send();
    } finally {
      stream.uncork();
    }
  }
}

/** node-postgres's answer as Kysely's. */
function answer<R>({ command, rowCount, rows }: pg.QueryResult): QueryResult<R> {
  if (command === 'ROLLBACK' || command === 'COMMIT') return { rows: [{ command } as R] };
  const counted = command === 'INSERT' || command === 'UPDATE' || command === 'DELETE' || command === 'MERGE';
  return { numAffectedRows: counted ? BigInt(rowCount ?? 0) : undefined, rows: (rows ?? []) as R[] };
}

/**
 * The most writes one batch carries. Each shape of batch a session runs stays prepared there,
 * with its plan: batches of up to 64 writes took a session's cached plans from 4.5 to 8.9 MB over
 * six cascades (a shape for each length a cascade's last batch had), for a cascade ~10% faster.
 */
const MAX_BATCH = 16;

/**
 * Whether two writes to one table may share a batch: each names its one row, and they differ.
 * The statements of a batch all see the snapshot it started with, so a write to a row another
 * write of the batch changed (or a delete by a condition that a row inserted before it in the
 * batch meets) would miss that change.
 */
const apart = (a: WriteCheck, b: WriteCheck) => a.row !== undefined && b.row !== undefined && a.row !== b.row;

/**
 * A pooled session that holds back a transaction's deferrable writes and sends them as one
 * statement right before anything else runs on it (a read, the next write to a table already
 * waiting, COMMIT): `with w0 as (update … returning 1), w1 as (insert … returning 1) select
 * (select count(*) from w0) as w0, …`. A key-result write was 6 round trips after BEGIN (its
 * update, history snapshot, objective roll-up and sweep-queue change each one); its writes are
 * now one, so the objective a roll-up locks is held for fewer of them. The writes of one batch
 * touch different tables, or different rows each named by its key (a cascade's deletes, a sync's
 * writes to key results under different objectives: up to MAX_BATCH writes a statement), so none depends on
 * another's effect (a data-modifying WITH sees the snapshot the statement started with); each
 * write's check runs on its own count.
 *
 * The session also saves BEGIN and COMMIT their own round trips. Its client pipelines (pg's
 * `pipeline` mode: a statement goes on the wire without waiting for the answer to the one
 * before it), and:
 * - BEGIN waits, and goes out with the transaction's first statement, if that is a read (were
 *   BEGIN to fail, a read run outside the transaction changes nothing); before anything else it
 *   is sent and answered first;
 * - COMMIT goes out right behind the last batch of writes: a batch that fails (a constraint, a
 *   failed count check, which raises inside the statement) leaves the transaction aborted, and
 *   PostgreSQL answers COMMIT of an aborted transaction by rolling it back;
 * - a transaction that sent nothing before COMMIT sends its writes as one statement, which is
 *   atomic by itself, without BEGIN and COMMIT at all; one that rolls back sends nothing.
 */
class BatchingConnection implements DatabaseConnection {
  pending: Pending[] = [];
  /** Inside a transaction: deferrable writes may wait. */
  inTransaction = false;
  /** The next statement is the transaction's BEGIN (see PgDriver.beginTransaction). */
  opening = false;
  /** The next statement is the transaction's COMMIT. */
  closing = false;
  /** BEGIN, held back until the transaction's first statement. */
  begin: CompiledQuery | null = null;
  /** BEGIN went to the server and no COMMIT after it: there is a transaction to roll back. */
  open = false;

  constructor(readonly session: PgSession) {}

  executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    const check = deferrable.get(query);
    // Most statements (every read outside a write) take the direct path, with no extra await.
    if (check === undefined && this.pending.length === 0 && this.begin === null && !this.opening && !this.closing) {
      return this.session.executeQuery<R>(query);
    }
    return this.#execute(query, check);
  }

  async #execute<R>(query: CompiledQuery, check: WriteCheck | undefined): Promise<QueryResult<R>> {
    if (this.opening) {
      this.opening = false;
      this.begin = query;
      return { rows: [] };
    }
    if (this.closing) return this.#commit<R>(query);
    const table = check && this.inTransaction ? batchTable(query.sql) : null;
    if (check && table !== null) {
      if (this.pending.length >= MAX_BATCH || this.pending.some((p) => p.table === table && !apart(p.check, check))) {
        await this.flush();
      }
      this.pending.push({ query, table, check });
      return { rows: [] };
    }
    // Anything else (a write outside a transaction or not batchable included: its caller checks
    // the count) runs now, after what waits before it.
    await this.flush();
    return this.#send<R>(query);
  }

  /** Sends a statement, and the BEGIN waiting before it: in the same flight if it is a read. */
  async #send<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    const begin = this.begin;
    if (begin === null) return this.session.executeQuery<R>(query);
    if (!/^select /i.test(query.sql)) {
      await this.#open();
      return this.session.executeQuery<R>(query);
    }
    this.begin = null;
    this.open = true;
    const [opened, result] = this.session.together(
      () => [this.session.executeQuery(begin), this.session.executeQuery<R>(query)] as const,
    );
    result.catch(ignore);
    await opened;
    return result;
  }

  /** Sends the BEGIN held back, and waits for its answer. */
  async #open(): Promise<void> {
    const begin = this.begin;
    if (begin === null) return;
    this.begin = null;
    this.open = true;
    await this.session.executeQuery(begin);
  }

  async *streamQuery<R>(query: CompiledQuery, chunkSize?: number): AsyncIterableIterator<QueryResult<R>> {
    await this.flush();
    await this.#open();
    yield* this.session.streamQuery<R>(query, chunkSize);
  }

  /** Sends the writes held back, as one statement (which raises if a check fails). */
  async flush(): Promise<void> {
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    try {
      await this.#send(batchStatement(batch));
    } catch (error) {
      throw batchError(batch, error);
    }
  }

  /** COMMIT, in the same flight as the writes still waiting; or no transaction at all. */
  async #commit<R>(commit: CompiledQuery): Promise<QueryResult<R>> {
    this.closing = false;
    const batch = this.pending;
    this.pending = [];
    if (this.begin !== null) {
      // Nothing went to the server yet: the writes, if any, as one statement on their own.
      this.begin = null;
      if (batch.length > 0) {
        try {
          await this.session.executeQuery(batchStatement(batch));
        } catch (error) {
          throw batchError(batch, error);
        }
      }
      return { rows: [{ command: 'COMMIT' } as R] };
    }
    this.open = false;
    if (batch.length === 0) return this.session.executeQuery<R>(commit);
    // COMMIT goes out before the batch is answered. A batch the server refuses aborts the
    // transaction; one that never reached it would not, but only a bug fails a batch in the
    // client: its values are strings, numbers, booleans and nulls, and its name is its text's.
    const [written, committed] = this.session.together(
      () => [this.session.executeQuery(batchStatement(batch)), this.session.executeQuery<R>(commit)] as const,
    );
    committed.catch(ignore);
    try {
      await written;
    } catch (error) {
      // The batch failed, so COMMIT rolls back (PostgreSQL answers it with ROLLBACK).
      await committed.catch(ignore);
      throw batchError(batch, error);
    }
    return committed;
  }

  /** Forgets held-back writes (their transaction, or savepoint, is being rolled back). */
  discard(): void {
    this.pending = [];
  }

  /** Forgets the transaction: what waits, a BEGIN not sent. */
  reset(): void {
    this.pending = [];
    this.inTransaction = false;
    this.opening = false;
    this.closing = false;
    this.begin = null;
    this.open = false;
  }
}

// Compiled once: a write's transaction runs them on every request.
const BEGIN = CompiledQuery.raw('begin');
const COMMIT = CompiledQuery.raw('commit');
const ROLLBACK = CompiledQuery.raw('rollback');

const quoted = (name: string) => `"${name.replaceAll('"', '""')}"`;

/**
 * Kysely's PostgreSQL driver, on node-postgres sessions of our own: statements prepared once per
 * session, and (with `batch`) BatchingConnection's held-back writes, BEGIN and COMMIT.
 */
class PgDriver implements Driver {
  readonly #sessions = new WeakMap<pg.PoolClient, BatchingConnection | PgSession>();

  constructor(
    readonly pool: pg.Pool,
    readonly options: PgDriverOptions,
  ) {}

  async init(): Promise<void> {}

  async acquireConnection(): Promise<DatabaseConnection> {
    const client = await this.pool.connect();
    let connection = this.#sessions.get(client);
    if (!connection) {
      const session = new PgSession(client, this.options.prepare, this.options.readTimeoutMs);
      connection = this.options.batch ? new BatchingConnection(session) : session;
      this.#sessions.set(client, connection);
    }
    return connection;
  }

  // BEGIN, COMMIT and savepoints go through the session's own executeQuery (which Kysely's
  // query log wraps), so they are logged like any statement and flush what waits before them;
  // a batching session holds BEGIN back, and sends COMMIT with the last writes.
  async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    const plain = !settings.isolationLevel && !settings.accessMode;
    const begin = plain
      ? BEGIN
      : CompiledQuery.raw(
          [
            'start transaction',
            settings.isolationLevel && `isolation level ${settings.isolationLevel}`,
            settings.accessMode,
          ]
            .filter(Boolean)
            .join(' '),
        );
    if (!(connection instanceof BatchingConnection)) {
      await connection.executeQuery(begin);
      return;
    }
    // A plain BEGIN is held back (see BatchingConnection): it goes out with the first read, or
    // not at all. One that sets an isolation level or access mode goes out at once: it applies
    // to every statement, a lone batch's included.
    connection.opening = plain;
    try {
      await connection.executeQuery(begin);
    } finally {
      connection.opening = false;
    }
    connection.open = !plain;
    connection.inTransaction = true;
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    const batching = connection instanceof BatchingConnection ? connection : null;
    if (batching) {
      batching.inTransaction = false;
      batching.closing = true;
    }
    try {
      // A failing write (a count check, a constraint) fails the commit; Kysely then rolls back.
      const { rows } = await connection.executeQuery<{ command?: string }>(COMMIT);
      // PostgreSQL completes COMMIT with ROLLBACK when an earlier statement left the transaction aborted.
      if (rows[0]?.command === 'ROLLBACK') throw new Error('the transaction was aborted, and rolled back');
    } finally {
      if (batching) batching.closing = false;
    }
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    if (connection instanceof BatchingConnection) {
      const open = connection.open;
      connection.reset();
      // A transaction that sent nothing, or whose COMMIT was sent, has nothing to roll back.
      if (!open) return;
    }
    // A session cut at its read deadline has no connection left to send ROLLBACK on: the server
    // ends the transaction with the connection. Failing here would put the rollback's error in
    // place of the deadline's (a 500 for what is an outage, 503).
    if (this.#session(connection).discarded) return;
    try {
      await connection.executeQuery(ROLLBACK);
    } catch (error) {
      // A session whose ROLLBACK fails may still be inside a transaction: it leaves the pool.
      this.#session(connection).discarded = true;
      throw error;
    }
  }

  async savepoint(connection: DatabaseConnection, name: string): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw(`savepoint ${quoted(name)}`));
  }

  async rollbackToSavepoint(connection: DatabaseConnection, name: string): Promise<void> {
    // Everything held back was written after the savepoint (taking it flushed).
    if (connection instanceof BatchingConnection) connection.discard();
    await connection.executeQuery(CompiledQuery.raw(`rollback to savepoint ${quoted(name)}`));
  }

  async releaseSavepoint(connection: DatabaseConnection, name: string): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw(`release savepoint ${quoted(name)}`));
  }

  async releaseConnection(connection: DatabaseConnection): Promise<void> {
    // Writes are held back only inside a transaction, which has ended by now.
    if (connection instanceof BatchingConnection) connection.reset();
    const session = this.#session(connection);
    session.unbounded = false;
    session.client.release(session.discarded);
  }

  #session(connection: DatabaseConnection): PgSession {
    return connection instanceof BatchingConnection ? connection.session : (connection as PgSession);
  }

  async destroy(): Promise<void> {
    await this.pool.end();
  }
}

/**
 * PostgresDialect on PgDriver: named statements unless `prepare` is false, and batched writes
 * with pipelined BEGIN and COMMIT unless `batch` is false (the pool must then pipeline).
 */
export class EdmPostgresDialect extends PostgresDialect {
  constructor(
    readonly pool: pg.Pool,
    readonly options: PgDriverOptions,
  ) {
    super({ pool });
  }

  override createDriver(): Driver {
    return new PgDriver(this.pool, this.options);
  }
}
