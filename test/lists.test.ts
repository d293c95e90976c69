import { type RawBuilder, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SEARCH_FOLD } from '../src/core/list-query.js';
import type { Doc, Resource } from '../src/core/resource.js';
import { META_TABLE, migrate } from '../src/store/schema.js';
import {
  byName,
  emptyCurrent,
  type ReadRecorder,
  recordReads,
  resources,
  storeKinds,
  type TestApp,
  testApp,
  USER_A,
} from './helpers.js';

const kr = byName('KeyResult');

/** The order a list must answer: by the sort field (nulls last), then id, both in the sort direction. */
function expectedOrder(rows: Doc[], field: string, desc: boolean): string[] {
  const dir = desc ? -1 : 1;
  return [...rows]
    .sort((a, b) => {
      const x = a[field];
      const y = b[field];
      if (x === null && y !== null) return 1;
      if (y === null && x !== null) return -1;
      if (x !== y && x !== null && y !== null) return ((x as string) < (y as string) ? -1 : 1) * dir;
      return ((a.id as string) < (b.id as string) ? -1 : 1) * dir;
    })
    .map((r) => r.id as string);
}

async function walk(t: TestApp, resource: Resource, query: string, limit: number, between?: () => Promise<void>) {
  const ids: string[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 1000; page++) {
    const url: string = `${resource.basePath}?${query}${query ? '&' : ''}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const res = await t.call('GET', url);
    expect(res.status, res.raw).toBe(200);
    expect((res.body.data as Doc[]).length).toBeLessThanOrEqual(limit);
    ids.push(...(res.body.data as Doc[]).map((d) => d.id as string));
    cursor = res.body.next_cursor as string | null;
    expect(res.body.has_more).toBe(cursor !== null);
    if (!cursor) return ids;
    await between?.();
  }
  throw new Error('walk did not end');
}

describe.each(storeKinds)('lists on %s', (kind) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await testApp(kind);
  });
  afterAll(() => t.close());

  describe.each(resources.map((r) => [r.name, r] as const))('%s', (_n, resource) => {
    let rows: Doc[];
    beforeAll(async () => {
      const token = await t.token();
      rows = [];
      for (let i = 0; i < 12; i++) {
        t.clock.advance(i % 3 === 0 ? 0 : 1000); // equal created_at values exercise the id tie-break
        rows.push(
          await t.create(resource, token, { [resource.titleField]: `Item ${String.fromCharCode(65 + (i % 5))}` }),
        );
      }
    });

    it('answers the envelope with the newest first by default', async () => {
      const res = await t.call('GET', `${resource.basePath}?limit=5`);
      expect(res.status).toBe(200);
      expect(Object.keys(res.body)).toEqual(['object', 'data', 'has_more', 'next_cursor']);
      expect(res.body.object).toBe('list');
      const all = (await t.call('GET', `${resource.basePath}?limit=200`)).body.data as Doc[];
      expect((res.body.data as Doc[]).map((d) => d.id)).toEqual(expectedOrder(all, 'created_at', true).slice(0, 5));
    });

    it.each(resource.sortable.flatMap((f) => [f, `-${f}`]))(
      'sorts by %s with id as tie-break, nulls last, across pages',
      async (sort) => {
        const desc = sort.startsWith('-');
        const field = desc ? sort.slice(1) : sort;
        const all = (await t.call('GET', `${resource.basePath}?limit=200`)).body.data as Doc[];
        expect(await walk(t, resource, `sort=${sort}`, 5)).toEqual(expectedOrder(all, field, desc));
      },
    );

    const enumFilter = resource.filterable.find((f) => resource.allFields[f]?.enum) as string;
    const enumValue = resource.allFields[enumFilter]?.enum?.[0] as string;
    const unsortable = Object.keys(resource.fields).find((f) => !resource.sortable.includes(f)) as string;
    const badParams: [string, string][] = [
      ['limit=0', 'invalid_parameter'],
      ['limit=201', 'invalid_parameter'],
      ['limit=ten', 'invalid_parameter'],
      ['limit=5&limit=6', 'invalid_parameter'],
      ['sort=nonsense', 'invalid_parameter'],
      ['sort=tenant_id', 'invalid_parameter'],
      // A field of the resource that is not declared sortable is no sort either.
      [`sort=${unsortable}`, 'invalid_parameter'],
      ['colour=red', 'unknown_parameter'],
      // Pages are keyset pages, walked with cursor: there is no offset.
      ['offset=10', 'unknown_parameter'],
      ['include_deleted=yes', 'invalid_parameter'],
      // However a cursor was damaged, it is one code: no dot, two, or a forged signature.
      ['cursor=garbage', 'invalid_cursor'],
      ['cursor=a.b.c', 'invalid_cursor'],
      ['cursor=a.b', 'invalid_cursor'],
      ['created_at[gte]=yesterday', 'invalid_parameter'],
      ['created_at[gte]=2026-02-30T00:00:00Z', 'invalid_parameter'],
      ['created_at[gte]=0000-01-01T00:00:00Z', 'invalid_parameter'],
      ['created_at[gte]=0001-01-01T00:00:00%2B01:00', 'invalid_parameter'],
      ['created_at[lt]=9999-12-31T23:59:59-05:00', 'invalid_parameter'],
      ['created_at[between]=1', 'unknown_parameter'],
      ['q=a%00b', 'invalid_parameter'],
      // An escape that does not decode is no text: read as is, q=%zz searched for "%zz".
      ['q=%zz', 'invalid_parameter'],
      ['q=100%', 'invalid_parameter'],
      ['q=%E2%82', 'invalid_parameter'],
      ['created_at[gte]=2026-01-01T00:00:00%2', 'invalid_parameter'],
      ['limit=%zz', 'invalid_parameter'],
      ['col%zz=1', 'unknown_parameter'],
      // Only declared filterable fields filter: the title is searched with q, not matched.
      [`${resource.titleField}=x`, 'unknown_parameter'],
      // Ranges apply to numbers and dates only, and an enum filter takes the enum's values.
      [`${enumFilter}[gte]=${enumValue}`, 'invalid_parameter'],
      [`${enumFilter}=not_a_value`, 'invalid_parameter'],
      // A filter, as any parameter, is given once: its values are listed a,b.
      [`${enumFilter}=${enumValue}&${enumFilter}=${enumValue}`, 'invalid_parameter'],
      // Tags filter as tag=a,b (has any of), which names at least one tag; tags=… is no parameter.
      ...(resource.filterable.includes('tags')
        ? ([
            ['tag=,', 'invalid_parameter'],
            ['tags=x', 'unknown_parameter'],
          ] as [string, string][])
        : []),
    ];
    it.each(badParams)('rejects %s with %s', async (query, code) => {
      const res = await t.call('GET', `${resource.basePath}?${query}`);
      expect([res.status, res.body.code]).toEqual([400, code]);
    });

    it('names a parameter with no name as the empty string it is', async () => {
      const res = await t.call('GET', `${resource.basePath}?=5`);
      expect([res.status, res.body.code, res.body.detail]).toEqual([
        400,
        'unknown_parameter',
        '"" is not a parameter of this list',
      ]);
      const one = await t.call('GET', `${resource.basePath}/${rows[0]?.id}?=5`);
      expect([one.status, one.body.detail]).toEqual([400, '"" is not a parameter of this operation']);
    });

    // An empty filter value matches no row (no id or text is stored empty): said, not an empty page.
    const textFilters = resource.filterable.filter((name) => {
      const field = resource.allFields[name];
      return (
        name !== 'tags' &&
        !field.enum &&
        !['real', 'integer', 'boolean', 'date', 'datetime'].includes(field.column ?? '')
      );
    });
    // A value of the field's form beside the empty one (an id, `usr-<uuid>`): else that is named.
    const sample = (name: string) => {
      const field = resource.allFields[name];
      if (field.ref) return `${field.ref}_01ARZ3NDEKTSV4RRFFQ69G5FAV`;
      return field.pattern ? USER_A : 'x';
    };
    it.each([
      ...textFilters.flatMap((name) => [`${name}=`, `${name}=${sample(name)},`]),
      ...(resource.filterable.includes('tags') ? ['tag=', 'tag=x,', 'tag=,x', 'tag=x,,y'] : []),
    ])('rejects the empty filter %s', async (query) => {
      const name = query.split('=')[0];
      const res = await t.call('GET', `${resource.basePath}?${query}`);
      expect([res.status, res.body.code, res.body.errors]).toEqual([
        400,
        'invalid_parameter',
        [expect.objectContaining({ path: name, code: 'invalid_parameter' })],
      ]);
      expect(res.body.detail).toContain('leave it out to match any value');
    });

    // A value no row of its field holds (another form than an id's, or `usr-<uuid>`): a typo, said.
    it.each(textFilters.filter((name) => resource.allFields[name].pattern !== undefined))(
      'refuses a %s filter of another form than the field has, naming it',
      async (name) => {
        const res = await t.call('GET', `${resource.basePath}?${name}=${sample(name)},bad`);
        expect([res.status, res.body.code, res.body.errors]).toEqual([
          400,
          'invalid_parameter',
          [
            expect.objectContaining({
              path: name,
              code: 'invalid_parameter',
              message: expect.stringContaining(`"bad" does not match ${resource.allFields[name].pattern}`),
            }),
          ],
        ]);
      },
    );

    it('names a parameter whose escape does not decode, and reads a literal % sent as %25', async () => {
      const res = await t.call('GET', `${resource.basePath}?limit=2&q=%E2%82`);
      expect(res.body.errors).toEqual([expect.objectContaining({ path: 'q', code: 'invalid_parameter' })]);
      expect(res.body.detail).toContain('malformed percent-escape');
      for (const q of ['%25zz', '%E2%82%AC', 'a+b', '%2B']) {
        expect((await t.call('GET', `${resource.basePath}?q=${q}`)).status, q).toBe(200);
      }
    });

    it('names every refused parameter in one answer, an unknown one leading', async () => {
      const res = await t.call('GET', `${resource.basePath}?limit=0&statsu=on_track&srot=title`);
      expect([res.status, res.body.code]).toEqual([400, 'unknown_parameter']);
      expect((res.body.errors as { path: string; code: string }[]).map((e) => [e.path, e.code])).toEqual([
        ['limit', 'invalid_parameter'],
        ['statsu', 'unknown_parameter'],
        ['srot', 'unknown_parameter'],
      ]);
      expect(res.body.detail).toMatch(/^statsu is not a parameter of this list; also limit: .*; srot is not/);
    });

    it('refuses a tampered cursor, and one reused with other filters, sort or caller', async () => {
      const first = await t.call('GET', `${resource.basePath}?limit=2`);
      const cursor = first.body.next_cursor as string;
      const [payload, mac] = cursor.split('.');
      const flipped = `${payload.slice(0, -2)}${payload.endsWith('A') ? 'BB' : 'AA'}.${mac}`;
      expect((await t.call('GET', `${resource.basePath}?limit=2&cursor=${flipped}`)).body.code).toBe('invalid_cursor');
      expect((await t.call('GET', `${resource.basePath}?limit=2&sort=created_at&cursor=${cursor}`)).body.code).toBe(
        'invalid_cursor',
      );
      expect(
        (await t.call('GET', `${resource.basePath}?limit=2&include_deleted=true&cursor=${cursor}`)).body.code,
      ).toBe('invalid_cursor');
      const other = await t.token({ tenant: 'someone-else' });
      expect((await t.call('GET', `${resource.basePath}?limit=2&cursor=${cursor}`, { token: other })).body.code).toBe(
        'invalid_cursor',
      );
      // An application of the same tenant sees other rows: a person's cursor is not its.
      const app = await t.token({ app: 'app_lists' });
      expect((await t.call('GET', `${resource.basePath}?limit=2&cursor=${cursor}`, { token: app })).body.code).toBe(
        'invalid_cursor',
      );
      // limit is not bound
      expect((await t.call('GET', `${resource.basePath}?limit=3&cursor=${cursor}`)).status).toBe(200);
      // Each refusal names the parameter.
      const refused = await t.call('GET', `${resource.basePath}?limit=2&sort=created_at&cursor=${cursor}`);
      expect(refused.body.errors).toEqual([expect.objectContaining({ path: 'cursor', code: 'invalid_cursor' })]);
      const altered = await t.call('GET', `${resource.basePath}?limit=2&cursor=${flipped}`);
      expect(altered.body.errors).toEqual([expect.objectContaining({ path: 'cursor', code: 'invalid_cursor' })]);
    });

    it('takes a cursor back with the values of an any-of filter in another order (a set)', async () => {
      const filter = resource.filterable.find((f) => resource.allFields[f]?.enum) as string;
      const values = resource.allFields[filter]?.enum as string[];
      const first = await t.call('GET', `${resource.basePath}?limit=1&${filter}=${values.join(',')}`);
      expect(first.status, first.raw).toBe(200);
      expect(first.body.next_cursor).toBeTruthy(); // the 12 rows all match
      const cursor = first.body.next_cursor as string;
      const reordered = await t.call(
        'GET',
        `${resource.basePath}?limit=1&${filter}=${[...values].reverse().join(',')}&cursor=${cursor}`,
      );
      expect(reordered.status, reordered.raw).toBe(200);
    });

    // A number spelt two ways is one value: `current=1` and `current=1,1.0` are the same list.
    const numeric = resource.filterable.find((f) => ['real', 'integer'].includes(resource.allFields[f]?.column ?? ''));
    it.runIf(numeric !== undefined)(
      'takes a cursor back with a number of a filter spelt again another way',
      async () => {
        const value = rows[0]?.[numeric as string] as number;
        expect(rows.filter((r) => r[numeric as string] === value).length).toBeGreaterThan(1);
        const first = await t.call('GET', `${resource.basePath}?limit=1&${numeric}=${value}`);
        const cursor = first.body.next_cursor as string;
        expect(cursor).toBeTruthy();
        const again = await t.call(
          'GET',
          `${resource.basePath}?limit=1&${numeric}=${value},${value}.0&cursor=${cursor}`,
        );
        expect(again.status, again.raw).toBe(200);
      },
    );

    it('searches the title field with q, case-insensitively', async () => {
      const res = await t.call('GET', `${resource.basePath}?q=${encodeURIComponent('item b')}&limit=200`);
      const expected = rows.filter((r) => (r[resource.titleField] as string).toLowerCase().includes('item b'));
      expect((res.body.data as Doc[]).map((d) => d.id).sort()).toEqual(expected.map((r) => r.id).sort());
    });
  });

  describe('q folds case fully, not only lower-casing', () => {
    const objectives = byName('Objective');
    const search = async (tenant: string, title: string, query: string) => {
      const token = await t.token({ tenant });
      const created = await t.create(objectives, token, { title });
      const res = await t.call('GET', `${objectives.basePath}?q=${encodeURIComponent(query)}`, { token });
      return { id: created.id, found: (res.body.data as Doc[]).map((d) => d.id) };
    };

    it.each([
      ['a Greek capital sigma searched mid-word', 'ΠΩΛΗΣΕΙΣ ΕΞΩΤΕΡΙΚΟΥ', 'ΠΩΛΗΣ'],
      ['a final sigma searched as a sigma', 'ΟΔΟΣ', 'οδοσ'],
      ['a final sigma searched alone', 'ΟΔΟΣ', 'Σ'],
      ['ß searched as SS', 'Straße', 'STRASSE'],
      ['ss searched as ß', 'Strasse', 'straße'],
      ['a dotted capital I searched as i', 'İstanbul office', 'istanbul'],
      ['a dotless i searched as I', 'Kırmızı', 'KIRMIZI'],
    ])('%s', async (name, title, query) => {
      const { id, found } = await search(`fold-${name.replaceAll(' ', '-')}`, title, query);
      expect(found).toEqual([id]);
    });

    it('migrate folds again what an earlier fold stored, once', async () => {
      const { id } = await search('refold', 'ΟΔΟΣ', 'Σ');
      // As the first fold (lower case only) stored it, before this one existed.
      await t.store.db
        .updateTable(objectives.table)
        .set({ _search: 'οδος' })
        .where('id', '=', id as string)
        .execute();
      await t.store.db.deleteFrom(META_TABLE).execute();
      const token = await t.token({ tenant: 'refold' });
      const query = () => t.call('GET', `${objectives.basePath}?q=${encodeURIComponent('Σ')}`, { token });
      expect((await query()).body.data).toEqual([]);
      await migrate(t.store, resources);
      expect(((await query()).body.data as Doc[]).map((d) => d.id)).toEqual([id]);
      const marker = await t.store.db.selectFrom(META_TABLE).selectAll().execute();
      expect(marker).toEqual([{ key: 'search_fold', value: String(SEARCH_FOLD) }]);
    });
  });

  describe('KeyResult filters', () => {
    let objectiveA: string;
    let krs: Doc[];
    beforeAll(async () => {
      const token = await t.token({ tenant: 'filters' });
      objectiveA = (await t.create(byName('Objective'), token)).id as string;
      const objectiveB = (await t.create(byName('Objective'), token)).id as string;
      const specs: Doc[] = [
        {
          objective_id: objectiveA,
          title: 'Ünïcode Straße',
          target: 100,
          current: 10,
          tags: ['growth', 'q4'],
          metric_type: 'number',
        },
        {
          objective_id: objectiveA,
          title: 'ÜNÏCODE loud',
          target: 100,
          current: 50,
          tags: ['q4'],
          metric_type: 'percentage',
        },
        { objective_id: objectiveB, title: 'plain', target: 100, current: 90, tags: ['ops'], metric_type: 'currency' },
        { objective_id: objectiveB, title: 'milestone', metric_type: 'milestone', tags: [] },
        { objective_id: objectiveA, title: 'no tags', target: 10, current: 10 },
      ];
      krs = [];
      for (const body of specs) {
        t.clock.advance(1000);
        const res = await t.call('POST', kr.basePath, { token, body });
        expect(res.status, res.raw).toBe(201);
        krs.push(res.body);
      }
      (t as unknown as { filterToken: string }).filterToken = token;
    });
    const q = async (query: string) => {
      const token = (t as unknown as { filterToken: string }).filterToken;
      const res = await t.call('GET', `${kr.basePath}?${query}&limit=200`, { token });
      expect(res.status, res.raw).toBe(200);
      return (res.body.data as Doc[]).map((d) => d.title).sort();
    };

    it.each([
      ['objective_id equality', () => `objective_id=${objectiveA}`, ['no tags', 'ÜNÏCODE loud', 'Ünïcode Straße']],
      ['any-of', () => 'metric_type=percentage,currency', ['plain', 'ÜNÏCODE loud']],
      [
        'any-of of three (padded to four)',
        () => 'metric_type=percentage,currency,threshold',
        ['plain', 'ÜNÏCODE loud'],
      ],
      ['any-of, a value twice', () => 'metric_type=currency,currency,percentage', ['plain', 'ÜNÏCODE loud']],
      ['tag has any of three', () => 'tag=growth,ops,nothing', ['plain', 'Ünïcode Straße']],
      ['status any-of', () => 'status=achieved', ['no tags']],
      ['number range gte', () => 'current[gte]=50', ['plain', 'ÜNÏCODE loud']],
      ['number range gt & lt', () => 'current[gt]=10&current[lt]=90', ['ÜNÏCODE loud']],
      ['progress range', () => 'progress_pct[lte]=10', ['milestone', 'Ünïcode Straße']],
      ['tag has any of', () => 'tag=growth,ops', ['plain', 'Ünïcode Straße']],
      ['tag single', () => 'tag=q4', ['ÜNÏCODE loud', 'Ünïcode Straße']],
      [
        'q is case-insensitive and Unicode-aware',
        () => `q=${encodeURIComponent('ünïcode')}`,
        ['ÜNÏCODE loud', 'Ünïcode Straße'],
      ],
      [
        'q matches inside words',
        () => `q=${encodeURIComponent('STRASSE'.toLowerCase().replace('ss', 'ß'))}`,
        ['Ünïcode Straße'],
      ],
      ['q treats % and _ literally', () => 'q=%25', []],
      ['combined filters', () => `objective_id=${objectiveA}&tag=q4&current[gte]=20`, ['ÜNÏCODE loud']],
    ] as [string, () => string, string[]][])('%s', async (_n, query, expected) => {
      expect(await q(query())).toEqual([...expected].sort());
    });

    it.each(['0x10', '0b1', ' 50', '+50', '5.', '.5', '1e', 'Infinity', '1_000', ''])(
      'refuses current[gte]=%j: a number is written as JSON writes one',
      async (value) => {
        const token = (t as unknown as { filterToken: string }).filterToken;
        const res = await t.call('GET', `${kr.basePath}?current[gte]=${encodeURIComponent(value)}`, { token });
        expect([res.status, res.body.code]).toEqual([400, 'invalid_parameter']);
      },
    );

    it('takes at most 100 values in one any-of filter, and prepares a few statements for any count of them', async () => {
      const token = (t as unknown as { filterToken: string }).filterToken;
      const owners = (n: number) =>
        Array.from({ length: n }, (_, i) => `usr-${String(i).padStart(8, '0')}-0000-4000-8000-000000000000`).join(',');
      const engine = t.app.engine as unknown as { shapes: Map<string, unknown> };
      const before = engine.shapes.size;
      for (let n = 1; n <= 100; n++) {
        const res = await t.call('GET', `${kr.basePath}?owner_id=${owners(n)}`, { token });
        expect(res.status).toBe(200);
      }
      // 1, 2, 4, … 128: eight statement shapes for a hundred counts of values.
      expect(engine.shapes.size - before).toBeLessThanOrEqual(8);
      // Those of more than 64 parameters are compiled each time, not kept (nor their statements).
      const kept = engine.shapes.size;
      const wide = await t.call('GET', `${kr.basePath}?owner_id=${owners(100)}&sort=title`, { token });
      expect(wide.status).toBe(200);
      expect(engine.shapes.size).toBe(kept);
      expect((await t.call('GET', `${kr.basePath}?owner_id=${owners(2)}&sort=title`, { token })).status).toBe(200);
      expect(engine.shapes.size).toBe(kept + 1);
      // 100 distinct values with one listed twice: the values are a set, of 100.
      const twice = await t.call('GET', `${kr.basePath}?owner_id=${owners(100)},${owners(1)}`, { token });
      expect(twice.status, twice.raw).toBe(200);
      const over = await t.call('GET', `${kr.basePath}?owner_id=${owners(101)}`, { token });
      expect([over.status, over.body.code, (over.body.errors as { path: string }[])[0].path]).toEqual([
        400,
        'invalid_parameter',
        'owner_id',
      ]);
    });

    it('takes a number as JSON writes one: signs, decimals, exponents', async () => {
      expect(await q('current[gte]=-5&current[lt]=5e1')).toEqual(['milestone', 'no tags', 'Ünïcode Straße']);
      expect(await q('current[gt]=49.5')).toEqual(['plain', 'ÜNÏCODE loud']);
    });

    it('filters dates by range', async () => {
      const mid = krs[2].created_at as string;
      expect((await q(`created_at[gte]=${encodeURIComponent(mid)}`)).length).toBe(3);
      expect((await q(`created_at[lt]=${encodeURIComponent(mid)}`)).length).toBe(2);
    });

    it('compares a date-time finer than a millisecond exactly (times are stored to the millisecond)', async () => {
      const mid = krs[2].created_at as string; // …:03.000Z
      const after = mid.replace('Z', '0001Z'); // …:03.0000001Z, a tenth of a microsecond later
      const before = new Date(Date.parse(mid) - 1).toISOString().replace('Z', '9Z'); // …:02.9999Z
      const count = async (query: string) => (await q(query)).length;
      expect(await count(`created_at=${encodeURIComponent(mid.replace('Z', '000Z'))}`)).toBe(1); // zeros: the same instant
      expect(await count(`created_at=${encodeURIComponent(after)}`)).toBe(0);
      expect(await count(`created_at=${encodeURIComponent(`${after},${mid}`)}`)).toBe(1);
      expect(await count(`created_at[gte]=${encodeURIComponent(after)}`)).toBe(2);
      expect(await count(`created_at[gt]=${encodeURIComponent(after)}`)).toBe(2);
      expect(await count(`created_at[lt]=${encodeURIComponent(after)}`)).toBe(3);
      expect(await count(`created_at[lte]=${encodeURIComponent(after)}`)).toBe(3);
      expect(await count(`created_at[gte]=${encodeURIComponent(before)}`)).toBe(3);
      expect(await count(`created_at[lt]=${encodeURIComponent(before)}`)).toBe(2);
      // RFC 3339 takes a fraction of any length (`1*DIGIT`): 13 digits are a time too.
      const far = mid.replace('Z', '0000000001Z');
      expect([await count(`created_at=${far}`), await count(`created_at[gte]=${far}`)]).toEqual([0, 2]);
      expect(await count(`created_at[lte]=${far}`)).toBe(3);
      const end = '9999-12-31T23:59:59.9999Z';
      expect(await count(`created_at[gte]=${end}`)).toBe(0);
      expect(await count(`created_at[lt]=${end}`)).toBe(5);
    });

    it('matches a tag holding a comma written \\, and a backslash before one written \\\\', async () => {
      const token = await t.token({ tenant: 'filters-tags' });
      const objective = (await t.create(byName('Objective'), token)).id as string;
      const tagged: Record<string, string[]> = {
        comma: ['okr,2026'],
        okr: ['okr'],
        slash: ['a\\'],
        other: ['x\\y'],
      };
      for (const [title, tags] of Object.entries(tagged)) {
        const res = await t.call('POST', kr.basePath, {
          token,
          body: { objective_id: objective, title, target: 1, tags },
        });
        expect(res.status, res.raw).toBe(201);
      }
      const titles = async (tag: string) => {
        const res = await t.call('GET', `${kr.basePath}?tag=${encodeURIComponent(tag)}`, { token });
        expect(res.status, res.raw).toBe(200);
        return (res.body.data as Doc[]).map((d) => d.title).sort();
      };
      expect(await titles('okr\\,2026')).toEqual(['comma']);
      expect(await titles('okr,2026')).toEqual(['okr']);
      expect(await titles('a\\\\,okr')).toEqual(['okr', 'slash']);
      expect(await titles('x\\y')).toEqual(['other']); // any other backslash is itself
    });

    it('excludes deleted rows unless include_deleted=true', async () => {
      const token = (t as unknown as { filterToken: string }).filterToken;
      await t.call('DELETE', `${kr.basePath}/${krs[4].id}`, { token });
      expect(await q(`objective_id=${objectiveA}`)).not.toContain('no tags');
      expect(await q(`objective_id=${objectiveA}&include_deleted=true`)).toContain('no tags');
      expect(await q(`objective_id=${objectiveA}&include_deleted=false`)).not.toContain('no tags');
    });
  });

  // On SQLite a `tag=` filter matching few rows reads a table of each row's tags (memberTable),
  // which the engine writes with the row: each write below changes what the filters find, and a
  // write that fails changes nothing. Every list is read under two sorts and walked a row a page.
  describe('tag filters follow every write', () => {
    const objectives = byName('Objective');
    let token: string;
    const ids: Record<string, string> = {};
    beforeAll(async () => {
      token = await t.token({ tenant: 'tag-writes' });
      const objective = await t.create(objectives, token, { title: 'O', tags: ['tw-red'] });
      ids.O = objective.id as string;
      const bodies: Record<string, Doc> = {
        A: { tags: ['tw-red', 'tw-blue'] },
        B: { tags: ['tw-blue'] },
        C: { tags: [] },
        D: {},
      };
      for (const [name, body] of Object.entries(bodies)) {
        t.clock.advance(1000);
        ids[name] = (await t.create(kr, token, { objective_id: ids.O, title: name, ...body })).id as string;
      }
    });
    const names = (docs: Doc[]) => docs.map((d) => d.title as string).sort();
    async function listed(resource: Resource, query: string): Promise<string[]> {
      const seen: string[][] = [];
      for (const sort of ['-created_at', 'title']) {
        const res = await t.call('GET', `${resource.basePath}?${query}&sort=${sort}&limit=200`, { token });
        expect(res.status, res.raw).toBe(200);
        seen.push(names(res.body.data as Doc[]));
        // Walked a row a page, past cursors: the same rows, each once.
        const walked: Doc[] = [];
        let cursor: string | null = null;
        do {
          const url: string = `${resource.basePath}?${query}&sort=${sort}&limit=1${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
          const page = await t.call('GET', url, { token });
          expect(page.status, page.raw).toBe(200);
          walked.push(...(page.body.data as Doc[]));
          cursor = page.body.next_cursor as string | null;
        } while (cursor);
        seen.push(names(walked));
      }
      expect(new Set(seen.map((s) => JSON.stringify(s))).size, `${query}: ${JSON.stringify(seen)}`).toBe(1);
      return seen[0];
    }
    const patch = (resource: Resource, name: string, body: Doc, headers?: Record<string, string>) =>
      t.call('PATCH', `${resource.basePath}/${ids[name]}`, { token, body, headers });
    // [what happens, the write (its expected status), then each list's titles]
    const steps: [string, () => Promise<{ status: number; raw: string }>, number, [string, string[]][]][] = [
      [
        'as created',
        async () => ({ status: 0, raw: '' }),
        0,
        [
          ['tag=tw-red', ['A']],
          ['tag=tw-blue', ['A', 'B']],
          ['tag=tw-red,tw-blue', ['A', 'B']],
          ['tag=tw-none', []],
          ['objective:tag=tw-red', ['O']],
        ],
      ],
      [
        'a PATCH replacing the tags',
        () => patch(kr, 'A', { tags: ['tw-green'] }),
        200,
        [
          ['tag=tw-red', []],
          ['tag=tw-blue', ['B']],
          ['tag=tw-green', ['A']],
          ['tag=tw-red,tw-green', ['A']],
        ],
      ],
      ['a PATCH emptying them', () => patch(kr, 'B', { tags: null }), 200, [['tag=tw-blue', []]]],
      [
        'a PATCH giving tags to a row that had none',
        () => patch(kr, 'C', { tags: ['tw-red', 'tw-blue'] }),
        200,
        [
          ['tag=tw-red', ['C']],
          ['tag=tw-blue,tw-green', ['A', 'C']],
        ],
      ],
      ['a PATCH of another field', () => patch(kr, 'C', { title: 'C2' }), 200, [['tag=tw-red', ['C2']]]],
      [
        'a PATCH refused (a tag that is no string)',
        () => patch(kr, 'A', { tags: ['tw-red', 7] }),
        400,
        [
          ['tag=tw-red', ['C2']],
          ['tag=tw-green', ['A']],
        ],
      ],
      [
        'a PATCH at a stale version',
        () => patch(kr, 'A', { tags: ['tw-red'] }, { 'if-match': '"1"' }),
        412,
        [
          ['tag=tw-red', ['C2']],
          ['tag=tw-green', ['A']],
        ],
      ],
      [
        'a delete',
        () => t.call('DELETE', `${kr.basePath}/${ids.C}`, { token }),
        200,
        [
          ['tag=tw-red', []],
          ['tag=tw-red&include_deleted=true', ['C2']],
        ],
      ],
      [
        "an objective's tags replaced",
        () => patch(objectives, 'O', { tags: ['tw-blue'] }),
        200,
        [
          ['objective:tag=tw-red', []],
          ['objective:tag=tw-blue', ['O']],
        ],
      ],
    ];
    it.each(steps)('%s', async (_what, write, status, lists) => {
      const res = await write();
      if (status !== 0) expect(res.status, res.raw).toBe(status);
      for (const [query, expected] of lists) {
        const [resource, q] = query.startsWith('objective:') ? [objectives, query.slice(10)] : [kr, query];
        expect(await listed(resource, q), query).toEqual(expected);
      }
      if (kind !== 'sqlite') return;
      // The member tables hold each row's tags, no more and no fewer (the lists would not show a
      // value left behind: they also test the row's own tags).
      for (const table of ['okr_key_results', 'okr_objectives']) {
        const held = async (query: RawBuilder<{ v: string }>) =>
          (await query.execute(t.store.db)).rows.map((r) => r.v).sort();
        expect(
          await held(
            sql`SELECT value || ' ' || id AS v FROM ${sql.table(`${table}_has_tags`)} WHERE tenant_id = 'tag-writes'`,
          ),
          table,
        ).toEqual(
          await held(
            sql`SELECT m.value || ' ' || r.id AS v FROM ${sql.table(table)} AS r, json_each(r.tags) AS m WHERE r.tenant_id = 'tag-writes'`,
          ),
        );
      }
    });
  });

  describe('Cycle date filters', () => {
    let token: string;
    beforeAll(async () => {
      token = await t.token({ tenant: 'date-ranges' });
      for (const [name, start_date, end_date] of [
        ['Q1', '2026-01-01', '2026-03-31'],
        ['Q2', '2026-04-01', '2026-06-30'],
        ['Q3', '2026-07-01', '2026-09-30'],
      ]) {
        await t.create(byName('Cycle'), token, { name, start_date, end_date });
      }
    });

    // Ranges apply to dates as to numbers, each operator as it reads: [gte] and [lte] take the
    // day itself, [gt] and [lt] do not.
    it.each([
      ['start_date=2026-04-01', ['Q2']],
      ['start_date[gte]=2026-04-01', ['Q2', 'Q3']],
      ['start_date[gt]=2026-04-01', ['Q3']],
      ['start_date[lte]=2026-04-01', ['Q1', 'Q2']],
      ['start_date[lt]=2026-04-01', ['Q1']],
      ['end_date[gte]=2026-06-30&start_date[lte]=2026-06-30', ['Q2']],
    ])('%s', async (query, names) => {
      const res = await t.call('GET', `${byName('Cycle').basePath}?${query}&limit=200`, { token });
      expect(res.status, res.raw).toBe(200);
      expect((res.body.data as Doc[]).map((d) => d.name).sort()).toEqual(names);
    });
  });

  it('answers 50 rows to a list that names no limit, and says there are more', async () => {
    const token = await t.token({ tenant: 'default-limit' });
    for (let i = 0; i < 51; i++) await t.create(byName('Cycle'), token);
    const res = await t.call('GET', byName('Cycle').basePath, { token });
    expect([(res.body.data as unknown[]).length, res.body.has_more]).toEqual([50, true]);
  });

  it('pages rows without a value last, in either direction, the rows with one in order before them', async () => {
    const token = await t.token({ tenant: 'empties' });
    const objective = (await t.create(byName('Objective'), token)).id as string;
    for (let i = 0; i < 25; i++) {
      if (i % 2 === 0) t.clock.advance(1000); // equal values of current and created_at: the id breaks ties
      const id = (
        await t.call('POST', kr.basePath, {
          token,
          body: { objective_id: objective, title: `kr ${i}`, target: 10, current: i % 4 },
        })
      ).body.id as string;
      // Empty, as rows stored before a field existed are (the API itself always sets current).
      if (i % 3 === 0) await emptyCurrent(t, id);
    }
    const all = (await t.call('GET', `${kr.basePath}?limit=100`, { token })).body.data as Doc[];
    expect(all.filter((d) => d.current === null)).toHaveLength(9);
    for (const sort of ['current', '-current']) {
      for (const limit of [1, 4, 9, 30]) {
        const seen: string[] = [];
        let cursor: string | null = null;
        do {
          const url: string = `${kr.basePath}?sort=${sort}&limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
          const res = await t.call('GET', url, { token });
          expect(res.status, res.raw).toBe(200);
          seen.push(...(res.body.data as Doc[]).map((d) => d.id as string));
          cursor = res.body.next_cursor as string | null;
        } while (cursor);
        expect(seen, `${sort}, limit ${limit}`).toEqual(expectedOrder(all, 'current', sort.startsWith('-')));
      }
    }
  });

  it('walks 500 rows in pages of 7 under each sort, with inserts between pages: none twice, none skipped', async () => {
    const token = await t.token({ tenant: 'walker' });
    const objective = (await t.create(byName('Objective'), token)).id as string;
    const original: string[] = [];
    for (let i = 0; i < 500; i++) {
      if (i % 4 === 0) t.clock.advance(1);
      const res = await t.call('POST', kr.basePath, {
        token,
        body: { objective_id: objective, title: `kr ${i % 37}`, target: 100 + (i % 11), current: i % 13 },
      });
      original.push(res.body.id as string);
    }
    let inserted = 0;
    const insert = async () => {
      t.clock.advance(1);
      inserted++;
      await t.call('POST', kr.basePath, {
        token,
        body: {
          objective_id: objective,
          title: `late ${inserted % 5}`,
          target: 100 + (inserted % 7),
          current: inserted % 3,
        },
      });
    };
    for (const sort of kr.sortable.flatMap((f) => [f, `-${f}`])) {
      const seen: string[] = [];
      let cursor: string | null = null;
      do {
        const url: string = `${kr.basePath}?sort=${sort}&limit=7${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
        const res = await t.call('GET', url, { token });
        seen.push(...(res.body.data as Doc[]).map((d) => d.id as string));
        cursor = res.body.next_cursor as string | null;
        if (cursor) await insert();
      } while (cursor);
      expect(new Set(seen).size, `duplicates under ${sort}`).toBe(seen.length);
      const set = new Set(seen);
      expect(
        original.filter((id) => !set.has(id)),
        `skipped under ${sort}`,
      ).toEqual([]);
    }
    // Some 2,000 requests (a page and an insert at a time): on PostgreSQL that is a few dozen seconds.
  }, 120_000);
});

describe('lists on a SQLite file: one statement per page', () => {
  let t: TestApp;
  let recorder: ReadRecorder;
  beforeAll(async () => {
    t = await testApp('sqlite');
    recorder = recordReads(t.store);
  });
  afterAll(() => t.close());

  it('answers each page from one packed row, in the sort order, the extra row cut off, under every sort', async () => {
    const token = await t.token({ tenant: 'packer' });
    const objective = (await t.create(byName('Objective'), token)).id as string;
    const titles = ['alpha', 'Alpha', 'élan', 'Ωmega', 'zeta, with a comma', 'beta "quoted"', 'gamma\nline'];
    for (let i = 0; i < 23; i++) {
      if (i % 3 === 0) t.clock.advance(1000); // equal timestamps exercise the id tie-break
      const res = await t.call('POST', kr.basePath, {
        token,
        // Reals that need 17 digits to read back exact (the cursor's value comes from them).
        body: { objective_id: objective, title: titles[i % titles.length], target: 3, current: (i % 4) / 3 },
      });
      expect(res.status, res.raw).toBe(201);
    }
    const all = (await t.call('GET', `${kr.basePath}?limit=100`, { token })).body.data as Doc[];
    expect(all).toHaveLength(23);
    for (const sort of kr.sortable.flatMap((f) => [f, `-${f}`])) {
      const desc = sort.startsWith('-');
      const field = desc ? sort.slice(1) : sort;
      const seen: Doc[] = [];
      let cursor: string | null = null;
      do {
        recorder.reads.length = 0;
        const url: string = `${kr.basePath}?sort=${sort}&limit=5${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
        const res = await t.call('GET', url, { token });
        expect(res.status, res.raw).toBe(200);
        const data = res.body.data as Doc[];
        expect(data.length).toBeLessThanOrEqual(5);
        seen.push(...data);
        cursor = res.body.next_cursor as string | null;
        // One statement, the packed one: no fallback to the row path (nor a second read). Its
        // LIMIT is written in (the page and the row after it): a bound one is planned again on
        // every run.
        expect(
          recorder.reads.map((r) => r.sql).filter((s) => !/^(BEGIN|COMMIT)$/.test(s)),
          sort,
        ).toEqual([expect.stringMatching(/group_concat.* limit 6\) as "page"$/)]);
      } while (cursor);
      expect(
        seen.map((d) => d.id),
        sort,
      ).toEqual(expectedOrder(all, field, desc));
      // Whole documents, as a read by id answers them.
      expect(seen).toEqual(expect.arrayContaining(all));
    }
  });

  it('seeks past a cursor under a sort on a field that may be empty: two index ranges, the empty rows last', async () => {
    const token = await t.token({ tenant: 'seeker' });
    const objective = (await t.create(byName('Objective'), token)).id as string;
    for (let i = 0; i < 20; i++) {
      t.clock.advance(1000);
      const res = await t.call('POST', kr.basePath, {
        token,
        body: { objective_id: objective, title: `kr ${i}`, target: 10, current: i % 5 },
      });
      // Empty, as rows stored before a field existed are (the API itself always sets current).
      if (i % 3 === 0) await emptyCurrent(t, res.body.id as string);
    }
    const all = (await t.call('GET', `${kr.basePath}?limit=100`, { token })).body.data as Doc[];
    for (const sort of ['current', '-current']) {
      const seen: Doc[] = [];
      let cursor: string | null = null;
      let sought = 0;
      do {
        recorder.reads.length = 0;
        const url: string = `${kr.basePath}?sort=${sort}&limit=4${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
        const res = await t.call('GET', url, { token });
        expect(res.status, res.raw).toBe(200);
        const before = seen.at(-1);
        seen.push(...(res.body.data as Doc[]));
        cursor = res.body.next_cursor as string | null;
        const page = recorder.reads.find((r) => r.sql.includes('group_concat'));
        if (before && before.current !== null) {
          // Past a cursor with a value: the rows with a value are one index range from the
          // cursor on, the empty ones another; the tenant's rows are not scanned.
          if (!page) throw new Error(`no packed page statement under ${sort}`);
          const plan = recorder.plan(page);
          expect(plan, sort).toContain(
            'SEARCH okr_key_results USING INDEX okr_key_results_sort_current (tenant_id=? AND (current,id)'.concat(
              sort.startsWith('-') ? '<(?,?))' : '>(?,?))',
            ),
          );
          expect(plan, sort).toContain(
            'SEARCH okr_key_results USING INDEX okr_key_results_sort_current (tenant_id=? AND current=?)',
          );
          sought++;
        }
      } while (cursor);
      expect(sought, sort).toBeGreaterThan(0);
      expect(
        seen.map((d) => d.id),
        sort,
      ).toEqual(expectedOrder(all, 'current', sort.startsWith('-')));
      expect(seen.filter((d) => d.current === null).length).toBe(7);
      expect(seen.slice(-7).every((d) => d.current === null)).toBe(true);
    }
  });
});
