/**
 * Type-level test of the SDK, compiled by `tsc -p test/types` (part of `npm run typecheck`):
 * every `@ts-expect-error` line must fail to compile, and everything else must compile.
 */
import type { Client, ErrorCode, FieldErrorCode, Problem, Schemas } from '../../src/client/index.js';
import { createClient } from '../../src/client/index.js';

const client: Client = createClient({ baseUrl: 'http://127.0.0.1:8080', token: 'jwt' });

export async function compiles(): Promise<void> {
  const kr = await client.okr.keyResults.create(
    { objective_id: 'obj_01ARZ3NDEKTSV4RRFFQ69G5FAV', title: 'Grow MRR', target: 120000, baseline: 80000 },
    { idempotencyKey: 'k1' },
  );
  const title: string = kr.title;
  const target: number = kr.target;
  const createdAt: string = kr.created_at;
  const progress: number | null = kr.progress_pct;
  const status: 'off_track' | 'at_risk' | 'on_track' | 'not_started' | 'achieved' | null = kr.status;
  const tags: string[] | null = kr.tags;
  // A field with a default is never null in an answer: no null check needed.
  const weight: number = kr.weight;
  const metricType: 'number' | 'percentage' | 'currency' | 'milestone' | 'threshold' = kr.metric_type;
  void [weight, metricType];
  const same: Schemas['okr']['keyResults'] = kr;
  void [title, target, createdAt, progress, status, tags, same];

  await client.okr.keyResults.update(
    kr.id,
    { current: 95000, owner_id: null, tags: ['growth'] },
    { ifVersion: kr.version },
  );
  await client.okr.keyResults.update(kr.id, { title: 'x', version: 2 });
  await client.okr.keyResults.delete(kr.id, { ifVersion: 3 });
  await client.okr.objectives.delete('obj_01ARZ3NDEKTSV4RRFFQ69G5FAV', { cascade: true });
  await client.okr.keyResults.restore(kr.id);

  // Connectors: sync now answers the connector; the secret is sent, never read back; the webhook
  // is another system's to call (a signed URL), not the SDK's.
  const feed = await client.okr.connectors.create({
    name: 'MRR',
    kind: 'http_json',
    config: { url: 'https://billing.example.com/mrr', pointer: '/value' },
    secret: 's3cret',
  });
  const synced = await client.okr.connectors.sync(feed.id);
  // Custom writes honour If-Match: a sync takes no body, so its options come third.
  await client.okr.connectors.sync(feed.id, undefined, { ifVersion: synced.version, idempotencyKey: 'sync-1' });
  const lastValue: number | null = synced.last_value;
  const webhookUrl: string | null = synced.webhook_url;
  // @ts-expect-error write-only: answers never carry the secret
  void synced.secret;
  // A leaked webhook URL is replaced: the answer is the connector with its new webhook_url.
  const rotated = await client.okr.connectors.rotateWebhookUrl(feed.id, undefined, { ifVersion: synced.version });
  const newUrl: string | null = rotated.webhook_url;
  void newUrl;
  // @ts-expect-error signed operations are not SDK methods
  await client.okr.connectors.webhook(feed.id, { value: 1 });
  await client.okr.keyResults.create({
    objective_id: 'obj_01ARZ3NDEKTSV4RRFFQ69G5FAV',
    title: 'Run rate',
    target: 1,
    data_source: 'query',
    query: 'kr("kr_01ARZ3NDEKTSV4RRFFQ69G5FAV") * 12',
  });
  void [lastValue, webhookUrl];

  // A milestone's target defaults to 1: a create may leave it out (the server refuses that for other types).
  await client.okr.keyResults.create({ objective_id: kr.objective_id, title: 'Ship v2', metric_type: 'milestone' });
  const checked = await client.okr.keyResults.checkIns.create(kr.id, { value: 100000, confidence: 7 });
  await client.okr.keyResults.checkIns.create(kr.id, {
    value: 1,
    note: null,
    confidence: null,
    at: '2026-11-01T00:00:00Z',
  });
  const current: number | null = checked.current;
  await client.okr.keyResults.checkIns.create(
    kr.id,
    { value: 1 },
    { ifVersion: checked.version, idempotencyKey: 'c1' },
  );
  for await (const snapshot of client.okr.keyResults.checkIns.list(kr.id, { limit: 50 })) {
    const value: number = snapshot.value;
    const at: string = snapshot.at;
    const tenant: string = snapshot.tenant_id;
    void [value, at, tenant, current];
  }

  const page = await client.okr.keyResults.list({
    objective_id: kr.objective_id,
    status: ['at_risk', 'off_track'],
    'progress_pct[gte]': 50,
    'last_update_at[lt]': new Date(),
    tag: ['growth'],
    sort: '-progress_pct',
    q: 'mrr',
    include_deleted: true,
    limit: 20,
  });
  const more: boolean = page.has_more;
  const next: string | null = page.next_cursor;
  void [more, next];
  for await (const cycle of client.okr.cycles.list({ state: 'active', 'start_date[gte]': '2026-01-01' })) {
    const name: string = cycle.name;
    void name;
  }
}

export async function rejects(): Promise<void> {
  const kr = await client.okr.keyResults.get('kr_01ARZ3NDEKTSV4RRFFQ69G5FAV');

  // A problem's codes are the registry's (docs/errors.md), its field errors' too.
  const problem = {} as Problem;
  const fieldCode: FieldErrorCode | undefined = problem.errors?.[0]?.code;
  const code: ErrorCode = problem.code;
  void [fieldCode, code];
  // @ts-expect-error a field error code the registry does not have
  if (problem.errors?.[0]?.code === 'no_such_field_code') return;
  // @ts-expect-error nor a problem code
  if (problem.code === 'no_such_problem_code') return;

  // @ts-expect-error a misspelt field
  await client.okr.keyResults.create({ objective_id: 'obj_x', title: 't', target: 1, targte: 2 });
  // @ts-expect-error a field of the wrong type
  await client.okr.keyResults.create({ objective_id: 'obj_x', title: 't', target: '120k' });
  // @ts-expect-error a required field missing (title)
  await client.okr.keyResults.create({ objective_id: 'obj_x', target: 1 });
  // @ts-expect-error target missing: only a milestone's create may leave it out
  await client.okr.keyResults.create({ objective_id: 'obj_x', title: 't' });
  // @ts-expect-error nor under another metric_type
  await client.okr.keyResults.create({ objective_id: 'obj_x', title: 't', metric_type: 'percentage' });
  // @ts-expect-error a value outside the enum
  await client.okr.keyResults.create({ objective_id: 'obj_x', title: 't', target: 1, metric_type: 'ratio' });
  // @ts-expect-error a computed, server-owned field
  await client.okr.keyResults.create({ objective_id: 'obj_x', title: 't', target: 1, progress_pct: 50 });
  // @ts-expect-error a value of the enum only the platform writes
  await client.okr.keyResults.create({ objective_id: 'obj_x', title: 't', target: 1, source_type: 'system' });
  // @ts-expect-error a platform field the server stamps
  await client.okr.cycles.create({ id: 'cyc_x', name: 'Q1', start_date: '2026-01-01', end_date: '2026-03-31' });
  // @ts-expect-error a field of another resource
  await client.okr.cycles.create({ name: 'Q1', start_date: '2026-01-01', end_date: '2026-03-31', title: 'x' });

  // @ts-expect-error update: wrong type
  await client.okr.keyResults.update(kr.id, { current: 'high' });
  // @ts-expect-error update: a value of the enum only the platform writes
  await client.okr.keyResults.update(kr.id, { source_type: 'system' });
  // @ts-expect-error update: read-only field
  await client.okr.keyResults.update(kr.id, { status: 'achieved' });
  // @ts-expect-error update: a required field cannot be cleared
  await client.okr.keyResults.update(kr.id, { title: null });
  // @ts-expect-error update: current cannot be cleared either (the server answers 400 required)
  await client.okr.keyResults.update(kr.id, { current: null });
  // A milestone's target, sent as null, takes its default again (another type's is 400).
  await client.okr.keyResults.update(kr.id, { target: null });
  // @ts-expect-error update: If-Match takes the version number
  await client.okr.keyResults.update(kr.id, {}, { ifVersion: '"1"' });

  // @ts-expect-error list: not a sortable field
  client.okr.keyResults.list({ sort: 'unit' });
  // @ts-expect-error list: not a filterable field
  client.okr.keyResults.list({ unit: 'MRR' });
  // @ts-expect-error list: a filter value outside the enum
  client.okr.keyResults.list({ status: 'late' });
  // @ts-expect-error list: limit is a number
  client.okr.keyResults.list({ limit: '10' });
  // @ts-expect-error list: ranges apply to comparable fields only
  client.okr.keyResults.list({ 'status[gte]': 'at_risk' });
  // @ts-expect-error list: an id is not comparable either
  client.okr.keyResults.list({ 'owner_id[gte]': 'usr-a' });
  // @ts-expect-error list: nor a reference
  client.okr.objectives.list({ 'cycle_id[gt]': 'cyc_x' });
  // @ts-expect-error list: a number's range takes a number
  client.okr.keyResults.list({ 'progress_pct[gte]': new Date() });
  // @ts-expect-error list: a date's range takes YYYY-MM-DD text, not a Date (a timestamp)
  client.okr.cycles.list({ 'start_date[gte]': new Date() });

  // @ts-expect-error check-ins: a misspelt member
  await client.okr.keyResults.checkIns.create(kr.id, { vaule: 1 });
  // @ts-expect-error check-ins: a value of the wrong type
  await client.okr.keyResults.checkIns.create(kr.id, { value: '95k' });
  // @ts-expect-error check-ins: value is required
  await client.okr.keyResults.checkIns.create(kr.id, { confidence: 3 });

  // @ts-expect-error checkIns.create needs a body
  await client.okr.keyResults.checkIns.create(kr.id);
  // @ts-expect-error check-ins: If-Match takes the version number
  await client.okr.keyResults.checkIns.create(kr.id, { value: 1 }, { ifVersion: '"1"' });
  // @ts-expect-error sync takes no body: options go third
  await client.okr.connectors.sync('con_x', { ifVersion: 1 });
  // @ts-expect-error check-ins belong to key results only
  client.okr.objectives.checkIns.create('obj_x', { value: 1 });
  // @ts-expect-error no such resource
  client.okr.keyResult.list();
  // @ts-expect-error no such method
  client.okr.keyResults.craete({ objective_id: 'obj_x', title: 't', target: 1 });
  // @ts-expect-error no such module
  client.people.list();
  // @ts-expect-error no such field on a document
  void kr.titel;
  // @ts-expect-error documents keep their types
  const target: string = kr.target;
  void target;
}
