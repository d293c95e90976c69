import { describe, expect, it } from 'vitest';
import { buildRequest, emptyForm, exampleBodyText, requestUrl } from './request';
import { keyResult, opNamed } from './test-fixture';

describe('console requests', () => {
  it('prefills the id with the last key result the session saw, and says when it is missing', () => {
    const get = opNamed('get');
    const filled = buildRequest(get, keyResult, emptyForm(), { kr: 'kr_01J0000000000000000000000A' });
    expect(filled.path).toBe('/api/v1/okr/key-results/kr_01J0000000000000000000000A');
    expect(filled.missing).toEqual([]);
    const empty = buildRequest(get, keyResult, emptyForm(), {});
    expect(empty.path).toBe('/api/v1/okr/key-results/{id}');
    expect(empty.missing).toEqual(['id']);
    const typed = buildRequest(get, keyResult, { ...emptyForm(), params: { id: ' kr_typed ' } }, { kr: 'kr_other' });
    expect(typed.path).toBe('/api/v1/okr/key-results/kr_typed');
  });

  it('points the example body at the objective created earlier', () => {
    const create = opNamed('create');
    const text = exampleBodyText(create, keyResult, { obj: 'obj_01J00000000000000000000001' });
    expect(JSON.parse(text)).toEqual({
      objective_id: 'obj_01J00000000000000000000001',
      title: 'Grow MRR to 120k',
      target: 120000,
    });
    expect(JSON.parse(exampleBodyText(create, keyResult, {})).objective_id).toBe('obj_01ARZ3NDEKTSV4RRFFQ69G5FAV');
    expect(exampleBodyText(opNamed('get'), keyResult, {})).toBe('');
  });

  it('sends what the editor holds, and explains a body that is not JSON', () => {
    const create = opNamed('create');
    const edited = buildRequest(create, keyResult, { ...emptyForm(), body: '{"title": 5}' }, {});
    expect(edited.body).toEqual({ title: 5 });
    expect(edited.bodyError).toBeNull();
    const broken = buildRequest(create, keyResult, { ...emptyForm(), body: '{"title": ' }, {});
    expect(broken.bodyError).toMatch(/not valid JSON/);
    expect(buildRequest(create, keyResult, { ...emptyForm(), body: '  ' }, {}).bodyError).toMatch(/empty/);
  });

  it('types query values and leaves out empty ones', () => {
    const list = opNamed('list');
    const built = buildRequest(
      list,
      keyResult,
      { ...emptyForm(), query: { limit: '10', status: 'on_track', 'progress_pct[gte]': '', q: 'ignored' } },
      {},
    );
    expect(built.query).toEqual({ limit: 10, status: 'on_track' });
    expect(requestUrl(built)).toBe('/api/v1/okr/key-results?limit=10&status=on_track');
    const del = buildRequest(
      opNamed('delete'),
      keyResult,
      { ...emptyForm(), query: { cascade: 'true' } },
      { kr: 'kr_1' },
    );
    expect(del.query).toEqual({ cascade: true });
    const ranged = buildRequest(list, keyResult, { ...emptyForm(), query: { 'progress_pct[gte]': '50' } }, {});
    expect(requestUrl(ranged)).toBe('/api/v1/okr/key-results?progress_pct%5Bgte%5D=50');
  });
});
