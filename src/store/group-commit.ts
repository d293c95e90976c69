import { sql } from 'kysely';
import type { DB, Store } from './database.js';

interface Job {
  fn: (db: DB) => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (reason: unknown) => void;
}

/**
 * Group commit for the embedded store. SQLite has one writer, so concurrent write transactions
 * queue anyway; here the queued ones share one transaction, each inside its own savepoint. A
 * failing write rolls back to its savepoint alone; the others commit together, and every caller
 * is answered only after that COMMIT. A commit writes each changed page once, however many
 * writes changed it, so the per-write cost of commits and checkpoints falls as load rises.
 *
 * Work passed here must use the `db` it is given, never the store's own handle: the batch holds
 * the only connection until it commits.
 */
export class GroupCommit {
  private readonly queue: Job[] = [];
  private running = false;
  /** Transactions committed (or rolled back) so far: fewer than writes under load. */
  batches = 0;
  /** The connection a batch holds while it runs (see `holds`). */
  private conn: DB | null = null;

  /**
   * `exec`, when given, runs statements synchronously on the connection the batches hold
   * (`Store.exec`): the batch's own BEGIN/SAVEPOINT/COMMIT go through it.
   */
  constructor(
    private readonly db: DB,
    private readonly exec: Store['exec'] = null,
    private readonly maxBatch = 64,
  ) {}

  /** Whether `db` is the connection of the batch running now: its statements may use `exec`. */
  holds(db: DB): boolean {
    return db === this.conn;
  }

  private async statement(conn: DB, text: string): Promise<void> {
    if (this.exec) this.exec(text, []);
    else await sql.raw(text).execute(conn);
  }

  run<T>(fn: (db: DB) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ fn, resolve: resolve as (v: unknown) => void, reject });
      // Start after this turn of the event loop, so the writes of every request read in it join.
      if (!this.running) {
        this.running = true;
        setImmediate(() => void this.drain());
      }
    });
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        await this.db.connection().execute(async (conn) => {
          this.conn = conn;
          try {
            await this.batch(conn);
          } finally {
            this.conn = null;
          }
        });
      }
    } finally {
      this.running = false;
    }
  }

  private async batch(conn: DB): Promise<void> {
    this.batches++;
    const done: [Job, unknown][] = [];
    try {
      await this.statement(conn, 'BEGIN IMMEDIATE');
    } catch (err) {
      for (const job of this.queue.splice(0, this.maxBatch)) job.reject(err);
      return;
    }
    for (let n = 0; n < this.maxBatch && this.queue.length > 0; n++) {
      const job = this.queue.shift() as Job;
      await this.statement(conn, 'SAVEPOINT edm_write');
      try {
        const value = await job.fn(conn);
        await this.statement(conn, 'RELEASE edm_write');
        done.push([job, value]);
      } catch (err) {
        await this.statement(conn, 'ROLLBACK TO edm_write');
        await this.statement(conn, 'RELEASE edm_write');
        job.reject(err);
      }
    }
    try {
      await this.statement(conn, 'COMMIT');
    } catch (err) {
      await this.statement(conn, 'ROLLBACK').catch(() => {});
      for (const [job] of done) job.reject(err);
      return;
    }
    for (const [job, value] of done) job.resolve(value);
  }
}
