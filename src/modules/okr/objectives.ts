import { Type } from '@sinclair/typebox';
import { fieldError } from '../../core/errors.js';
import { integer, json, number, ref, stringList, text } from '../../core/fields.js';
import { defineResource, fillNullDefaults } from '../../core/resource.js';
import type { Tx } from '../../core/tables.js';
import { OWNER_ID_PATTERN, STATUSES, TAGS } from './shared.js';
import { requeueObjectives } from './sweep.js';

/** The lock of a tenant's realignments (`parent_objective_id` changes): see the serialize hook. */
export const ALIGNMENT = 'okr.alignment';

/** How many objectives an objective may be aligned under, one above the other. */
export const MAX_ALIGNMENT_DEPTH = 32;

/**
 * How many levels of live objectives are aligned under `id`, counted up to `atMost + 1` (one past
 * is enough to refuse): a lookup per level (per 500 objectives of it), of the ids only.
 */
async function levelsBelow(tx: Tx, tenantId: string, id: string, atMost: number): Promise<number> {
  let level = [id];
  for (let depth = 0; depth <= atMost; depth++) {
    level = await tx.liveIdsWhereIn(objectives, tenantId, 'parent_objective_id', level);
    if (level.length === 0) return depth;
  }
  return atMost + 1;
}

export const objectives = defineResource({
  module: 'okr',
  name: 'Objective',
  path: 'objectives',
  idPrefix: 'obj',
  // 2: `source` and `source_type` are never null (a PATCH to null gives the default); builds
  // before stored the null, which the upgrade turns into the default.
  schemaVersion: 2,
  description: 'A qualitative goal for a cycle, measured by its Key Results.',
  titleField: 'title',
  fields: {
    title: text({
      required: true,
      minLength: 1,
      maxLength: 200,
      example: 'Delight our customers',
      notes: 'Short, inspiring statement of the goal.',
    }),
    description: text({ maxLength: 10_000, notes: 'Longer context: why this objective matters.' }),
    owner_id: text({
      pattern: OWNER_ID_PATTERN,
      notes: 'User ID of the person accountable for this Objective. Format: usr-<uuid>.',
    }),
    cycle_id: ref('cyc', { parent: true, notes: 'ID of the Cycle this Objective belongs to.' }),
    parent_objective_id: ref('obj', {
      // Alignment does not own: an objective others align to is not deleted (cascade or not)
      // while they are live, and one aligned to a deleted objective is not restored.
      restrict: true,
      notes: 'ID of the Objective this one aligns to (no cycles in the tree).',
    }),
    tags: stringList({ ...TAGS, notes: 'Free-form string tags for filtering and grouping.' }),
    progress_pct: number({
      computed: true,
      nonNull: true,
      min: 0,
      max: 100,
      notes: "Weighted average of its live Key Results' progress_pct (weight 0 excluded; none → 0).",
    }),
    status: text({
      enum: STATUSES,
      computed: true,
      nonNull: true,
      notes: 'Worst status among its live Key Results (off_track > at_risk > on_track > not_started > achieved).',
    }),
    key_result_count: integer({
      computed: true,
      nonNull: true,
      notes: 'Number of live Key Results contributing to this Objective.',
    }),
  },
  internal: {
    rollup_weight_sum: number({ default: 0, notes: 'Σ weight of live key results with weight > 0.' }),
    rollup_progress_sum: number({ default: 0, notes: 'Σ weight × progress_pct of those key results.' }),
    rollup_status_counts: json(Type.Record(Type.String(), Type.Integer()), { notes: 'Live key results per status.' }),
    rollup_weight_peak: number({
      default: 0,
      notes: 'The largest weight the sums held since they were last summed exactly (their rounding is ~1e-16 of it).',
    }),
    rollup_short_count: integer({ notes: 'Live key results with weight > 0 whose progress_pct is below 100.' }),
    rollup_version: integer({
      notes:
        'The version this build last wrote the peak and short count at: another says a build keeping neither wrote the sums since.',
    }),
  },
  hooks: {
    // Realignments are checked one at a time: two at once (a to b, c to a, over b to c) could
    // each pass the walk below without the other's edge, or, walking with locks, deadlock.
    serialize: (patch) => ('parent_objective_id' in patch ? ALIGNMENT : null),
    upgrade: (doc) => fillNullDefaults(objectives, doc),
    prepare(doc, before) {
      if (before) {
        // A caller's write keeps the roll-up as it was: still this build's, at the new version.
        if (before.rollup_version != null && Number(before.rollup_version) === Number(before.version))
          doc.rollup_version = Number(before.version) + 1;
        return;
      }
      Object.assign(doc, {
        rollup_version: 1,
        progress_pct: 0,
        status: 'not_started',
        key_result_count: 0,
        rollup_status_counts: {},
        rollup_short_count: 0,
      });
    },
    async derive(doc, before, ctx, tx) {
      // The alignment tree has no cycles: walking up from the new parent must never reach this
      // objective. Unlocked reads: a realignment holds the tenant's ALIGNMENT lock (serialize).
      // A restore walks it too: the tree may have grown above its parent meanwhile.
      const parentId = doc.parent_objective_id;
      if (typeof parentId !== 'string') return;
      if (parentId === before?.parent_objective_id && ctx.op !== 'restore') return;
      const seen = new Set<string>();
      for (let at: unknown = parentId; typeof at === 'string' && !seen.has(at); ) {
        if (at === doc.id) {
          throw fieldError('invalid_reference', [
            {
              path: '/parent_objective_id',
              code: 'alignment_cycle',
              message: `aligning to ${parentId} would make the alignment tree a cycle`,
            },
          ]);
        }
        seen.add(at);
        // Bounded: each create, realignment or restore walks it (an import keeps its place).
        if (seen.size > MAX_ALIGNMENT_DEPTH && !ctx.restoring) break;
        at = (await tx.peek(objectives, ctx.principal.tenantId, at))?.parent_objective_id;
      }
      if (ctx.restoring) return;
      // The objectives aligned under it move with it, level by level (none are under a new or a
      // restored one: an objective others align to is not deleted).
      const room = MAX_ALIGNMENT_DEPTH - seen.size;
      const deep = (message: string) =>
        fieldError('invalid_reference', [{ path: '/parent_objective_id', code: 'limit_reached', message }]);
      if (room < 0) {
        throw deep(
          `${parentId} is ${MAX_ALIGNMENT_DEPTH} levels deep already: an alignment is at most ${MAX_ALIGNMENT_DEPTH} levels`,
        );
      }
      if (
        before &&
        !before.is_deleted &&
        (await levelsBelow(tx, ctx.principal.tenantId, doc.id as string, room)) > room
      ) {
        throw deep(
          `under ${parentId}, the objectives aligned under ${doc.id} would be more than ${MAX_ALIGNMENT_DEPTH} levels deep: an alignment is at most ${MAX_ALIGNMENT_DEPTH} levels`,
        );
      }
    },
    async afterWrite(after, before, ctx, tx) {
      if (ctx.op === 'update' && before && before.cycle_id !== after.cycle_id) {
        await requeueObjectives(tx, after.tenant_id as string, [after.id as string]);
      }
    },
  },
  sortable: ['created_at', 'updated_at', 'title', 'progress_pct'],
  filterable: [
    'owner_id',
    'cycle_id',
    'parent_objective_id',
    'status',
    'tags',
    'progress_pct',
    'created_at',
    'updated_at',
  ],
});
