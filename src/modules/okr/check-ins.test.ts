import { describe, expect, it } from 'vitest';
import { JsonText, jsonSerializer } from '../../core/serialize.js';
import { HISTORY_SIZE, newestSnapshot, type Snapshot, SnapshotSchema, withSnapshot } from './check-ins.js';

/** A small deterministic generator (mulberry32), so a failing case can be run again. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Notes that hold what the text operations search for: `{"`, `]`, `},{"`, quotes and escapes,
// and a last `{` (its string's closing quote makes a `{"` that begins no entry: a 500 before).
const NOTES = [
  null,
  'ok',
  '{"at":"x"}',
  '},{"',
  'a]',
  '"quoted"',
  'back\\slash',
  'über — 🎯',
  '[{"value":1}]',
  'see {',
  '{',
  '{"',
];
/** Writers, as a token's `sub` names them: one ends in `{` too. */
const WRITERS = [null, 'usr-00000000-0000-4000-8000-000000000001', 'evil{'];
const at = (minute: number) => new Date(Date.UTC(2026, 0, 1, 0, minute)).toISOString();

function snapshot(next: () => number, minute: number): Snapshot {
  return {
    at: at(minute),
    value: Math.round(next() * 1000) / 10,
    progress_pct: next() < 0.2 ? null : Math.round(next() * 100),
    by: WRITERS[Math.floor(next() * WRITERS.length)],
    source_type: next() < 0.5 ? 'api' : 'system',
    note: NOTES[Math.floor(next() * NOTES.length)],
    confidence: next() < 0.3 ? null : Math.floor(next() * 11),
  };
}

/** A history as a stored document holds it: the entries' JSON, as the document's serializer writes them. */
const stored = (history: readonly Snapshot[]) =>
  new JsonText(jsonSerializer({ type: 'array', items: SnapshotSchema })(history));

describe('a history kept as text answers as the parsed one does', () => {
  // Lengths around the cap, and snapshots newer, as new as, and older than the newest entry.
  const cases: [string, number, number][] = [];
  for (const length of [0, 1, 2, HISTORY_SIZE - 1, HISTORY_SIZE, HISTORY_SIZE + 3]) {
    for (const [when, offset] of [
      ['newer', 5],
      ['as new', 0],
      ['back-dated', -3],
    ] as const) {
      cases.push([`${length} entries, a ${when} snapshot`, length, offset]);
    }
  }

  it.each(cases)('%s', (_name, length, offset) => {
    for (let seed = 1; seed <= 20; seed++) {
      const next = random(seed * 1000 + length);
      const history = Array.from({ length }, (_, i) => snapshot(next, 10 + i * 2));
      const snap = snapshot(next, 10 + Math.max(0, length - 1) * 2 + offset);
      const text = stored(history);
      expect(newestSnapshot(text)).toEqual(newestSnapshot(history));
      const fromText = withSnapshot(text, snap);
      // An array in, an array out.
      const fromList = withSnapshot(history, snap) as Snapshot[];
      expect(fromList.length).toBe(Math.min(length + 1, HISTORY_SIZE));
      // Appending keeps the text; a back-dated snapshot goes through the parsed entries.
      expect(fromText instanceof JsonText).toBe(length === 0 || offset >= 0);
      const entries = fromText instanceof JsonText ? fromText.value : fromText;
      expect(entries).toEqual(fromList);
      if (fromText instanceof JsonText) expect(fromText.text).toBe(stored(fromList).text);
    }
  });

  it('a null history, and an empty stored one, take the snapshot as their first entry', () => {
    const snap = snapshot(random(7), 1);
    expect(withSnapshot(null, snap)).toEqual([snap]);
    expect((withSnapshot(new JsonText('[]'), snap) as JsonText).value).toEqual([snap]);
    expect(newestSnapshot(new JsonText('[]'))).toBeUndefined();
    expect(newestSnapshot(null)).toBeUndefined();
  });
});
