/**
 * The order OKR writes lock rows in, on PostgreSQL: parent before child. A write to a key result
 * locks its objective with it, objective first (the engine's joined lock); writes that reach
 * other key results (recomputing queries, a connector's sync, the status sweep) lock those key
 * results' objectives first, then the key results, each in id order. Two writes that share rows
 * then wait for each other instead of deadlocking.
 */
import type { Doc } from '../../core/resource.js';
import type { Tx } from '../../core/tables.js';
import { keyResults } from './key-results.js';
import { objectives } from './objectives.js';

/**
 * Locks key results for update, their objectives first. The objectives are those the key
 * results had when read unlocked: one that moved meanwhile locks its new objective later (its
 * roll-up), out of order, as a rare deadlock the engine's retry resolves. Answers the locked rows.
 */
export async function lockKeyResults(tx: Tx, tenantId: string, ids: readonly string[]): Promise<Map<string, Doc>> {
  const objectiveIds = new Set<string>();
  for (const id of ids) {
    const objectiveId = (await tx.peek(keyResults, tenantId, id))?.objective_id;
    if (typeof objectiveId === 'string') objectiveIds.add(objectiveId);
  }
  for (const id of [...objectiveIds].sort()) await tx.find(objectives, tenantId, id);
  const locked = new Map<string, Doc>();
  for (const id of [...ids].sort()) {
    const doc = await tx.find(keyResults, tenantId, id);
    if (doc) locked.set(id, doc);
  }
  return locked;
}
