import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/**
 * Copies a SQLite file's WAL back into the database on a thread of its own.
 *
 * A checkpoint reads every WAL frame and writes it into the file, a system call each, then
 * syncs: run by the writer after a commit (SQLite's auto-checkpoint), it stalled the event loop
 * for tens of milliseconds on a large store, and every request waiting on it. Here a worker
 * thread runs a passive checkpoint every `intervalMs`: it never waits for readers or writers and
 * never blocks them. The writer keeps SQLite's auto-checkpoint as a backstop; by the time it
 * fires, the worker has copied nearly everything, so what is left is a short tail, and only
 * that checkpoint (run between writes) lets the WAL start over from its beginning.
 */
export interface Checkpointer {
  /** Passes finished so far (tests watch it move). */
  passes(): Promise<number>;
  /** Stops the thread after the pass in flight. */
  stop(): Promise<void>;
}

const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.file, { fileMustExist: true });
let passes = 0;
const timer = setInterval(() => {
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
    passes++;
  } catch {}
}, workerData.intervalMs);
parentPort.on('message', (message) => {
  if (message === 'passes') parentPort.postMessage(passes);
  if (message === 'stop') {
    clearInterval(timer);
    db.close();
    parentPort.close();
  }
});
`;

export function startCheckpointer(file: string, intervalMs: number): Checkpointer {
  const driver = createRequire(import.meta.url).resolve('better-sqlite3');
  const worker = new Worker(WORKER, {
    eval: true,
    workerData: { file, driver, intervalMs },
    // It runs a pragma on a timer: a small heap keeps the thread's memory to a few MB.
    resourceLimits: { maxOldGenerationSizeMb: 8, maxYoungGenerationSizeMb: 1, codeRangeSizeMb: 2, stackSizeMb: 1 },
  });
  // A failing thread (the file gone, say) leaves the writer's auto-checkpoint doing the work.
  worker.on('error', () => {});
  worker.unref();
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  return {
    passes: () =>
      new Promise<number>((resolve) => {
        worker.once('message', (n: number) => resolve(n));
        worker.postMessage('passes');
      }),
    async stop() {
      // Held until it exits: an unreferenced thread would let the process end mid-await.
      worker.ref();
      worker.postMessage('stop');
      let timer: NodeJS.Timeout | undefined;
      const late = await Promise.race([
        exited.then(() => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), 2000);
        }),
      ]);
      clearTimeout(timer);
      if (late) await worker.terminate();
    },
  };
}
