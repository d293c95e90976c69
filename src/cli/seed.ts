import { sql } from 'kysely';
import { ManualClock } from '../core/clock.js';
import { CursorCodec } from '../core/list-query.js';
import type { DemoRef, DemoStep, DemoText, Doc, ModuleDef, Principal, Resource } from '../core/resource.js';
import { ServerKeys } from '../core/secrets.js';
import type { Store } from '../store/database.js';
import { Engine } from '../store/engine.js';
import { migrate } from '../store/schema.js';

const DAY = 86_400_000;

/** The tenant lock (as Engine's: `tenant\nlock`) seeds of one tenant take on PostgreSQL. */
const SEED_LOCK = 'edm.seed';

export interface SeedOptions {
  store: Store;
  modules: readonly ModuleDef[];
  tenant: string;
  /** Whose writes they are (`created_by`, a check-in's `by`). */
  sub: string;
  /** The server secret (list cursors are derived from it; seeding lists nothing). */
  secretKey: Uint8Array;
  /** "Now" for the demo's dates (default: the system clock). */
  now?: number;
  /** Add the demo data even where the tenant already has rows. */
  force?: boolean;
}

/** What `seedDemo` wrote: per resource, rows created; per operation, calls made. */
export type SeedSummary = Record<string, number>;

/** A seed that would mix demo data into a tenant's own (the CLI's exit code 1). */
export class SeedRefused extends Error {}

function resolveRefs(body: Record<string, unknown>, ids: Map<string, string>): Doc {
  const idOf = (name: string) => {
    const id = ids.get(name);
    if (id === undefined) throw new Error(`demo step refers to ${name}, which no earlier step created`);
    return id;
  };
  const out: Doc = {};
  for (const [key, value] of Object.entries(body)) {
    const special =
      value !== null && typeof value === 'object' && !Array.isArray(value)
        ? (value as Partial<DemoRef & DemoText>)
        : {};
    if (typeof special.ref === 'string') out[key] = idOf(special.ref);
    else if (typeof special.text === 'string') out[key] = special.text.replace(/\{(\w+)\}/g, (_, name) => idOf(name));
    else out[key] = value;
  }
  return out;
}

/**
 * Writes every module's demo data into one tenant (`edm seed`), in one transaction, through the
 * engine's own paths: the same validation, progress, statuses, snapshots and roll-ups as API
 * calls. Each step runs with the clock set to its day, so the rows read as work done over the
 * past weeks. Refuses a tenant that already has rows, unless `force`.
 * @example await seedDemo({ store, modules, tenant: 'dev', sub: 'usr-…', secretKey })
 */
export async function seedDemo(o: SeedOptions): Promise<SeedSummary> {
  const resources = o.modules.flatMap((m) => m.resources);
  await migrate(o.store, resources);
  const byName = new Map<string, Resource>(resources.map((r) => [r.name, r]));
  const now = o.now ?? Date.now();
  const steps: DemoStep[] = o.modules.flatMap((m) => [...(m.demo?.(now) ?? [])]);
  for (const step of steps) {
    if (!byName.has(step.resource)) throw new Error(`demo step names no resource: ${step.resource}`);
    if (!(step.day <= 0)) throw new Error(`demo step lies in the future (day ${step.day})`);
  }
  // Steps in time order, one millisecond apart within a day, the last no later than now.
  const order = steps.map((step, i) => ({ step, i })).sort((a, b) => a.step.day - b.step.day || a.i - b.i);
  const clock = new ManualClock(now);
  const engine = new Engine({
    store: o.store,
    clock,
    modules: o.modules,
    cursors: new CursorCodec(o.secretKey),
    keys: new ServerKeys(o.secretKey),
    requireIfMatch: false,
  });
  const principal: Principal = { sub: o.sub, tenantId: o.tenant, appId: null, scopes: null };
  const summary: SeedSummary = {};
  await engine.transaction(async (db) => {
    // Checked inside the transaction that writes, seeds of one tenant one at a time: two at once
    // both found the tenant empty and both wrote a set. SQLite writes one transaction at a time;
    // PostgreSQL takes a transaction-level advisory lock keyed as the engine keys its tenant locks.
    if (o.store.kind === 'postgres') {
      await sql`SELECT pg_advisory_xact_lock(hashtextextended(${`${o.tenant}\n${SEED_LOCK}`}, 0))`.execute(db);
    }
    if (!o.force) {
      // Any resource's rows, not only those the demo writes: a tenant with connectors alone is
      // in use already.
      for (const resource of resources) {
        const row = await db
          .selectFrom(resource.table)
          .select('id')
          .where('tenant_id', '=', o.tenant)
          .limit(1)
          .executeTakeFirst();
        if (row) {
          throw new SeedRefused(
            `tenant ${o.tenant} already has ${resource.name} rows; nothing was written (--force adds the demo data anyway)`,
          );
        }
      }
    }
    const ids = new Map<string, string>();
    for (const [n, { step }] of order.entries()) {
      clock.set(now + step.day * DAY - (order.length - n));
      const resource = byName.get(step.resource) as Resource;
      const body = resolveRefs(step.body, ids);
      if (step.operation === undefined) {
        const doc = await engine.create(db, resource, principal, body);
        if (step.as) ids.set(step.as, doc.id as string);
        summary[resource.name] = (summary[resource.name] ?? 0) + 1;
        continue;
      }
      const op = resource.operations?.find((x) => x.name === step.operation);
      const id = step.on === undefined ? undefined : ids.get(step.on);
      if (!op || id === undefined) throw new Error(`demo step ${step.resource}.${step.operation} on ${step.on}`);
      await engine.operate(db, resource, principal, op, id, body);
      const name = `${resource.name}.${op.name}`;
      summary[name] = (summary[name] ?? 0) + 1;
    }
  });
  // Each status was set as of its step's day: bring the paces to now, as a server's sweep would.
  clock.set(now);
  await engine.catchUp(o.tenant);
  return summary;
}
