import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { byName, type TestApp, testApp } from './helpers.js';

describe('GET /metrics', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await testApp('sqlite');
  });
  afterAll(() => t.close());

  it('counts requests by route and status in the Prometheus text format', async () => {
    const cycles = byName('Cycle');
    await t.call('GET', cycles.basePath);
    await t.call('GET', `${cycles.basePath}/cyc_01ARZ3NDEKTSV4RRFFQ69G5FAV`);
    const res = await t.app.inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    expect(res.body).toContain('edm_http_requests_total{method="GET",route="/api/v1/okr/cycles",status="200"} 1');
    expect(res.body).toContain('edm_http_requests_total{method="GET",route="/api/v1/okr/cycles/:id",status="404"} 1');
    expect(res.body).toMatch(/edm_token_verifications_total 1\b/);
    expect(res.body).toMatch(/edm_transaction_retries_total 0\b/);
    expect(res.body).toContain('edm_http_request_duration_seconds_bucket');
  });
});
