/**
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
