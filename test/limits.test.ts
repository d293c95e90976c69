import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Doc } from '../src/core/resource.js';
import { MAX_CONNECTOR_FEEDS } from '../src/modules/okr/key-results.js';
import { MAX_ALIGNMENT_DEPTH } from '../src/modules/okr/objectives.js';
import { MAX_QUERY_READERS } from '../src/modules/okr/query-source.js';
import { countRows, resources, storeKinds, type TestApp, testApp } from './helpers.js';

const kr = resources.find((r) => r.name === 'KeyResult');
const objectives = resources.find((r) => r.name === 'Objective');

// What one tenant's write recomputes holds the store (SQLite's writer, a PostgreSQL connection)
// for every tenant meanwhile: the readers of a key result, the key results of a connector and the
// levels of an alignment are bounded, refused past the bound as a reference is (422, naming it).
describe.each(storeKinds)('bounds on what one write recomputes (%s)', (kind) => {
  let t: TestApp;
  let objectiveId: string;
  beforeAll(async () => {
    t = await testApp(kind);
    objectiveId = (await t.create(objectives as never, await t.token())).id as string;
  });
  afterAll(() => t.close());

  const post = async (path: string, body: Doc) => {
    const res = await t.call('POST', path, { body });
    return res;
  };
  const refused = (res: { status: number; body: Doc }, path: string, message: string) =>
    expect([res.status, res.body.code, res.body.errors]).toEqual([
      422,
      'invalid_reference',
      [{ path, code: 'limit_reached', message }],
    ]);

  it(`refuses a query reading a key result ${MAX_QUERY_READERS} queries read already`, async () => {
    const read = (await post(kr?.basePath as string, { objective_id: objectiveId, title: 'Read', target: 10 })).body;
    const query = (title: string) => ({
      objective_id: objectiveId,
      title,
      target: 20,
      data_source: 'query',
      query: `kr("${read.id}") * 2`,
    });
    for (let i = 0; i < MAX_QUERY_READERS; i++) {
      expect((await post(kr?.basePath as string, query(`reader ${i}`))).status).toBe(201);
    }
    const before = await countRows(t, kr as never);
    const over = await post(kr?.basePath as string, query('one too many'));
    refused(
      over,
      '/query',
      `kr("${read.id}") is read by ${MAX_QUERY_READERS} queries already, the most one key result may be`,
    );
    expect(await countRows(t, kr as never)).toBe(before);
    // A PATCH of a query that reads it already (another expression over it) is no new reader.
    const readers = (await t.call('GET', `${kr?.basePath}?data_source=query&limit=1`)).body.data as Doc[];
    const patched = await t.call('PATCH', `${kr?.basePath}/${readers[0]?.id}`, {
      body: { query: `kr("${read.id}") * 3` },
    });
    expect(patched.status, patched.raw).toBe(200);
    // One deleted: a place again.
    expect((await t.call('DELETE', `${kr?.basePath}/${readers[0]?.id}`)).status).toBe(200);
    expect((await post(kr?.basePath as string, query('in its place'))).status).toBe(201);
  });

  it(`refuses a key result for a connector that feeds ${MAX_CONNECTOR_FEEDS} already`, async () => {
    const hook = (await post('/api/v1/okr/connectors', { name: 'Desk', kind: 'webhook' })).body;
    const fed = (title: string) => ({
      objective_id: objectiveId,
      title,
      target: 10,
      data_source: 'connector',
      connector_id: hook.id,
    });
    for (let i = 0; i < MAX_CONNECTOR_FEEDS; i++) {
      expect((await post(kr?.basePath as string, fed(`fed ${i}`))).status).toBe(201);
    }
    const message = `${hook.id} feeds ${MAX_CONNECTOR_FEEDS} key results already, the most one connector may`;
    refused(await post(kr?.basePath as string, fed('one too many')), '/connector_id', message);
    // Attached by a PATCH likewise.
    const manual = (await post(kr?.basePath as string, { objective_id: objectiveId, title: 'Manual', target: 1 })).body;
    const attach = await t.call('PATCH', `${kr?.basePath}/${manual.id}`, {
      body: { data_source: 'connector', connector_id: hook.id },
    });
    refused(attach, '/connector_id', message);
    // A key result it feeds takes a PATCH of anything else.
    const one = ((await t.call('GET', `${kr?.basePath}?connector_id=${hook.id}&limit=1`)).body.data as Doc[])[0];
    expect((await t.call('PATCH', `${kr?.basePath}/${one?.id}`, { body: { title: 'Renamed' } })).status).toBe(200);
  });

  it(`refuses an alignment deeper than ${MAX_ALIGNMENT_DEPTH} levels`, async () => {
    let parent: string | null = null;
    const chain: string[] = [];
    for (let i = 0; i <= MAX_ALIGNMENT_DEPTH; i++) {
      const res = await post(objectives?.basePath as string, { title: `level ${i}`, parent_objective_id: parent });
      expect(res.status, res.raw).toBe(201);
      parent = res.body.id as string;
      chain.push(parent);
    }
    const deepest = chain.at(-1) as string;
    const message = `${deepest} is ${MAX_ALIGNMENT_DEPTH} levels deep already: an alignment is at most ${MAX_ALIGNMENT_DEPTH} levels`;
    refused(
      await post(objectives?.basePath as string, { title: 'too deep', parent_objective_id: deepest }),
      '/parent_objective_id',
      message,
    );
    const loose = (await post(objectives?.basePath as string, { title: 'loose' })).body;
    refused(
      await t.call('PATCH', `${objectives?.basePath}/${loose.id}`, { body: { parent_objective_id: deepest } }),
      '/parent_objective_id',
      message,
    );
    // One level up is still within the bound.
    const within = await t.call('PATCH', `${objectives?.basePath}/${loose.id}`, {
      body: { parent_objective_id: chain.at(-2) },
    });
    expect(within.status, within.raw).toBe(200);
  });
});
