import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import { type DB, SQLITE_BUSY_TIMEOUT_MS, type Store } from './database.js';

/** Pauses between tries for the write lock, in ms (SQLite's own busy handler's steps). */
const BUSY_STEPS_MS = [1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100];

interface Job {
  fn: (db: DB) => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (reason: unknown) => void;
  /**
   * Until when (performance.now(): a clock set back would not lengthen the wait) this write waits
   * for a lock another connection holds: from its arrival.
   */
  deadline: number;
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
 *
 * When another connection holds the write lock (an `edm import`, another process on the file), a
 * batch waits for it between turns of the event loop while this process goes on serving reads
 * (SQLite's own busy handler would wait synchronously, stalling them all), and each write waits
 * up to `busyTimeoutMs` from its own arrival, then fails (SQLITE_BUSY: 503). Before, the wait was
 * the batch's: a write that joined a waiting batch late got what was left of its time, and one
 * past the batch's 64 started a batch of its own, with the whole time again (250 writes queued
 * behind a 30 s import answered at 5, 10, 15 and 20 s).
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
    private readonly busyTimeoutMs = SQLITE_BUSY_TIMEOUT_MS,
  ) {}

  /** Whether `db` is the connection of the batch running now: its statements may use `exec`. */
  holds(db: DB): boolean {
    return db === this.conn;
  }

  private async statement(conn: DB, text: string): Promise<void> {
    if (this.exec) this.exec(text, []);
    else await sql.raw(text).execute(conn);
  }

  /**
   * BEGIN IMMEDIATE without SQLite's busy handler (busy_timeout 0 for this one statement): while
   * the lock is taken, try again after a pause. Each queued write whose own time has passed
   * fails with the SQLITE_BUSY error (503) meanwhile; writes that queue join the wait. Answers
   * false when none is left to run.
   */
  private async begin(conn: DB): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      await this.statement(conn, 'PRAGMA busy_timeout = 0');
      try {
        await this.statement(conn, 'BEGIN IMMEDIATE');
        return true;
      } catch (err) {
        if ((err as { code?: unknown }).code !== 'SQLITE_BUSY') throw err;
        const now = performance.now();
        for (let i = this.queue.length - 1; i >= 0; i--) {
          const job = this.queue[i] as Job;
          if (job.deadline <= now) {
            this.queue.splice(i, 1);
            job.reject(err);
          }
        }
        if (this.queue.length === 0) return false;
        // The next try comes at the next step, or when the first write left must be answered.
        const first = Math.min(...this.queue.map((job) => job.deadline));
        const step = BUSY_STEPS_MS[Math.min(attempt, BUSY_STEPS_MS.length - 1)] as number;
        await sleep(Math.max(1, Math.min(step, first - now)));
      } finally {
        await this.statement(conn, `PRAGMA busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`);
      }
    }
  }

  run<T>(fn: (db: DB) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const deadline = performance.now() + this.busyTimeoutMs;
      this.queue.push({ fn, resolve: resolve as (v: unknown) => void, reject, deadline });
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
      if (!(await this.begin(conn))) return;
    } catch (err) {
      for (const job of this.queue.splice(0, this.maxBatch)) job.reject(err);
      return;
    }
    for (let n = 0; n < this.maxBatch && this.queue.length > 0; n++) {
      const job = this.queue.shift() as Job;
      let value: unknown;
      try {
        await this.statement(conn, 'SAVEPOINT edm_write');
        value = await job.fn(conn);
        await this.statement(conn, 'RELEASE edm_write');
      } catch (err) {
        job.reject(err);
        try {
          await this.statement(conn, 'ROLLBACK TO edm_write');
          await this.statement(conn, 'RELEASE edm_write');
        } catch {
          // No savepoint left: SQLite ended the whole transaction itself, as it may on a full
          // disk, an I/O error or memory running out. The batch's earlier writes went with it
          // and fail as this one did (before, the batch stopped here: their requests waited
          // for good, and the writes queued behind them until another came).
          await this.statement(conn, 'ROLLBACK').catch(() => {});
          for (const [earlier] of done) earlier.reject(err);
          return;
        }
        continue;
      }
      done.push([job, value]);
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
