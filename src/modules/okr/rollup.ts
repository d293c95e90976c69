import type { Doc } from '../../core/resource.js';
import type { Tx } from '../../core/tables.js';
import { roundHalfAwayFromZero } from './progress.js';
import { MIN_WEIGHT, STATUSES } from './shared.js';
import type { Status } from './status.js';

/** What one key result adds to its objective's roll-up. */
export interface Contribution {
  objectiveId: string;
  weight: number;
  progress: number;
  status: Status;
}

export type StatusCounts = Partial<Record<Status, number>>;

/** The running sums an objective keeps so each key-result write updates it without a rescan. */
export interface RollupState {
  rollup_weight_sum: number;
  rollup_progress_sum: number;
  rollup_status_counts: StatusCounts;
  key_result_count: number;
  /**
   * The largest weight sum, or weight added or removed, since the sums were last summed
   * exactly: their rounding error is ~1e-16 of it (see cancelledSum).
   */
  rollup_weight_peak: number;
  /**
   * How many of the weighted key results are short of 100: the average alone cannot tell 100 from
   * 99.9999999999 once weights are far enough apart (see rollupFigures).
   */
  rollup_short_count: number;
}

export function contribution(kr: Doc | null): Contribution | null {
  if (!kr || kr.is_deleted || typeof kr.objective_id !== 'string') return null;
  const weight = Number(kr.weight ?? 1);
  return {
    objectiveId: kr.objective_id,
    // A positive weight below MIN_WEIGHT (a row an earlier build took, restored by an import)
    // counts as MIN_WEIGHT: smaller, weight × progress underflows (33.33 rolled up as 33).
    weight: weight > 0 && weight < MIN_WEIGHT ? MIN_WEIGHT : weight,
    progress: Number(kr.progress_pct ?? 0),
    status: (kr.status ?? 'not_started') as Status,
  };
}

const same = (a: Contribution | null, b: Contribution | null) =>
  a === b ||
  (a !== null &&
    b !== null &&
    a.objectiveId === b.objectiveId &&
    a.weight === b.weight &&
    a.progress === b.progress &&
    a.status === b.status);

/** Adds (sign 1) or removes (sign −1) one contribution from the running sums. */
export function applyContribution(state: RollupState, c: Contribution, sign: 1 | -1): RollupState {
  const counts = { ...state.rollup_status_counts };
  counts[c.status] = (counts[c.status] ?? 0) + sign;
  if (counts[c.status] === 0) delete counts[c.status];
  const keyResultCount = state.key_result_count + sign;
  const weighted = c.weight > 0;
  const empty = keyResultCount === 0;
  const short = weighted && c.progress < 100;
  return {
    // An empty objective resets to exact zeros, so rounding noise never outlives its key results.
    rollup_weight_sum: empty ? 0 : state.rollup_weight_sum + (weighted ? sign * c.weight : 0),
    rollup_progress_sum: empty ? 0 : state.rollup_progress_sum + (weighted ? sign * c.weight * c.progress : 0),
    rollup_status_counts: counts,
    key_result_count: keyResultCount,
    rollup_weight_peak: empty
      ? 0
      : Math.max(state.rollup_weight_peak, Math.abs(state.rollup_weight_sum), weighted ? c.weight : 0),
    rollup_short_count: empty ? 0 : state.rollup_short_count + (short ? sign : 0),
  };
}

/**
 * The objective's shown figures from its running sums. The quotient is taken to 12 significant
 * digits before it is rounded to 2 decimals: each add and remove leaves ~1e-16 of rounding in
 * the sums, and where the exact average sits on a half (40.655) that drift alone would decide
 * the shown digit, so two objectives with the same key results could read 40.65 and 40.66. (A
 * true average within 1e-12 of a half but not on it is read as on it.) rollUp sums again from
 * the key results every RESYNC_EVERY writes, so the drift stays far below that.
 */
export function rollupFigures(state: RollupState): { progress_pct: number; status: Status } {
  const average = Number((state.rollup_progress_sum / state.rollup_weight_sum).toPrecision(12));
  // 100 only when every weighted key result is at 100, as a key result's is only once met: an
  // average of 99.995 (100 and 99.99) would round to 100 beside a key result not achieved, and one
  // of weights 1e9 apart (100 and 99.99) reads 100 at 12 digits. Counted, not read off the average.
  const progress =
    state.rollup_weight_sum > 0
      ? state.rollup_short_count === 0
        ? 100
        : Math.min(99.99, roundHalfAwayFromZero(Math.max(0, average)))
      : 0;
  const status = STATUSES.find((s) => (state.rollup_status_counts[s] ?? 0) > 0) ?? 'not_started';
  return { progress_pct: progress, status };
}

/** A fresh recomputation from a list of key results (what the running sums must always equal). */
export function recompute(krs: Doc[]): RollupState & { progress_pct: number; status: Status } {
  let state: RollupState = {
    rollup_weight_sum: 0,
    rollup_progress_sum: 0,
    rollup_status_counts: {},
    key_result_count: 0,
    rollup_weight_peak: 0,
    rollup_short_count: 0,
  };
  for (const kr of krs) {
    const c = contribution(kr);
    if (c) state = applyContribution(state, c, 1);
  }
  // Summed exactly now: what the sums may hold of rounding is of their own size.
  state.rollup_weight_peak = Math.abs(state.rollup_weight_sum);
  return { ...state, ...rollupFigures(state) };
}

export function stateOf(objective: Doc): RollupState {
  const keyResultCount = Number(objective.key_result_count ?? 0);
  // The peak and the short count are this build's: one that keeps neither (a row written before
  // them, or a write by an older server meanwhile, in a rolling upgrade, which moved the sums but
  // left them as they were) is told by its stamp, the version it was written at. Then the sums'
  // history is unknown, and the write sums them again. With no key result, the count is 0.
  const known =
    objective.rollup_weight_peak != null &&
    (keyResultCount === 0 ||
      (objective.rollup_short_count != null && Number(objective.rollup_version) === Number(objective.version)));
  return {
    rollup_weight_sum: Number(objective.rollup_weight_sum ?? 0),
    rollup_progress_sum: Number(objective.rollup_progress_sum ?? 0),
    rollup_status_counts: (objective.rollup_status_counts ?? {}) as StatusCounts,
    key_result_count: keyResultCount,
    rollup_weight_peak: known ? Number(objective.rollup_weight_peak) : Number.POSITIVE_INFINITY,
    rollup_short_count: keyResultCount === 0 ? 0 : Number(objective.rollup_short_count ?? 0),
  };
}

/**
 * Below this, a positive or negative running weight sum is taken for what removals leave of
 * floating-point rounding (0.1 + 0.2 − 0.1 − 0.2 is 2.8e-17, not 0), not for key results.
 */
const RESIDUE = 1e-6;

/**
 * The running sums' rounding error is ~1e-16 of the largest weight (sum, or key result added or
 * removed) they held since they were last summed exactly, the peak; the average's error, ~1e-14
 * of the peak over the weight sum now. Once the weight sum is this many times below the peak,
 * most of it has cancelled and the sums are summed again: a key result of weight 1e15 leaving two
 * of weight 1, at once or in steps, left their average reading 48 for 50. Below this factor the
 * error stays far under what rollupFigures reads (12 significant digits).
 */
const CANCELLATION = 1024;

/** Whether most of the weight the sums held since they were last summed exactly has cancelled. */
export function cancelledSum(state: RollupState): boolean {
  return state.key_result_count > 0 && state.rollup_weight_peak > CANCELLATION * Math.abs(state.rollup_weight_sum);
}

/** Every this many versions of an objective, its roll-up is summed again from its key results. */
export const RESYNC_EVERY = 1000;

/**
 * Whether the running sums may hold rounding residue instead of key results: key results remain
 * but their weight sum is not exactly zero and too small to be theirs (or a zero weight sum
 * kept a progress sum). Shown as is, 1e-15 ÷ 3e-17 would read as 100%.
 */
export function mayHoldResidue(state: RollupState): boolean {
  const w = state.rollup_weight_sum;
  if (state.key_result_count === 0) return false;
  return w === 0 ? state.rollup_progress_sum !== 0 : w < RESIDUE;
}

/**
 * Moves a key result's contribution from `before` to `after` on the objectives concerned, as
 * system writes in the key-result write's transaction. Incremental, but the objective's live key
 * results are summed again where the sums may hold only rounding residue (see mayHoldResidue:
 * rare, when the last weighted key result leaves, or where weights are that small), where a
 * change cancelled most of the weight (see cancelledSum: a dominant key result leaving) and every
 * RESYNC_EVERY versions of the objective (see rollupFigures), under the objective's lock (a
 * key-result write locks its objective first), so none moves meanwhile.
 */
export async function rollUp(
  tx: Tx,
  objectives: Parameters<Tx['find']>[0],
  keyResults: Parameters<Tx['find']>[0],
  tenantId: string,
  before: Doc | null,
  after: Doc,
): Promise<void> {
  const old = contribution(before);
  const now = contribution(after);
  if (same(old, now)) return;
  const changes = new Map<string, { remove: Contribution | null; add: Contribution | null }>();
  if (old) changes.set(old.objectiveId, { remove: old, add: null });
  if (now) changes.set(now.objectiveId, { remove: changes.get(now.objectiveId)?.remove ?? null, add: now });
  for (const [objectiveId, { remove, add }] of changes) {
    const objective = await tx.find(objectives, tenantId, objectiveId);
    if (!objective) continue;
    let state = stateOf(objective);
    if (remove) state = applyContribution(state, remove, -1);
    if (add) state = applyContribution(state, add, 1);
    if (mayHoldResidue(state) || cancelledSum(state) || ((objective.version as number) + 1) % RESYNC_EVERY === 0) {
      // The write's own row as it now is (a read of the store would see it too: its write went first).
      const live = await tx.findLive(keyResults, tenantId, { objective_id: objectiveId });
      state = recompute(live.map((kr) => (kr.id === after.id ? after : kr)));
    }
    const version = (objective.version as number) + 1; // as the system write makes it
    await tx.systemWrite(objectives, objective, { ...state, ...rollupFigures(state), rollup_version: version });
  }
}
