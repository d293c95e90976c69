/**
 * Key results whose current value is their metric query's (`data_source: query`): the query's
 * value when it is set, the edges to what it reads, and the recomputation, in the same
 * transaction, of every query downstream of a value that changed.
 */
import { type FieldError, fieldError } from '../../core/errors.js';
import type { Doc } from '../../core/resource.js';
import type { Tx } from '../../core/tables.js';
import { keyResults } from './key-results.js';
import { evaluate, parsed } from './query.js';
import { queryReads } from './tables.js';
import { recordSystemValue } from './values.js';

/**
 * The lock of a tenant's edits of existing queries (the `serialize` hook of key results): the
 * loop check of one sees the edges of the others.
 */
export const QUERY_GRAPH = 'okr.query-graph';

/** The internal counter of live queries reading a key result: most have none, and skip the lookup. */
export const READERS = 'query_readers';

/** The key results a key result's query reads, while it is live and takes its values from it. */
export function readsOf(kr: Doc | null): readonly string[] {
  return kr && kr.is_deleted !== true && kr.data_source === 'query' && typeof kr.query === 'string'
    ? parsed(kr.query).reads
    : [];
}

/**
 * How many live queries one change of a key result may recompute, directly or through others
 * (a chain, each reading the one before, or a tree), and one sync of a connector, through all the
 * key results it feeds: each is a system write in that change's transaction, which holds the
 * store for every tenant meanwhile.
 */
export const MAX_QUERY_DOWNSTREAM = 50;

/**
 * How many key results a query may read, directly or through other queries: what the checks of
 * a write that sets it walk (MAX_READS bounds those it names itself).
 */
export const MAX_QUERY_UPSTREAM = 100;

const tooMany = (path: string, message: string) =>
  fieldError('invalid_reference', [{ path, code: 'limit_reached', message }]);
const recomputes = (what: string) =>
  `${what} would recompute more than ${MAX_QUERY_DOWNSTREAM} queries, directly or through others, the most one change may`;
const READS_TOO_MANY = `the query would read more than ${MAX_QUERY_UPSTREAM} key results, directly or through other queries, the most one may`;

/**
 * A write that makes a query read key results it did not read (a create, a PATCH of `query` or
 * `data_source`, a restore) must keep what it reads through other queries within
 * MAX_QUERY_UPSTREAM, and leave no key result whose change, nor connector whose sync, recomputes
 * more than MAX_QUERY_DOWNSTREAM live queries (422 `limit_reached`, naming the first past it):
 * the query's own key result, and the queries downstream of it, come to be downstream of every
 * key result it now reads, of everything those read through queries, and of the connectors that
 * feed any of them. Not for a row an import restores as it was. Such writes hold the tenant's
 * QUERY_GRAPH lock.
 */
export async function checkDownstream(tx: Tx, tenantId: string, kr: Doc, before: Doc | null): Promise<void> {
  const had = readsOf(before);
  const reads = readsOf(kr);
  const added = reads.filter((id) => !had.includes(id));
  if (added.length === 0) return;
  const graph = new QueryGraph(tx, tenantId);
  // Its own readers' edges stand while it is deleted; a key result being created has none.
  const below = await graph.below(kr.id as string);
  if (below === null) throw tooMany('/query', recomputes(`a change of kr("${added[0]}")`));
  const moving = new Set([kr.id as string, ...below]);
  const within = (set: ReadonlySet<string> | null) =>
    set !== null && set.size + [...moving].filter((id) => !set.has(id)).length <= MAX_QUERY_DOWNSTREAM;
  // Upstream, through live queries, each once: first what the new reads reach (they gain
  // `moving`), then what the others reach (counted only). Its own key result is never among
  // them: a loop was refused before.
  const seen = new Set<string>();
  for (const [from, gains] of [
    [added, true],
    [reads.filter((id) => !added.includes(id)), false],
  ] as const) {
    const next = [...from];
    while (next.length) {
      const at = next.shift() as string;
      if (seen.has(at)) continue;
      seen.add(at);
      if (seen.size > MAX_QUERY_UPSTREAM) throw tooMany('/query', READS_TOO_MANY);
      const doc = await tx.peek(keyResults, tenantId, at);
      if (gains) {
        if (!within(await graph.below(at))) throw tooMany('/query', recomputes(`a change of kr("${at}")`));
        const feed = fedBy(doc);
        if (feed && !within(await graph.fed(feed))) throw tooMany('/query', recomputes(`a sync of ${feed}`));
      }
      next.push(...readsOf(doc));
    }
  }
}

/**
 * A key result a connector starts to feed (a create, a PATCH, a restore) brings the queries
 * downstream of it: a sync of the connector must still recompute at most MAX_QUERY_DOWNSTREAM
 * (422 `limit_reached` on `connector_id`). `fed`: the live key results it feeds already. Such
 * writes hold the tenant's QUERY_GRAPH lock.
 */
export async function checkFeedDownstream(tx: Tx, tenantId: string, kr: Doc, fed: readonly Doc[]): Promise<void> {
  const graph = new QueryGraph(tx, tenantId);
  const below = await graph.below(kr.id as string);
  if (below?.size === 0) return;
  const others = below === null ? null : await graph.belowAll(fed);
  if (others === null || below === null || new Set([...others, ...below]).size > MAX_QUERY_DOWNSTREAM) {
    throw tooMany('/connector_id', recomputes(`a sync of ${kr.connector_id}`));
  }
}

/** The connector feeding a live key result, if one does. */
function fedBy(kr: Doc | null): string | null {
  return kr && kr.is_deleted !== true && kr.data_source === 'connector' && typeof kr.connector_id === 'string'
    ? kr.connector_id
    : null;
}

/** What `map` holds for `key`, made by `make` the first time it is asked for. */
function found<V>(map: Map<string, V>, key: string, make: () => V): V {
  let value = map.get(key);
  if (value === undefined) {
    value = make();
    map.set(key, value);
  }
  return value;
}

/**
 * The live queries downstream of key results (and of the key results a connector feeds), as the
 * stored edges say, for the checks of the bounds: each set found once, and any past
 * MAX_QUERY_DOWNSTREAM answered null (more).
 */
class QueryGraph {
  private readonly sets = new Map<string, Promise<ReadonlySet<string> | null>>();
  private readonly walking = new Set<string>();
  private readonly feeds = new Map<string, Promise<ReadonlySet<string> | null>>();

  constructor(
    private readonly tx: Tx,
    private readonly tenantId: string,
  ) {}

  /** The live queries downstream of the live key results connector `id` feeds, in all. */
  fed(id: string): Promise<ReadonlySet<string> | null> {
    return found(this.feeds, id, async () =>
      this.belowAll(await this.tx.findLive(keyResults, this.tenantId, { connector_id: id, data_source: 'connector' })),
    );
  }

  /** The live queries downstream of any of `krs`, in all. */
  async belowAll(krs: readonly Doc[]): Promise<ReadonlySet<string> | null> {
    const out = new Set<string>();
    for (const kr of krs) {
      const below = await this.below(kr.id as string);
      if (below === null) return null;
      for (const query of below) out.add(query);
      if (out.size > MAX_QUERY_DOWNSTREAM) return null;
    }
    return out;
  }

  below(id: string): Promise<ReadonlySet<string> | null> {
    // A loop among stored queries (none is taken) would wait on itself: it adds nothing.
    if (this.walking.has(id)) return Promise.resolve(new Set());
    return found(this.sets, id, () => this.walk(id));
  }

  private async walk(id: string): Promise<ReadonlySet<string> | null> {
    this.walking.add(id);
    try {
      return await this.readers(id);
    } finally {
      this.walking.delete(id);
    }
  }

  private async readers(id: string): Promise<ReadonlySet<string> | null> {
    const doc = await this.tx.peek(keyResults, this.tenantId, id);
    const out = new Set<string>();
    if (Number(doc?.[READERS] ?? 0) === 0) return out;
    const rows = await this.tx.select(queryReads, { tenant_id: this.tenantId, reads_id: id });
    for (const row of rows) {
      const readerId = row.key_result_id as string;
      if (out.has(readerId)) continue;
      const reader = await this.tx.peek(keyResults, this.tenantId, readerId);
      if (!reader || reader.is_deleted || reader.data_source !== 'query') continue;
      out.add(readerId);
      const further = await this.below(readerId);
      if (further === null) return null;
      for (const next of further) out.add(next);
      if (out.size > MAX_QUERY_DOWNSTREAM) return null;
    }
    return out;
  }
}

/**
 * A query a PATCH sets must not lead back to its own key result through queries (400
 * `query_cycle`). Nothing reads a key result being created, so only a write to an existing one
 * can close a loop. Such writes hold the tenant's QUERY_GRAPH lock (key-results.ts), so two at
 * once cannot each pass the check without the other's edge (a → b and c → d over b → c and d → a).
 */
export async function checkNoLoop(tx: Tx, tenantId: string, kr: Doc, before: Doc | null): Promise<void> {
  // Only a read it did not have can close a loop (and only then is what it reads counted again):
  // another expression over the same key results is checked as it was when they were set.
  const reads = parsed(kr.query as string).reads;
  const had = before?.data_source === 'query' && typeof before.query === 'string' ? parsed(before.query).reads : [];
  if (reads.every((id) => had.includes(id))) return;
  const loop = await pathBack(tx, tenantId, kr.id as string, reads);
  if (loop) {
    throw fieldError('validation_failed', [
      {
        path: '/query',
        code: 'query_cycle',
        message: `${[kr.id, ...loop].join(' reads ')}: a query cannot read its own key result, directly or through others`,
      },
    ]);
  }
}

/**
 * The value of the query a create or a PATCH sets: every key result it reads must be a live
 * one of the tenant (422), or one deleted since (`deleted`: an import restoring a query that
 * read it before); a loop was refused before (checkNoLoop). Null when the value is not a finite
 * number (a division by zero): the key result keeps the value it has.
 */
export async function queryValue(tx: Tx, tenantId: string, kr: Doc, deleted = false): Promise<number | null> {
  const query = parsed(kr.query as string);
  const read = new Map<string, Doc>();
  const missing: FieldError[] = [];
  for (const id of query.reads) {
    // Locked: a write to it waits for this one to commit, then finds this query among its readers.
    const row = await tx.find(keyResults, tenantId, id);
    if (row && (row.is_deleted === false || deleted)) read.set(id, row);
    else {
      missing.push({
        path: '/query',
        code: 'invalid_reference',
        message: `kr("${id}") must name a live KeyResult of this tenant`,
      });
    }
  }
  if (missing.length) throw fieldError('invalid_reference', missing);
  return evaluate(query, (id) => Number(read.get(id)?.current));
}

/**
 * A chain of queries from one of `reads` back to `target`, or null (depth first, each once). More
 * than MAX_QUERY_UPSTREAM key results on the way, deleted queries' reads too, is 422.
 */
async function pathBack(tx: Tx, tenantId: string, target: string, reads: readonly string[]): Promise<string[] | null> {
  const seen = new Set<string>();
  const walk = async (id: string): Promise<string[] | null> => {
    if (id === target) return [id];
    if (seen.has(id)) return null;
    seen.add(id);
    // Bounded, as what a query reads through others is (checkDownstream counts the live ones).
    if (seen.size > MAX_QUERY_UPSTREAM) throw tooMany('/query', READS_TOO_MANY);
    const doc = await tx.peek(keyResults, tenantId, id);
    // Deleted ones too: restoring one brings its query back.
    const next = doc?.data_source === 'query' && typeof doc.query === 'string' ? parsed(doc.query).reads : [];
    for (const n of next) {
      const path = await walk(n);
      if (path) return [id, ...path];
    }
    return null;
  };
  for (const id of reads) {
    const path = await walk(id);
    if (path) return path;
  }
  return null;
}

/** Keeps the edges (and the readers' counters) in step with what `after`'s query reads. */
export async function syncReads(tx: Tx, tenantId: string, before: Doc | null, after: Doc): Promise<void> {
  const old = readsOf(before);
  const now = readsOf(after);
  if (old.length === 0 && now.length === 0) return;
  const key_result_id = after.id as string;
  for (const id of old) {
    if (now.includes(id)) continue;
    await tx.remove(queryReads, { tenant_id: tenantId, key_result_id, reads_id: id });
    await tx.bump(keyResults, tenantId, id, READERS, -1);
  }
  for (const id of now) {
    if (old.includes(id)) continue;
    await tx.insert(queryReads, { tenant_id: tenantId, key_result_id, reads_id: id });
    await tx.bump(keyResults, tenantId, id, READERS, 1);
  }
}

/**
 * Recomputes every live query key result downstream of `sources`, whose current values just
 * changed together (a sync's key results): each once, after everything it reads (a reverse
 * depth-first post-order over them all), as system writes in the same transaction, so a query
 * reading two of them records one value, never one from halfway through.
 *
 * The rows downstream are found first without locks, then locked in id order, their objectives
 * before them, then found again under those locks (a reader added in between is locked then, and
 * found again). Locked as the walk met them, two check-ins whose queries cross (q reads x and y,
 * p reads q and y) took p and q in opposite orders and deadlocked on PostgreSQL.
 */
export async function propagate(tx: Tx, tenantId: string, sources: Doc | readonly Doc[]): Promise<void> {
  const read = [sources].flat().filter((source) => Number(source[READERS] ?? 0) > 0);
  if (read.length === 0) return;
  const changed = new Set(read.map((source) => source.id as string));
  const locked = new Set<string>(changed);
  const edges = new Map<string, string[]>();
  for (;;) {
    const { order, docs } = await downstream(tx, tenantId, read, locked, edges);
    const unlocked = order.filter((id) => !locked.has(id)).sort();
    if (unlocked.length === 0) {
      for (const id of order.reverse()) {
        if (!changed.has(id)) docs.set(id, await refresh(tx, tenantId, docs.get(id) as Doc, docs));
      }
      return;
    }
    // Their objectives first (their roll-ups lock them anyway): a check-in on another key result
    // of one holds it from its start, then waits for the query it feeds (Tx.lock).
    await tx.lock(keyResults, tenantId, unlocked);
    for (const id of unlocked) locked.add(id);
  }
}

/**
 * The live queries downstream of `sources` in post-order (one walk over them all), read locked
 * where `locked` says so. `edges` keeps the readers of rows that were locked when read: no query
 * can start reading a row another transaction holds, so those stay true for the rest of the
 * transaction.
 */
async function downstream(
  tx: Tx,
  tenantId: string,
  sources: readonly Doc[],
  locked: ReadonlySet<string>,
  edges: Map<string, string[]>,
): Promise<{ order: string[]; docs: Map<string, Doc> }> {
  const docs = new Map<string, Doc>(sources.map((source) => [source.id as string, source]));
  const seen = new Set<string>();
  const order: string[] = [];
  const visit = async (doc: Doc) => {
    const id = doc.id as string;
    seen.add(id);
    if (Number(doc[READERS] ?? 0) > 0) {
      let readers = edges.get(id);
      if (!readers) {
        const rows = await tx.select(
          queryReads,
          { tenant_id: tenantId, reads_id: id },
          { orderBy: [['key_result_id', 'asc']] },
        );
        readers = rows.map((row) => row.key_result_id as string);
        if (locked.has(id)) edges.set(id, readers);
      }
      for (const readerId of readers) {
        if (seen.has(readerId)) continue;
        const reader = locked.has(readerId)
          ? await tx.find(keyResults, tenantId, readerId)
          : await tx.peek(keyResults, tenantId, readerId);
        if (!reader || reader.is_deleted || reader.data_source !== 'query') continue;
        docs.set(readerId, reader);
        await visit(reader);
      }
    }
    order.push(id);
  };
  for (const source of sources) if (!seen.has(source.id as string)) await visit(source);
  return { order, docs };
}

/**
 * Evaluates a query key result again from the values it reads (`known` first, else as stored,
 * deleted ones too) and records a changed value: a system write with a snapshot. An unchanged
 * or non-finite value records nothing.
 */
async function refresh(tx: Tx, tenantId: string, kr: Doc, known: Map<string, Doc>): Promise<Doc> {
  const query = parsed(kr.query as string);
  const values = new Map<string, number>();
  for (const id of query.reads) {
    const doc = known.get(id) ?? (await tx.peek(keyResults, tenantId, id));
    values.set(id, Number(doc?.current ?? Number.NaN));
  }
  const value = evaluate(query, (id) => values.get(id) as number);
  if (value === null || value === kr.current) return kr;
  return recordSystemValue(tx, tenantId, kr, value);
}

/** Brings a restored query key result up to date with what it reads (it held while deleted). */
export async function catchUp(tx: Tx, tenantId: string, kr: Doc): Promise<void> {
  if (kr.data_source !== 'query' || typeof kr.query !== 'string') return;
  const after = await refresh(tx, tenantId, kr, new Map());
  if (after !== kr) await propagate(tx, tenantId, after);
}
