import type { FastifyInstance } from 'fastify';
import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client';

/**
 * `GET /metrics` in the Prometheus text format: request counts and latencies by route and
 * status, plus the process's own metrics. One registry per app, so tests and servers don't mix.
 */
export function registerMetrics(app: FastifyInstance, extra: { verifications: () => number }): void {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'edm_' });
  const requests = new Counter({
    name: 'edm_http_requests_total',
    help: 'HTTP requests answered, by method, route and status.',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'edm_http_request_duration_seconds',
    help: 'Time to answer an HTTP request, by method and route.',
    labelNames: ['method', 'route'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });
  new Counter({
    name: 'edm_token_verifications_total',
    help: 'Bearer tokens verified by signature (cache misses).',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(extra.verifications());
    },
  });
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    requests.inc({ method: request.method, route, status: reply.statusCode });
    duration.observe({ method: request.method, route }, reply.elapsedTime / 1000);
  });
  app.get('/metrics', async (_request, reply) => reply.type(registry.contentType).send(await registry.metrics()));
}
