import {
  CompiledQuery,
  type DatabaseConnection,
  type Driver,
  PostgresDialect,
  type QueryCompiler,
  type QueryResult,
  type TransactionSettings,
} from 'kysely';

/**
 * What a deferrable write expects: `rows` affected rows exactly (else `error()` is thrown), or
 * nothing (an insert that fails raises its own error; a delete may find nothing).
 */
export interface WriteCheck {
  rows?: number;
  error?: () => Error;
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

/**
 * A pooled session that holds back a transaction's deferrable writes and sends them as one
 * statement right before anything else runs on it (a read, the next write to a table already
 * waiting, COMMIT): `with w0 as (update … returning 1), w1 as (insert … returning 1) select
 * (select count(*) from w0) as w0, …`. A key-result write was 6 round trips after BEGIN (its
 * update, history snapshot, objective roll-up and sweep-queue change each one); its writes are
 * now one, so the objective a roll-up locks is held for fewer of them. The writes of one batch
 * touch different tables, so none depends on another's effect (a data-modifying WITH sees the
 * snapshot the statement started with); each write's check runs on its own count.
 */
class BatchingConnection implements DatabaseConnection {
  pending: Pending[] = [];
  inTransaction = false;

  constructor(readonly inner: DatabaseConnection) {}

  executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    const check = deferrable.get(query);
    // Most statements (every read outside a write) take the direct path, with no extra await.
    if (check === undefined && this.pending.length === 0) return this.inner.executeQuery<R>(query);
    return this.#execute(query, check);
  }

  async #execute<R>(query: CompiledQuery, check: WriteCheck | undefined): Promise<QueryResult<R>> {
    const table = check && this.inTransaction ? batchTable(query.sql) : null;
    if (check && table !== null) {
      if (this.pending.some((p) => p.table === table)) await this.flush();
      this.pending.push({ query, table, check });
      return { rows: [] };
    }
    // Anything else (a write outside a transaction or not batchable included: its caller checks
    // the count) runs now, after what waits before it.
    await this.flush();
    return this.inner.executeQuery<R>(query);
  }

  async *streamQuery<R>(query: CompiledQuery, chunkSize?: number): AsyncIterableIterator<QueryResult<R>> {
    await this.flush();
    yield* this.inner.streamQuery<R>(query, chunkSize);
  }

  /** Sends the writes held back, as one statement, and runs their checks. */
  async flush(): Promise<void> {
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    if (batch.length === 1) {
      const result = await this.inner.executeQuery(batch[0].query);
      verify(batch[0].check, Number(result.numAffectedRows ?? 0));
      return;
    }
    const parameters: unknown[] = [];
    const parts: string[] = [];
    const counts: string[] = [];
    batch.forEach(({ query }, i) => {
      const offset = parameters.length;
      parameters.push(...query.parameters);
      const sql = offset === 0 ? query.sql : query.sql.replace(/\$(\d+)/g, (_, n) => `$${Number(n) + offset}`);
      parts.push(`"w${i}" as (${sql} returning 1)`);
      counts.push(`(select count(*) from "w${i}") as "w${i}"`);
    });
    const result = await this.inner.executeQuery<Record<string, unknown>>(
      CompiledQuery.raw(`with ${parts.join(', ')} select ${counts.join(', ')}`, parameters),
    );
    const row = result.rows[0] ?? {};
    for (const [i, { check }] of batch.entries()) verify(check, Number(row[`w${i}`] ?? 0));
  }

  /** Forgets held-back writes (their transaction, or savepoint, is being rolled back). */
  discard(): void {
    this.pending = [];
  }
}

/** Kysely's PostgreSQL driver with BatchingConnection sessions; transactions flush before COMMIT. */
class BatchingDriver implements Driver {
  readonly #connections = new WeakMap<DatabaseConnection, BatchingConnection>();

  constructor(readonly inner: Driver) {}

  init(): Promise<void> {
    return this.inner.init();
  }

  acquireConnection(): Promise<DatabaseConnection> {
    return this.inner.acquireConnection().then((connection) => {
      let wrapped = this.#connections.get(connection);
      if (!wrapped) {
        wrapped = new BatchingConnection(connection);
        this.#connections.set(connection, wrapped);
      }
      return wrapped;
    });
  }

  // BEGIN, COMMIT and savepoints go through the session's own executeQuery (which Kysely's
  // query log wraps), so they are logged like any statement and flush what waits before them.
  async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    await this.inner.beginTransaction(connection, settings);
    (connection as BatchingConnection).inTransaction = true;
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    (connection as BatchingConnection).inTransaction = false;
    // COMMIT first sends the writes held back: a failing one (a version check, a constraint)
    // fails the commit, and Kysely then rolls back.
    await this.inner.commitTransaction(connection);
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    const c = connection as BatchingConnection;
    c.discard();
    c.inTransaction = false;
    // The inner session: a ROLLBACK that fails marks it for discarding, a method of its own.
    await this.inner.rollbackTransaction(c.inner);
  }

  async savepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler['compileQuery']) {
    await this.inner.savepoint?.(connection, name, compile);
  }

  async rollbackToSavepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler['compileQuery']) {
    // Everything held back was written after the savepoint (taking it flushed).
    (connection as BatchingConnection).discard();
    await this.inner.rollbackToSavepoint?.(connection, name, compile);
  }

  async releaseSavepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler['compileQuery']) {
    await this.inner.releaseSavepoint?.(connection, name, compile);
  }

  releaseConnection(connection: DatabaseConnection): Promise<void> {
    const c = connection as BatchingConnection;
    // Writes are held back only inside a transaction, which has ended by now.
    c.discard();
    c.inTransaction = false;
    return this.inner.releaseConnection(c.inner);
  }

  destroy(): Promise<void> {
    return this.inner.destroy();
  }
}

/** PostgresDialect whose sessions batch a transaction's deferrable writes (see deferWrite). */
export class BatchingPostgresDialect extends PostgresDialect {
  override createDriver(): Driver {
    return new BatchingDriver(super.createDriver());
  }
}
