import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { seedDemo } from '../src/cli/seed.js';
import {
  csvColumns,
  EXPORT_FORMAT,
  exportCsv,
  exportJson,
  importRows,
  parseCsv,
  TransferError,
} from '../src/cli/transfer.js';
import type { Doc } from '../src/core/resource.js';
import { modules } from '../src/modules/index.js';
import { byName, freshStore, storeKinds, type TestApp, testApp, USER_A, USER_B } from './helpers.js';

const NOW = Date.parse('2026-11-20T09:00:00.000Z');

describe.each(storeKinds)('edm export and import (%s)', (kind) => {
  let t: TestApp;
  const opts = (tenant: string) => ({ store: t.store, modules, tenant, sub: USER_A, secretKey: t.config.secretKey });
  const list = async (tenant: string, path: string) => {
    const token = await t.token({ tenant });
    const res = await t.call('GET', `/api/v1/okr/${path}?limit=200&sort=created_at`, { token });
    expect(res.status).toBe(200);
    return res.body.data as Doc[];
  };
  const exported = async (tenant: string, o: { includeDeleted?: boolean } = {}) => {
    let text = '';
    const counts = await exportJson({ ...opts(tenant), ...o }, (chunk) => {
      text += chunk;
    });
    return { counts, doc: JSON.parse(text) as { format: string; tenant_id: string; resources: Record<string, Doc[]> } };
  };

  beforeEach(async () => {
    t = await testApp(kind);
    await seedDemo({ ...opts('source'), sub: USER_B, now: NOW });
  });
  afterEach(async () => {
    await t.close();
  });

  it('exports every row as the API shows it, and an import rebuilds the tenant elsewhere with its history', async () => {
    const { counts, doc } = await exported('source');
    expect(counts).toEqual({ Cycle: 1, Objective: 4, KeyResult: 9, Connector: 0 });
    expect(doc.format).toBe(EXPORT_FORMAT);
    expect(doc.tenant_id).toBe('source');
    expect(doc.resources.KeyResult.map((k) => k.id).sort()).toEqual(
      (await list('source', 'key-results')).map((k) => k.id).sort(),
    );

    expect(await importRows(opts('copy'), { json: doc })).toEqual({ Cycle: 1, Objective: 4, KeyResult: 9 });
    const [before, after] = [await list('source', 'key-results'), await list('copy', 'key-results')];
    const same = (k: Doc) => ({
      title: k.title,
      current: k.current,
      progress_pct: k.progress_pct,
      status: k.status,
      confidence: k.confidence,
      created_at: k.created_at,
      history: (k.history as Doc[]).map((h) => [h.at, h.value, h.note, h.confidence]),
    });
    expect(after.map(same)).toEqual(before.map(same));
    // New ids, and references rewritten to them: the copy's objectives are its own.
    const copyObjectives = await list('copy', 'objectives');
    expect(after.every((k) => !before.some((b) => b.id === k.id))).toBe(true);
    expect(after.every((k) => copyObjectives.some((o) => o.id === k.objective_id))).toBe(true);
    const revenue = copyObjectives.find((o) => o.title === 'Grow recurring revenue') as Doc;
    expect(copyObjectives.find((o) => o.title === 'Win the enterprise segment')?.parent_objective_id).toBe(revenue.id);
    expect(copyObjectives.map((o) => o.progress_pct)).toEqual(
      (await list('source', 'objectives')).map((o) => o.progress_pct),
    );
    // Written by the importer.
    expect(after.every((k) => k.created_by === USER_A)).toBe(true);
  });

  it('brings connectors without their secrets, and the key results they feed, to start again at their next sync', async () => {
    const token = await t.token({ tenant: 'source' });
    const [objective] = await list('source', 'objectives');
    const hook = await t.call('POST', '/api/v1/okr/connectors', {
      token,
      body: { name: 'Desk', kind: 'webhook' },
    });
    const warehouse = await t.call('POST', '/api/v1/okr/connectors', {
      token,
      body: { name: 'DW', kind: 'postgres', config: { query: 'select 1' }, secret: 'postgres://u:pw@db.example/x' },
    });
    const fedKr = await t.call('POST', '/api/v1/okr/key-results', {
      token,
      body: {
        objective_id: objective.id,
        title: 'Open tickets',
        baseline: 120,
        target: 50,
        data_source: 'connector',
        connector_id: hook.body.id,
      },
    });
    expect([hook.status, warehouse.status, fedKr.status]).toEqual([201, 201, 201]);
    expect(
      (await t.app.inject({ method: 'POST', url: hook.body.webhook_url as string, payload: { value: 87 } })).statusCode,
    ).toBe(200);

    const { doc } = await exported('source');
    expect(JSON.stringify(doc)).not.toContain('pw@db.example');
    expect(await importRows(opts('copy'), { json: doc })).toMatchObject({ Connector: 2, KeyResult: 10 });
    const connectors = await list('copy', 'connectors');
    const copyHook = connectors.find((c) => c.name === 'Desk') as Doc;
    expect(copyHook.webhook_url).toMatch(new RegExp(`/connectors/${copyHook.id}/webhook\\?tenant_id=copy&`));
    const copied = (await list('copy', 'key-results')).find((k) => k.title === 'Open tickets') as Doc;
    expect(copied).toMatchObject({ connector_id: copyHook.id, data_source: 'connector', current: 120 });
    expect(
      (await t.app.inject({ method: 'POST', url: copyHook.webhook_url as string, payload: { value: 80 } })).statusCode,
    ).toBe(200);
    expect((await list('copy', 'key-results')).find((k) => k.title === 'Open tickets')?.current).toBe(80);
  });

  it('leaves deleted rows out unless asked, and an import does not bring them back', async () => {
    const [first] = await list('source', 'key-results');
    const token = await t.token({ tenant: 'source' });
    expect((await t.call('DELETE', `/api/v1/okr/key-results/${first.id}`, { token })).status).toBe(200);
    expect((await exported('source')).counts.KeyResult).toBe(8);
    const all = await exported('source', { includeDeleted: true });
    expect(all.counts.KeyResult).toBe(9);
    expect(await importRows(opts('copy'), { json: all.doc })).toMatchObject({ KeyResult: 8 });
  });

  it('writes one resource as CSV, and imports a CSV into a tenant whose rows it references', async () => {
    let csv = '';
    expect(
      await exportCsv({ ...opts('source'), resource: 'KeyResult' }, (chunk) => {
        csv += chunk;
      }),
    ).toBe(9);
    const [header, ...rows] = parseCsv(csv);
    expect(header).toEqual(csvColumns(byName('KeyResult')));
    expect(header).not.toContain('history');
    expect(rows).toHaveLength(9);
    const at = (name: string) => header.indexOf(name);
    const mrr = rows.find((r) => r[at('title')] === 'Grow MRR to $120k') as string[];
    expect(JSON.parse(mrr[at('tags')])).toEqual(['revenue']);
    expect(mrr[at('owner_id')]).toBe('');

    // Into the same tenant: its objectives exist there, so the references hold.
    expect(await importRows(opts('source'), { csv, resource: 'KeyResult' })).toEqual({ KeyResult: 9 });
    const krs = await list('source', 'key-results');
    expect(krs).toHaveLength(18);
    const copies = krs.filter((k) => k.title === 'Grow MRR to $120k');
    expect(copies.map((k) => [k.current, k.target, k.tags, k.objective_id])).toEqual([
      [106_500, 120_000, ['revenue'], copies[0].objective_id],
      [106_500, 120_000, ['revenue'], copies[0].objective_id],
    ]);
  });

  it('refuses a file with an invalid row, names the row and the field, and writes nothing', async () => {
    const [objective] = await list('source', 'objectives');
    const csv = `objective_id,title,target\r\n${objective.id},"Ship it, finally",10\r\n${objective.id},Bad target,abc\r\n`;
    const err = await importRows(opts('source'), { csv, resource: 'KeyResult' }).catch((e) => e);
    expect(err).toBeInstanceOf(TransferError);
    expect(err.message).toMatch(/^line 3: .*target.*; nothing was imported$/);
    expect((await list('source', 'key-results')).some((k) => k.title === 'Ship it, finally')).toBe(false);

    await expect(importRows(opts('source'), { json: { rows: [] } })).rejects.toThrow(/not an EDM export/);
    await expect(importRows(opts('source'), { csv: 'title,bogus\r\nx,1\r\n', resource: 'KeyResult' })).rejects.toThrow(
      'CSV column bogus is not a field of KeyResult',
    );
    await expect(importRows(opts('source'), { csv: 'title\r\nx\r\n', resource: 'Nope' })).rejects.toThrow(
      'no resource Nope',
    );
  });
});

describe.each(storeKinds)('edm export on a database without the schema (%s)', (kind) => {
  it('says so before writing anything', async () => {
    const fresh = await freshStore(kind);
    try {
      const written: string[] = [];
      const o = { store: fresh.store, modules, tenant: 't', sub: USER_A, secretKey: new Uint8Array(32) };
      await expect(exportJson(o, (chunk) => void written.push(chunk))).rejects.toThrow(/no EDM schema yet/);
      await expect(exportCsv({ ...o, resource: 'KeyResult' }, (chunk) => void written.push(chunk))).rejects.toThrow(
        TransferError,
      );
      expect(written).toEqual([]);
    } finally {
      await fresh.store.close();
      await fresh.drop();
    }
  });
});

describe('parseCsv', () => {
  it.each([
    [
      'plain rows, LF',
      'a,b\n1,2\n',
      [
        ['a', 'b'],
        ['1', '2'],
      ],
    ],
    [
      'CRLF and no final newline',
      'a,b\r\n1,2',
      [
        ['a', 'b'],
        ['1', '2'],
      ],
    ],
    ['quoted commas, quotes and newlines', 'a\r\n"x, ""y""\nz"\r\n', [['a'], ['x, "y"\nz']]],
    [
      'empty cells',
      'a,b,c\r\n,,\r\n',
      [
        ['a', 'b', 'c'],
        ['', '', ''],
      ],
    ],
    ['a byte-order mark', '\uFEFFa\r\n1\r\n', [['a'], ['1']]],
  ])('%s', (_name, text, rows) => {
    expect(parseCsv(text)).toEqual(rows);
  });

  it('refuses a quoted field that never ends', () => {
    expect(() => parseCsv('a\r\n"open')).toThrow(TransferError);
  });
});
