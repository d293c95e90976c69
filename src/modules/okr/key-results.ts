import { Type } from '@sinclair/typebox';
import { isoTime } from '../../core/clock.js';
import { ApiError, type FieldError, fieldError } from '../../core/errors.js';
import { datetime, integer, json, NUMBER_LIMIT, number, ref, stringList, text } from '../../core/fields.js';
import type { Doc } from '../../core/resource.js';
import { defineResource, fillNullDefaults, platformFields } from '../../core/resource.js';
import type { Tx } from '../../core/tables.js';
import { validateInput } from '../../core/validation.js';
import {
  checkInFields,
  checkInOperations,
  type History,
  type Snapshot,
  SnapshotSchema,
  snapshotRow,
  withSnapshot,
} from './check-ins.js';
import { catchUpFeed, connectors } from './connectors.js';
import { cycles } from './cycles.js';
import { objectives } from './objectives.js';
import { impliedDirection, LINEAR_TYPES, type Measure, type MetricType, progressPct } from './progress.js';
import { parsed, QuerySyntaxError } from './query.js';
import {
  catchUp,
  checkDownstream,
  checkFeedDownstream,
  checkNoLoop,
  propagate,
  QUERY_GRAPH,
  queryValue,
  READERS,
  syncReads,
} from './query-source.js';
import { rollUp } from './rollup.js';
import { MIN_WEIGHT, OWNER_ID_PATTERN, STATUSES, TAGS } from './shared.js';
import { computeStatus, cycleSpan } from './status.js';
import { scheduleSweep } from './sweep.js';
import { queryReads, snapshots, statusSweep } from './tables.js';
import { recordSystemValue } from './values.js';

/** What derive() computed for the write in flight, for afterWrite() (same transaction). */
const pending = new WeakMap<Doc, { expiresAt: number | null; snapshot: Snapshot | null }>();

export const METRIC_TYPES = ['number', 'percentage', 'currency', 'milestone', 'threshold'] as const;
export const DIRECTIONS = ['increase', 'decrease'] as const;
export const DATA_SOURCES = ['manual', 'connector', 'query'] as const;
/** How many live key results one connector may feed: each sync writes them all in one transaction. */
export const MAX_CONNECTOR_FEEDS = 100;
/** The field each data source takes its values through (the others must be null). */
const SOURCE_FIELD: Record<string, string | undefined> = { connector: 'connector_id', query: 'query' };

/** The write sets a query: a key result's first, or another in place of the one it had. */
function setsQuery(doc: Doc, before: Doc | null): boolean {
  return doc.data_source === 'query' && (doc.query !== before?.query || before?.data_source !== 'query');
}

/** A key result's status at `now`, paced against its objective's cycle, and when that band ends. */
export async function statusAt(tx: Tx, tenantId: string, kr: Doc, now: number) {
  const objective = await tx.find(objectives, tenantId, kr.objective_id as string);
  const cycle =
    typeof objective?.cycle_id === 'string' ? await tx.find(cycles, tenantId, objective.cycle_id, 'share') : null;
  return computeStatus(kr as unknown as Measure, cycleSpan(cycle), now);
}

/**
 * History entries recorded while the key result's `source_type` was null (a schema 1 row) say
 * the default it reads as now: such an entry was stored with null, or, written by a build that
 * kept the row at schema 1, with "".
 */
function historyWithSourceTypes(history: unknown): unknown {
  if (!Array.isArray(history)) return history;
  const unset = (entry: Snapshot) => entry.source_type === null || entry.source_type === '';
  if (!history.some(unset)) return history;
  const fallback = platformFields.source_type.default;
  return history.map((entry: Snapshot) => (unset(entry) ? { ...entry, source_type: fallback } : entry));
}

/**
 * The write sets `current`: sends one other than the stored value. One sent back as it was read
 * (a read-modify-write of the writable fields) changes nothing, whatever the data source.
 */
function setsCurrent(input: Doc | null, before: Doc | null): boolean {
  const current = input?.current;
  return current !== undefined && current !== null && (before === null || current !== before.current);
}

/** A number the API takes (PRODUCT.md §1: finite, |x| ≤ 1e15). */
function isNumberInLimits(v: unknown): boolean {
  return typeof v === 'number' && Number.isFinite(v) && Math.abs(v) <= NUMBER_LIMIT;
}

export const keyResults = defineResource({
  module: 'okr',
  name: 'KeyResult',
  path: 'key-results',
  idPrefix: 'kr',
  // 2: `metric_type`, `baseline`, `data_source`, `weight`, `source` and `source_type` are never
  // null (a PATCH to null gives the default); builds before stored the null (see the upgrade).
  schemaVersion: 2,
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
      nonNull: true,
      notes: 'The measurement type that governs how progress is computed.',
    }),
    baseline: number({
      default: 0,
      nonNull: true,
      example: 80000,
      notes: 'Starting value of the metric at the time this KeyResult was created.',
    }),
    target: number({
      required: true,
      // A milestone's defaults to 1 (the prepare hook below); any other type's create needs one.
      optionalOnCreate: true,
      requiredUnless: { metric_type: 'milestone' },
      defaultRule: '1 for a milestone (any other metric_type must send one)',
      example: 120000,
      notes: 'The value the metric must reach for this KeyResult to be considered achieved.',
    }),
    // Not null in a PATCH (validate refuses it). A stored row may lack one (a row of a schema
    // before the field, as lists' sorts on empty values provide for), so answers may say null.
    current: number({
      notNullInWrites: true,
      defaultRule: 'baseline',
      notes: 'Latest observed value of the metric.',
    }),
    unit: text({
      maxLength: 64,
      example: 'MRR',
      notes: "Human-readable unit label for the metric (e.g. 'MRR', '%', 'count', 'milestone').",
    }),
    direction: text({
      type: 'string',
      enum: DIRECTIONS,
      nonNull: true,
      defaultRule:
        'from baseline and target: decrease when target < baseline, else increase (threshold: increase); derived again when a PATCH moves either without it',
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
      nonNull: true,
      notes: 'How the current metric value is sourced.',
    }),
    connector_id: ref('con', {
      // A connector is not deleted while it feeds live key results (not their owner: no cascade).
      restrict: true,
      notes: 'ID of the connector used to pull metric data automatically. Null for manual or query sources.',
    }),
    query: text({
      maxLength: 4000,
      mentions: 'kr',
      notes: "Metric query expression used when dataSource is 'query'.",
    }),
    // The examples of computed fields are what a create of the example body answers.
    progress_pct: number({
      computed: true,
      nonNull: true,
      min: 0,
      max: 100,
      example: 0,
      notes: 'Computed progress percentage (0–100) based on baseline, current, and target.',
    }),
    status: text({
      type: 'string',
      enum: STATUSES,
      computed: true,
      nonNull: true,
      example: 'not_started',
      notes: 'Current health status of this KeyResult.',
    }),
    last_update_at: datetime({
      computed: true,
      example: '2026-11-01T12:00:00.000Z',
      notes: 'ISO 8601 timestamp when the current metric value was last updated.',
    }),
    history: json(Type.Array(SnapshotSchema), {
      computed: true,
      nonNull: true,
      example: [
        {
          at: '2026-11-01T12:00:00.000Z',
          value: 80000,
          progress_pct: 0,
          by: 'usr-3f1c2b9e-5d4a-4e8f-9a7b-1c2d3e4f5a6b',
          source_type: 'api',
          note: null,
          confidence: null,
        },
      ],
      // Up to 100 snapshots (~16 KB): once per row, in the document, not again in a column.
      stored: 'document',
      notes: 'Ordered log of metric value snapshots over time.',
    }),
    tags: stringList({ ...TAGS, notes: 'Free-form string tags for filtering and grouping.' }),
    weight: number({
      min: 0,
      default: 1,
      nonNull: true,
      notes: "Relative weight of this KeyResult in its Objective's progress: 0 excludes it, else at least 0.000001.",
    }),
    confidence: integer({
      min: 0,
      max: 10,
      readOnly: true,
      notes: "Integer 0–10 from the last check-in's confidence, or null.",
    }),
  },
  internal: {
    [READERS]: integer({ default: 0, notes: 'Live query key results whose query reads this one.' }),
  },
  tables: [snapshots, statusSweep, queryReads],
  // Every write rolls up into its objective (derive and rollUp lock it): the check locks it first.
  lockReferences: ['objective_id'],
  operations: checkInOperations,
  // An import replays a history as the check-ins that made it.
  replay: {
    field: 'history',
    from: 'current',
    operation: 'checkIns.create',
    body: (entry, at) => ({ value: entry.value, note: entry.note ?? null, confidence: entry.confidence ?? null, at }),
    // A manual history is replayed as it is; a query's or a connector's as `switched` says.
    when: (doc) => (doc.data_source ?? 'manual') === 'manual',
    // A query's or a connector's key result has its whole log replayed, then its source attached:
    // what a query wrote depends on the queries it had, the times it was deleted and what its
    // reads held then, none of which the file holds; a connector's readings are read no more. It
    // keeps the last value until its source next moves it (derive, on an import), as a CSV row's
    // value (no log) from a connector does.
    switched: {
      applies: (doc) => doc.data_source === 'query' || doc.data_source === 'connector',
      manual: { data_source: 'manual', query: null, connector_id: null },
      holds: (doc) => doc.data_source === 'connector',
    },
    // What the platform wrote (a reading, a recomputation) is written again as it wrote it: a
    // system write, by `system`, that keeps the key result's confidence. Its value is checked as
    // a check-in's is: the file is not trusted.
    async system(tx, tenantId, id, entry) {
      const { value } = validateInput({ value: checkInFields.value }, { value: entry.value });
      // The platform writes no note and no confidence: an entry of its with either is no export's.
      const words = (['note', 'confidence'] as const).filter((name) => entry[name] != null);
      if (words.length > 0) {
        throw fieldError(
          'validation_failed',
          words.map((name) => ({
            path: `/${name}`,
            code: 'invalid',
            message: `${name} must be null in an entry the platform wrote (source_type system)`,
          })),
        );
      }
      const kr = await tx.find(keyResults, tenantId, id);
      if (kr) await propagate(tx, tenantId, await recordSystemValue(tx, tenantId, kr, value as number));
    },
    // A person's entry is replayed as a check-in, which sets the key result's confidence, where a
    // PATCH of `current` (the file does not say which it was) left it as it was: the file's own
    // (its last check-in's) is set back, checked as a check-in's is, where the last entry
    // replayed left another.
    settle: {
      needed: (doc, replayed) => (doc.confidence ?? null) !== (replayed.at(-1)?.confidence ?? null),
      async run(tx, tenantId, id, doc) {
        const { confidence } = validateInput(
          { confidence: checkInFields.confidence },
          { confidence: doc.confidence ?? null },
        );
        const kr = await tx.find(keyResults, tenantId, id);
        if (kr && kr.confidence !== confidence) await tx.systemWrite(keyResults, kr, { confidence });
      },
    },
  },
  // The upgrade's direction, derived again where an older row kept none or one contradicting the
  // bounds of a linear type (impliedDirection, in SQL; metric_type's null is filled before).
  upgradedColumns: [
    {
      column: 'direction',
      set: "CASE WHEN metric_type <> 'threshold' AND target < baseline THEN 'decrease' ELSE 'increase' END",
      where:
        "baseline IS NOT NULL AND target IS NOT NULL AND (direction IS NULL OR (metric_type IN ('number', 'percentage', 'currency') AND baseline <> target AND direction <> CASE WHEN target < baseline THEN 'decrease' ELSE 'increase' END))",
    },
  ],
  // A key result that queries read, or that is a query, is written under the tenant's
  // QUERY_GRAPH lock, taken before its row's: its write recomputes (or changes the readers of)
  // key results under other objectives, whose writes lock in the opposite order otherwise.
  serializeRows: {
    lock: QUERY_GRAPH,
    when: [
      [READERS, '>', 0],
      ['data_source', '=', 'query'],
    ],
  },
  hooks: {
    // A key result's query can change only with `query` in the body (another data source has none);
    // one a connector starts to feed names it. Both are checked against the queries downstream.
    serialize: (patch) => ('query' in patch || typeof patch.connector_id === 'string' ? QUERY_GRAPH : null),
    // A null stored by a build before schema 2 takes the default, as a PATCH to null gives now.
    // What that build derived from it holds for the default: `current` was set from the baseline
    // on create (a null one was never given), the direction was checked against a null baseline
    // as against 0, and the roll-up counted a null weight as 1. A direction is derived again where
    // none was kept (bounds that were not numbers) or where a null metric_type let one contradict
    // the bounds of a linear type (each write would be 400 otherwise). `progress_pct` and `status`
    // stay what the last write computed, as the objective's running sums hold them; the row's next
    // write derives them again.
    upgrade(doc) {
      fillNullDefaults(keyResults, doc);
      const m = doc as unknown as Measure;
      if (typeof m.baseline === 'number' && typeof m.target === 'number') {
        const implied = impliedDirection(m.metric_type, m.baseline, m.target);
        const contradicts = LINEAR_TYPES.includes(m.metric_type) && m.baseline !== m.target && m.direction !== implied;
        if (m.direction === null || contradicts) doc.direction = implied;
      }
      doc.history = historyWithSourceTypes(doc.history);
    },
    prepare(doc, before, ctx) {
      const input = ctx.input ?? {};
      // A milestone's target defaults to 1: on create, and when a PATCH clears it (as a field
      // with a declared default takes it again).
      if (doc.metric_type === 'milestone' && doc.target === null) doc.target = 1;
      if (!before) {
        // From a baseline that is valid only: a bad one is named once, as itself, not as `current` too.
        if (doc.current === null && isNumberInLimits(doc.baseline)) doc.current = doc.baseline;
      }
      // Changed, not merely sent: a form sent back whole keeps the direction its bounds allow.
      // A threshold's direction says what the caller chose, not its bounds (a threshold of "at
      // most 5" tightened to 4 stays "at most"); every other type's follows from its bounds.
      const boundsChanged =
        before !== null &&
        doc.metric_type !== 'threshold' &&
        (doc.baseline !== before.baseline || doc.target !== before.target || doc.metric_type !== before.metric_type);
      const numeric = typeof doc.baseline === 'number' && typeof doc.target === 'number';
      if (numeric && (doc.direction === null || (boundsChanged && !('direction' in input)))) {
        doc.direction = impliedDirection(doc.metric_type as MetricType, doc.baseline as number, doc.target as number);
      }
    },
    validate(doc, before, ctx) {
      const errors: FieldError[] = [];
      if (doc.current === null)
        errors.push({ path: '/current', code: 'required', message: 'current must not be null' });
      const m = doc as unknown as Measure;
      if (
        LINEAR_TYPES.includes(m.metric_type) &&
        m.baseline !== m.target &&
        m.direction !== impliedDirection(m.metric_type, m.baseline, m.target)
      ) {
        errors.push({
          path: '/direction',
          code: 'inconsistent',
          message: `direction ${m.direction} contradicts baseline ${m.baseline} → target ${m.target}`,
        });
      }
      // Weights are relative, and a positive one this small (a subnormal 5e-324) underflowed in
      // the objective's weighted sums: a lone key result at 33.33 rolled up as 33.
      const weight = doc.weight as number;
      // Where the write sets it: a row stored before the rule keeps its weight through other writes.
      const setsWeight = ctx.input?.weight !== undefined && weight !== before?.weight;
      if (setsWeight && !ctx.restoring && weight > 0 && weight < MIN_WEIGHT) {
        errors.push({
          path: '/weight',
          code: 'out_of_range',
          message: `weight is 0 (left out of the objective's progress) or at least ${MIN_WEIGHT}`,
        });
      }
      if (doc.data_source === 'connector' && doc.connector_id === null) {
        errors.push({
          path: '/connector_id',
          code: 'required',
          message: 'connector_id is required when data_source is connector',
        });
      }
      if (doc.data_source === 'query') {
        if (typeof doc.query !== 'string') {
          errors.push({ path: '/query', code: 'required', message: 'query is required when data_source is query' });
        } else {
          try {
            parsed(doc.query);
          } catch (err) {
            if (!(err instanceof QuerySyntaxError)) throw err;
            errors.push({ path: '/query', code: 'invalid_query', message: err.message });
          }
        }
      }
      // A create, or a manual key result turned into a query's or a connector's, is given no
      // `current` of its own (on a key result that was fed already, a PATCH of it is 409 below).
      const wasFed = before !== null && before.data_source !== 'manual';
      if (doc.data_source !== 'manual' && !wasFed && setsCurrent(ctx.input, before)) {
        errors.push({ path: '/current', code: 'not_allowed', message: `current comes from the ${doc.data_source}` });
      }
      for (const name of ['connector_id', 'query'] as const) {
        if (doc[name] !== null && SOURCE_FIELD[doc.data_source as string] !== name) {
          errors.push({
            path: `/${name}`,
            code: 'not_allowed',
            message: `${name} must be null when data_source is ${doc.data_source}`,
          });
        }
      }
      return errors;
    },
    async validateAcross(doc, before, ctx, tx) {
      if (setsQuery(doc, before)) await checkNoLoop(tx, ctx.principal.tenantId, doc, before);
    },
    guard(doc, before, ctx) {
      // A check-in, or a PATCH that changes `current`, on a key result whose values come from
      // elsewhere (one sent back equal to the stored value changes nothing).
      const source =
        ctx.event?.kind === 'check_in'
          ? before.data_source
          : setsCurrent(ctx.input, before)
            ? doc.data_source
            : 'manual';
      if (source !== 'manual')
        throw new ApiError('not_manual', `KeyResult ${doc.id} takes its values from its ${source}`);
    },
    async derive(doc, before, ctx, tx) {
      const event = ctx.event?.kind === 'check_in' ? ctx.event : null;
      const tenantId = ctx.principal.tenantId;
      // What one write of what it reads, or one sync of its connector, recomputes is bounded (422,
      // with the references'), a restore's too (a place taken meanwhile): not for a row an import
      // restores as it was.
      if (!ctx.restoring) await checkDownstream(tx, tenantId, doc, before);
      if (
        doc.data_source === 'connector' &&
        typeof doc.connector_id === 'string' &&
        (before?.data_source !== 'connector' || before?.connector_id !== doc.connector_id || ctx.op === 'restore') &&
        !ctx.restoring
      ) {
        const fed = await tx.findLive(keyResults, tenantId, {
          connector_id: doc.connector_id,
          data_source: 'connector',
        });
        if (fed.filter((k) => k.id !== doc.id).length >= MAX_CONNECTOR_FEEDS) {
          throw fieldError('invalid_reference', [
            {
              path: '/connector_id',
              code: 'limit_reached',
              message: `${doc.connector_id} feeds ${MAX_CONNECTOR_FEEDS} key results already, the most one connector may`,
            },
          ]);
        }
        await checkFeedDownstream(tx, tenantId, doc, fed);
      }
      if (setsQuery(doc, before)) {
        // An import attaches a query after its row's log (replay.switched, the one update an
        // import makes), where what it reads may have been deleted since the source set it: it
        // reads their last values, as the source's query went on doing.
        const value = await queryValue(tx, tenantId, doc, ctx.restoring === true && before !== null);
        if (value !== null) doc.current = value;
      }
      // A key result a connector starts to feed takes the last value it read, else its baseline
      // until the first read (the reference check has read the connector already): the value a
      // person entered before is not the connector's. Until that read, a moved baseline moves it.
      // Not on an import, whose replay of the log (the connector's readings too) left it at the
      // source's value (replay.switched).
      if (
        doc.data_source === 'connector' &&
        !(ctx.restoring && before?.data_source === 'manual') &&
        (doc.connector_id !== before?.connector_id ||
          before?.data_source !== 'connector' ||
          doc.baseline !== before?.baseline)
      ) {
        const feed = await tx.peek(connectors, tenantId, doc.connector_id as string);
        if (typeof feed?.last_value !== 'number') doc.current = doc.baseline;
        else if (doc.connector_id !== before?.connector_id || before?.data_source !== 'connector') {
          doc.current = feed.last_value;
        }
      }
      const m = doc as unknown as Measure;
      doc.progress_pct = progressPct(m);
      const { status, expiresAt } = await statusAt(tx, tenantId, doc, ctx.now);
      doc.status = status;
      pending.set(doc, { expiresAt, snapshot: null });
      const changed = before === null || before.current !== doc.current;
      if (!event && !changed) return;
      const value = event ? (event.value as number) : m.current;
      const snap: Snapshot = {
        at: event ? (event.at as string) : isoTime(ctx.now),
        value,
        progress_pct: progressPct({ ...m, current: value }),
        by: ctx.principal.sub,
        source_type: doc.source_type as string,
        note: event ? (event.note as string | null) : null,
        confidence: event ? (event.confidence as number | null) : null,
      };
      doc.history = withSnapshot(doc.history as History, snap);
      // A back-dated check-in (older than the newest) is history only: `current`, and when it
      // was last updated, stay as they were (check-ins.ts sends no `current` for one). Else the
      // value was last updated when its newest entry says: the check-in's time, or now.
      if (!event || 'current' in (ctx.input ?? {})) doc.last_update_at = snap.at;
      pending.set(doc, { expiresAt, snapshot: snap });
    },
    async afterWrite(after, before, ctx, tx) {
      const tenantId = after.tenant_id as string;
      const work = pending.get(after);
      pending.delete(after);
      if (work?.snapshot) await tx.insert(snapshots, snapshotRow(tenantId, after.id as string, work.snapshot, ctx.now));
      await rollUp(tx, objectives, keyResults, tenantId, before, after);
      // The sweep keeps its own queue; a query's recomputation (query-source.ts) its own readers.
      if (ctx.op === 'system') return;
      await syncReads(tx, tenantId, before, after);
      if (before && before.current !== after.current) await propagate(tx, tenantId, after);
      const due = after.is_deleted ? null : ctx.op === 'restore' ? ctx.now : (work?.expiresAt ?? null);
      // A key result created just now is in no queue: nothing to take out (a round trip on PostgreSQL).
      if (due !== null || ctx.op !== 'create') await scheduleSweep(tx, tenantId, after.id as string, due);
      // A restored key result missed what its source read while it was deleted: recorded now, as
      // the platform's (a system write and snapshot), as a sync or a recomputation would have.
      if (ctx.op === 'restore') {
        await catchUp(tx, tenantId, after);
        await catchUpFeed(tx, tenantId, after);
      }
    },
  },
  sortable: ['created_at', 'updated_at', 'title', 'progress_pct', 'last_update_at', 'current', 'target'],
  filterable: [
    'objective_id',
    'owner_id',
    'status',
    'metric_type',
    'data_source',
    'connector_id',
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
