import { isoTime } from '../../core/clock.js';
import type { Doc } from '../../core/resource.js';
import type { Tx } from '../../core/tables.js';
import { type History, type Snapshot, snapshotRow, withSnapshot } from './check-ins.js';
import { keyResults, statusAt } from './key-results.js';
import { type Measure, progressPct } from './progress.js';
import { scheduleSweep } from './sweep.js';
import { snapshots } from './tables.js';

/**
 * Records a value the platform read or computed for a key result (a connector's sync, a
 * query's recomputation): a system write of `current` with its progress, status and a
 * `source_type: system` snapshot, rolled up into its objective, in the caller's transaction.
 * The caller has checked that the value changed.
 */
export async function recordSystemValue(tx: Tx, tenantId: string, kr: Doc, value: number): Promise<Doc> {
  const progress = progressPct({ ...kr, current: value } as unknown as Measure);
  const { status, expiresAt } = await statusAt(tx, tenantId, { ...kr, current: value }, tx.now);
  const snap: Snapshot = {
    at: isoTime(tx.now),
    value,
    progress_pct: progress,
    by: 'system',
    source_type: 'system',
    note: null,
    confidence: null,
  };
  const after = await tx.systemWrite(keyResults, kr, {
    current: value,
    progress_pct: progress,
    status,
    history: withSnapshot(kr.history as History, snap),
    last_update_at: isoTime(tx.now),
  });
  await tx.insert(snapshots, snapshotRow(tenantId, kr.id as string, snap, tx.now));
  await scheduleSweep(tx, tenantId, kr.id as string, expiresAt);
  return after;
}
