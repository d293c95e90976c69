import { describe, expect, it } from 'vitest';
import type { ManifestOperation } from './manifest';
import { buildRequest, emptyForm } from './request';
import { curlSnippet, jsLiteral, sdkSnippet, shellQuote } from './snippets';
import { keyResult, opNamed, syncOp, webhookOp } from './test-fixture';

const BASE = 'http://127.0.0.1:8080';

describe('code snippets', () => {
  it('writes JavaScript literals in the house style, wrapping long ones', () => {
    expect(jsLiteral({ title: "It's", n: 1, ok: true, none: null, 'a-b': [1, 2] })).toBe(
      "{ title: 'It\\'s', n: 1, ok: true, none: null, 'a-b': [1, 2] }",
    );
    const long = jsLiteral({ objective_id: 'obj_01ARZ3NDEKTSV4RRFFQ69G5FAV', title: 'Grow monthly recurring revenue' });
    expect(long).toBe(
      "{\n  objective_id: 'obj_01ARZ3NDEKTSV4RRFFQ69G5FAV',\n  title: 'Grow monthly recurring revenue',\n}",
    );
  });

  it('quotes shell words only when needed', () => {
    expect(shellQuote('http://127.0.0.1:8080/api/v1/okr/key-results')).toBe(
      'http://127.0.0.1:8080/api/v1/okr/key-results',
    );
    expect(shellQuote('{"note":"it\'s"}')).toBe(`'{"note":"it'\\''s"}'`);
    expect(shellQuote('a?b=1&c=2')).toBe("'a?b=1&c=2'");
  });

  it('shows a create as SDK code and as curl, following the edited body', () => {
    const create = opNamed('create');
    const form = { ...emptyForm(), body: '{"objective_id":"obj_1","title":"Ship it","target":3}' };
    const built = buildRequest(create, keyResult, form, {});
    const sdk = sdkSnippet(create, keyResult, built, BASE);
    expect(sdk).toContain("import { createClient } from 'edm/client';");
    expect(sdk).toContain("createClient({\n  baseUrl: 'http://127.0.0.1:8080',\n  token: process.env.EDM_TOKEN,\n});");
    expect(sdk).toContain(
      "const keyResult = await client.okr.keyResults.create({\n  objective_id: 'obj_1',\n  title: 'Ship it',\n  target: 3,\n});",
    );
    const curl = curlSnippet(create, built, BASE);
    expect(curl).toBe(
      [
        'curl -X POST http://127.0.0.1:8080/api/v1/okr/key-results',
        '  -H "Authorization: Bearer $EDM_TOKEN"',
        "  -H 'Content-Type: application/json'",
        `  -d '{"objective_id":"obj_1","title":"Ship it","target":3}'`,
      ].join(' \\\n'),
    );
    const changed = buildRequest(create, keyResult, { ...form, body: '{"title":"Other"}' }, {});
    expect(sdkSnippet(create, keyResult, changed, BASE)).toContain(
      "const keyResult = await client.okr.keyResults.create({ title: 'Other' });",
    );
    expect(curlSnippet(create, changed, BASE)).toContain(`-d '{"title":"Other"}'`);
    // While the editor's text is not JSON, both snippets say so rather than show another body as it.
    const broken = buildRequest(create, keyResult, { ...form, body: '{"title":' }, {});
    expect(sdkSnippet(create, keyResult, broken, BASE)).toContain('/* the body cannot be sent yet: see the console */');
    expect(curlSnippet(create, broken, BASE).split('\n')[0]).toBe(
      '# The body cannot be sent yet (see the console): {} stands in for it.',
    );
    expect(curlSnippet(create, built, BASE)).not.toContain('#');
  });

  it('writes members and text an SDK call sends as they are: __proto__ as a member, a lone surrogate escaped', () => {
    const create = opNamed('create');
    const body = '{"__proto__":{"title":"x"},"title":"half \\ud83d, tab\\t, esc\\u001b, ok \\ud83d\\ude00"}';
    const built = buildRequest(create, keyResult, { ...emptyForm(), body }, {});
    const sdk = sdkSnippet(create, keyResult, built, BASE);
    const literal = /create\(([\s\S]*)\);/.exec(sdk)?.[1] as string;
    // Run as the snippet shows it: the object it makes is the body the console sends.
    const made = new Function(`return (${literal});`)();
    expect(JSON.stringify(made)).toBe(JSON.stringify(JSON.parse(body)));
    expect(literal).toContain("['__proto__']: { title: 'x' }");
    expect(literal).toContain("'half \\ud83d, tab\\t, esc\\u001b, ok 😀'");
    // Saved as UTF-8 and read back, the snippet still makes it (a raw lone surrogate would not survive).
    const saved = new TextDecoder().decode(new TextEncoder().encode(literal));
    expect(JSON.stringify(new Function(`return (${saved});`)())).toBe(JSON.stringify(JSON.parse(body)));
  });

  // Written raw, a right-to-left override reordered the rest of the line as shown, and a zero-width
  // space or a C1 control hid in it: the snippet read otherwise than what it sends.
  it('writes text without a visible form as escapes, in the SDK snippet and in curl, and still sends it', () => {
    const create = opNamed('create');
    const hidden = ['\u0085', '\u200b', '\u202e', '\u00ad', '\ufeff', '\u007f', '\u2028', '\u2066'];
    const title = `a${hidden.join('b')}c`;
    const built = buildRequest(create, keyResult, { ...emptyForm(), body: JSON.stringify({ title }) }, {});
    const sdk = sdkSnippet(create, keyResult, built, BASE);
    const curl = curlSnippet(create, built, BASE);
    for (const c of hidden) {
      expect(sdk).not.toContain(c);
      expect(curl).not.toContain(c);
      const written = `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
      expect(sdk).toContain(written);
      expect(curl).toContain(written);
    }
    // Run or read as shown, each makes the body the console sends.
    const literal = /create\(([\s\S]*)\);/.exec(sdk)?.[1] as string;
    expect(new Function(`return (${literal});`)()).toEqual({ title });
    const data = /-d '([^']*)'/.exec(curl)?.[1] as string;
    expect(JSON.parse(data)).toEqual({ title });
  });

  it('says which header a snippet leaves out while the console refuses it as typed', () => {
    const del = opNamed('delete');
    const headers = { 'If-Match': 'W/"1"', 'Idempotency-Key': 'two words' };
    const built = buildRequest(del, keyResult, { ...emptyForm(), headers }, { kr: 'kr_1' });
    const notes = [
      'If-Match is not valid yet (see the console): left out.',
      'Idempotency-Key is not valid yet (see the console): left out.',
    ];
    expect(curlSnippet(del, built, BASE).split('\n').slice(0, 2)).toEqual(notes.map((n) => `# ${n}`));
    expect(sdkSnippet(del, keyResult, built, BASE)).toContain(notes.map((n) => `// ${n}`).join('\n'));
    const valid = buildRequest(del, keyResult, { ...emptyForm(), headers: { 'If-Match': '1' } }, { kr: 'kr_1' });
    // A signed operation's fetch program says so too.
    const signed = buildRequest(
      webhookOp,
      keyResult,
      { ...emptyForm(), query: { tenant_id: 'acme', signature: 'abc' }, headers: { 'Idempotency-Key': 'has space' } },
      { kr: 'kr_9' },
    );
    expect(sdkSnippet(webhookOp, keyResult, signed, BASE).split('\n')[0]).toBe(
      '// Idempotency-Key is not valid yet (see the console): left out.',
    );
    expect(curlSnippet(del, valid, BASE)).not.toContain('#');
    expect(sdkSnippet(del, keyResult, valid, BASE)).not.toContain('left out');
  });

  it('shows a signed operation as a plain POST to its URL: no SDK method, no token', () => {
    const form = { ...emptyForm(), query: { tenant_id: 'acme', signature: 'abc' } };
    const built = buildRequest(webhookOp, keyResult, form, { kr: 'kr_9' });
    const sdk = sdkSnippet(webhookOp, keyResult, built, BASE);
    expect(sdk).not.toContain('client.');
    expect(sdk).not.toContain('createClient');
    expect(sdk).toContain(
      "await fetch('http://127.0.0.1:8080/api/v1/okr/key-results/kr_9/webhook?tenant_id=acme&signature=abc', {",
    );
    expect(sdk).toContain("  headers: { 'content-type': 'application/json' },");
    expect(sdk).toContain('  body: JSON.stringify({ value: 5 }),');
    const curl = curlSnippet(webhookOp, built, BASE);
    expect(curl).not.toContain('Authorization');
    expect(curl).toContain(`-d '{"value":5}'`);
    // An Idempotency-Key typed in is sent by both.
    const keyed = buildRequest(
      webhookOp,
      keyResult,
      { ...form, headers: { 'Idempotency-Key': 'push-1' } },
      { kr: 'kr_9' },
    );
    expect(sdkSnippet(webhookOp, keyResult, keyed, BASE)).toContain(
      "  headers: {\n    'content-type': 'application/json',\n    'idempotency-key': 'push-1',\n  },",
    );
    expect(curlSnippet(webhookOp, keyed, BASE)).toContain("-H 'Idempotency-Key: push-1'");
    // So is an If-Match (the push is a write to the row): the fetch program sends what curl shows.
    const versioned = buildRequest(webhookOp, keyResult, { ...form, headers: { 'If-Match': '"2"' } }, { kr: 'kr_9' });
    expect(sdkSnippet(webhookOp, keyResult, versioned, BASE)).toContain(
      `  headers: { 'content-type': 'application/json', 'if-match': '"2"' },`,
    );
    expect(curlSnippet(webhookOp, versioned, BASE)).toContain(`-H 'If-Match: "2"'`);
    expect(sdkSnippet(webhookOp, keyResult, built, BASE)).not.toContain('if-match');
  });

  it('keeps the body slot of a custom write without a body, so its options stay options', () => {
    const form = { ...emptyForm(), headers: { 'If-Match': '1', 'Idempotency-Key': 'k' } };
    const built = buildRequest(syncOp, keyResult, form, { kr: 'kr_9' });
    expect(sdkSnippet(syncOp, keyResult, built, BASE)).toContain(
      "const keyResult = await client.okr.keyResults.sync(\n  'kr_9',\n  undefined,\n  { ifVersion: 1, idempotencyKey: 'k' },\n);",
    );
    const curl = curlSnippet(syncOp, built, BASE);
    expect(curl).toContain(`-H 'If-Match: "1"'`);
    expect(curl).toContain("-H 'Idempotency-Key: k'");
    expect(curl).not.toContain('-d ');
    const plain = buildRequest(syncOp, keyResult, emptyForm(), { kr: 'kr_9' });
    expect(sdkSnippet(syncOp, keyResult, plain, BASE)).toContain("await client.okr.keyResults.sync('kr_9');");
  });

  it('passes a filter of several values as a list: any of them', () => {
    const list = opNamed('list');
    const built = buildRequest(list, keyResult, { ...emptyForm(), query: { status: 'on_track,at_risk' } }, {});
    expect(sdkSnippet(list, keyResult, built, BASE)).toContain(
      "const page = await client.okr.keyResults.list({\n  status: ['on_track', 'at_risk'],\n});",
    );
    expect(curlSnippet(list, built, BASE)).toContain(
      "curl 'http://127.0.0.1:8080/api/v1/okr/key-results?status=on_track%2Cat_risk'",
    );
  });

  it('passes ids first, then the body, then query options', () => {
    const checkIn = opNamed('checkIns.create');
    const built = buildRequest(checkIn, keyResult, emptyForm(), { kr: 'kr_9' });
    expect(sdkSnippet(checkIn, keyResult, built, BASE)).toContain(
      "await client.okr.keyResults.checkIns.create(\n  'kr_9',\n  { value: 95000, note: 'Two deals closed' },\n);",
    );
    expect(curlSnippet(checkIn, built, BASE)).toContain(
      'curl -X POST http://127.0.0.1:8080/api/v1/okr/key-results/kr_9/check-ins',
    );
    const del = opNamed('delete');
    const d = buildRequest(del, keyResult, { ...emptyForm(), query: { cascade: 'true' } }, { kr: 'kr_9' });
    expect(sdkSnippet(del, keyResult, d, BASE)).toContain("client.okr.keyResults.delete('kr_9', { cascade: true });");
    expect(curlSnippet(del, d, BASE)).toContain(
      "curl -X DELETE 'http://127.0.0.1:8080/api/v1/okr/key-results/kr_9?cascade=true'",
    );
  });

  it('shows If-Match and an Idempotency-Key as the SDK options and curl headers they are', () => {
    const del = opNamed('delete');
    const form = { ...emptyForm(), query: { cascade: 'true' }, headers: { 'If-Match': '3', 'Idempotency-Key': 'k-1' } };
    const built = buildRequest(del, keyResult, form, { kr: 'kr_9' });
    expect(sdkSnippet(del, keyResult, built, BASE)).toContain(
      "client.okr.keyResults.delete(\n  'kr_9',\n  { cascade: true, ifVersion: 3, idempotencyKey: 'k-1' },\n);",
    );
    expect(curlSnippet(del, built, BASE)).toBe(
      [
        "curl -X DELETE 'http://127.0.0.1:8080/api/v1/okr/key-results/kr_9?cascade=true'",
        '-H "Authorization: Bearer $EDM_TOKEN"',
        `-H 'If-Match: "3"'`,
        "-H 'Idempotency-Key: k-1'",
      ].join(' \\\n  '),
    );
  });

  it('names a list call a page, and a missing id by its parameter', () => {
    const list = opNamed('list');
    const built = buildRequest(list, keyResult, { ...emptyForm(), query: { limit: '5' } }, {});
    const sdk = sdkSnippet(list, keyResult, built, BASE);
    expect(sdk).toContain('const page = await client.okr.keyResults.list({ limit: 5 });');
    expect(sdk).toContain('console.log(page.data);');
    expect(curlSnippet(list, built, BASE)).toBe(
      'curl \'http://127.0.0.1:8080/api/v1/okr/key-results?limit=5\' \\\n  -H "Authorization: Bearer $EDM_TOKEN"',
    );
    const get = buildRequest(opNamed('get'), keyResult, emptyForm(), {});
    expect(sdkSnippet(opNamed('get'), keyResult, get, BASE)).toContain('client.okr.keyResults.get(id);');
  });

  it('ends every SDK program by printing what its call answered: the document, or a page of rows', () => {
    const known = { kr: 'kr_9' };
    const last = (op: ManifestOperation) =>
      sdkSnippet(op, keyResult, buildRequest(op, keyResult, emptyForm(), known), BASE)
        .split('\n')
        .slice(-2);
    expect(last(opNamed('get'))).toEqual([
      "const keyResult = await client.okr.keyResults.get('kr_9');",
      'console.log(keyResult);',
    ]);
    expect(last(opNamed('delete'))).toEqual([
      "const keyResult = await client.okr.keyResults.delete('kr_9');",
      'console.log(keyResult);',
    ]);
    expect(last(syncOp)).toEqual([
      "const keyResult = await client.okr.keyResults.sync('kr_9');",
      'console.log(keyResult);',
    ]);
    for (const op of [opNamed('create'), opNamed('checkIns.create')]) {
      expect(last(op)[1]).toBe('console.log(keyResult);');
    }
    expect(last(opNamed('list'))).toEqual([
      'const page = await client.okr.keyResults.list();',
      'console.log(page.data);',
    ]);
  });
});
