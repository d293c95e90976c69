import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Doc, Resource } from '../src/core/resource.js';
import { byName, resources, storedRow, storeKinds, type TestApp, testApp } from './helpers.js';

describe.each(storeKinds)('tenancy on %s', (kind) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await testApp(kind);
  });
  afterAll(() => t.close());

  describe.each(resources.map((r) => [r.name, r] as const))('%s', (_n, resource: Resource) => {
    const title = resource.titleField;

    it("gives another tenant 404 on every operation on tenant A's ids, and changes nothing", async () => {
      const a = await t.token({ tenant: 'tenant-a' });
      const b = await t.token({ tenant: 'tenant-b' });
      const doc = await t.create(resource, a);
      const deleted = await t.create(resource, a);
      await t.call('DELETE', `${resource.basePath}/${deleted.id}`, { token: a });
      for (const target of [doc, deleted]) {
        const before = await storedRow(t, resource, target.id as string);
        const url = `${resource.basePath}/${target.id}`;
        for (const [method, suffix, body] of [
          ['GET', '', undefined],
          ['PATCH', '', { [title]: 'hijacked' }],
          ['DELETE', '', undefined],
          ['DELETE', '?cascade=true', undefined],
          ['POST', '/restore', undefined],
          ...(resource.operations ?? []).map((op) => [op.method, op.path.replace('/{id}', ''), op.example] as const),
        ] as const) {
          const res = await t.call(method, `${url}${suffix}`, { token: b, body });
          // A signed operation takes no token: without its URL's signature it is 401 to anyone.
          const signed = resource.operations?.some(
            (op) => op.auth === 'signed' && suffix === op.path.replace('/{id}', ''),
          );
          expect([method, suffix, res.status, res.body.code]).toEqual(
            signed ? [method, suffix, 401, 'invalid_token'] : [method, suffix, 404, 'not_found'],
          );
        }
        expect(await storedRow(t, resource, target.id as string)).toEqual(before);
      }
      const listed = (await t.call('GET', `${resource.basePath}?include_deleted=true&limit=200`, { token: b })).body
        .data as Doc[];
      expect(listed.map((d) => d.tenant_id).filter((x) => x !== 'tenant-b')).toEqual([]);
    });

    it('scopes an application token to its own rows: it cannot see or touch human or other apps’ rows', async () => {
      const human = await t.token({ tenant: 'apps' });
      const app1 = await t.token({ tenant: 'apps', app: 'app_one', sub: 'app_one' });
      const app2 = await t.token({ tenant: 'apps', app: 'app_two', sub: 'app_two' });
      const humans = await t.create(resource, human);
      const mine = await t.create(resource, app1);
      const theirs = await t.create(resource, app2);
      expect(mine.app_id).toBe('app_one');
      expect(mine.created_by).toBe('app_one');
      expect(humans.app_id).toBeNull();
      for (const other of [humans, theirs]) {
        const url = `${resource.basePath}/${other.id}`;
        expect((await t.call('GET', url, { token: app1 })).status).toBe(404);
        expect((await t.call('PATCH', url, { token: app1, body: { [title]: 'x' } })).status).toBe(404);
        expect((await t.call('DELETE', url, { token: app1 })).status).toBe(404);
      }
      const seen = ((await t.call('GET', `${resource.basePath}?limit=200`, { token: app1 })).body.data as Doc[]).map(
        (d) => d.id,
      );
      expect(seen).toContain(mine.id);
      expect(seen).not.toContain(humans.id);
      expect(seen).not.toContain(theirs.id);
      // a human session sees the whole tenant
      const all = ((await t.call('GET', `${resource.basePath}?limit=200`, { token: human })).body.data as Doc[]).map(
        (d) => d.id,
      );
      expect(all).toEqual(expect.arrayContaining([humans.id, mine.id, theirs.id]));
    });
  });

  it('lets an application cascade only over rows it could delete itself (409, nothing deleted)', async () => {
    const [objectives, keyResults] = [byName('Objective'), byName('KeyResult')];
    const human = await t.token({ tenant: 'cascade' });
    const app = await t.token({ tenant: 'cascade', app: 'app_c', sub: 'app_c' });
    const objective = await t.create(objectives, app);
    const own = await t.create(keyResults, app, { objective_id: objective.id, title: 'mine', target: 1 });
    const peoples = await t.create(keyResults, human, { objective_id: objective.id, title: 'theirs', target: 1 });
    const before = [
      await storedRow(t, keyResults, own.id as string),
      await storedRow(t, keyResults, peoples.id as string),
    ];
    const url = `${objectives.basePath}/${objective.id}?cascade=true`;
    const res = await t.call('DELETE', url, { token: app });
    expect([res.status, res.body.code, res.body.dependents]).toEqual([409, 'has_dependents', { 'key-results': 1 }]);
    expect([
      await storedRow(t, keyResults, own.id as string),
      await storedRow(t, keyResults, peoples.id as string),
    ]).toEqual(before);
    expect((await t.call('GET', `${objectives.basePath}/${objective.id}`, { token: app })).body.is_deleted).toBe(false);
    // A cycle's cascade names the objective that holds the person's key result, not every one.
    const cycle = await t.create(byName('Cycle'), app);
    const held = await t.create(objectives, app, { cycle_id: cycle.id });
    const free = await t.create(objectives, app, { cycle_id: cycle.id });
    await t.create(keyResults, app, { objective_id: free.id, title: 'mine too', target: 1 });
    await t.create(keyResults, human, { objective_id: held.id, title: 'theirs too', target: 1 });
    const refused = await t.call('DELETE', `${byName('Cycle').basePath}/${cycle.id}?cascade=true`, { token: app });
    expect([refused.status, refused.body.dependents]).toEqual([409, { 'key-results': 1 }]);
    expect(refused.body.detail).toContain(`Objective ${held.id} has live KeyResult (1)`);
    expect(refused.body.detail).not.toContain(free.id as string);
    // Once the person's key result is gone, the application's cascade goes through.
    await t.call('DELETE', `${keyResults.basePath}/${peoples.id}`, { token: human });
    expect((await t.call('DELETE', url, { token: app })).status).toBe(200);
    expect((await t.call('GET', `${keyResults.basePath}/${own.id}`, { token: app })).body.is_deleted).toBe(true);
  });

  it("says when rows keeping an application's delete from going through are outside its scope, and who can move them", async () => {
    const [objectives, keyResults] = [byName('Objective'), byName('KeyResult')];
    const human = await t.token({ tenant: 'held' });
    const app = await t.token({ tenant: 'held', app: 'app_h', sub: 'app_h' });
    // A person's objective aligned to the application's: the application cannot see it.
    const goal = await t.create(objectives, app);
    const aligned = await t.create(objectives, human, { parent_objective_id: goal.id });
    const held = await t.call('DELETE', `${objectives.basePath}/${goal.id}`, { token: app });
    expect([held.status, held.body.code, held.body.dependents]).toEqual([409, 'has_dependents', { objectives: 1 }]);
    expect(held.body.detail).toContain("1 of them outside this application's scope: a person's token");
    // A person's key result under it: no cascade of the application's takes it.
    await t.call('PATCH', `${objectives.basePath}/${aligned.id}`, {
      token: human,
      body: { parent_objective_id: null },
    });
    await t.create(keyResults, human, { objective_id: goal.id, title: 'theirs', target: 1 });
    const kept = await t.call('DELETE', `${objectives.basePath}/${goal.id}`, { token: app });
    expect([kept.status, kept.body.dependents]).toEqual([409, { 'key-results': 1 }]);
    expect(kept.body.detail).toContain("1 of them outside this application's scope, which its cascade does not delete");
    expect(kept.body.detail).not.toContain('pass cascade=true');
    // Its own rows: the advice it can follow.
    const mine = await t.create(objectives, app);
    await t.create(objectives, app, { parent_objective_id: mine.id });
    await t.create(keyResults, app, { objective_id: mine.id, title: 'mine', target: 1 });
    const own = await t.call('DELETE', `${objectives.basePath}/${mine.id}`, { token: app });
    expect(own.body.detail).toMatch(/; delete them first or pass cascade=true$/);
    const ownHeld = await t.call('DELETE', `${objectives.basePath}/${mine.id}?cascade=true`, { token: app });
    expect(ownHeld.body.detail).toMatch(/; point them elsewhere or delete them first$/);
  });

  it('lets an integration attach key results to objectives people created (tenant-wide references)', async () => {
    const human = await t.token({ tenant: 'refs' });
    const app = await t.token({ tenant: 'refs', app: 'app_sync', sub: 'app_sync' });
    const objective = await t.create(byName('Objective'), human);
    const res = await t.call('POST', byName('KeyResult').basePath, {
      token: app,
      body: { objective_id: objective.id, title: 'synced', target: 10, current: 5 },
    });
    expect(res.status).toBe(201);
    expect(res.body.app_id).toBe('app_sync');
    // the roll-up is tenant-wide: the human sees it on the objective
    const o = (await t.call('GET', `${byName('Objective').basePath}/${objective.id}`, { token: human })).body;
    expect([o.key_result_count, o.progress_pct]).toEqual([1, 50]);
  });
});
