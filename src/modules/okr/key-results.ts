import { Type } from '@sinclair/typebox';
import { datetime, idPattern, integer, json, number, ref, stringList, text } from '../../core/fields.js';
import { defineResource } from '../../core/resource.js';
import { OWNER_ID_PATTERN, STATUSES, TAGS } from './shared.js';

export const METRIC_TYPES = ['number', 'percentage', 'currency', 'milestone', 'threshold'] as const;
export const DIRECTIONS = ['increase', 'decrease'] as const;
export const DATA_SOURCES = ['manual', 'connector', 'query'] as const;

/** One entry of a key result's history. */
export const Snapshot = Type.Object({
  at: Type.String({ format: 'date-time' }),
  value: Type.Number(),
  progress_pct: Type.Union([Type.Number(), Type.Null()]),
  by: Type.Union([Type.String(), Type.Null()]),
  source_type: Type.String(),
  note: Type.Union([Type.String(), Type.Null()]),
  confidence: Type.Union([Type.Integer(), Type.Null()]),
});

export const keyResults = defineResource({
  module: 'okr',
  name: 'KeyResult',
  path: 'key-results',
  idPrefix: 'kr',
  schemaVersion: 1,
  description: 'A measurable result rolling up to an Objective.',
  titleField: 'title',
  fields: {
    objective_id: ref('obj', {
      required: true,
      parent: true,
      notes: 'ID of the Objective this KeyResult contributes to.',
    }),
    title: text({
      required: true,
      minLength: 1,
      maxLength: 200,
      example: 'Grow monthly recurring revenue to 120k',
      notes: 'Short, descriptive title for this KeyResult.',
    }),
    metric_type: text({
      type: 'string',
      enum: METRIC_TYPES,
      default: 'number',
      notes: 'The measurement type that governs how progress is computed.',
    }),
    baseline: number({
      default: 0,
      example: 80000,
      notes: 'Starting value of the metric at the time this KeyResult was created.',
    }),
    target: number({
      required: true,
      example: 120000,
      notes: 'The value the metric must reach for this KeyResult to be considered achieved.',
    }),
    current: number({ notes: 'Latest observed value of the metric.' }),
    unit: text({
      maxLength: 64,
      example: 'MRR',
      notes: "Human-readable unit label for the metric (e.g. 'MRR', '%', 'count', 'milestone').",
    }),
    direction: text({
      type: 'string',
      enum: DIRECTIONS,
      notes: 'Whether progress is made by the metric going up (increase) or down (decrease).',
    }),
    owner_id: text({
      pattern: OWNER_ID_PATTERN,
      notes: 'User ID of the person accountable for this KeyResult. Format: usr-<uuid>.',
    }),
    data_source: text({
      type: 'string',
      enum: DATA_SOURCES,
      default: 'manual',
      notes: 'How the current metric value is sourced.',
    }),
    connector_id: text({
      pattern: idPattern('con'),
      notes: 'ID of the connector used to pull metric data automatically. Null for manual or query sources.',
    }),
    query: text({ maxLength: 4000, notes: "Metric query expression used when dataSource is 'query'." }),
    progress_pct: number({
      computed: true,
      notes: 'Computed progress percentage (0–100) based on baseline, current, and target.',
    }),
    status: text({
      type: 'string',
      enum: STATUSES,
      computed: true,
      notes: 'Current health status of this KeyResult.',
    }),
    last_update_at: datetime({
      computed: true,
      notes: 'ISO 8601 timestamp when the current metric value was last updated.',
    }),
    history: json(Type.Array(Snapshot), {
      computed: true,
      stored: false,
      notes: 'Ordered log of metric value snapshots over time.',
    }),
    tags: stringList({ ...TAGS, notes: 'Free-form string tags for filtering and grouping.' }),
    weight: number({
      min: 0,
      default: 1,
      notes: "Relative weight of this KeyResult in its Objective's progress (≥ 0; 0 excludes it).",
    }),
    confidence: integer({
      min: 0,
      max: 10,
      readOnly: true,
      notes: "Integer 0–10 from the last check-in's confidence, or null.",
    }),
  },
  sortable: ['created_at', 'updated_at', 'title', 'progress_pct', 'last_update_at', 'current', 'target'],
  filterable: [
    'objective_id',
    'owner_id',
    'status',
    'metric_type',
    'data_source',
    'direction',
    'tags',
    'progress_pct',
    'current',
    'target',
    'created_at',
    'updated_at',
    'last_update_at',
  ],
});
