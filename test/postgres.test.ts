import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { searchText } from '../src/core/list-query.js';
import type { Doc } from '../src/core/resource.js';
import { byName, PG_URL, type Reply, storeKinds, T0, type TestApp, testApp } from './helpers.js';

// PostgreSQL is a first-class store: whatever a client can observe is the same on both stores.
// Each store runs the same explicit expectations; when both are present, one scenario is also
// replayed on each and the two transcripts must be equal.

const objectives = byName('Objective');
const keyResults = byName('KeyResult');
const cycles = byName('Cycle');

/** The order SQLite's BINARY collation and PostgreSQL's COLLATE "C" both give: UTF-8 bytes. */
const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

const TITLES = [
  'apple',
  'Apple',
  'APPLE',
  'zebra',
  'Zebra',
  'éclair',
  'Éclair',
  'eclair',
  'e\u0301clair', // decomposed é
  'Ω omega',
  '😀 smile', // astral: after U+FFxx in byte order, before it in UTF-16 order
  '\uFF21 fullwidth A',
  'a b',
  'a-b',
  'a_b',
  '10 items',
  '9 items',
  'Äpfel',
  'ſ long s',
  '\uFB01nance', // ﬁ ligature
  '100% done',
  'İstanbul',
  'Straße',
];

async function listAll(t: TestApp, token: string, path: string, query: string, limit = 4): Promise<Doc[]> {
  const out: Doc[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 100; page++) {
    const url = `${path}?${query}&limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const res = await t.call('GET', url, { token });
    expect(res.status, res.raw).toBe(200);
    out.push(...(res.body.data as Doc[]));
    cursor = res.body.next_cursor as string | null;
    if (!res.body.has_more) break;
  }
  return out;
}

describe.each(storeKinds)('the same observable behaviour on %s', (kind) => {
  let t: TestApp;
  let token: string;
  beforeAll(async () => {
    t = await testApp(kind);
    token = await t.token({ tenant: 'sorting' });
    for (const title of TITLES) {
      t.clock.advance(7);
      await t.create(objectives, token, { title });
    }
  });
  afterAll(() => t.close());

  it('sorts strings in byte order (COLLATE "C"), across keyset pages, both directions', async () => {
    const expected = [...TITLES].sort(byteOrder);
    // The byte order is not JavaScript's UTF-16 order: the astral emoji sorts after U+FF21.
    expect(expected.indexOf('😀 smile')).toBeGreaterThan(expected.indexOf('\uFF21 fullwidth A'));
    const asc = await listAll(t, token, objectives.basePath, 'sort=title');
    expect(asc.map((d) => d.title)).toEqual(expected);
    const desc = await listAll(t, token, objectives.basePath, 'sort=-title', 5);
    expect(desc.map((d) => d.title)).toEqual([...expected].reverse());
  });

  it.each([
    ['mrr', []],
    ['APPLE', ['apple', 'Apple', 'APPLE']],
    ['éclair', ['éclair', 'Éclair', 'e\u0301clair']], // NFKC composes the decomposed é
    ['E\u0301CLAIR', ['éclair', 'Éclair', 'e\u0301clair']],
    ['finance', ['\uFB01nance']], // NFKC expands the ligature
    ['ｆｉ', ['\uFB01nance']], // fullwidth letters too
    ['s long', ['ſ long s']],
    ['%', ['100% done']], // literal, not a LIKE wildcard
    ['_', ['a_b']],
    ['straße', ['Straße']],
    ['STRASSE', ['Straße']], // case folding, not only lower-casing
    ['😀', ['😀 smile']],
    ['ω', ['Ω omega']],
  ] as const)('matches q=%s the same way', async (q, titles) => {
    const found = await listAll(t, token, objectives.basePath, `q=${encodeURIComponent(q)}&sort=title`);
    const expected = TITLES.filter((title) => searchText(title).includes(searchText(q)));
    expect([...titles].sort()).toEqual([...expected].sort());
    expect(found.map((d) => d.title)).toEqual([...expected].sort(byteOrder));
  });

  it('filters tags exactly (case and accents matter) and keeps a tag list as sent', async () => {
    const tok = await t.token({ tenant: 'tags' });
    const docs: Doc[] = [];
    for (const title of TITLES) {
      t.clock.advance(3);
      docs.push(await t.create(objectives, tok, { title, tags: [Array.from(title)[0], 'all'] }));
    }
    const tagged = await t.create(objectives, tok, { title: 'tagged', tags: ['zeta', 'Alpha', 'ß', 'alpha'] });
    const got = await t.call('GET', `${objectives.basePath}/${tagged.id}`, { token: tok });
    expect(got.body.tags).toEqual(['zeta', 'Alpha', 'ß', 'alpha']);
    const titles = async (tags: string) =>
      (await listAll(t, tok, objectives.basePath, `tag=${encodeURIComponent(tags)}&sort=title`)).map((d) => d.title);
    expect(await titles('ß,nothing')).toEqual(['tagged']);
    expect(await titles('A,Z')).toEqual(['APPLE', 'Apple', 'Zebra']);
    expect(await titles('é,😀')).toEqual(['éclair', '😀 smile']);
    expect(await titles('alpha')).toEqual(['tagged']);
    expect((await titles('all')).length).toBe(TITLES.length);
  });

  it('keeps server timestamps to the millisecond and compares them as instants', async () => {
    const tok = await t.token({ tenant: 'timing' });
    t.clock.set(T0 + 123);
    const first = await t.create(objectives, tok, { title: 'first' });
    t.clock.set(T0 + 124);
    const second = await t.create(objectives, tok, { title: 'second' });
    expect(first.created_at).toBe('2026-11-01T12:00:00.123Z');
    const got = await t.call('GET', `${objectives.basePath}/${first.id}`, { token: tok });
    expect([got.body.created_at, got.body.updated_at]).toEqual([
      '2026-11-01T12:00:00.123Z',
      '2026-11-01T12:00:00.123Z',
    ]);
    const titles = async (query: string) =>
      (await listAll(t, tok, objectives.basePath, `${query}&sort=created_at`)).map((d) => d.title);
    expect(await titles('created_at[gt]=2026-11-01T12:00:00.123Z')).toEqual(['second']);
    expect(await titles('created_at[gte]=2026-11-01T12:00:00.123Z')).toEqual(['first', 'second']);
    // Another spelling of the same instant, with sub-millisecond digits that are dropped.
    expect(await titles(`created_at[lte]=${encodeURIComponent('2026-11-01T13:00:00.1239+01:00')}`)).toEqual(['first']);
    expect(await titles('created_at[lt]=2026-11-01T12:00:00.124Z')).toEqual(['first']);
    const sorted = await listAll(t, tok, objectives.basePath, 'sort=-created_at', 1);
    expect(sorted.map((d) => d.id)).toEqual([second.id, first.id]);
  });

  it.runIf(kind === 'postgres')(
    'reads timestamps back as RFC 3339 UTC with milliseconds, whatever the session prints',
    async () => {
      const instants = [
        '2026-11-28T21:09:01.358Z',
        '2026-11-28T21:09:01.350Z',
        '2026-11-28T21:09:01.300Z',
        '2026-11-28T21:09:01.000Z',
        '2024-02-29T23:59:59.999Z',
        '0005-01-01T00:00:00.000Z',
        '+020000-01-01T00:00:00.000Z',
        '-000044-03-15T12:00:00.000Z',
      ];
      const read = async (zone: string) =>
        t.store.db.connection().execute(async (db) => {
          await sql.raw(`SET TIME ZONE '${zone}'`).execute(db);
          try {
            const out: unknown[] = [];
            for (const at of instants) {
              const ms = Date.parse(at);
              const { rows } = await sql<{
                at: unknown;
              }>`SELECT to_timestamp(${ms / 1000})::timestamptz(3) AS at`.execute(db);
              out.push(rows[0].at);
            }
            return out;
          } finally {
            await sql.raw('RESET TIME ZONE').execute(db);
          }
        });
      expect(await read('UTC')).toEqual(instants);
      expect(await read('Asia/Kolkata')).toEqual(instants);
    },
  );

  it('answers numbers as JSON numbers, exactly as written', async () => {
    const tok = await t.token({ tenant: 'numbers' });
    const objective = await t.create(objectives, tok, { title: 'numbers' });
    const kr = await t.create(keyResults, tok, {
      objective_id: objective.id,
      title: 'exact',
      baseline: 0.1,
      target: 0.30000000000000004,
      weight: 0.5,
    });
    const big = await t.create(keyResults, tok, {
      objective_id: objective.id,
      title: 'big',
      baseline: -1e15,
      target: 1e15,
    });
    const got = await t.call('GET', `${keyResults.basePath}/${kr.id}`, { token: tok });
    expect(got.raw).toContain('"baseline":0.1,');
    expect(got.raw).toContain('"target":0.30000000000000004,');
    expect(got.raw).toContain('"weight":0.5,');
    const gotBig = await t.call('GET', `${keyResults.basePath}/${big.id}`, { token: tok });
    expect(gotBig.raw).toContain('"baseline":-1000000000000000,');
    expect(gotBig.raw).toContain('"target":1000000000000000,');
    for (const name of ['version', 'schema_version', 'progress_pct', 'current']) {
      expect([name, typeof gotBig.body[name]]).toEqual([name, 'number']);
    }
    const obj = await t.call('GET', `${objectives.basePath}/${objective.id}`, { token: tok });
    for (const name of ['progress_pct', 'key_result_count', 'version']) {
      expect([name, typeof obj.body[name]]).toEqual([name, 'number']);
    }
    const filtered = await listAll(t, tok, keyResults.basePath, 'target[gte]=0.30000000000000004&sort=target');
    expect(filtered.map((d) => d.id)).toEqual([kr.id, big.id]);
    // A count the database computes (live dependents) is a number too.
    const del = await t.call('DELETE', `${objectives.basePath}/${objective.id}`, { token: tok });
    expect([del.status, del.body.code, del.body.dependents]).toEqual([409, 'has_dependents', { 'key-results': 2 }]);
  });

  it('dates stay calendar dates', async () => {
    const tok = await t.token({ tenant: 'dates' });
    const c = await t.create(cycles, tok, { name: 'Q', start_date: '2026-10-01', end_date: '2026-12-31' });
    const got = await t.call('GET', `${cycles.basePath}/${c.id}`, { token: tok });
    expect([got.body.start_date, got.body.end_date]).toEqual(['2026-10-01', '2026-12-31']);
    const hits = await listAll(t, tok, cycles.basePath, 'start_date[gte]=2026-10-01&end_date[lte]=2026-12-31');
    expect(hits.map((d) => d.id)).toEqual([c.id]);
  });

  it('refuses U+0000 in text alike (PostgreSQL cannot store it), storing nothing', async () => {
    const tok = await t.token({ tenant: 'nul' });
    for (const body of [{ title: 'a\u0000b' }, { title: 'ok', tags: ['x\u0000'] }]) {
      const res = await t.call('POST', objectives.basePath, { token: tok, body });
      expect([res.status, res.body.code]).toEqual([400, 'validation_failed']);
    }
    for (const query of ['owner_id=%00', 'q=a%00', 'tag=x%00']) {
      const res = await t.call('GET', `${objectives.basePath}?${query}`, { token: tok });
      expect([res.status, res.body.code]).toEqual([400, 'invalid_parameter']);
    }
    expect(await listAll(t, tok, objectives.basePath, 'include_deleted=true')).toEqual([]);
  });
});

/** Replaces what differs between two runs by design (random ids, request ids, cursors) by stable names. */
function normalizer() {
  const names = new Map<string, string>();
  const name = (s: string) => {
    if (!names.has(s)) names.set(s, `<${s.split('_')[0]}#${names.size}>`);
    return names.get(s) as string;
  };
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') {
      if (/^(obj|kr|cyc)_[0-9A-Z]{26}$/.test(v)) return name(v);
      if (/^req_[0-9A-Z]{26}$/.test(v)) return '<request>';
      return v.replace(/(obj|kr|cyc)_[0-9A-Z]{26}/g, (m) => name(m));
    }
    if (Array.isArray(v)) return v.map(walk);
    if (v && typeof v === 'object') {
      return Object.fromEntries(
        Object.entries(v).map(([k, x]) => [k, k === 'next_cursor' && x !== null ? '<cursor>' : walk(x)]),
      );
    }
    return v;
  };
  return walk;
}

/** One scenario of creates, writes, lists and errors; answers its transcript. */
async function scenario(kind: 'sqlite' | 'postgres'): Promise<unknown[]> {
  const t = await testApp(kind);
  const norm = normalizer();
  const out: unknown[] = [];
  const ids: string[] = [];
  const krIds: string[] = [];
  const token = await t.token({ tenant: 'scenario' });
  const record = (label: string, res: Reply) => {
    out.push(
      norm({ label, status: res.status, etag: res.headers.etag, type: res.headers['content-type'], body: res.body }),
    );
    return res;
  };
  const call = async (label: string, method: string, url: string, body?: unknown, headers?: Record<string, string>) =>
    record(label, await t.call(method, url, { token, body, headers }));
  try {
    const cycle = await call('cycle', 'POST', cycles.basePath, {
      name: 'Q4',
      start_date: '2026-10-01',
      end_date: '2026-12-31',
    });
    for (const [i, title] of TITLES.entries()) {
      t.clock.advance(1000);
      const res = await call(`objective ${i}`, 'POST', objectives.basePath, {
        title,
        cycle_id: cycle.body.id,
        tags: [`t${i % 3}`, 'all'],
      });
      ids.push(res.body.id as string);
    }
    for (const [i, id] of ids.slice(0, 6).entries()) {
      t.clock.advance(1000);
      const kr = await call(`kr ${i}`, 'POST', keyResults.basePath, {
        objective_id: id,
        title: TITLES[i],
        baseline: i * 0.1,
        target: 10 + i / 3,
        current: i,
        tags: ['x'],
      });
      krIds.push(kr.body.id as string);
    }
    t.clock.advance(1000);
    await call('patch', 'PATCH', `${objectives.basePath}/${ids[0]}`, { description: 'd', tags: null });
    await call('stale if-match', 'PATCH', `${objectives.basePath}/${ids[0]}`, { title: 'x' }, { 'if-match': '"1"' });
    await call('stale body version', 'PATCH', `${objectives.basePath}/${ids[0]}`, { title: 'x', version: 1 });
    await call('has dependents', 'DELETE', `${objectives.basePath}/${ids[1]}`);
    await call('cascade', 'DELETE', `${objectives.basePath}/${ids[1]}?cascade=true`);
    await call('restore child of deleted', 'POST', `${keyResults.basePath}/${krIds[1]}/restore`);
    await call('restore', 'POST', `${objectives.basePath}/${ids[1]}/restore`);
    await call('unknown field', 'POST', objectives.basePath, { title: 'x', nope: 1 });
    await call('bad reference', 'POST', keyResults.basePath, {
      objective_id: 'obj_01ARZ3NDEKTSV4RRFFQ69G5FAV',
      title: 'x',
      target: 1,
    });
    await call('nul', 'POST', objectives.basePath, { title: '\u0000' });
    await call('bad cursor', 'GET', `${objectives.basePath}?cursor=abc.def`);
    for (const query of [
      'sort=title',
      'sort=-title&limit=7',
      'sort=updated_at&include_deleted=true',
      'q=%C3%A9clair&sort=title',
      'tag=t1,t2&sort=-created_at&limit=5',
      `cycle_id=${cycle.body.id}&sort=progress_pct&limit=9`,
    ]) {
      let url: string | null = `${objectives.basePath}?${query}`;
      for (let page = 0; url && page < 20; page++) {
        const res = await call(`list ${query} page ${page}`, 'GET', url);
        const next = res.body.next_cursor as string | null;
        url = next ? `${objectives.basePath}?${query}&cursor=${encodeURIComponent(next)}` : null;
      }
    }
    for (const query of [
      'sort=progress_pct',
      'sort=-target&current[gte]=2',
      'tag=x&sort=title',
      'sort=last_update_at',
    ]) {
      await call(`list kr ${query}`, 'GET', `${keyResults.basePath}?${query}`);
    }
    return out;
  } finally {
    await t.close();
  }
}

describe.runIf(PG_URL)('one scenario, both stores', () => {
  it('gives the same transcript on SQLite and PostgreSQL', async () => {
    const [sqlite, postgres] = [await scenario('sqlite'), await scenario('postgres')];
    expect(sqlite.length).toBeGreaterThan(50);
    for (let i = 0; i < sqlite.length; i++) expect(postgres[i]).toEqual(sqlite[i]);
    expect(postgres.length).toBe(sqlite.length);
  });
});
