import { type Static, Type } from '@sinclair/typebox';
import { isoTime } from '../../core/clock.js';
import { ApiError, fieldError } from '../../core/errors.js';
import { datetime, integer, number, text } from '../../core/fields.js';
import { newId } from '../../core/ids.js';
import type { CustomOperation, Doc } from '../../core/resource.js';
import { JsonText, jsonSerializer } from '../../core/serialize.js';
import { operationBody, validateInput } from '../../core/validation.js';
import { snapshots } from './tables.js';

/** How many snapshots `history` holds in a response (the full log pages at …/check-ins). */
export const HISTORY_SIZE = 100;

/** One entry of a key result's history. */
export const SnapshotSchema = Type.Object({
  at: Type.String({ format: 'date-time' }),
  value: Type.Number(),
  progress_pct: Type.Union([Type.Number(), Type.Null()]),
  by: Type.Union([Type.String(), Type.Null()]),
  source_type: Type.String(),
  note: Type.Union([Type.String(), Type.Null()]),
  confidence: Type.Union([Type.Integer(), Type.Null()]),
});

export type Snapshot = Static<typeof SnapshotSchema>;

/** A check-in's body; an import checks the entries and the confidence it writes again by them too. */
export const checkInFields = {
  value: number({ required: true, notes: 'The observed value of the metric.' }),
  note: text({ maxLength: 2000, notes: 'What happened, in words.' }),
  confidence: integer({
    min: 0,
    max: 10,
    notes: 'Confidence 0–10 of reaching the target; becomes the key result’s confidence.',
  }),
  at: datetime({ notes: 'When the value was observed (default: now; never in the future).' }),
};

/**
 * A key result's history as its document holds it: the entries, or the stored text of them
 * (JsonText, see FieldSpec.inDocument), or null.
 */
export type History = readonly Snapshot[] | JsonText | null;

/**
 * Whether the `{"` at `at` of a history's text begins an entry. In an array of flat objects
 * `{"` begins an entry, where a member's name follows it, or ends a string whose last character
 * is `{` (a note `see {`, a `by` of `x{`), where its quote closes the string and a `,` or the
 * object's `}` follows. (A quote inside a string is escaped, so no other `{"` occurs.)
 */
function beginsEntry(text: string, at: number): boolean {
  const next = text.charCodeAt(at + 2);
  return next !== 0x2c && next !== 0x7d;
}

/** Where the entries of a history's text begin, in order. */
function entryStarts(text: string): number[] {
  const starts: number[] = [];
  for (let at = text.indexOf('{"'); at >= 0; at = text.indexOf('{"', at + 2)) {
    if (beginsEntry(text, at)) starts.push(at);
  }
  return starts;
}

/** The newest entry of a history (the last: entries are kept in `at` order). */
export function newestSnapshot(history: History): Snapshot | undefined {
  if (history instanceof JsonText) {
    // The last entry begins at the last `{"` that begins one, and ends before the `]`.
    const text = history.text;
    let at = text.lastIndexOf('{"');
    while (at > 0 && !beginsEntry(text, at)) at = text.lastIndexOf('{"', at - 1);
    return at < 0 ? undefined : (JSON.parse(text.slice(at, -1)) as Snapshot);
  }
  return history?.[history.length - 1];
}

/**
 * Inserts a snapshot in `at` order (arrival order among equal times), keeping the newest
 * HISTORY_SIZE. A snapshot newer than every entry of a stored history (every check-in but a
 * back-dated one) is appended to its text: at 100 entries (~16 KB) parsing the history and
 * serializing it again cost more than the rest of the write.
 */
export function withSnapshot(history: History, snap: Snapshot): Snapshot[] | JsonText {
  if (history instanceof JsonText) {
    const newest = newestSnapshot(history);
    if (newest === undefined || snap.at >= newest.at) return appended(history.text, snap);
    history = history.value as Snapshot[];
  }
  const list = [...(history ?? [])];
  let i = list.length;
  while (i > 0 && list[i - 1].at > snap.at) i--;
  list.splice(i, 0, snap);
  return list.slice(-HISTORY_SIZE);
}

const snapshotJson = jsonSerializer(SnapshotSchema);

/** A history's text with one more entry at its end, its oldest entries dropped past HISTORY_SIZE. */
function appended(text: string, snap: Snapshot): JsonText {
  const entry = snapshotJson(snap);
  const starts = entryStarts(text);
  const drop = starts.length + 1 - HISTORY_SIZE;
  if (starts.length === 0 || drop >= starts.length) return new JsonText(`[${entry}]`);
  return new JsonText(`[${text.slice(starts[Math.max(0, drop)], -1)},${entry}]`);
}

/** Records a snapshot in the log table. */
export function snapshotRow(tenantId: string, keyResultId: string, snap: Snapshot, now: number) {
  return { tenant_id: tenantId, id: newId('chk'), key_result_id: keyResultId, ...snap, recorded_at: isoTime(now) };
}

/** The snapshot the operations' examples record: the create example's body, in the history (docs only). */
const EXAMPLE_SNAPSHOT = {
  at: '2026-11-15T09:30:00.000Z',
  value: 95000,
  progress_pct: 37.5,
  by: 'usr-3f1c2b9e-5d4a-4e8f-9a7b-1c2d3e4f5a6b',
  source_type: 'api',
  note: 'Two enterprise deals closed',
  confidence: 7,
};

const CheckInItem = Type.Object({
  tenant_id: Type.String(),
  id: Type.String(),
  key_result_id: Type.String(),
  at: Type.String({ format: 'date-time' }),
  value: Type.Number(),
  progress_pct: Type.Union([Type.Number(), Type.Null()]),
  by: Type.Union([Type.String(), Type.Null()]),
  source_type: Type.Union([Type.String(), Type.Null()]),
  note: Type.Union([Type.String(), Type.Null()]),
  confidence: Type.Union([Type.Integer(), Type.Null()]),
  recorded_at: Type.String({ format: 'date-time' }),
});

/**
 * `POST …/key-results/{id}/check-ins` and `GET …/key-results/{id}/check-ins`. `as const` keeps
 * the names and schemas literal, so the SDK types `client.okr.keyResults.checkIns.*` from them.
 */
export const checkInOperations = [
  {
    name: 'checkIns.create',
    method: 'POST',
    path: '/{id}/check-ins',
    summary:
      'Record a check-in: always a snapshot (even at an unchanged value); the newest check-in sets current and confidence.',
    ...operationBody(checkInFields),
    response: { kind: 'resource', status: 201 },
    example: { value: 95000, note: 'Two enterprise deals closed', confidence: 7 },
    // The key result's example (baseline 80,000, target 120,000) after this check-in.
    responseExample: {
      current: EXAMPLE_SNAPSHOT.value,
      confidence: EXAMPLE_SNAPSHOT.confidence,
      progress_pct: EXAMPLE_SNAPSHOT.progress_pct,
      status: 'on_track',
      updated_at: EXAMPLE_SNAPSHOT.at,
      last_update_at: EXAMPLE_SNAPSHOT.at,
      history: [
        {
          ...EXAMPLE_SNAPSHOT,
          at: '2026-11-01T12:00:00.000Z',
          value: 80000,
          progress_pct: 0,
          note: null,
          confidence: null,
        },
        EXAMPLE_SNAPSHOT,
      ],
    },
    async run({ resource, id, body, tx, ops }) {
      const kr = await ops.get(resource, id);
      const input = validateInput(checkInFields, body);
      // Read after the row is locked (Tx.now): a check-in that waited behind a PATCH of
      // `current` is newer than it, as it arrived.
      const now = tx.now;
      let at = isoTime(now);
      if (input.at !== null) {
        const ms = Date.parse(input.at as string);
        if (ms > now) {
          throw fieldError('validation_failed', [
            { path: '/at', code: 'out_of_range', message: 'at must not be in the future' },
          ]);
        }
        at = isoTime(ms);
      }
      const newest = newestSnapshot(kr.history as History);
      const isNewest = !newest || at >= newest.at;
      if (kr.is_deleted) throw new ApiError('resource_deleted', `KeyResult ${id} is deleted; restore it first`);
      const patch: Doc = isNewest ? { current: input.value } : {};
      const internal: Doc = isNewest ? { confidence: input.confidence } : {};
      return ops.update(resource, id, patch, {
        internal,
        event: { kind: 'check_in', value: input.value, note: input.note, confidence: input.confidence, at },
      });
    },
  },
  {
    name: 'checkIns.list',
    method: 'GET',
    path: '/{id}/check-ins',
    summary: 'Page through every check-in snapshot of a key result, newest first.',
    response: { kind: 'list', item: CheckInItem },
    responseExample: {
      tenant_id: 'acme',
      id: 'chk_01JBZ7Q3V5R4N8KX2M6T9WCH2E',
      key_result_id: 'kr_01JBZ7Q3V5R4N8KX2M6T9WCH1D',
      ...EXAMPLE_SNAPSHOT,
      recorded_at: EXAMPLE_SNAPSHOT.at,
    },
    async run({ resource, principal, id, query, ops }) {
      await ops.get(resource, id);
      return ops.page(
        snapshots,
        { tenant_id: principal.tenantId, key_result_id: id },
        { column: 'at', id: 'id' },
        query,
      );
    },
  },
] as const satisfies readonly CustomOperation[];
