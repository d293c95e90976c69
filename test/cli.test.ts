import { type ChildProcess, execFile, spawn } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCsv } from '../src/cli/transfer.js';
import { ServerKeys } from '../src/core/secrets.js';
import { modules } from '../src/modules/index.js';
import { migrate, recordSecretFingerprint, servedSecretFingerprint } from '../src/store/schema.js';
import { freshStore, PG_URL, storeKinds, writeProtect } from './helpers.js';

const run = promisify(execFile);
const root = new URL('..', import.meta.url).pathname;
const bin = join(root, 'bin/edm.js');

/**
 * The README's quick start as a new user meets it: the built `edm` serves on the embedded store
 * with generated secrets, `edm token` mints a token for them, and curl-like calls work.
 */
describe('edm CLI (built)', () => {
  let dir: string;
  let server: ChildProcess | undefined;
  /** Everything the server wrote to stdout (its log). */
  let serverOut = '';
  let serverErr = '';
  let base = '';

  beforeAll(async () => {
    if (!existsSync(join(root, 'dist/cli/edm.js')))
      throw new Error('dist/ is missing: run `npm run build` (npm test does)');
    dir = mkdtempSync(join(tmpdir(), 'edm-cli-'));
    // Run as the executable it is (as `npm start` and an installed `edm` do), so its interpreter
    // line, with the malloc settings and V8 flags on it, applies.
    server = spawn(bin, ['serve'], {
      cwd: dir,
      // HOST as a container sets it: local mode still listens on loopback only, and says so.
      env: { ...process.env, PORT: '0', HOST: '0.0.0.0', EDM_JWT_SECRET: '', EDM_SECRET_KEY: '', EDM_DATABASE_URL: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    server?.stdout?.on('data', (chunk: Buffer) => {
      serverOut += chunk.toString();
    });
    server?.stderr?.on('data', (chunk: Buffer) => {
      serverErr += chunk.toString();
    });
    base = await new Promise<string>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`server did not start: ${out}`)), 20_000);
      server?.stdout?.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        const m = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
      server?.on('exit', (code) => reject(new Error(`server exited ${code}: ${out}`)));
    });
  }, 30_000);

  afterAll(() => {
    server?.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs the server with the malloc settings and V8 flags its interpreter line names', () => {
    const argv = readFileSync(`/proc/${server?.pid}/cmdline`, 'utf8').split('\0');
    // --no-allocation-site-pretenuring: without it, a PostgreSQL list page promoted ~110 KB of
    // row strings to the old generation and spent ~2× the CPU (see bin/edm.js).
    // --heap-growing-percent=150: without it, a server under list load could mark and compact
    // its old generation every ~80 ms, at ~1.4× the CPU per page (see bin/edm.js).
    expect(argv).toEqual(
      expect.arrayContaining([
        '--max-semi-space-size=8',
        '--heap-growing-percent=150',
        '--no-allocation-site-pretenuring',
        bin,
      ]),
    );
    // glibc's malloc keeps list pages' blocks mapped: without it a 1,000,000-row store's list page
    // cost 2–3× the CPU in page faults. (glibc cuts the variable at its first ':' once parsed.)
    const env = readFileSync(`/proc/${server?.pid}/environ`, 'utf8').split('\0');
    expect(env.some((e) => e.startsWith('GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1048576'))).toBe(true);
  });

  it('logs at start what it runs with: the store, token checks, rate limit and request timeout', async () => {
    for (let i = 0; i < 100 && !serverOut.includes('request timeout'); i++) await new Promise((r) => setTimeout(r, 20));
    const line = serverOut.split('\n').find((l) => l.includes('request timeout')) ?? '';
    expect(JSON.parse(line).msg).toBe(
      `store sqlite:${join(dir, 'data', 'edm.sqlite')}; tokens: local mode (generated secret, dev-token endpoint); rate limit: off; request timeout: 30000 ms`,
    );
  });

  it('serves /healthz, generates secrets under ./data with 0600, and binds to loopback', async () => {
    expect(await (await fetch(`${base}/healthz`)).json()).toEqual({ status: 'ok' });
    expect(serverErr).toContain('edm serve: local mode');
    expect(serverErr).toContain('listens on 127.0.0.1 only; HOST=0.0.0.0 is ignored');
    for (const name of ['jwt-secret', 'secret-key']) {
      expect(statSync(join(dir, 'data', name)).mode & 0o777).toBe(0o600);
    }
    expect(existsSync(join(dir, 'data', 'edm.sqlite'))).toBe(true);
  });

  it('runs the quick start: a token from `edm token`, then a cycle, an objective and a key result', async () => {
    const { stdout } = await run(
      process.execPath,
      [bin, 'token', '--tenant', 'acme', '--sub', 'usr-3f1c2b9e-5d4a-4e8f-9a7b-1c2d3e4f5a6b'],
      {
        cwd: dir,
        env: { ...process.env, EDM_JWT_SECRET: '', EDM_SECRET_KEY: '' },
      },
    );
    const headers = { authorization: `Bearer ${stdout.trim()}`, 'content-type': 'application/json' };
    const post = async (path: string, body: unknown) => {
      const res = await fetch(`${base}${path}`, { method: 'POST', headers, body: JSON.stringify(body) });
      expect(res.status).toBe(201);
      return (await res.json()) as Record<string, unknown>;
    };
    const cycle = await post('/api/v1/okr/cycles', {
      name: '2026-Q4',
      start_date: '2026-10-01',
      end_date: '2026-12-31',
    });
    const objective = await post('/api/v1/okr/objectives', { title: 'Delight our customers', cycle_id: cycle.id });
    const keyResult = await post('/api/v1/okr/key-results', {
      objective_id: objective.id,
      title: 'Grow MRR to 120k',
      baseline: 80000,
      target: 120000,
      unit: 'MRR',
    });
    const list = (await (
      await fetch(`${base}/api/v1/okr/key-results?objective_id=${objective.id}`, { headers })
    ).json()) as {
      data: { id: string }[];
    };
    expect(list.data.map((d) => d.id)).toEqual([keyResult.id]);
    const read = await fetch(`${base}/api/v1/okr/key-results/${keyResult.id}`, { headers });
    expect(read.headers.get('etag')).toBe('"1"');
  });

  it('migrates a SQLite file and exits, its WAL checkpointed and removed on the way out', async () => {
    const file = join(dir, 'migrated.sqlite');
    const { stdout } = await run(process.execPath, [bin, 'migrate'], {
      cwd: dir,
      env: { ...process.env, EDM_DATABASE_URL: `sqlite:${file}` },
    });
    expect(stdout).toMatch(/up to date|migrated|created/i);
    expect(existsSync(file)).toBe(true);
    expect(existsSync(`${file}-wal`)).toBe(false);
  });

  it('seeds demo data beside a running server, which serves it; a second run refuses the tenant', async () => {
    const env = { ...process.env, EDM_JWT_SECRET: '', EDM_SECRET_KEY: '', EDM_DATABASE_URL: '' };
    const seeded = await run(process.execPath, [bin, 'seed', '--tenant', 'demo'], { cwd: dir, env });
    expect(seeded.stdout).toMatch(
      /^seeded tenant demo \(sqlite\): 1 Cycle, 4 Objective, 9 KeyResult, 42 KeyResult\.checkIns\.create$/m,
    );
    await expect(run(process.execPath, [bin, 'seed', '--tenant', 'demo'], { cwd: dir, env })).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringContaining('tenant demo already has Cycle rows; nothing was written'),
    });
    const { stdout } = await run(process.execPath, [bin, 'token', '--tenant', 'demo', '--sub', 'usr-x'], {
      cwd: dir,
      env,
    });
    const res = await fetch(`${base}/api/v1/okr/key-results?limit=50`, {
      headers: { authorization: `Bearer ${stdout.trim()}` },
    });
    const page = (await res.json()) as { data: { history: unknown[] }[] };
    expect(page.data).toHaveLength(9);
    expect(page.data.some((kr) => kr.history.length === 7)).toBe(true);
  });

  it('a second serve on a port in use says so and exits 1, holding nothing open', async () => {
    const port = new URL(base).port;
    const env = { ...process.env, PORT: port, EDM_JWT_SECRET: '', EDM_SECRET_KEY: '', EDM_DATABASE_URL: '' };
    // Without closing what it opened (the store, its timers), it used to print the error and run on.
    const failed = await run(process.execPath, [bin, 'serve'], { cwd: dir, env, timeout: 20_000 }).catch((e) => e);
    expect([failed.code, failed.killed]).toEqual([1, false]);
    expect(failed.stderr).toMatch(/edm serve: listening on 127\.0\.0\.1:\d+ \(HOST, PORT\): .*EADDRINUSE/);
  });

  it('exports a tenant to a file and imports it into another; a CSV of one resource to stdout', async () => {
    const env = { ...process.env, EDM_JWT_SECRET: '', EDM_SECRET_KEY: '', EDM_DATABASE_URL: '' };
    const edm = (...args: string[]) => run(process.execPath, [bin, ...args], { cwd: dir, env });
    await edm('seed', '--tenant', 'xfer-a');
    const out = join(dir, 'xfer-a.json');
    const exported = await edm('export', '--tenant', 'xfer-a', '--out', out);
    expect(exported.stderr).toMatch(
      /exported tenant xfer-a \(sqlite\): 1 Cycle, 4 Objective, 9 KeyResult, 0 Connector to /,
    );
    expect(JSON.parse(readFileSync(out, 'utf8')).resources.KeyResult).toHaveLength(9);
    const imported = await edm('import', out, '--tenant', 'xfer-b');
    expect(imported.stderr).toMatch(/imported into tenant xfer-b \(sqlite\): 1 Cycle, 4 Objective, 9 KeyResult/);
    // One resource of the file: the key results, into the tenant that has their objectives.
    const one = await edm('import', out, '--tenant', 'xfer-a', '--resource', 'KeyResult');
    expect(one.stderr).toMatch(/imported into tenant xfer-a \(sqlite\): 9 KeyResult$/m);
    const csv = await edm('export', '--tenant', 'xfer-b', '--resource', 'KeyResult', '--format', 'csv');
    expect(csv.stdout.split('\r\n').filter((l) => l !== '')).toHaveLength(10); // a header and 9 rows
    await expect(edm('export', '--format', 'csv')).rejects.toMatchObject({ code: 2 });
    // A failed export leaves no file behind, whole or partial.
    await expect(
      edm('export', '--tenant', 'xfer-a', '--resource', 'Nope', '--out', join(dir, 'nope.json')),
    ).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringContaining('no resource Nope'),
    });
    expect(readdirSync(dir).filter((f) => f.startsWith('nope.json'))).toEqual([]);
    await expect(edm('export', '--tenant', 'x', '--format', 'csv')).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringContaining('--format csv needs --resource'),
    });
    // --out naming a folder: exit 1, and no copy left beside it.
    const folder = join(dir, 'a-folder');
    mkdirSync(folder);
    await expect(edm('export', '--tenant', 'xfer-a', '--out', folder)).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringContaining(`edm export: --out ${folder} is a folder`),
    });
    expect(readdirSync(dir).filter((f) => f.startsWith('a-folder.'))).toEqual([]);
    // A file it cannot write: exit 1 saying why (it used to exit 13, silently).
    await expect(
      edm('export', '--tenant', 'xfer-a', '--out', join(dir, 'no-such-folder', 'x.json')),
    ).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringContaining(
        `--out ${join(dir, 'no-such-folder', 'x.json')}: its folder does not exist (ENOENT)`,
      ),
    });
  });

  it('exports deleted rows only with --include-deleted, in JSON and in CSV', async () => {
    const env = { ...process.env, EDM_JWT_SECRET: '', EDM_SECRET_KEY: '', EDM_DATABASE_URL: '' };
    const edm = (...args: string[]) => run(process.execPath, [bin, ...args], { cwd: dir, env });
    await edm('seed', '--tenant', 'deleted');
    const token = (await edm('token', '--tenant', 'deleted', '--sub', 'usr-x')).stdout.trim();
    const headers = { authorization: `Bearer ${token}` };
    const page = (await (await fetch(`${base}/api/v1/okr/key-results?limit=50`, { headers })).json()) as {
      data: { id: string }[];
    };
    const gone = page.data[0].id;
    expect((await fetch(`${base}/api/v1/okr/key-results/${gone}`, { method: 'DELETE', headers })).status).toBe(200);

    const ids = async (format: 'json' | 'csv', ...more: string[]) => {
      const { stdout } = await edm(
        'export',
        '--tenant',
        'deleted',
        '--resource',
        'KeyResult',
        '--format',
        format,
        ...more,
      );
      if (format === 'json') return (JSON.parse(stdout).resources.KeyResult as { id: string }[]).map((k) => k.id);
      const [header, ...rows] = parseCsv(stdout);
      return rows.map((r) => r[header.indexOf('id')]);
    };
    for (const format of ['json', 'csv'] as const) {
      const live = await ids(format);
      expect(live, format).toHaveLength(8);
      expect(live, format).not.toContain(gone);
      const all = await ids(format, '--include-deleted');
      expect(all, format).toHaveLength(9);
      expect(all, format).toContain(gone);
    }
  });

  // --out was renamed over: a link became a file (the file it named kept its old content), a
  // named pipe a file its reader never saw, a file of mode 0600 one of 0644.
  it("--out follows a link, writes into a named pipe, keeps a file's mode, and makes a new one owner-only", async () => {
    const env = { ...process.env, EDM_JWT_SECRET: '', EDM_SECRET_KEY: '', EDM_DATABASE_URL: '' };
    const edm = (...args: string[]) => run(process.execPath, [bin, ...args], { cwd: dir, env });
    await edm('seed', '--tenant', 'out-a');
    const real = join(dir, 'real.json');
    writeFileSync(real, 'old');
    chmodSync(real, 0o640);
    const link = join(dir, 'link.json');
    symlinkSync(real, link);
    await edm('export', '--tenant', 'out-a', '--out', link);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(JSON.parse(readFileSync(real, 'utf8')).resources.KeyResult).toHaveLength(9);
    expect(statSync(real).mode & 0o777).toBe(0o640);
    const fresh = join(dir, 'fresh.json');
    await edm('export', '--tenant', 'out-a', '--out', fresh);
    expect(statSync(fresh).mode & 0o777).toBe(0o600);
    const pipe = join(dir, 'pipe');
    await run('mkfifo', [pipe]);
    const reader = run('cat', [pipe], { maxBuffer: 64 * 1024 * 1024 });
    await edm('export', '--tenant', 'out-a', '--out', pipe);
    expect(JSON.parse((await reader).stdout).resources.KeyResult).toHaveLength(9);
    expect(statSync(pipe).isFIFO()).toBe(true);
    const dangling = join(dir, 'dangling.json');
    symlinkSync(join(dir, 'nowhere', 'x.json'), dangling);
    await expect(edm('export', '--tenant', 'out-a', '--out', dangling)).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringContaining(`--out ${dangling} is a link to a file that does not exist`),
    });
    expect(readdirSync(dir).filter((f) => f.includes('.partial'))).toEqual([]);
  });

  it('exports of two tenants to one --out at once: the file is one whole export, and nothing is left beside it', async () => {
    const env = { ...process.env, EDM_JWT_SECRET: '', EDM_SECRET_KEY: '', EDM_DATABASE_URL: '' };
    const edm = (...args: string[]) => run(process.execPath, [bin, ...args], { cwd: dir, env });
    await edm('seed', '--tenant', 'race-a');
    await edm('seed', '--tenant', 'race-b');
    const out = join(dir, 'race.json');
    for (let round = 0; round < 3; round++) {
      const runs = await Promise.all(
        ['race-a', 'race-b'].map((tenant) => edm('export', '--tenant', tenant, '--out', out).then(() => tenant)),
      );
      expect(runs).toEqual(['race-a', 'race-b']); // both exit 0
      const file = JSON.parse(readFileSync(out, 'utf8')) as { tenant_id: string; resources: { KeyResult: unknown[] } };
      expect(['race-a', 'race-b']).toContain(file.tenant_id);
      expect(file.resources.KeyResult).toHaveLength(9);
      expect(readdirSync(dir).filter((f) => f.startsWith('race.json'))).toEqual(['race.json']);
    }
  });

  it('an export stopped by a signal leaves no file behind, whole or partial, and ends as the signal says', async () => {
    const data = mkdtempSync(join(tmpdir(), 'edm-signal-'));
    try {
      // Enough rows that the export takes a while (the bench's bulk path, through the engine).
      const { seeder } = (await import(join(root, 'bench/seed.js'))) as {
        seeder: (
          url: string,
        ) => Promise<{ tenant: (id: string, n: number) => Promise<unknown>; close: () => Promise<void> }>;
      };
      const s = await seeder(`sqlite:${join(data, 'edm.sqlite')}`);
      await s.tenant('many', 20_000);
      await s.close();
      const env = { ...process.env, EDM_DATA_DIR: data, EDM_JWT_SECRET: '', EDM_SECRET_KEY: '', EDM_DATABASE_URL: '' };
      const out = join(data, 'many.json');
      const child = spawn(process.execPath, [bin, 'export', '--tenant', 'many', '--out', out], {
        env,
        stdio: 'ignore',
      });
      let ended = false;
      const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
        child.on('exit', (code, signal) => {
          ended = true;
          resolve([code, signal]);
        }),
      );
      const partial = () => readdirSync(data).some((f) => f.endsWith('.partial'));
      while (!partial() && !ended) await new Promise((resolve) => setTimeout(resolve, 5));
      child.kill('SIGTERM');
      expect(await exited).toEqual([null, 'SIGTERM']);
      expect(readdirSync(data).filter((f) => f.startsWith('many.json'))).toEqual([]);
    } finally {
      rmSync(data, { recursive: true, force: true });
    }
  });

  it('imports with an empty --sub as the default writer, edm-import', async () => {
    const env = { ...process.env, EDM_JWT_SECRET: '', EDM_SECRET_KEY: '', EDM_DATABASE_URL: '' };
    const edm = (...args: string[]) => run(process.execPath, [bin, ...args], { cwd: dir, env });
    await edm('seed', '--tenant', 'sub-a');
    const out = join(dir, 'sub-a.json');
    await edm('export', '--tenant', 'sub-a', '--out', out);
    await edm('import', out, '--tenant', 'sub-b', '--sub', '');
    const copy = join(dir, 'sub-b.json');
    await edm('export', '--tenant', 'sub-b', '--out', copy);
    const cycles = JSON.parse(readFileSync(copy, 'utf8')).resources.Cycle as { created_by: string }[];
    expect(cycles.map((c) => c.created_by)).toEqual(['edm-import']);
  });

  it('refuses to mint an HS256 token the server would not accept (only public keys configured)', async () => {
    const { generateKeyPairSync } = await import('node:crypto');
    const pem = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const env = { ...process.env, EDM_JWT_SECRET: '', EDM_SECRET_KEY: 'k'.repeat(32), EDM_JWT_PUBLIC_KEY: pem };
    const err = await run(process.execPath, [bin, 'token', '--tenant', 't', '--sub', 's'], { cwd: dir, env }).catch(
      (e) => e,
    );
    expect(err).toMatchObject({ code: 1, stderr: expect.stringContaining('accepts only tokens signed by') });
  });

  it('mints tokens with app and scope claims, and refuses a missing tenant', async () => {
    const { stdout } = await run(
      process.execPath,
      [bin, 'token', '--tenant', 't', '--sub', 'app_x', '--app', 'app_x', '--scope', 'okr:read', '--ttl', '5m'],
      {
        cwd: dir,
      },
    );
    const claims = JSON.parse(Buffer.from(stdout.trim().split('.')[1], 'base64url').toString());
    expect(claims).toMatchObject({ tenant_id: 't', sub: 'app_x', app_id: 'app_x', scope: 'okr:read' });
    expect(claims.exp - claims.iat).toBe(300);
    await expect(run(process.execPath, [bin, 'token', '--sub', 's'], { cwd: dir })).rejects.toMatchObject({ code: 2 });
  });
});

/**
 * SIGTERM while a request is in flight on a connection its client keeps alive: the request is
 * answered, then the connection closed, and the process exits (before, it waited for the
 * keep-alive timeout, 72 s: this test's own time limit ends it first).
 */
describe('edm serve: shutdown', () => {
  /** `edm serve` in local mode in `dir`: its port, a dev token, its exit, and a wait for a line of its log. */
  const serveIn = async (dir: string, extra: Record<string, string> = {}) => {
    const child = spawn(bin, ['serve'], {
      cwd: dir,
      env: {
        ...process.env,
        PORT: '0',
        EDM_JWT_SECRET: '',
        EDM_SECRET_KEY: '',
        EDM_DATABASE_URL: '',
        EDM_LOG: '1',
        ...extra,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
      child.on('exit', (code, signal) => resolve([code, signal])),
    );
    /** Waits for the log to hold `text` (polled: no fixed sleep stands for a state of the server). */
    const logged = async (text: string) => {
      while (!out.includes(text)) {
        if (child.exitCode !== null) throw new Error(`server exited ${child.exitCode}: ${out}`);
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    await logged('Server listening at');
    const port = Number(/Server listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(out)?.[1]);
    const { token } = (await (await fetch(`http://127.0.0.1:${port}/api/v1/dev/token`, { method: 'POST' })).json()) as {
      token: string;
    };
    return { child, port, token, exited, logged, log: () => out };
  };
  /** A raw connection: what it was answered, its errors, and whether it closed on one. */
  const open = async (port: number) => {
    const { connect } = await import('node:net');
    const socket = connect(port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    const read = { text: '' };
    socket.on('data', (chunk) => {
      read.text += chunk.toString();
    });
    const errors: string[] = [];
    socket.on('error', (err: NodeJS.ErrnoException) => errors.push(err.code ?? err.message));
    const closed = new Promise<boolean>((resolve) => socket.once('close', resolve));
    return { socket, read, closed, errors };
  };
  const STOPPING = 'SIGTERM: stopping';

  it('answers a request in flight, refuses a new one as a problem, closes its kept-alive connection, exits and removes the WAL', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'edm-stop-'));
    let server: ChildProcess | undefined;
    try {
      const { child, port, token, exited, logged } = await serveIn(dir);
      server = child;
      const body = JSON.stringify({ name: 'in flight', start_date: '2027-01-01', end_date: '2027-03-31' });
      const { socket, read: answer, closed } = await open(port);
      socket.write(
        `POST /api/v1/okr/cycles HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nAuthorization: Bearer ${token}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body.slice(0, 10)}`,
      );
      // A second connection whose request is complete only once the server is closing.
      const { socket: late, read: lateAnswer, closed: lateClosed } = await open(port);
      late.write('GET /api/v1/okr/cycles HTTP/1.1\r\nHost: x\r\n');
      await logged('"url":"/api/v1/okr/cycles"'); // the first request is in flight (its headers read)
      child.kill('SIGTERM');
      await logged(STOPPING);
      late.write(`Authorization: Bearer ${token}\r\n\r\n`);
      await lateClosed;
      // 503 as every error is answered: problem+json with its code, request id and Retry-After.
      const [head, lateBody] = lateAnswer.text.split('\r\n\r\n');
      expect(head).toMatch(/^HTTP\/1\.1 503/);
      expect(head).toMatch(/^content-type: application\/problem\+json/im);
      expect(head).toMatch(/^retry-after: 1$/im);
      expect(head).toMatch(/^connection: close$/im);
      const requestId = /^x-request-id: (\S+)$/im.exec(head)?.[1];
      expect(JSON.parse(lateBody)).toMatchObject({ status: 503, code: 'service_unavailable', request_id: requestId });
      socket.write(body.slice(10));
      await closed;
      expect(answer.text).toMatch(/^HTTP\/1\.1 201/);
      // Said to be the connection's last: its client sends no next request the close would reset.
      expect(answer.text.split('\r\n\r\n')[0]).toMatch(/^connection: close$/im);
      expect(await exited).toEqual([0, null]);
      expect(existsSync(join(dir, 'data', 'edm.sqlite-wal'))).toBe(false);
    } finally {
      if (server?.exitCode === null) server.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);

  // Its client keeps a connection alive between requests; the next one is sent just after the
  // SIGTERM. The close ended such a connection at once: the request was reset, unanswered (a
  // write the client could not tell ran or not). And a second SIGTERM killed the process
  // (exit by signal, the WAL left behind).
  it('answers 503 to a request on a kept-alive idle connection after SIGTERM, takes no new connection, and a second SIGTERM does not end it', async () => {
    const { connect } = await import('node:net');
    const dir = mkdtempSync(join(tmpdir(), 'edm-drain-'));
    let server: ChildProcess | undefined;
    try {
      const { child, port, token, exited, logged, log } = await serveIn(dir);
      server = child;
      const { socket, read, closed, errors } = await open(port);
      socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
      while (!read.text.includes('{"status":"ok"}')) await new Promise((r) => setTimeout(r, 5));
      expect(read.text).toMatch(/^HTTP\/1\.1 200/);
      expect(read.text).not.toMatch(/^connection: close$/im);
      read.text = '';
      child.kill('SIGTERM');
      await logged(STOPPING);
      child.kill('SIGTERM');
      await logged('SIGTERM while stopping: the stop goes on');
      // A new connection is refused (a proxy tries another server for it).
      const refused = await new Promise<string>((resolve) => {
        const other = connect(port, '127.0.0.1');
        other.once('connect', () => {
          other.destroy();
          resolve('connected');
        });
        other.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
      });
      expect(refused).toBe('ECONNREFUSED');
      const body = JSON.stringify({ name: 'after the stop', start_date: '2027-01-01', end_date: '2027-03-31' });
      socket.write(
        `POST /api/v1/okr/cycles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
      );
      expect(await closed).toBe(false); // closed without an error: no reset
      expect(errors).toEqual([]);
      const [head, problem] = read.text.split('\r\n\r\n');
      expect(head).toMatch(/^HTTP\/1\.1 503/);
      expect(head).toMatch(/^connection: close$/im);
      expect(head).toMatch(/^retry-after: 1$/im);
      expect(JSON.parse(problem as string)).toMatchObject({ status: 503, code: 'service_unavailable' });
      expect(await exited).toEqual([0, null]);
      expect(log()).not.toMatch(/"level":50/);
      expect(existsSync(join(dir, 'data', 'edm.sqlite-wal'))).toBe(false);
    } finally {
      if (server?.exitCode === null) server.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);

  // A request timeout shorter than the grace: the idle connection was answered 408 and closed
  // within the grace, and the request its client sent next went unanswered.
  it('keeps an idle kept-alive connection through the grace, however short EDM_REQUEST_TIMEOUT_MS is', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'edm-short-'));
    let server: ChildProcess | undefined;
    try {
      const { child, port, exited, logged } = await serveIn(dir, { EDM_REQUEST_TIMEOUT_MS: '100' });
      server = child;
      const { socket, read, closed, errors } = await open(port);
      socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
      while (!read.text.includes('{"status":"ok"}')) await new Promise((r) => setTimeout(r, 5));
      read.text = '';
      child.kill('SIGTERM');
      await logged(STOPPING);
      // Past the request timeout, within the grace (1 s).
      await new Promise((r) => setTimeout(r, 350));
      expect(read.text).toBe('');
      socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
      expect(await closed).toBe(false);
      expect(errors).toEqual([]);
      expect(read.text).toMatch(/^HTTP\/1\.1 503/);
      expect(await exited).toEqual([0, null]);
    } finally {
      if (server?.exitCode === null) server.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);

  it('ends at once on a second Ctrl-C (SIGINT) while it waits on a connection kept alive (exit 130)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'edm-interrupt-'));
    let server: ChildProcess | undefined;
    try {
      const { child, port, exited, logged } = await serveIn(dir);
      server = child;
      // An idle connection kept alive holds the stop up to its grace (1 s).
      const { socket, read } = await open(port);
      socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
      while (!read.text.includes('{"status":"ok"}')) await new Promise((r) => setTimeout(r, 5));
      child.kill('SIGINT');
      await logged('SIGINT: stopping');
      child.kill('SIGINT');
      expect(await exited).toEqual([130, null]);
      socket.destroy();
    } finally {
      if (server?.exitCode === null) server.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});

/** Usage errors exit 2 with what is wrong and the command's usage line; `--help` prints it and exits 0. */
describe('edm usage', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'edm-usage-'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  const env = { ...process.env, EDM_JWT_SECRET: '', EDM_SECRET_KEY: '', EDM_DATABASE_URL: '' };
  const edm = (...args: string[]) => run(process.execPath, [bin, ...args], { cwd: dir, env });

  it.each([
    [['token', '--bogus'], "Unknown option '--bogus'", 'edm token --tenant T --sub S'],
    [['token', '--tenant', 't'], '--tenant and --sub are required', 'edm token --tenant T --sub S'],
    // A token that could not be used is no token: refused before any secret is read or generated.
    [['token', '--tenant', 't', '--sub', 's', '--ttl', 'banana'], '--ttl: Invalid ttl banana', 'edm token'],
    [['token', '--tenant', 't', '--sub', 's', '--ttl', '0'], '--ttl must be at least 1 second', 'edm token'],
    [['token', '--tenant', 't', '--sub', 's', '--ttl', '3651d'], '--ttl must be at most 3650d', 'edm token'],
    [['token', '--tenant', 't', '--sub', 's', '--ttl', '99999999999999d'], '--ttl must be at most 3650d', 'edm token'],
    [['token', '--tenant', 't', '--sub', 's', '--scope', ' '], '--scope is empty', 'edm token'],
    [['token', '--tenant', 't', '--sub', 's', '--app', ''], '--app is empty', 'edm token'],
    [
      ['token', '--tenant', 't', '--sub', 's', '--scope', 'okr:read okr:raed'],
      '--scope: unknown scope okr:raed (the scopes are okr:read, okr:write)',
      'edm token',
    ],
    [['export', '--tenant'], "Option '--tenant <value>' argument missing", 'edm export --tenant T'],
    [['import', 'x.json', '--tenant', 't', '--nope'], "Unknown option '--nope'", 'edm import FILE --tenant T'],
    [['serve', '--bogus'], "Unknown option '--bogus'", 'edm serve [--no-migrate]'],
    [['migrate', '--bogus'], "Unknown option '--bogus'", 'edm migrate'],
    [['migrate', 'now'], "Unexpected argument 'now'", 'edm migrate'],
    [['seed', '--tenant', ''], '--tenant must not be empty', 'edm seed [--tenant dev]'],
    [['import', '--tenant', 't'], 'name one file to import', 'edm import FILE --tenant T'],
    [['import', 'a.json', 'b.json', '--tenant', 't'], 'name one file to import', 'edm import FILE --tenant T'],
    [['export', 'stray', '--tenant', 't'], 'unexpected argument stray', 'edm export --tenant T'],
    [['export', '--tenant', 't', '--format', 'xml'], '--format must be json or csv, not xml', 'edm export --tenant T'],
    [['import', 'a.json', '--tenant', 't', '--format', 'xml'], '--format must be json or csv', 'edm import FILE'],
    [['import', 'a.csv', '--tenant', 't'], 'a.csv (a CSV, by its name) needs --resource', 'edm import FILE'],
    // An option of the other transfer command is not taken silently.
    [['export', '--tenant', 't', '--sub', 'x'], '--sub is an option of edm import, not of edm export', 'edm export'],
    [
      ['import', 'a.json', '--tenant', 't', '--out', 'x'],
      '--out is an option of edm export, not of edm import',
      'edm import',
    ],
    [
      ['import', 'a.json', '--tenant', 't', '--include-deleted'],
      '--include-deleted is an option of edm export',
      'edm import',
    ],
    // A tenant, subject or app no token could carry (the server refuses such claims).
    [['token', '--tenant', 't'.repeat(257), '--sub', 's'], '--tenant is longer than 256 characters', 'edm token'],
    [['token', '--tenant', 't', '--sub', 's'.repeat(257)], '--sub is longer than 256 characters', 'edm token'],
    [['token', '--tenant', 't', '--sub', 's', '--app', 'a'.repeat(257)], '--app is longer than 256', 'edm token'],
    [['seed', '--tenant', 't'.repeat(257)], '--tenant is longer than 256 characters', 'edm seed'],
    [['export', '--tenant', 't'.repeat(257)], '--tenant is longer than 256 characters', 'edm export'],
    [['import', 'a.json', '--tenant', 't'.repeat(257)], '--tenant is longer than 256 characters', 'edm import'],
    [['import', 'a.json', '--tenant', 't', '--sub', 's'.repeat(257)], '--sub is longer than 256', 'edm import'],
  ])('edm %j exits 2, saying so, with its usage line', async (args, message, usage) => {
    const err = await edm(...args).catch((e) => e);
    expect(err).toMatchObject({ code: 2 });
    expect(err.stderr).toContain(`edm ${args[0]}: ${message}`);
    expect(err.stderr).toContain(`Usage: ${usage}`);
    expect(existsSync(join(dir, 'data'))).toBe(false); // nothing ran
  });

  it('a store it cannot open or migrate: exit 1, the message naming the store and its variable', async () => {
    const secrets = { EDM_JWT_SECRET: 'j'.repeat(32), EDM_SECRET_KEY: 'k'.repeat(32), PORT: '0' };
    const text = join(dir, 'not-a-store.txt');
    writeFileSync(text, 'x'.repeat(4096));
    // Killed if it outlives pg's idle timeout (10 s): a pool left open held the process that long.
    const serve = (url: string) =>
      run(process.execPath, [bin, 'serve'], {
        cwd: dir,
        env: { ...env, ...secrets, EDM_DATABASE_URL: url },
        timeout: 8000,
      }).catch((e) => e);
    const notSqlite = await serve(`sqlite:${text}`);
    expect(notSqlite).toMatchObject({ code: 1 });
    expect(notSqlite.stderr).toContain(
      `edm serve: the store sqlite:${text} (EDM_DATABASE_URL, or EDM_DATA_DIR's edm.sqlite): file is not a database`,
    );
    // PostgreSQL: a migration that fails after connecting (a read-only session) closes the pool,
    // whose idle connection held the process for its idle timeout.
    if (PG_URL) {
      const readOnly = `${PG_URL}?schema=edm_cli_read_only&options=-c%20default_transaction_read_only%3Don`;
      const failed = await serve(readOnly);
      expect(failed).toMatchObject({ code: 1, killed: false });
      expect(failed.stderr).toMatch(/edm serve: the store postgres:\/\/.*\(EDM_DATABASE_URL, .*read-only transaction/);
    }
  });

  it('every command that opens a store names the one it cannot reach or read, as edm serve does, its password masked', async () => {
    // A port nothing listens on: taken, then given back.
    const port = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const { port } = server.address() as AddressInfo;
        server.close(() => resolve(port));
      });
    });
    const text = join(dir, 'not-a-store-either.txt');
    writeFileSync(text, 'x'.repeat(4096));
    const secrets = { EDM_JWT_SECRET: 'j'.repeat(32), EDM_SECRET_KEY: 'k'.repeat(32) };
    const down = `postgres://edm:hunter2@127.0.0.1:${port}/edm`;
    const cases: [string[], string, RegExp][] = [
      [['migrate'], down, /connect ECONNREFUSED/],
      [['seed'], down, /connect ECONNREFUSED/],
      [['export', '--tenant', 't'], down, /connect ECONNREFUSED/],
      [['migrate'], `sqlite:${text}`, /file is not a database/],
      [['seed'], `sqlite:${text}`, /file is not a database/],
    ];
    for (const [args, url, cause] of cases) {
      const err = await run(process.execPath, [bin, ...args], {
        cwd: dir,
        env: { ...env, ...secrets, EDM_DATABASE_URL: url },
        timeout: 8000,
      }).catch((e) => e);
      const named = url.replace(':hunter2@', ':***@');
      expect([err.code, err.killed], args.join(' ')).toEqual([1, false]);
      expect(err.stderr, args.join(' ')).toContain(
        `edm ${args[0]}: the store ${named} (EDM_DATABASE_URL, or EDM_DATA_DIR's edm.sqlite): `,
      );
      expect(err.stderr).toMatch(cause);
      expect(err.stderr).not.toContain('hunter2');
    }
  });

  it('refuses a store in memory for the commands that open one: it keeps nothing once they end', async () => {
    const secrets = { EDM_JWT_SECRET: 'j'.repeat(32), EDM_SECRET_KEY: 'k'.repeat(32) };
    for (const args of [['migrate'], ['seed'], ['export', '--tenant', 't']]) {
      const err = await run(process.execPath, [bin, ...args], {
        cwd: dir,
        env: { ...env, ...secrets, EDM_DATABASE_URL: 'sqlite::memory:' },
      }).catch((e) => e);
      expect([err.code, err.stderr], args[0]).toEqual([
        1,
        expect.stringContaining(
          `edm ${args[0]}: EDM_DATABASE_URL: sqlite::memory: keeps nothing once edm ${args[0]} ends; name a file`,
        ),
      ]);
    }
  });

  it('edm export writes nothing to the store it reads: a file in another journal mode keeps it', async () => {
    const file = join(dir, 'rollback-journal.sqlite');
    const secrets = {
      EDM_JWT_SECRET: 'j'.repeat(32),
      EDM_SECRET_KEY: 'k'.repeat(32),
      EDM_DATABASE_URL: `sqlite:${file}`,
    };
    await run(process.execPath, [bin, 'migrate'], { cwd: dir, env: { ...env, ...secrets } });
    // An operator's copy taken out of WAL mode (a backup tool's habit): bytes 18 and 19 of the
    // header say which mode, 1 and 1 for a rollback journal, 2 and 2 for WAL.
    const sqlite = new (await import('better-sqlite3')).default(file);
    sqlite.pragma('journal_mode = DELETE');
    sqlite.close();
    const before = readFileSync(file);
    expect([before[18], before[19]]).toEqual([1, 1]);
    const out = await run(process.execPath, [bin, 'export', '--tenant', 't'], {
      cwd: dir,
      env: { ...env, ...secrets },
    });
    expect(JSON.parse(out.stdout).format).toBeDefined();
    expect(readFileSync(file).equals(before)).toBe(true);
  });

  it('edm export from a store without the schema names the store, and writes nothing to it', async () => {
    const file = join(dir, 'no-schema.sqlite');
    writeFileSync(file, ''); // an empty file is an empty SQLite database
    const err = await run(process.execPath, [bin, 'export', '--tenant', 't'], {
      cwd: dir,
      env: {
        ...env,
        EDM_JWT_SECRET: 'j'.repeat(32),
        EDM_SECRET_KEY: 'k'.repeat(32),
        EDM_DATABASE_URL: `sqlite:${file}`,
      },
    }).catch((e) => e);
    expect([err.code, err.stderr]).toEqual([
      1,
      expect.stringContaining(
        `edm export: the store sqlite:${file} (EDM_DATABASE_URL, or EDM_DATA_DIR's edm.sqlite): this database has no EDM schema of this build yet`,
      ),
    ]);
    expect(readFileSync(file).length).toBe(0);
  });

  it('a command that writes refuses a store that takes none, naming it', async (context) => {
    const file = join(dir, 'write-protected.sqlite');
    const secrets = {
      EDM_JWT_SECRET: 'j'.repeat(32),
      EDM_SECRET_KEY: 'k'.repeat(32),
      EDM_DATABASE_URL: `sqlite:${file}`,
    };
    await run(process.execPath, [bin, 'migrate'], { cwd: dir, env: { ...env, ...secrets } });
    const undo = writeProtect(file);
    if (!undo) return context.skip('nothing here can make a file read-only');
    try {
      for (const args of [['migrate'], ['seed']]) {
        const err = await run(process.execPath, [bin, ...args], { cwd: dir, env: { ...env, ...secrets } }).catch(
          (e) => e,
        );
        expect([err.code, err.stderr], args[0]).toEqual([
          1,
          expect.stringContaining(
            `edm ${args[0]}: the store sqlite:${file} (EDM_DATABASE_URL, or EDM_DATA_DIR's edm.sqlite): it takes no writes`,
          ),
        ]);
      }
      // Reading it still works.
      const out = await run(process.execPath, [bin, 'export', '--tenant', 't'], {
        cwd: dir,
        env: { ...env, ...secrets },
      });
      expect(JSON.parse(out.stdout).format).toBeDefined();
    } finally {
      undo();
    }
  });

  it('a transfer that fails before its work creates no store: an export from a SQLite file not there, an import of a FILE it cannot read', async () => {
    const store = join(dir, 'never.sqlite');
    const secrets = {
      EDM_JWT_SECRET: 'j'.repeat(32),
      EDM_SECRET_KEY: 'k'.repeat(32),
      EDM_DATABASE_URL: `sqlite:${store}`,
    };
    const edmWith = (...args: string[]) =>
      run(process.execPath, [bin, ...args], { cwd: dir, env: { ...env, ...secrets } }).catch((e) => e);
    writeFileSync(join(dir, 'not-json.json'), '{"format":');
    // Past the longest text Node holds (~512 MiB), as a sparse file: nothing written to the disk.
    const huge = join(dir, 'huge.json');
    writeFileSync(huge, '');
    truncateSync(huge, 600 * 2 ** 20);
    const cases: [string[], string][] = [
      [['export', '--tenant', 't'], `edm export: the store sqlite:${store} does not exist`],
      [['import', join(dir, 'missing.json'), '--tenant', 't'], 'ENOENT'],
      [['import', join(dir, 'not-json.json'), '--tenant', 't'], 'is not JSON'],
      // A folder: one line naming it (it was a raw "EISDIR: illegal operation on a directory, read").
      [['import', dir, '--tenant', 't'], `edm import: ${dir} is a folder: name the file to import\n`],
      [['import', huge, '--tenant', 't'], `${huge} is too large to import whole (600 MiB;`],
    ];
    for (const [args, message] of cases) {
      const err = await edmWith(...args);
      expect([err.code, err.stderr, existsSync(store)], args.join(' ')).toEqual([
        1,
        message.endsWith('\n') ? message : expect.stringContaining(message),
        false,
      ]);
    }
    // Without configured secrets, from a folder with no store: no data folder with fresh secrets
    // is left behind (they signed nothing a server accepts).
    const fresh = mkdtempSync(join(tmpdir(), 'edm-export-'));
    try {
      const err = await run(process.execPath, [bin, 'export', '--tenant', 't'], { cwd: fresh, env }).catch((e) => e);
      expect([err.code, err.stderr, readdirSync(fresh)]).toEqual([
        1,
        expect.stringContaining(`edm export: the store sqlite:${join(fresh, 'data', 'edm.sqlite')} does not exist`),
        [],
      ]);
    } finally {
      rmSync(fresh, { recursive: true, force: true });
    }
  });

  it('a server that does not migrate refuses a SQLite file not there (exit 1), creating neither it nor secrets', async () => {
    const fresh = mkdtempSync(join(tmpdir(), 'edm-no-migrate-'));
    try {
      const store = join(fresh, 'data', 'edm.sqlite');
      for (const [args, extra] of [
        [['serve', '--no-migrate'], {}],
        [['serve'], { EDM_AUTO_MIGRATE: '0' }],
      ] as const) {
        const err = await run(process.execPath, [bin, ...args], {
          cwd: fresh,
          env: { ...env, ...extra, PORT: '0' },
        }).catch((e) => e);
        expect([err.code, err.stderr, readdirSync(fresh)], args.join(' ')).toEqual([
          1,
          `edm serve: the store sqlite:${store} does not exist (EDM_DATABASE_URL, or EDM_DATA_DIR's edm.sqlite); a server that does not migrate (--no-migrate, EDM_AUTO_MIGRATE=0) creates none: run edm migrate first\n`,
          [],
        ]);
      }
    } finally {
      rmSync(fresh, { recursive: true, force: true });
    }
  });

  it('refuses an EDM_LOG it cannot read at start (exit 1), rather than log everything', async () => {
    const secrets = { EDM_JWT_SECRET: 'j'.repeat(32), EDM_SECRET_KEY: 'k'.repeat(32), PORT: '0' };
    const err = await run(process.execPath, [bin, 'serve'], {
      cwd: dir,
      env: { ...env, ...secrets, EDM_LOG: 'quiet' },
    }).catch((e) => e);
    expect(err).toMatchObject({ code: 1 });
    expect(err.stderr).toContain('edm serve: EDM_LOG must be on (1, true, on, info), warn, error, or off');
    // Refused before any secret is generated: a local-mode start leaves no data folder behind.
    const fresh = mkdtempSync(join(tmpdir(), 'edm-log-'));
    try {
      const local = await run(process.execPath, [bin, 'serve'], {
        cwd: fresh,
        env: { ...env, PORT: '0', EDM_JWT_SECRET: '', EDM_SECRET_KEY: '', EDM_DATABASE_URL: '', EDM_LOG: 'quiet' },
      }).catch((e) => e);
      expect(local).toMatchObject({ code: 1 });
      expect(readdirSync(fresh)).toEqual([]);
    } finally {
      rmSync(fresh, { recursive: true, force: true });
    }
  });

  // `edm help --help`, `edm help -h` and `edm help help` exited 2 ("no command --help").
  it.each([['token'], ['serve'], ['migrate'], ['seed'], ['export'], ['import'], ['help']])(
    'edm %s --help prints its usage and exits 0, as edm help COMMAND does',
    async (command) => {
      for (const help of ['--help', '-h']) {
        const { stdout } = await edm(command, help);
        expect(stdout).toMatch(new RegExp(`^Usage: edm ${command}\\b`));
      }
      expect((await edm('help', command)).stdout).toMatch(new RegExp(`^Usage: edm ${command}\\b`));
      expect(existsSync(join(dir, 'data'))).toBe(false);
    },
  );

  it('edm help lists every command, itself as edm help [COMMAND]', async () => {
    const { stdout } = await edm('help');
    for (const command of ['serve', 'token', 'migrate', 'seed', 'export', 'import']) {
      expect(stdout).toMatch(new RegExp(`^  edm ${command}\\b`, 'm'));
    }
    expect(stdout).toMatch(/^ {2}edm help \[COMMAND\] +every command's usage, or COMMAND's/m);
  });

  // `edm help foo` printed the general usage and exited 0.
  it.each([
    // No command printed the usage to stdout, as if asked for, with exit 2.
    [[], 'edm: no command given\n\nedm — the EDM API platform'],
    [['help', 'foo'], 'edm help: no command foo'],
    [['help', 'export', 'now'], 'edm help: unexpected argument now'],
    // An empty --out (a variable unset in a script) wrote the export, webhook URLs included, to stdout.
    [['export', '--tenant', 't', '--out', ''], 'edm export: --out needs a file name'],
  ])('edm %j exits 2, saying so', async (args, message) => {
    const err = await edm(...args).catch((e) => e);
    expect([err.code, err.stdout]).toEqual([2, '']);
    expect(err.stderr).toContain(message);
    expect(existsSync(join(dir, 'data'))).toBe(false);
  });
});

// An import signed webhook URLs (and sealed connector secrets) with its own secret, whatever the
// database was served with: a server then refused those URLs (401), and no one was told.
describe.each(storeKinds)('edm import: the server secret (%s)', (kind) => {
  it('refuses a secret other than the one the database was last served with (exit 1), writing nothing', async () => {
    const served = 'a'.repeat(32);
    const fresh = await freshStore(kind);
    const dir = mkdtempSync(join(tmpdir(), 'edm-secret-'));
    try {
      await migrate(
        fresh.store,
        modules.flatMap((m) => m.resources),
      );
      await recordSecretFingerprint(fresh.store.db, new ServerKeys(new TextEncoder().encode(served)).fingerprint);
      const url = fresh.schema ? `${fresh.url}?schema=${fresh.schema}` : fresh.url;
      const file = join(dir, 'connector.json');
      writeFileSync(
        file,
        JSON.stringify({
          format: 'edm.export.v2',
          resources: { Connector: [{ name: 'Feed', kind: 'webhook', config: {} }] },
        }),
      );
      const edm = (env: Record<string, string>) =>
        run(process.execPath, [bin, 'import', file, '--tenant', 'acme'], {
          cwd: dir,
          env: { ...process.env, EDM_JWT_SECRET: 'j'.repeat(32), EDM_DATABASE_URL: url, ...env },
        }).catch((e) => e);
      const connectors = async () =>
        (await fresh.store.db.selectFrom('okr_connectors').select('id').where('tenant_id', '=', 'acme').execute())
          .length;
      // Another EDM_SECRET_KEY, or none (a secret generated in another EDM_DATA_DIR).
      const others: Record<string, string>[] = [
        { EDM_SECRET_KEY: 'b'.repeat(32) },
        { EDM_SECRET_KEY: '', EDM_DATA_DIR: join(dir, 'data') },
      ];
      for (const env of others) {
        const refused = await edm(env);
        expect([refused.code, refused.stdout], JSON.stringify(env)).toEqual([1, '']);
        expect(refused.stderr).toBe(
          "edm import: the server secret (EDM_SECRET_KEY, else EDM_DATA_DIR's secret-key file) is not the one this database was last served with: the server would refuse the webhook URLs this import signs, and read the connector secrets it seals as none. Use the server's: its EDM_SECRET_KEY, or the EDM_DATA_DIR it generated its secret-key file in; nothing was imported\n",
        );
        expect(await connectors()).toBe(0);
      }
      const taken = await edm({ EDM_SECRET_KEY: served });
      expect(taken.stderr).toMatch(/imported into tenant acme \(\w+\): 1 Connector/);
      expect(await connectors()).toBe(1);
      // A database no server has served: the import records its secret, as a server would, so an
      // import with another one later is refused as above.
      await fresh.store.db.deleteFrom('edm_meta').where('key', '=', 'secret_fingerprint').execute();
      const first = await edm({ EDM_SECRET_KEY: 'c'.repeat(32) });
      expect(first.stderr).toMatch(/imported into tenant acme/);
      expect(await servedSecretFingerprint(fresh.store.db)).toBe(
        new ServerKeys(new TextEncoder().encode('c'.repeat(32))).fingerprint,
      );
      const later = await edm({ EDM_SECRET_KEY: served });
      expect(later.code).toBe(1);
      expect(await connectors()).toBe(2);
    } finally {
      await fresh.store.close();
      await fresh.drop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});

// The dynamic loader prints the tunables it parsed (glibc ≥ 2.33): the interpreter line's
// assignment is run as `env -S` runs it, with the loader in place of node.
const LD_SO = ['/lib64/ld-linux-x86-64.so.2', '/lib/ld-linux-aarch64.so.1'].find((p) => existsSync(p));

describe('edm executable: malloc settings', () => {
  it.skipIf(!LD_SO)("applies its own GLIBC_TUNABLES, and an operator's own setting of one wins", async () => {
    const line = readFileSync(bin, 'utf8').split('\n')[0];
    const assignment = /^#!\/usr\/bin\/env -S (GLIBC_TUNABLES=\S+) node /.exec(line)?.[1];
    if (!assignment) throw new Error(`no GLIBC_TUNABLES on the interpreter line: ${line}`);
    const tunables = async (env: NodeJS.ProcessEnv) => {
      const { stdout } = await run('/usr/bin/env', ['-S', `${assignment} ${LD_SO} --list-tunables`], { env });
      const value = (name: string) => new RegExp(`^glibc\\.malloc\\.${name}: (\\S+)`, 'm').exec(stdout)?.[1];
      return { arena: value('arena_max'), mmap: value('mmap_threshold'), trim: value('trim_threshold') };
    };
    const PATH = process.env.PATH;
    expect(await tunables({ PATH })).toEqual({ arena: '0x1', mmap: '0x100000', trim: '0x2000000' });
    // Before, the line's assignment replaced the operator's variable whole.
    expect(await tunables({ PATH, GLIBC_TUNABLES: 'glibc.malloc.arena_max=4' })).toEqual({
      arena: '0x4',
      mmap: '0x100000',
      trim: '0x2000000',
    });
  });
});
