import { isoTime } from '../../core/clock.js';
import type { Job } from '../../core/resource.js';
import type { Tx } from '../../core/tables.js';
import { END_INSTANT } from '../../core/validation.js';
import { keyResults, statusAt } from './key-results.js';
import { statusSweep } from './tables.js';

/** Puts a key result in the sweep queue for `due` (ms), or takes it out (null). */
export async function scheduleSweep(tx: Tx, tenantId: string, keyResultId: string, due: number | null): Promise<void> {
  // A band that ends past what a timestamp holds (a cycle ending 9999-12-31 ends at year 10000) never ends.
  if (due === null || due >= END_INSTANT)
    await tx.remove(statusSweep, { tenant_id: tenantId, key_result_id: keyResultId });
  else await tx.upsert(statusSweep, { tenant_id: tenantId, key_result_id: keyResultId, due_at: isoTime(due) });
}

/** Re-checks every live key result under the given objectives at the next sweep (a cycle's dates moved). */
export async function requeueObjectives(tx: Tx, tenantId: string, objectiveIds: string[]): Promise<void> {
  // Their ids alone, in id order (two requeues sharing rows write them in the same order).
  const ids = (await tx.liveIdsWhereIn(keyResults, tenantId, 'objective_id', objectiveIds)).sort();
  const due_at = isoTime(tx.now);
  await tx.upsertMany(
    statusSweep,
    ids.map((id) => ({ tenant_id: tenantId, key_result_id: id, due_at })),
  );
}

/** Recomputes one queued key result's status at `tx.now`; a change is a system write (no snapshot). */
export async function sweepOne(tx: Tx, tenantId: string, keyResultId: string): Promise<boolean> {
  // Its objective first, as every write locks them (Tx.lock).
  const kr = (await tx.lock(keyResults, tenantId, [keyResultId])).get(keyResultId);
  if (!kr || kr.is_deleted) {
    await scheduleSweep(tx, tenantId, keyResultId, null);
    return false;
  }
  // The objective is locked for update: a status change rolls up into it (no share-to-update upgrade).
  const { status, expiresAt } = await statusAt(tx, tenantId, kr, tx.now);
  // A band that ends at or before now (rounding at the edge) is looked at again a moment later.
  await scheduleSweep(tx, tenantId, keyResultId, expiresAt === null ? null : Math.max(expiresAt, tx.now + 1));
  if (status === kr.status) return false;
  await tx.systemWrite(keyResults, kr, { status });
  return true;
}

/** Keeps statuses true as time passes: touches only key results whose band has ended. */
export const statusSweepJob: Job = {
  name: 'okr.status-sweep',
  intervalMs: 30_000,
  catchUp: true,
  async run(ctx) {
    let changed = 0;
    for (;;) {
      const due = await ctx.queue(statusSweep, 'due_at', 500);
      for (const row of due) {
        const tenantId = row.tenant_id as string;
        if (await ctx.transaction(tenantId, (tx) => sweepOne(tx, tenantId, row.key_result_id as string))) changed++;
      }
      if (due.length < 500) return changed;
    }
  },
};
