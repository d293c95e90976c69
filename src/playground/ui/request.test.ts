import { describe, expect, it } from 'vitest';
import {
  buildRequest,
  emptyForm,
  exampleBodyText,
  type KnownIds,
  LIVE_IDS,
  rememberId,
  requestUrl,
  sdkOptions,
  toggleChoice,
} from './request';
import { curlSnippet, sdkArgs, sdkSnippet } from './snippets';
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
    expect([typed.paramError, typed.paramErrorAt]).toEqual([null, null]);
  });

  it('says in both snippets that a call whose id is missing is not sent, and keeps curl from globbing {id}', () => {
    for (const name of ['get', 'delete']) {
      const op = opNamed(name);
      const built = buildRequest(op, keyResult, emptyForm(), {});
      const curl = curlSnippet(op, built, 'http://h').split('\n');
      expect(curl[0]).toBe('# Not sent: fill in id first (see the console).');
      expect(curl[1]).toMatch(/^curl -g .*'http:\/\/h\/api\/v1\/okr\/key-results\/\{id\}'/);
      expect(sdkSnippet(op, keyResult, built, 'http://h')).toContain(
        '// Not sent: fill in id first (see the console).',
      );
    }
    const list = opNamed('list');
    expect(curlSnippet(list, buildRequest(list, keyResult, emptyForm(), {}), 'http://h')).toMatch(/^curl http:\/\/h\//);
  });

  // `…/key-results/.` is the list once a URL is resolved (curl sent GET of the list for a get).
  it.each(['.', '..'])('refuses an id of %j, saying why, and the snippets say it is not sent', (id) => {
    for (const name of ['get', 'delete']) {
      const op = opNamed(name);
      const built = buildRequest(op, keyResult, { ...emptyForm(), params: { id } }, {});
      const why = `id cannot be "${id}": a URL reads it as a step of its path`;
      expect([built.paramError, built.paramErrorAt]).toEqual([why, 'id']);
      expect(curlSnippet(op, built, 'http://h').split('\n')[0]).toBe(`# Not sent: ${why} (see the console).`);
      expect(sdkSnippet(op, keyResult, built, 'http://h')).toContain(`// Not sent: ${why} (see the console).`);
      // Run anyway, curl sends the path as it is, not the list it resolves to.
      const command = curlSnippet(op, built, 'http://h').split('\n')[1];
      expect(command.startsWith('curl --path-as-is ')).toBe(true);
      expect(command.split(' ')).toContain(`http://h/api/v1/okr/key-results/${id}`);
    }
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

  it('prefills a reference with the last live row, never one the session saw deleted; the id with either', () => {
    const create = opNamed('create');
    const ref = (known: KnownIds) => JSON.parse(exampleBodyText(create, keyResult, known)).objective_id;
    const [live, gone] = ['obj_01J00000000000000000000001', 'obj_01J00000000000000000000002'];
    let known = rememberId({}, 'obj', { id: live, is_deleted: false });
    known = rememberId(known, 'obj', { id: gone, is_deleted: false });
    known = rememberId(known, 'obj', { id: gone, is_deleted: true });
    // The deleted one is still the id to restore; a body names the live one seen before it.
    expect(known.obj).toBe(gone);
    expect(ref(known)).toBe(live);
    known = rememberId(known, 'obj', { id: gone, is_deleted: false }); // restored
    expect(ref(known)).toBe(gone);
    // Another row deleted than the one a body names leaves the reference alone.
    known = rememberId(known, 'obj', { id: live, is_deleted: true });
    expect(ref(known)).toBe(gone);
    // Every live row seen deleted: the example's placeholder again, never a deleted id.
    known = rememberId(known, 'obj', { id: gone, is_deleted: true });
    expect(ref(known)).toBe('obj_01ARZ3NDEKTSV4RRFFQ69G5FAV');
    expect(ref(rememberId({}, 'obj', { id: gone, is_deleted: true }))).toBe('obj_01ARZ3NDEKTSV4RRFFQ69G5FAV');
  });

  it('falls back to the top row of a list when an objective created after it is deleted', () => {
    const create = opNamed('create');
    const ref = (known: KnownIds) => JSON.parse(exampleBodyText(create, keyResult, known)).objective_id;
    const [a, a2, b] = [
      'obj_01J0000000000000000000000A',
      'obj_01J0000000000000000000000C',
      'obj_01J0000000000000000000000B',
    ];
    // A listed page is remembered bottom row first, so its top row (A) is the latest.
    let known = rememberId({}, 'obj', { id: a2, is_deleted: false });
    known = rememberId(known, 'obj', { id: a, is_deleted: false });
    known = rememberId(known, 'obj', { id: b, is_deleted: false }); // created
    expect(ref(known)).toBe(b);
    known = rememberId(known, 'obj', { id: b, is_deleted: true }); // deleted
    expect(ref(known)).toBe(a);
    expect(known.obj).toBe(b);
    // Another prefix is not touched.
    expect(ref(rememberId(known, 'kr', { id: 'kr_1', is_deleted: true }))).toBe(a);
  });

  it(`keeps the last ${LIVE_IDS} live ids of a prefix, most recent first, and reads a session stored before`, () => {
    const create = opNamed('create');
    const ref = (known: KnownIds) => JSON.parse(exampleBodyText(create, keyResult, known)).objective_id;
    const ids = Array.from({ length: LIVE_IDS + 2 }, (_, i) => `obj_${String(i).padStart(26, '0')}`);
    let known: KnownIds = {};
    for (const id of ids) known = rememberId(known, 'obj', { id });
    // Seeing one again moves it to the front rather than keeping it twice.
    known = rememberId(known, 'obj', { id: ids[ids.length - 2] as string });
    expect(known['ref:obj']).toEqual([ids[ids.length - 2], ids[ids.length - 1], ...ids.slice(2, -2).reverse()]);
    for (const id of [...ids].reverse().slice(0, LIVE_IDS - 1))
      known = rememberId(known, 'obj', { id, is_deleted: true });
    expect(ref(known)).toBe(ids[2]);
    // A session stored before kept one live id as text ('' once it was deleted).
    expect(ref({ obj: ids[1] as string, 'ref:obj': ids[0] as string })).toBe(ids[0]);
    expect(ref({ obj: ids[1] as string, 'ref:obj': '' })).toBe('obj_01ARZ3NDEKTSV4RRFFQ69G5FAV');
    const upgraded = rememberId({ obj: ids[1] as string, 'ref:obj': ids[0] as string }, 'obj', {
      id: ids[1] as string,
    });
    expect(upgraded['ref:obj']).toEqual([ids[1], ids[0]]);
  });

  it('sends what the editor holds, and explains a body that is not JSON', () => {
    const create = opNamed('create');
    const edited = buildRequest(create, keyResult, { ...emptyForm(), body: '{"title": 5}' }, {});
    expect(edited.body).toEqual({ title: 5 });
    expect(edited.bodyError).toBeNull();
    const broken = buildRequest(create, keyResult, { ...emptyForm(), body: '{"title": ' }, {});
    expect(broken.bodyError).toMatch(/not valid JSON/);
    expect(buildRequest(create, keyResult, { ...emptyForm(), body: '  ' }, {}).bodyError).toMatch(/empty/);
    // A number past a double's range would go as null (a merge patch's "clear"): refused here.
    for (const [text, at] of [
      ['{"weight": 1e999}', '/weight'],
      ['{"tags": [1, -1e400]}', '/tags/1'],
      ['{"a/b": {"c": 1e309}}', '/a~1b/c'],
    ]) {
      expect(buildRequest(create, keyResult, { ...emptyForm(), body: text }, {}).bodyError).toBe(
        `The number at ${at} is beyond what JSON can carry (±1.8e308)`,
      );
    }
  });

  it('types query values and leaves out empty ones', () => {
    const list = opNamed('list');
    const built = buildRequest(
      list,
      keyResult,
      { ...emptyForm(), query: { limit: '10', status: 'on_track', 'progress_pct[gte]': '', undeclared: 'ignored' } },
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

  it('reads a several-values filter as the API does: `\\,` is a comma inside a value, `\\\\` a backslash', () => {
    const list = opNamed('list');
    const typed = (tag: string) => buildRequest(list, keyResult, { ...emptyForm(), query: { tag } }, {});
    // One value holding a comma: a list of one, which the SDK (and the curl) writes escaped again.
    expect(typed('q\\,rX').query).toEqual({ tag: ['q,rX'] });
    expect(requestUrl(typed('q\\,rX'))).toBe(`/api/v1/okr/key-results?tag=${encodeURIComponent('q\\,rX')}`);
    expect(typed('s\\\\X,zz').query).toEqual({ tag: ['s\\X', 'zz'] });
    expect(requestUrl(typed('s\\\\X,zz'))).toBe(`/api/v1/okr/key-results?tag=${encodeURIComponent('s\\\\X,zz')}`);
    expect(typed('a, b').query).toEqual({ tag: ['a', 'b'] });
    expect(typed('plain').query).toEqual({ tag: 'plain' });
    // Only commas: no value, left out (as blank text is) by the console, the SDK call and curl alike.
    for (const commas of [',', ',,', ' , ']) {
      expect(typed(commas).query).toEqual({});
      expect(requestUrl(typed(commas))).toBe('/api/v1/okr/key-results');
    }
  });

  it('sends a number as a number only when JSON would write it so: 0x10 or +5 go as typed', () => {
    const list = opNamed('list');
    const at = (v: string) => buildRequest(list, keyResult, { ...emptyForm(), query: { 'progress_pct[gte]': v } }, {});
    expect(at('50').query).toEqual({ 'progress_pct[gte]': 50 });
    expect(at('1e2').query).toEqual({ 'progress_pct[gte]': 100 });
    for (const typed of ['0x10', '+5', '.5', '0b11', '07']) {
      expect(at(typed).query, typed).toEqual({ 'progress_pct[gte]': typed });
      expect(requestUrl(at(typed)), typed).toBe(
        `/api/v1/okr/key-results?progress_pct%5Bgte%5D=${encodeURIComponent(typed)}`,
      );
    }
  });

  it('sends a one-value parameter as typed: a search holds commas and backslashes as text', () => {
    const list = opNamed('list');
    const search = (q: string) => buildRequest(list, keyResult, { ...emptyForm(), query: { q } }, {});
    expect(search('Revenue, growth').query).toEqual({ q: 'Revenue, growth' });
    expect(requestUrl(search('Revenue, growth'))).toBe('/api/v1/okr/key-results?q=Revenue%2C%20growth');
    expect(search('C:\\path').query).toEqual({ q: 'C:\\path' });
    expect(requestUrl(search('C:\\path'))).toBe(`/api/v1/okr/key-results?q=${encodeURIComponent('C:\\path')}`);
    const sdk = sdkArgs(list, search('Revenue, growth'));
    expect(sdk).toEqual([{ value: { q: 'Revenue, growth' } }]);
  });

  it('reads If-Match as the version to expect and checks an Idempotency-Key, on the operations that take them', () => {
    const del = opNamed('delete');
    const form = (headers: Record<string, string>) => ({ ...emptyForm(), headers });
    for (const typed of ['3', '"3"', ' "3" ']) {
      const built = buildRequest(del, keyResult, form({ 'If-Match': typed }), { kr: 'kr_1' });
      expect([built.ifVersion, built.headerError], typed).toEqual([3, null]);
    }
    expect(buildRequest(del, keyResult, form({ 'If-Match': 'W/"3"' }), { kr: 'kr_1' }).headerError).toMatch(
      /If-Match takes the version/,
    );
    const keyed = buildRequest(del, keyResult, form({ 'Idempotency-Key': ' retry-17 ' }), { kr: 'kr_1' });
    expect([keyed.idempotencyKey, keyed.ifVersion, keyed.headerError]).toEqual(['retry-17', null, null]);
    const twoBad = buildRequest(del, keyResult, form({ 'If-Match': 'abc', 'Idempotency-Key': '' }), { kr: 'kr_1' });
    expect(twoBad.headerErrorAt).toBe('If-Match');
    expect(buildRequest(del, keyResult, form({ 'Idempotency-Key': 'two words' }), { kr: 'kr_1' }).headerErrorAt).toBe(
      'Idempotency-Key',
    );
    expect(buildRequest(del, keyResult, form({ 'Idempotency-Key': 'two words' }), { kr: 'kr_1' }).headerError).toMatch(
      /Idempotency-Key/,
    );
    // A create takes no If-Match: a value left in the field is not sent.
    const create = buildRequest(opNamed('create'), keyResult, form({ 'If-Match': '3', 'Idempotency-Key': 'k' }), {});
    expect([create.ifVersion, create.idempotencyKey, create.headerError]).toEqual([null, 'k', null]);
    expect(sdkOptions(create)).toEqual({ idempotencyKey: 'k' });
    const both = buildRequest(
      del,
      keyResult,
      { ...form({ 'If-Match': '"4"' }), query: { cascade: 'true' } },
      { kr: 'kr_1' },
    );
    expect(sdkOptions(both)).toEqual({ cascade: true, ifVersion: 4 });
    expect(sdkOptions(buildRequest(opNamed('get'), keyResult, form({ 'If-Match': '3' }), { kr: 'kr_1' }))).toBeNull();
  });

  it('keeps several values of a filter as one comma-separated list, in the order offered', () => {
    const choices = ['off_track', 'at_risk', 'on_track'];
    expect(toggleChoice('', 'at_risk', true, choices)).toBe('at_risk');
    expect(toggleChoice('at_risk', 'off_track', true, choices)).toBe('off_track,at_risk');
    expect(toggleChoice('off_track,at_risk', 'off_track', false, choices)).toBe('at_risk');
    expect(toggleChoice('at_risk', 'at_risk', false, choices)).toBe('');
    const list = opNamed('list');
    const built = buildRequest(list, keyResult, { ...emptyForm(), query: { status: 'on_track, at_risk,' } }, {});
    expect(built.query).toEqual({ status: ['on_track', 'at_risk'] });
    expect(requestUrl(built)).toBe('/api/v1/okr/key-results?status=on_track%2Cat_risk');
    const one = buildRequest(list, keyResult, { ...emptyForm(), query: { status: 'at_risk' } }, {});
    expect(one.query).toEqual({ status: 'at_risk' });
  });
});
