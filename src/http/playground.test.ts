import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import { afterAll, describe, expect, it } from 'vitest';
import { playground } from './playground.js';
import { sendProblem } from './problem.js';

const dirs: string[] = [];
function builtApp(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'edm-playground-'));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  return dir;
}

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe('serving the Playground', () => {
  it('answers every /playground path with the app, its files as they are, and / with a redirect', async () => {
    const root = builtApp({ 'index.html': '<p>app</p>', 'assets/index-abc.js': 'export {}', 'robots.txt': 'no' });
    const app = Fastify();
    await app.register(playground, { root });
    for (const url of ['/playground', '/playground/', '/playground/okr/key-results', '/playground/x/y/z']) {
      const res = await app.inject({ method: 'GET', url });
      expect(res.statusCode, url).toBe(200);
      expect(res.body, url).toBe('<p>app</p>');
      expect(res.headers['cache-control'], url).toBe('no-cache');
      expect(res.headers['content-security-policy'], url).toMatch(/^default-src 'self'; connect-src 'self'/);
    }
    const asset = await app.inject({ method: 'GET', url: '/playground/assets/index-abc.js' });
    expect(asset.body).toBe('export {}');
    expect(asset.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect((await app.inject({ method: 'GET', url: '/playground/robots.txt' })).headers['cache-control']).toBe(
      'no-cache',
    );
    expect((await app.inject({ method: 'GET', url: '/playground/assets/gone.js' })).statusCode).toBe(404);
    // A path through assets/ that resolves outside it is no hashed asset: not cached for a year
    // (`assets/..%2findex.html` pinned the app's page in a browser's cache).
    for (const url of ['/playground/assets/..%2findex.html', '/playground/assets/%2e%2e/robots.txt']) {
      const res = await app.inject({ method: 'GET', url });
      expect([res.statusCode, res.headers['cache-control']], url).toEqual([200, 'no-cache']);
    }
    for (const url of ['/playground/../package.json', '/playground/%2e%2e/%2e%2e/etc/passwd']) {
      const res = await app.inject({ method: 'GET', url });
      expect(res.body, url).not.toContain('root:');
      expect(res.statusCode === 404 || res.body === '<p>app</p>', url).toBe(true);
    }
    const root302 = await app.inject({ method: 'GET', url: '/' });
    expect(root302.statusCode).toBe(302);
    expect(root302.headers.location).toBe('/playground');
    await app.close();
  });

  // A file's own conditions that fail are 412 as a problem, cached nowhere: they were 400s that a
  // shared cache could keep for a year in the asset's place. Ranges are not served (a range past
  // the end was a 400 too): the whole file.
  it("answers an asset's failed condition as 412, with no caching, and a Range with the whole file", async () => {
    const root = builtApp({ 'index.html': '<p>app</p>', 'assets/index-abc.js': 'export {}' });
    const app = Fastify();
    app.setErrorHandler((err, request, reply) => sendProblem(request, reply, err));
    await app.register(playground, { root });
    const url = '/playground/assets/index-abc.js';
    // If-Match compares strongly (RFC 9110 §13.1.1): the file's own tag is weak, and fails too.
    const etag = (await app.inject({ method: 'GET', url })).headers.etag as string;
    expect(etag).toMatch(/^W\//);
    const failing = [
      { 'if-match': '"nope"' },
      { 'if-match': etag },
      { 'if-match': etag.slice(2) },
      { 'if-unmodified-since': 'Tue, 01 Dec 2000 00:00:00 GMT' },
    ];
    for (const [target, headers] of [
      ...failing.map((h) => [url, h] as const),
      ['/playground', { 'if-match': etag }] as const,
    ]) {
      const res = await app.inject({ method: 'GET', url: target, headers });
      expect([res.statusCode, res.json().code, res.headers['cache-control']]).toEqual([
        412,
        'precondition_failed',
        undefined,
      ]);
    }
    for (const target of [url, '/playground', '/playground/okr/key-results']) {
      expect((await app.inject({ method: 'GET', url: target, headers: { 'if-match': '*' } })).statusCode).toBe(200);
      // With an If-Match, If-Unmodified-Since is not evaluated (RFC 9110 §13.2.2).
      const both = { 'if-match': '*', 'if-unmodified-since': 'Tue, 01 Dec 2000 00:00:00 GMT' };
      expect((await app.inject({ method: 'GET', url: target, headers: both })).statusCode).toBe(200);
    }
    for (const range of ['bytes=999999999-', 'bytes=0-1']) {
      const res = await app.inject({ method: 'GET', url, headers: { range } });
      expect([res.statusCode, res.body, res.headers['accept-ranges']]).toEqual([200, 'export {}', undefined]);
    }
    await app.close();
  });

  // The page's policy comes with every file it serves (a script, a robots.txt), not only with the page.
  it('sends its Content-Security-Policy with each of its files', async () => {
    const root = builtApp({ 'index.html': '<p>app</p>', 'assets/index-abc.js': 'export {}', 'robots.txt': 'no' });
    const app = Fastify();
    await app.register(playground, { root });
    for (const url of ['/playground/assets/index-abc.js', '/playground/robots.txt', '/playground/index.html']) {
      const res = await app.inject({ method: 'GET', url });
      expect(res.statusCode, url).toBe(200);
      expect(res.headers['content-security-policy'], url).toMatch(/^default-src 'self'; connect-src 'self'/);
    }
    await app.close();
  });

  it('says how to build it when it was not built', async () => {
    const app = Fastify();
    await app.register(playground, { root: builtApp({}) });
    const res = await app.inject({ method: 'GET', url: '/playground/okr/key-results' });
    expect(res.statusCode).toBe(503);
    expect(res.body).toContain('npm run build');
    expect((await app.inject({ method: 'GET', url: '/' })).statusCode).toBe(302);
    await app.close();
  });
});
