/**
 * What a connector's read does with the host's lookup: it counts against the connector timeout,
 * every address found is checked, and the connection goes to the address checked.
 * The connector timeout covers a read in all, the host's lookup included. A resolver that is
 * slow or never answers cannot be run here for real (Node's lookup asks the system's resolver),
 * so this file stands in for it: `node:dns/promises`' lookup is the one part replaced.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';

const resolver = vi.hoisted(() => ({
  answer: (_host: string): Promise<{ address: string; family: number }[]> => new Promise(() => {}),
}));
vi.mock('node:dns/promises', async (original) => ({
  ...(await original<typeof import('node:dns/promises')>()),
  lookup: (host: string) => resolver.answer(host),
}));

const { fetchJson } = await import('../src/core/outbound.js');
const { readConnector } = await import('../src/modules/okr/connector-read.js');
const { PG_URL, storeKinds, testApp, byName } = await import('./helpers.js');

const policy = { allowHosts: ['feed.example', 'warehouse.example'], timeoutMs: 1000 };
const after = <T>(ms: number, value: T) => new Promise<T>((resolve) => setTimeout(() => resolve(value), ms));

describe('the connector timeout counts the host lookup', () => {
  let server: Server;
  let port: number;
  beforeAll(async () => {
    // Answers after 500 ms: in time for a read that has its whole 1,000, not for one that spent 600 resolving.
    server = createServer((_req, res) => {
      setTimeout(() => res.end('{"value": 7}'), 500);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));
  beforeEach(() => {
    resolver.answer = () => new Promise(() => {});
  });

  it('fails an http_json read whose host never resolves, within the timeout', async () => {
    await expect(fetchJson('http://feed.example/metrics', {}, policy)).rejects.toThrow(
      'feed.example did not resolve within 1000 ms',
    );
  });

  it('fails a postgres read whose host never resolves, within the timeout', async () => {
    const connector = { kind: 'postgres', config: { query: 'select 1' }, secret: 'postgres://u@warehouse.example/db' };
    await expect(readConnector(connector, policy)).rejects.toThrow(/did not resolve within 1000 ms|no answer within/);
  });

  it('gives the GET only the time the lookup left', async () => {
    const url = `http://feed.example:${port}/metrics`;
    resolver.answer = () => Promise.resolve([{ address: '127.0.0.1', family: 4 }]);
    expect(await fetchJson(url, {}, policy)).toEqual({ value: 7 });
    resolver.answer = () => after(600, [{ address: '127.0.0.1', family: 4 }]);
    await expect(fetchJson(url, {}, policy)).rejects.toThrow('did not answer within 1000 ms');
  });
});

describe('a connector reaches only the addresses it checked', () => {
  let server: Server;
  let port: number;
  const requests: string[] = [];
  beforeAll(async () => {
    server = createServer((req, res) => {
      requests.push(req.url ?? '');
      // A feed's answer: small, or (at /big) past the 1 MB a read takes.
      res.end(req.url === '/big' ? JSON.stringify({ value: 7, pad: 'x'.repeat(1_100_000) }) : '{"value": 7}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('refuses a name any of whose addresses is private, not only its first', async () => {
    resolver.answer = async () => [
      { address: '93.184.216.34', family: 4 },
      { address: '127.0.0.1', family: 4 },
    ];
    requests.length = 0;
    // Which address is not said: the error is every reader's, and would map the server's network.
    const refused = await fetchJson(`http://multi.example:${port}/m`, {}, { allowHosts: [], timeoutMs: 1000 }).catch(
      (err: Error) => err.message,
    );
    expect(refused).toBe(
      'multi.example resolves to a private, loopback, link-local or metadata address: refused (EDM_CONNECTOR_ALLOW_HOSTS can allow it)',
    );
    expect(requests).toEqual([]);
  });

  it('reads at most 1 MB of an answer', async () => {
    resolver.answer = async () => [{ address: '127.0.0.1', family: 4 }];
    await expect(fetchJson(`http://feed.example:${port}/big`, {}, policy)).rejects.toThrow(
      'answered more than 1000000 bytes',
    );
  });

  // A postgres read connects to the address it checked, not to the name looked up again: here the
  // check sees a public address that answers nothing, and the name itself is this machine.
  it.runIf(PG_URL)('connects a postgres read to the checked address, not to the name resolved again', async () => {
    const url = new URL(PG_URL as string);
    url.hostname = 'localhost';
    resolver.answer = async () => [{ address: '192.0.2.1', family: 4 }];
    const connector = { kind: 'postgres', config: { query: 'SELECT 42' }, secret: url.href };
    await expect(readConnector(connector, { allowHosts: [], timeoutMs: 1000 })).rejects.toThrow();
  });

  // The connector timeout is the query's statement_timeout too: a query past it is stopped by the
  // database itself, whatever becomes of the connection that gave up on it.
  it.runIf(PG_URL)("runs a postgres read's query with the connector timeout as its statement_timeout", async () => {
    resolver.answer = async () => [{ address: '127.0.0.1', family: 4 }];
    const query = "SELECT setting::int FROM pg_settings WHERE name = 'statement_timeout'";
    const connector = { kind: 'postgres', config: { query }, secret: PG_URL };
    expect(await readConnector(connector, { allowHosts: ['127.0.0.1'], timeoutMs: 800 })).toBe(800);
  });
});

// Two syncs of one connector that overlap record the later read, judged by when each read its
// feed. A sync asked for first may read last: here its host's lookup is slow (on a busy server,
// the wait for a connection before the read is another such delay).
describe.each(storeKinds)('overlapping syncs on %s', (kind) => {
  let server: Server;
  let port: number;
  let reads = 0;
  beforeAll(async () => {
    // A feed that counts up: each read answers a higher value than the one before.
    server = createServer((_req, res) => {
      reads += 1;
      res.end(JSON.stringify({ value: reads }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('date a read as its request goes out: a sync asked for first but read last records its newer value', async () => {
    resolver.answer = async () => [{ address: '127.0.0.1', family: 4 }];
    const t = await testApp(kind, { connectorAllowHosts: ['feed.example'] });
    try {
      const token = await t.token();
      const call = (method: string, url: string, body?: unknown) => t.call(method, url, { token, body });
      const connectors = byName('Connector');
      const made = await call('POST', connectors.basePath, {
        name: 'Counter',
        kind: 'http_json',
        config: { url: `http://feed.example:${port}/n`, pointer: '/value' },
      });
      expect(made.status, made.raw).toBe(201);
      const id = made.body.id as string;
      // The first sync's lookup waits until released.
      let release: () => void = () => {};
      let looked = false;
      resolver.answer = () => {
        looked = true;
        return new Promise((resolve) => {
          release = () => resolve([{ address: '127.0.0.1', family: 4 }]);
        });
      };
      const first = call('POST', `${connectors.basePath}/${id}/sync`);
      for (let i = 0; i < 500 && !looked; i++) await new Promise((r) => setTimeout(r, 10));
      expect(looked).toBe(true);
      resolver.answer = async () => [{ address: '127.0.0.1', family: 4 }];
      t.clock.advance(1000);
      const second = await call('POST', `${connectors.basePath}/${id}/sync`);
      expect(second.status).toBe(200);
      const secondValue = second.body.last_value as number;
      t.clock.advance(1000);
      release();
      const answered = await first;
      // It read after the second sync did: its value is the newer one, and it stands.
      expect(answered.status).toBe(200);
      expect(answered.body.last_value).toBe(secondValue + 1);
      const now = (await call('GET', `${connectors.basePath}/${id}`)).body;
      expect([now.last_value, now.last_sync_status]).toEqual([secondValue + 1, 'ok']);
    } finally {
      await t.close();
    }
  });
});
