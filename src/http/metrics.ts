import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Counter, collectDefaultMetrics, Registry } from 'prom-client';

const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

interface Series {
  method: string;
  route: string;
  statuses: Map<number, number>;
  /** Per-bucket counts (not cumulative); the last slot is +Inf. */
  buckets: number[];
  sum: number;
  count: number;
}

const escapeLabel = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

/**
 * `GET /metrics` in the Prometheus text format: request counts by route and status, latency
 * histograms by route, token verifications, transaction retries, and the process's own metrics (prom-client).
 * Request figures are kept in plain counters and written out at scrape time: prom-client's
 * per-request label handling cost a quarter of a cached GET.
 */
export function registerMetrics(
  app: FastifyInstance,
  extra: { verifications: () => number; retriedTransactions: () => number; deadlocks: () => number },
): {
  observe: (request: FastifyRequest, reply: FastifyReply) => void;
  observeAnswer: (method: string, route: string, status: number, seconds: number) => void;
} {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'edm_' });
  new Counter({
    name: 'edm_token_verifications_total',
    help: 'Bearer tokens verified by signature (cache misses).',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(extra.verifications());
    },
  });
  new Counter({
    name: 'edm_transaction_retries_total',
    help: 'PostgreSQL transactions run again after the server aborted them (deadlock victim, serialization failure).',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(extra.retriedTransactions());
    },
  });
  new Counter({
    name: 'edm_transaction_deadlocks_total',
    help: 'PostgreSQL transactions the server aborted as a deadlock victim, whether run again or the last of three attempts.',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(extra.deadlocks());
    },
  });

  const series = new Map<string, Series>();
  // Every answer: those of routes (the hook below), and those no hook sees (a URL the router
  // cannot read, answers the connection gives: 408, 417, 431, …), reported by app.ts.
  const observeAnswer = (method: string, route: string, status: number, seconds: number) => {
    const key = `${method} ${route}`;
    let s = series.get(key);
    if (!s) {
      s = {
        method,
        route,
        statuses: new Map(),
        buckets: new Array(BUCKETS.length + 1).fill(0),
        sum: 0,
        count: 0,
      };
      series.set(key, s);
    }
    s.statuses.set(status, (s.statuses.get(status) ?? 0) + 1);
    let i = 0;
    while (i < BUCKETS.length && seconds > BUCKETS[i]) i++;
    s.buckets[i]++;
    s.sum += seconds;
    s.count++;
  };
  const observe = (request: FastifyRequest, reply: FastifyReply) =>
    observeAnswer(request.method, request.routeOptions?.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000);
  app.addHook('onResponse', (request, reply, done) => {
    observe(request, reply);
    done();
  });

  function requestMetrics(): string {
    const lines = [
      '# HELP edm_http_requests_total HTTP requests answered, by method, route and status.',
      '# TYPE edm_http_requests_total counter',
    ];
    for (const s of series.values()) {
      const labels = `method="${escapeLabel(s.method)}",route="${escapeLabel(s.route)}"`;
      for (const [status, n] of s.statuses) lines.push(`edm_http_requests_total{${labels},status="${status}"} ${n}`);
    }
    lines.push(
      '# HELP edm_http_request_duration_seconds Time to answer an HTTP request, by method and route.',
      '# TYPE edm_http_request_duration_seconds histogram',
    );
    for (const s of series.values()) {
      const labels = `method="${escapeLabel(s.method)}",route="${escapeLabel(s.route)}"`;
      let cumulative = 0;
      BUCKETS.forEach((le, i) => {
        cumulative += s.buckets[i];
        lines.push(`edm_http_request_duration_seconds_bucket{${labels},le="${le}"} ${cumulative}`);
      });
      lines.push(`edm_http_request_duration_seconds_bucket{${labels},le="+Inf"} ${s.count}`);
      lines.push(`edm_http_request_duration_seconds_sum{${labels}} ${s.sum}`);
      lines.push(`edm_http_request_duration_seconds_count{${labels}} ${s.count}`);
    }
    return `${lines.join('\n')}\n`;
  }

  app.get('/metrics', async (_request, reply) =>
    reply.type(registry.contentType).send(`${requestMetrics()}${await registry.metrics()}`),
  );
  return { observe, observeAnswer };
}
