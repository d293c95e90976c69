// Bulk seeding for the benchmark: rows go through the engine's own write path (validation,
// progress, status, snapshots, roll-ups) in large transactions, with no HTTP in between.
import { sql } from 'kysely';
import { ManualClock } from '../dist/core/clock.js';
import { CursorCodec } from '../dist/core/list-query.js';
import { ServerKeys } from '../dist/core/secrets.js';
import { modules } from '../dist/modules/index.js';
import { openStore } from '../dist/store/database.js';
import { Engine } from '../dist/store/engine.js';
import { migrate } from '../dist/store/schema.js';

const resources = modules.flatMap((m) => m.resources);
const byName = (n) => resources.find((r) => r.name === n);
export const SUB = 'usr-00000000-0000-4000-8000-0000000000be';

/** Opens a store, migrates it, and answers helpers that create rows in batches. */
export async function seeder(url, options = {}) {
  const store = openStore(url, options);
  await migrate(store, resources);
  // Seeded rows are stamped a little in the past, one millisecond apart, so sorts have spread.
  const clock = new ManualClock(Date.now() - 86_400_000);
  const engine = new Engine({
    store,
    clock,
    modules,
    cursors: new CursorCodec(new Uint8Array(32)),
    keys: new ServerKeys(new Uint8Array(32)),
    requireIfMatch: false,
  });
  const principal = (tenantId) => ({ sub: SUB, tenantId, appId: null, scopes: null });
  const kr = byName('KeyResult');
  const objectives = byName('Objective');

  /**
   * Creates `count` key results for a tenant, `perObjective` under each objective; answers their
   * ids, and the objectives' (in `ids.objectives`).
   */
  async function tenant(tenantId, count, perObjective = 100) {
    const p = principal(tenantId);
    const ids = [];
    ids.objectives = [];
    let objectiveId = null;
    for (let done = 0; done < count; ) {
      const batch = Math.min(2000, count - done);
      await engine.transaction(async (db) => {
        for (let i = 0; i < batch; i++, done++) {
          clock.advance(1);
          if (done % perObjective === 0) {
            objectiveId = (await engine.create(db, objectives, p, { title: `Objective ${done / perObjective}` })).id;
            ids.objectives.push(objectiveId);
          }
          const doc = await engine.create(db, kr, p, {
            objective_id: objectiveId,
            title: `Key result ${done} — grow metric ${done % 97}`,
            metric_type: done % 5 === 0 ? 'percentage' : 'number',
            baseline: 0,
            target: 100 + (done % 50),
            current: done % 100,
            unit: 'count',
            tags: done % 3 === 0 ? ['growth', 'q4'] : ['ops'],
          });
          ids.push(doc.id);
        }
      });
    }
    return ids;
  }

  /** Closes the store; on PostgreSQL, first refreshes the planner's statistics, as after any bulk load. */
  async function close() {
    if (store.kind === 'postgres') {
      for (const name of [
        ...resources.map((r) => r.table),
        ...resources.flatMap((r) => (r.tables ?? []).map((t) => t.name)),
      ]) {
        await sql`ANALYZE ${sql.table(name)}`.execute(store.db);
      }
    }
    await store.close();
  }

  return { store, engine, tenant, close };
}
