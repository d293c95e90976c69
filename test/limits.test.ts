import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Doc } from '../src/core/resource.js';
import { MAX_CONNECTOR_FEEDS } from '../src/modules/okr/key-results.js';
import { MAX_ALIGNMENT_DEPTH } from '../src/modules/okr/objectives.js';
import { MAX_QUERY_DOWNSTREAM, MAX_QUERY_UPSTREAM } from '../src/modules/okr/query-source.js';
import { countRows, resources, storeKinds, type TestApp, testApp } from './helpers.js';

const kr = resources.find((r) => r.name === 'KeyResult');
const objectives = resources.find((r) => r.name === 'Objective');

// What one tenant's write recomputes holds the store (SQLite's writer, a PostgreSQL connection)
// for every tenant meanwhile: the queries downstream of a key result, the key results of a
// connector and the levels of an alignment are bounded, refused past the bound as a reference is
// (422, naming it), whether a create, an update or a restore would go past it.
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

  const manual = async (title: string) =>
    (await post(kr?.basePath as string, { objective_id: objectiveId, title, target: 10 })).body.id as string;
  const query = (title: string, of: string) => ({
    objective_id: objectiveId,
    title,
    target: 20,
    data_source: 'query',
    query: `kr("${of}") + 1`,
  });
  const tooMany = (id: string) =>
    `a change of kr("${id}") would recompute more than ${MAX_QUERY_DOWNSTREAM} queries, directly or through others, the most one change may`;
  /** A chain of `links` queries, each reading the one before, from `root`: the last link's id. */
  const chain = async (root: string, links: number, title: string) => {
    let last = root;
    for (let i = 0; i < links; i++) {
      const res = await post(kr?.basePath as string, query(`${title} ${i}`, last));
      expect(res.status, res.raw).toBe(201);
      last = res.body.id as string;
    }
    return last;
  };

  it(`refuses a query reading a key result ${MAX_QUERY_DOWNSTREAM} queries read already`, async () => {
    const read = await manual('Read');
    for (let i = 0; i < MAX_QUERY_DOWNSTREAM; i++) {
      expect((await post(kr?.basePath as string, query(`reader ${i}`, read))).status).toBe(201);
    }
    const before = await countRows(t, kr as never);
    refused(await post(kr?.basePath as string, query('one too many', read)), '/query', tooMany(read));
    expect(await countRows(t, kr as never)).toBe(before);
    // A PATCH of a query that reads it already (another expression over it) is no new reader.
    const readers = (await t.call('GET', `${kr?.basePath}?data_source=query&limit=1`)).body.data as Doc[];
    const patched = await t.call('PATCH', `${kr?.basePath}/${readers[0]?.id}`, {
      body: { query: `kr("${read}") * 3` },
    });
    expect(patched.status, patched.raw).toBe(200);
    // One deleted: a place again, which a new one takes; then the deleted one's restore is refused.
    expect((await t.call('DELETE', `${kr?.basePath}/${readers[0]?.id}`)).status).toBe(200);
    expect((await post(kr?.basePath as string, query('in its place', read))).status).toBe(201);
    refused(await t.call('POST', `${kr?.basePath}/${readers[0]?.id}/restore`), '/query', tooMany(read));
    expect((await t.call('GET', `${kr?.basePath}/${readers[0]?.id}`)).body.is_deleted).toBe(true);
  });

  it(`counts the queries a change recomputes through chains of queries, up to ${MAX_QUERY_DOWNSTREAM}`, async () => {
    const root = await manual('Root');
    const last = await chain(root, MAX_QUERY_DOWNSTREAM, 'link');
    // One more link would be the 51st query a check-in of the root recomputes, one by one.
    refused(await post(kr?.basePath as string, query('one link too many', last)), '/query', tooMany(root));
    const turned = await manual('Turned');
    const patch = await t.call('PATCH', `${kr?.basePath}/${turned}`, {
      body: { data_source: 'query', query: `kr("${last}") + 1` },
    });
    refused(patch, '/query', tooMany(root));
    // A query at the head of a chain of its own brings its chain with it.
    const other = await manual('Other root');
    const head = (await post(kr?.basePath as string, query('head', other))).body.id as string;
    await chain(head, 2, 'tail');
    const shortRoot = await manual('Short root');
    const short = await chain(shortRoot, MAX_QUERY_DOWNSTREAM - 3, 'short');
    const joined = await t.call('PATCH', `${kr?.basePath}/${head}`, { body: { query: `kr("${short}") + 1` } });
    expect(joined.status, joined.raw).toBe(200);
    const sum = await t.call('PATCH', `${kr?.basePath}/${turned}`, {
      body: { data_source: 'query', query: `kr("${head}") + 1` },
    });
    refused(sum, '/query', tooMany(shortRoot));
    // The chain is unchanged: a check-in of the root still reaches its last link.
    const checkIn = await t.call('POST', `${kr?.basePath}/${root}/check-ins`, { body: { value: 3 } });
    expect(checkIn.status, checkIn.raw).toBe(201);
    const end = (await t.call('GET', `${kr?.basePath}/${last}`)).body;
    expect(end.current).toBe(3 + MAX_QUERY_DOWNSTREAM);
  });

  it(`refuses a query that would read more than ${MAX_QUERY_UPSTREAM} key results through others`, async () => {
    const read: string[] = [];
    for (let i = 0; i < MAX_QUERY_UPSTREAM; i++) read.push(await manual(`summed ${i}`));
    const sum = await post(kr?.basePath as string, {
      objective_id: objectiveId,
      title: 'sum',
      target: 10,
      data_source: 'query',
      query: `sum(${read.map((id) => `kr("${id}")`).join(', ')})`,
    });
    expect(sum.status, sum.raw).toBe(201);
    const message = `the query would read more than ${MAX_QUERY_UPSTREAM} key results, directly or through other queries, the most one may`;
    const before = await countRows(t, kr as never);
    refused(await post(kr?.basePath as string, query('over the sum', sum.body.id as string)), '/query', message);
    expect(await countRows(t, kr as never)).toBe(before);
    const turned = await manual('turned');
    refused(
      await t.call('PATCH', `${kr?.basePath}/${turned}`, {
        body: { data_source: 'query', query: `kr("${sum.body.id}") + 1` },
      }),
      '/query',
      message,
    );
    // Reading one of the summed ones is within it.
    expect((await post(kr?.basePath as string, query('over one', read[0] as string))).status).toBe(201);
    // Counted when a write adds reads: a query over one that grew past the bound since keeps
    // its edits over the same reads, and is refused a new one.
    const grows = await manual('grows');
    const over = (await post(kr?.basePath as string, query('over what grows', grows))).body.id as string;
    const grown = await t.call('PATCH', `${kr?.basePath}/${grows}`, {
      body: { data_source: 'query', query: `sum(${read.map((id) => `kr("${id}")`).join(', ')})` },
    });
    expect(grown.status, grown.raw).toBe(200);
    const same = await t.call('PATCH', `${kr?.basePath}/${over}`, { body: { query: `kr("${grows}") * 2` } });
    expect(same.status, same.raw).toBe(200);
    refused(
      await t.call('PATCH', `${kr?.basePath}/${over}`, { body: { query: `kr("${grows}") + kr("${read[0]}")` } }),
      '/query',
      message,
    );
  });

  it(`counts the queries a connector's sync recomputes through all it feeds, up to ${MAX_QUERY_DOWNSTREAM}`, async () => {
    const hook = (await post('/api/v1/okr/connectors', { name: 'Fan', kind: 'webhook' })).body;
    const fed = async (title: string) => {
      const res = await post(kr?.basePath as string, {
        objective_id: objectiveId,
        title,
        target: 10,
        data_source: 'connector',
        connector_id: hook.id,
      });
      expect(res.status, res.raw).toBe(201);
      return res.body.id as string;
    };
    const [a, b, c] = [await fed('a'), await fed('b'), await fed('c')];
    await chain(a, MAX_QUERY_DOWNSTREAM - 20, 'after a');
    await chain(b, 20, 'after b');
    const message = `a sync of ${hook.id} would recompute more than ${MAX_QUERY_DOWNSTREAM} queries, directly or through others, the most one change may`;
    // Within each key result's own bound, past the connector's: one more query under any of them.
    refused(await post(kr?.basePath as string, query('over c', c)), '/query', message);
    // A key result with a query downstream of it, attached to the connector, likewise.
    const other = await manual('read elsewhere');
    expect((await post(kr?.basePath as string, query('reads other', other))).status).toBe(201);
    refused(
      await t.call('PATCH', `${kr?.basePath}/${other}`, { body: { data_source: 'connector', connector_id: hook.id } }),
      '/connector_id',
      message,
    );
    // One that no query reads is taken: it adds a write, no query.
    await fed('d');
    // A push records the value on all four and recomputes the 50.
    const push = await t.app.inject({ method: 'POST', url: hook.webhook_url as string, payload: { value: 7 } });
    expect(push.statusCode, push.body).toBe(200);
  });

  it(`of writes at once that would each attach the ${MAX_CONNECTOR_FEEDS}th key result to a connector, one is taken`, async () => {
    const hook = (await post('/api/v1/okr/connectors', { name: 'Race', kind: 'webhook' })).body;
    const fed = (objective_id: string, title: string) => ({
      objective_id,
      title,
      target: 10,
      data_source: 'connector',
      connector_id: hook.id,
    });
    for (let i = 0; i < MAX_CONNECTOR_FEEDS - 1; i++) {
      expect((await post(kr?.basePath as string, fed(objectiveId, `fed ${i}`))).status).toBe(201);
    }
    // Under objectives of their own: no objective's lock queues them.
    const owners: string[] = [];
    for (let i = 0; i < 8; i++)
      owners.push((await post(objectives?.basePath as string, { title: `owner ${i}` })).body.id as string);
    const answers = await Promise.all(
      owners.map((owner, i) => post(kr?.basePath as string, fed(owner, `racing ${i}`))),
    );
    expect(answers.map((res) => res.status).sort()).toEqual([201, ...Array(7).fill(422)]);
    const live = await t.call('GET', `${kr?.basePath}?connector_id=${hook.id}&limit=200`);
    expect((live.body.data as Doc[]).length).toBe(MAX_CONNECTOR_FEEDS);
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
    // Deleted, its place taken meanwhile: its restore is refused, and it stays deleted.
    expect((await t.call('DELETE', `${kr?.basePath}/${one?.id}`)).status).toBe(200);
    expect((await post(kr?.basePath as string, fed('in its place'))).status).toBe(201);
    refused(await t.call('POST', `${kr?.basePath}/${one?.id}/restore`), '/connector_id', message);
    expect((await t.call('GET', `${kr?.basePath}/${one?.id}`)).body.is_deleted).toBe(true);
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
    // An objective moves with the ones aligned under it: their levels count.
    const top = (await post(objectives?.basePath as string, { title: 'top' })).body.id as string;
    await post(objectives?.basePath as string, { title: 'under top', parent_objective_id: top });
    refused(
      await t.call('PATCH', `${objectives?.basePath}/${top}`, { body: { parent_objective_id: chain.at(-2) } }),
      '/parent_objective_id',
      `under ${chain.at(-2)}, the objectives aligned under ${top} would be more than ${MAX_ALIGNMENT_DEPTH} levels deep: an alignment is at most ${MAX_ALIGNMENT_DEPTH} levels`,
    );
    const moved = await t.call('PATCH', `${objectives?.basePath}/${top}`, {
      body: { parent_objective_id: chain.at(-3) },
    });
    expect(moved.status, moved.raw).toBe(200);
    // One deleted while the tree above it grew: its restore would put it past the bound.
    const head = (await post(objectives?.basePath as string, { title: 'head' })).body.id as string;
    const leaf = (await post(objectives?.basePath as string, { title: 'leaf', parent_objective_id: head })).body;
    expect((await t.call('DELETE', `${objectives?.basePath}/${leaf.id}`)).status).toBe(200);
    const grown = await t.call('PATCH', `${objectives?.basePath}/${head}`, { body: { parent_objective_id: deepest } });
    expect(grown.status, grown.raw).toBe(422);
    expect(
      (await t.call('PATCH', `${objectives?.basePath}/${head}`, { body: { parent_objective_id: chain.at(-2) } }))
        .status,
    ).toBe(200);
    refused(
      await t.call('POST', `${objectives?.basePath}/${leaf.id}/restore`),
      '/parent_objective_id',
      `${head} is ${MAX_ALIGNMENT_DEPTH} levels deep already: an alignment is at most ${MAX_ALIGNMENT_DEPTH} levels`,
    );
    expect((await t.call('GET', `${objectives?.basePath}/${leaf.id}`)).body.is_deleted).toBe(true);
  });
});
