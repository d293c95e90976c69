import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintToken } from '../src/core/auth.js';
import { ManualClock } from '../src/core/clock.js';
import type { Doc } from '../src/core/resource.js';
import { buildApp } from '../src/http/app.js';
import { modules } from '../src/modules/index.js';
import { openStore, type Store } from '../src/store/database.js';
import { migrate } from '../src/store/schema.js';
import { byName, PG_URL, resources, T0, testConfig, USER_A } from './helpers.js';

// The PostgreSQL schema as Citus needs it: tenant data keyed and indexed by tenant_id first,
// every statement on tenant data addressed to one tenant, queues apart; column types that give
// SQLite's answers (byte-order text, millisecond timestamps, 64-bit integers, jsonb).

const README = readFileSync(resolve(import.meta.dirname, '../README.md'), 'utf8');
const queueTables = new Set(
  resources
    .flatMap((r) => r.tables ?? [])
    .filter((t) => t.queue)
    .map((t) => t.name),
);
/** The one index of tenant data that does not lead with tenant_id: the cross-tenant expiry sweep's. */
const MAINTENANCE_INDEXES = new Set(['edm_idempotency_keys_expires']);

describe.runIf(PG_URL)('PostgreSQL schema, Citus-ready', () => {
  const url = PG_URL as string;
  const schema = `edm_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: url, application_name: 'edm-test-admin' });
  const statements: { sql: string; parameters: readonly unknown[] }[] = [];
  const clock = new ManualClock(T0);
  // A connector's metrics API on loopback, allowed for this app.
  const metrics = createServer((_req, res) => res.end('{"v":5}'));
  const config = testConfig({ connectorAllowHosts: ['127.0.0.1'] });
  let store: Store;
  let app: FastifyInstance;
  let tenantTables: string[];

  const tokenFor = (tenant: string) =>
    mintToken({ secret: config.jwtSecret, tenant, sub: USER_A, ttl: '1000d', now: clock.now() });
  const call = async (token: string, method: string, path: string, body?: unknown, headers = {}) => {
    const res = await app.inject({
      method: method as 'GET',
      url: path,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...headers,
      },
      ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
    });
    return { status: res.statusCode, body: JSON.parse(res.body || '{}') as Doc };
  };

  beforeAll(async () => {
    await new Promise<void>((done) => metrics.listen(0, '127.0.0.1', done));
    await admin.connect();
    store = openStore(url, {
      schema,
      poolSize: 3,
      applicationName: 'edm-test-schema',
      onQuery: (sql, parameters) => statements.push({ sql, parameters }),
    });
    app = await buildApp({ config, store, clock });
    const r = await admin.query(
      `SELECT table_name FROM information_schema.columns WHERE table_schema = $1 AND column_name = 'tenant_id' ORDER BY 1`,
      [schema],
    );
    tenantTables = r.rows.map((x) => x.table_name as string).filter((t) => !queueTables.has(t));
  });
  afterAll(async () => {
    await app.close();
    await store.close();
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.end();
    await new Promise((done) => metrics.close(done));
  });

  it('gives columns the types that answer like SQLite', async () => {
    const { rows } = await admin.query(
      `SELECT table_name, column_name, data_type, datetime_precision, collation_name
         FROM information_schema.columns WHERE table_schema = $1`,
      [schema],
    );
    expect(rows.length).toBeGreaterThan(50);
    for (const c of rows) {
      const where = `${c.table_name}.${c.column_name}`;
      expect([where, c.data_type]).toEqual([
        where,
        expect.stringMatching(/^(text|double precision|bigint|boolean|timestamp with time zone|date|jsonb)$/),
      ]);
      if (c.data_type === 'text') expect([where, c.collation_name]).toEqual([where, 'C']);
      if (c.data_type === 'timestamp with time zone') expect([where, c.datetime_precision]).toEqual([where, 3]);
    }
  });

  it('leads every primary key and b-tree index of tenant data with tenant_id; queues stand apart', async () => {
    expect(tenantTables).toEqual(
      expect.arrayContaining(['okr_key_results', 'okr_key_result_snapshots', 'edm_idempotency_keys']),
    );
    expect([...queueTables]).toContain('okr_status_sweep');
    const { rows } = await admin.query(
      `SELECT t.relname AS table, i.relname AS index, am.amname AS method, x.indisprimary AS primary,
              a.attname AS first_column, format_type(a.atttypid, a.atttypmod) AS first_type
         FROM pg_index x
         JOIN pg_class i ON i.oid = x.indexrelid
         JOIN pg_class t ON t.oid = x.indrelid
         JOIN pg_namespace n ON n.oid = t.relnamespace
         JOIN pg_am am ON am.oid = i.relam
         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = x.indkey[0]
        WHERE n.nspname = $1`,
      [schema],
    );
    const tenantIndexes = rows.filter((r) => tenantTables.includes(r.table));
    expect(new Set(tenantIndexes.filter((r) => r.primary).map((r) => r.table))).toEqual(new Set(tenantTables));
    for (const r of tenantIndexes) {
      if (r.method === 'btree' && !MAINTENANCE_INDEXES.has(r.index)) {
        expect([r.index, r.first_column]).toEqual([r.index, 'tenant_id']);
      } else if (r.method !== 'btree') {
        // A GIN index has no leading column: it serves `tag=` together with the tenant_id condition.
        expect([r.index, r.method, r.first_type]).toEqual([r.index, 'gin', 'jsonb']);
      }
    }
    for (const r of resources) {
      for (const field of r.filterable.filter((f) => r.allFields[f].column === 'json')) {
        expect(rows.some((x) => x.table === r.table && x.method === 'gin' && x.first_column === field)).toBe(true);
      }
    }
  });

  it('addresses every statement on tenant data to one tenant (tenant_id equality)', async () => {
    const token = await tokenFor('acme');
    const cycle = await call(token, 'POST', byName('Cycle').basePath, {
      name: 'Q4',
      start_date: '2026-10-01',
      end_date: '2026-12-31',
    });
    const obj = await call(token, 'POST', byName('Objective').basePath, {
      title: 'o',
      cycle_id: cycle.body.id,
      tags: ['a'],
    });
    const krPath = byName('KeyResult').basePath;
    const kr = await call(
      token,
      'POST',
      krPath,
      { objective_id: obj.body.id, title: 'k', target: 10 },
      { 'idempotency-key': 'k1' },
    );
    // A query reading it: its edges, the recomputation at the PATCH and check-in, and its own PATCH.
    const computed = await call(token, 'POST', krPath, {
      objective_id: obj.body.id,
      title: 'q',
      target: 10,
      data_source: 'query',
      query: `kr("${kr.body.id}") + 1`,
    });
    expect([cycle.status, obj.status, kr.status, computed.status]).toEqual([201, 201, 201, 201]);
    await call(token, 'PATCH', `${krPath}/${kr.body.id}`, { current: 3 }, { 'if-match': '"1"' });
    await call(token, 'PATCH', `${krPath}/${computed.body.id}`, { query: `kr("${kr.body.id}") * 2` });
    // A connector feeding a key result, synced now and by its schedule.
    const conPath = byName('Connector').basePath;
    const port = (metrics.address() as AddressInfo).port;
    const con = await call(token, 'POST', conPath, {
      name: 'c',
      kind: 'http_json',
      config: { url: `http://127.0.0.1:${port}/m`, pointer: '/v' },
      secret: 's',
    });
    const fedKr = await call(token, 'POST', krPath, {
      objective_id: obj.body.id,
      title: 'fed',
      target: 10,
      data_source: 'connector',
      connector_id: con.body.id,
    });
    const synced = await call(token, 'POST', `${conPath}/${con.body.id}/sync`);
    expect([con.status, fedKr.status, synced.body.last_value]).toEqual([201, 201, 5]);
    await call(token, 'POST', `${krPath}/${kr.body.id}/check-ins`, { value: 5, note: 'n', confidence: 6 });
    await call(token, 'GET', `${krPath}/${kr.body.id}/check-ins?limit=1`);
    await call(token, 'GET', `${byName('Objective').basePath}?tag=a,b&q=o&sort=title`);
    await call(token, 'GET', `${krPath}?objective_id=${obj.body.id}&current[gte]=1`);
    await call(token, 'DELETE', `${byName('Objective').basePath}/${obj.body.id}`);
    await call(token, 'DELETE', `${byName('Cycle').basePath}/${cycle.body.id}?cascade=true`);
    await call(token, 'POST', `${byName('Cycle').basePath}/${cycle.body.id}/restore`);
    await call(token, 'POST', `${byName('Objective').basePath}/${obj.body.id}/restore`);
    clock.advance(200 * 24 * 3600 * 1000);
    for (const job of modules.flatMap((m) => m.jobs ?? [])) await app.engine.runJob(job);

    const touched = new Set<string>();
    for (const { sql } of statements) {
      const s = sql.trim();
      if (/^(create|alter|set|select pg_advisory|select current_schema)/i.test(s) || s.includes('pg_catalog.'))
        continue;
      for (const table of tenantTables) {
        if (!s.includes(`"${table}"`)) continue;
        touched.add(table);
        if (/^insert/i.test(s)) expect([s, /\("tenant_id"|, "tenant_id"/.test(s)]).toEqual([s, true]);
        else
          expect([
            s,
            /"tenant_id" = \$\d+/.test(
              s
                .split(/ where /i)
                .slice(1)
                .join(' where '),
            ),
          ]).toEqual([s, true]);
      }
    }
    expect([...touched].sort()).toEqual([...tenantTables].sort());
  });

  it('answers tag filters from the GIN index', async () => {
    const token = await tokenFor('big');
    await admin.query(
      `INSERT INTO ${schema}.okr_objectives (id, tenant_id, created_at, updated_at, is_deleted, schema_version, version, title, _search, tags)
       SELECT 'obj_' || lpad(g::text, 26, '0'), 'big', now(), now(), false, 1, 1, 't' || g, 't' || g,
              CASE WHEN g = 777 THEN '["rare"]'::jsonb ELSE '["common", "other"]'::jsonb END
         FROM generate_series(1, 20000) g`,
    );
    await admin.query(`ANALYZE ${schema}.okr_objectives`);
    statements.length = 0;
    const res = await call(token, 'GET', `${byName('Objective').basePath}?tag=rare,none`);
    expect((res.body.data as Doc[]).map((d) => d.title)).toEqual(['t777']);
    const list = statements.find((s) => /^select/i.test(s.sql) && s.sql.includes('?|'));
    expect(list).toBeDefined();
    const client = new pg.Client({ connectionString: url, options: `-c search_path=${schema}` });
    await client.connect();
    try {
      const plan = await client.query(`EXPLAIN (FORMAT JSON) ${list?.sql}`, list?.parameters as unknown[]);
      expect(JSON.stringify(plan.rows[0])).toContain('"Index Name":"okr_objectives_filter_tags"');
    } finally {
      await client.end();
    }
  });

  // Every write of a key result or an objective takes an entry in its GIN index's pending list,
  // which each `tag=` list reads through: kept to 256 kB, not PostgreSQL's 4 MB (GIN_STORAGE).
  it("keeps the GIN indexes' pending lists small, on an index an earlier build made too, once", async () => {
    const gin = ['okr_key_results_filter_tags', 'okr_objectives_filter_tags'];
    const options = async () =>
      (
        await admin.query(
          `SELECT c.relname AS name, c.reloptions AS options FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = ANY($2) ORDER BY 1`,
          [schema, gin],
        )
      ).rows.map((r) => [r.name, r.options]);
    const set = gin.map((name) => [name, ['gin_pending_list_limit=256']]);
    expect(await options()).toEqual(set);
    // As a build before 2026-12-02 made them.
    for (const name of gin) await admin.query(`ALTER INDEX ${schema}.${name} RESET (gin_pending_list_limit)`);
    expect(await options()).toEqual(gin.map((name) => [name, null]));
    statements.length = 0;
    await migrate(store, resources);
    expect(await options()).toEqual(set);
    expect(statements.filter((s) => /^alter index/i.test(s.sql)).length).toBe(2);
    // A migration with nothing to do takes no lock for them.
    statements.length = 0;
    await migrate(store, resources);
    expect(statements.filter((s) => /^alter index/i.test(s.sql))).toEqual([]);
    // The option belongs to GIN alone: no other index carries one.
    const others = await admin.query(
      `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relkind = 'i' AND c.reloptions IS NOT NULL AND NOT (c.relname = ANY($2))`,
      [schema, gin],
    );
    expect(others.rows).toEqual([]);
  });

  // A search's rows are found in the default sort's index, which includes the search text and
  // the deleted flag, by an index-only scan: it tests each row's text without reading the row
  // (a plain index scan reads the row before any condition: a text no title holds walked every
  // row of a tenant, 83–130 ms on 100,000 key results). Under that sort the page's ids come from
  // it; under another, where fewer than PROBE_ROWS rows match, their ids, the rows then read by
  // primary key and sorted (Engine.searchedIds).
  it("finds a search's rows by an index-only scan of the default sort's index, made again where an earlier build made it", async () => {
    const token = await tokenFor('searched');
    await admin.query(
      // Rows of the width stored documents give them (a description of 1,000 characters).
      `INSERT INTO ${schema}.okr_objectives (id, tenant_id, created_at, updated_at, is_deleted, schema_version, version, title, _search, description)
       SELECT 'obj_' || lpad(g::text, 26, '0'), 'searched', now() - g * interval '1 second', now(), g = 10007, 1, 1, x, lower(x), repeat(md5(g::text), 32)
         FROM generate_series(1, 20000) g, LATERAL (SELECT 't' || g || CASE WHEN g % 5000 = 7 THEN ' Rare' ELSE '' END AS x) t`,
    );
    // Analyzed, not vacuumed: no page is known all-visible (nor is it where transactions stay
    // open beside a VACUUM), and a search is taken to match a third of the rows: the plan must
    // still read the index, not scan the table until it has 500.
    await admin.query(`ANALYZE ${schema}.okr_objectives`);
    const client = new pg.Client({ connectionString: url, options: `-c search_path=${schema}` });
    await client.connect();
    const path = byName('Objective').basePath;
    const listed = async (query: string) => {
      statements.length = 0;
      const res = await call(token, 'GET', `${path}?${query}&limit=200`);
      expect(res.status, query).toBe(200);
      // The list's reads (not those of rows stored without a document, read whole to be upgraded).
      const reads = statements.filter(
        (r) => /^select.* limit \$\d+/i.test(r.sql) && r.sql.includes('"okr_objectives"'),
      );
      const plans: string[] = [];
      for (const r of reads) {
        const plan = await client.query(`EXPLAIN (FORMAT JSON) ${r.sql}`, r.parameters as unknown[]);
        plans.push(JSON.stringify(plan.rows[0]));
      }
      return { titles: (res.body.data as Doc[]).map((d) => d.title), reads, plans };
    };
    const created = /"Node Type":"Index Only Scan",[^}]*"Index Name":"okr_objectives_sort_created_at"/;
    try {
      // Under another sort: the ids (one read), then the rows by primary key.
      let r = await listed('q=rare&sort=title');
      expect(r.titles).toEqual(['t15007 Rare', 't5007 Rare', 't7 Rare']);
      expect(r.reads).toHaveLength(2);
      expect(r.plans[0]).toMatch(created);
      // In the index's order, so no plan scans the table instead (seen with a VACUUM beside open transactions).
      expect(r.reads[0].sql).toMatch(/ order by "created_at"( asc)?, "id"( asc)? limit /);
      expect(r.reads[1].sql).toContain('= any(');
      expect(r.plans[1]).toContain('"Index Name":"okr_objectives_pkey"');
      r = await listed('q=rare&sort=title&include_deleted=true');
      expect(r.titles).toEqual(['t10007 Rare', 't15007 Rare', 't5007 Rare', 't7 Rare']);
      // Under the default sort: the page's ids from that index as it is walked, in one read.
      r = await listed('q=rare');
      expect(r.titles).toEqual(['t7 Rare', 't5007 Rare', 't15007 Rare']);
      expect(r.reads).toHaveLength(1);
      expect(r.plans[0]).toMatch(created);
      // Matching many: the sort's index, walked until a page is full.
      r = await listed('q=t1&sort=title');
      expect(r.titles).toHaveLength(200);
      expect(r.reads).toHaveLength(2);
      expect(r.reads[1].sql).not.toContain('= any(');
      expect(r.plans[1]).toContain('"Index Name":"okr_objectives_sort_title"');
    } finally {
      await client.end();
    }
    // As an earlier build made it: without the included columns. Made again, once.
    const definition = async () =>
      (
        await admin.query(
          `SELECT pg_get_indexdef(c.oid) AS def FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = $1 AND c.relname = 'okr_objectives_sort_created_at'`,
          [schema],
        )
      ).rows[0].def as string;
    expect(await definition()).toMatch(/\(tenant_id, created_at, id\) INCLUDE \(is_deleted, _search\)$/);
    await admin.query(`DROP INDEX ${schema}.okr_objectives_sort_created_at`);
    await admin.query(
      `CREATE INDEX okr_objectives_sort_created_at ON ${schema}.okr_objectives (tenant_id, created_at, id)`,
    );
    expect(await definition()).toMatch(/\(tenant_id, created_at, id\)$/);
    statements.length = 0;
    await migrate(store, resources);
    expect(await definition()).toMatch(/\(tenant_id, created_at, id\) INCLUDE \(is_deleted, _search\)$/);
    expect(statements.filter((s) => /^drop index/i.test(s.sql)).map((s) => s.sql)).toEqual([
      'drop index "okr_objectives_sort_created_at"',
    ]);
    statements.length = 0;
    await migrate(store, resources);
    expect(statements.filter((s) => /^(drop|create) index/i.test(s.sql))).toEqual([]);
  });

  it('documents in the README how to distribute every tenant table and keep the queues apart', () => {
    const section = README.slice(README.indexOf('## Scaling out'));
    expect(section.length).toBeGreaterThan(500);
    const first = 'okr_cycles';
    const rest = tenantTables.filter((t) => t !== first);
    expect(section).toContain(`create_distributed_table('${first}', 'tenant_id')`);
    for (const table of rest) {
      expect(section).toContain(`create_distributed_table('${table}', 'tenant_id', colocate_with => '${first}')`);
    }
    for (const queue of queueTables) expect(section).toContain(queue);
    expect(section).not.toMatch(new RegExp(`create_distributed_table\\('(${[...queueTables].join('|')})'`));
  });

  it('keeps serving while a migration adds a column: its prepared statements name their columns', async () => {
    const token = await tokenFor('prepared');
    const objective = await call(token, 'POST', byName('Objective').basePath, { title: 'prepared' });
    const krPath = byName('KeyResult').basePath;
    const kr = await call(token, 'POST', krPath, { objective_id: objective.body.id, title: 'prepared kr', target: 10 });
    const rounds = async (value: number) => {
      // Several at once, so every session of the pool (3) prepares and then reuses them.
      const answers = await Promise.all([
        ...Array.from({ length: 4 }, () => call(token, 'GET', `${krPath}/${kr.body.id}`)),
        call(token, 'GET', `${krPath}?objective_id=${objective.body.id}`),
        call(token, 'POST', `${krPath}/${kr.body.id}/check-ins`, { value }),
      ]);
      return answers.map((a) => a.status);
    };
    expect(await rounds(1)).toEqual([200, 200, 200, 200, 200, 201]);
    expect(await rounds(2)).toEqual([200, 200, 200, 200, 200, 201]);
    await admin.query(`ALTER TABLE ${schema}.okr_key_results ADD COLUMN added_later text COLLATE "C"`);
    await admin.query(`ALTER TABLE ${schema}.okr_objectives ADD COLUMN added_later text COLLATE "C"`);
    try {
      expect(await rounds(3)).toEqual([200, 200, 200, 200, 200, 201]);
      expect((await call(token, 'GET', `${krPath}/${kr.body.id}`)).body.current).toBe(3);
    } finally {
      await admin.query(`ALTER TABLE ${schema}.okr_key_results DROP COLUMN added_later`);
      await admin.query(`ALTER TABLE ${schema}.okr_objectives DROP COLUMN added_later`);
    }
  });
  it.each([true, false])(
    'prepares statements with parameters once per session unless told not to (prepare: %s)',
    async (prepare) => {
      const own = openStore(url, { schema, poolSize: 1, prepare, applicationName: 'edm-test-prepare' });
      try {
        for (const n of [1, 2]) await sql`SELECT ${n}::int AS n`.execute(own.db);
        const { rows } = await sql<{ n: number }>`SELECT count(*) AS n FROM pg_prepared_statements`.execute(own.db);
        expect(rows[0].n > 0).toBe(prepare);
      } finally {
        await own.close();
      }
    },
  );
});
