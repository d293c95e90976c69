import { integer, number, ref, stringList, text } from '../../core/fields.js';
import { defineResource } from '../../core/resource.js';
import { OWNER_ID_PATTERN, STATUSES, TAGS } from './shared.js';

export const objectives = defineResource({
  module: 'okr',
  name: 'Objective',
  path: 'objectives',
  idPrefix: 'obj',
  schemaVersion: 1,
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
    parent_objective_id: ref('obj', { notes: 'ID of the Objective this one aligns to (no cycles in the tree).' }),
    tags: stringList({ ...TAGS, notes: 'Free-form string tags for filtering and grouping.' }),
    progress_pct: number({
      computed: true,
      notes: "Weighted average of its live Key Results' progress_pct (weight 0 excluded; none → 0).",
    }),
    status: text({
      enum: STATUSES,
      computed: true,
      notes: 'Worst status among its live Key Results (off_track > at_risk > on_track > not_started > achieved).',
    }),
    key_result_count: integer({ computed: true, notes: 'Number of live Key Results contributing to this Objective.' }),
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
