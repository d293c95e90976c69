/**
 * The Playground in a real browser: Debian's Chromium driven by playwright-core, against a
 * server this file starts (local mode, so the dev-token endpoint exists). Without Chromium the
 * browser half is skipped with a loud banner; where EDM_REQUIRE_BROWSER=1 (CI) that is a failure.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/http/app.js';
import { PLAYGROUND_DIR } from '../src/http/playground.js';
import { freshStore, SEED_TSV, testConfig } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const hasBrowser = existsSync(CHROMIUM);
const requireBrowser = process.env.EDM_REQUIRE_BROWSER === '1';
const SCREENSHOTS = fileURLToPath(new URL('../test-results/screenshots/', import.meta.url));

const boxed = (line: string) => `${`#  ${line}`.padEnd(79)}#`;

if (!hasBrowser) {
  process.stderr.write(
    [
      '',
      '################################################################################',
      boxed(`Playground browser tests SKIPPED: ${CHROMIUM} is missing.`),
      boxed('Install it with: apt-get update && apt-get install -y chromium'),
      '################################################################################',
      '',
    ].join('\n'),
  );
}

interface SeedField {
  field: string;
  type: string;
  alwaysPresent: boolean;
  enumValues: string;
  notes: string;
}

function seedFields(): SeedField[] {
  const [, ...rows] = readFileSync(SEED_TSV, 'utf8').trimEnd().split('\n');
  return rows.map((line) => {
    const [field, type, always, enumValues, notes] = line.split('\t');
    return { field, type, alwaysPresent: always === 'yes', enumValues, notes };
  });
}

/** The Playground has to be built (npm run build does it); a test run on its own builds it when missing. */
async function ensureBuilt(): Promise<void> {
  if (existsSync(`${PLAYGROUND_DIR}index.html`)) return;
  const { build } = await import('vite');
  await build({ configFile: fileURLToPath(new URL('../src/playground/vite.config.ts', import.meta.url)) });
}

async function startServer() {
  await ensureBuilt();
  const fresh = await freshStore('sqlite');
  const app = await buildApp({ config: testConfig({ localMode: true }), store: fresh.store });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  if (!address || typeof address === 'string') throw new Error('no address');
  return {
    app,
    origin: `http://127.0.0.1:${address.port}`,
    async close() {
      await app.close();
      await fresh.store.close();
      await fresh.drop();
    },
  };
}

describe('the Playground is served by the API server', () => {
  let server: Awaited<ReturnType<typeof startServer>>;
  beforeAll(async () => {
    server = await startServer();
  });
  afterAll(async () => {
    await server?.close();
  });

  it('redirects / to /playground and answers deep links with the app', async () => {
    const app: FastifyInstance = server.app;
    const root = await app.inject({ method: 'GET', url: '/' });
    expect(root.statusCode).toBe(302);
    expect(root.headers.location).toBe('/playground');
    for (const url of ['/playground', '/playground/', '/playground/okr/key-results']) {
      const page = await app.inject({ method: 'GET', url });
      expect(page.statusCode, url).toBe(200);
      expect(page.headers['content-type']).toMatch(/^text\/html/);
      expect(page.headers['content-security-policy']).toContain("default-src 'self'");
      expect(page.body).toContain('Loading manifest…');
    }
    // The app's own file too: no other site may frame it (frame-ancestors 'none').
    const file = await app.inject({ method: 'GET', url: '/playground/index.html' });
    expect(file.statusCode).toBe(200);
    expect(file.headers['content-security-policy']).toContain("frame-ancestors 'none'");
    const script = /src="(\/playground\/assets\/[^"]+\.js)"/.exec(
      (await app.inject({ method: 'GET', url: '/playground' })).body,
    )?.[1];
    expect(script).toBeDefined();
    const asset = await app.inject({ method: 'GET', url: script as string });
    expect(asset.statusCode).toBe(200);
    expect(asset.headers['content-type']).toMatch(/javascript/);
    expect(asset.headers['cache-control']).toContain('immutable');
    expect((await app.inject({ method: 'GET', url: '/playground/assets/missing.js' })).statusCode).toBe(404);
    expect((await app.inject({ method: 'GET', url: '/playground/..%2f..%2fpackage.json' })).statusCode).not.toBe(200);
  });
});

describe.runIf(!hasBrowser && requireBrowser)('the Playground in Chromium', () => {
  it('needs Chromium', () => {
    expect.fail(`EDM_REQUIRE_BROWSER=1 but ${CHROMIUM} is missing: the browser tests would be skipped`);
  });
});

/** The contrast of an element's border against its background, by WCAG's relative luminance (run in the page). */
function edgeContrast(el: Element): number {
  const rgb = (css: string) => (css.match(/[\d.]+/g) ?? []).slice(0, 3).map(Number);
  const luminance = (css: string) => {
    const [r, g, b] = rgb(css).map((v) => {
      const c = v / 255;
      return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const style = getComputedStyle(el);
  const [a, b] = [luminance(style.borderTopColor), luminance(style.backgroundColor)].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
}

describe.runIf(hasBrowser)('the Playground in Chromium', () => {
  let server: Awaited<ReturnType<typeof startServer>>;
  let browser: Browser;
  let page: Page;
  const foreign: string[] = [];
  const pageErrors: string[] = [];
  const ids: { objective?: string; keyResult?: string } = {};

  beforeAll(async () => {
    server = await startServer();
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--no-first-run',
        '--disable-sync',
        '--disable-quic',
      ],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.setDefaultTimeout(15_000);
    page.on('request', (r) => {
      if (!r.url().startsWith(`${server.origin}/`) && !r.url().startsWith('data:')) foreign.push(r.url());
    });
    page.on('pageerror', (e) => pageErrors.push(e.message));
    // Error answers the tests provoke log "Failed to load resource"; anything else (a CSP violation) counts.
    page.on('console', (m) => {
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) pageErrors.push(m.text());
    });
    mkdirSync(SCREENSHOTS, { recursive: true });
  });

  afterAll(async () => {
    try {
      await browser?.close();
    } finally {
      await server?.close();
    }
  });

  const panel = () => page.locator('#operation-panel');
  const bodyEditor = () => panel().locator('textarea');

  /** Clicks Send and waits for the console to show the answer to that request. */
  async function send(pathPart: string, method: string): Promise<unknown> {
    const answered = page.waitForResponse((r) => r.url().includes(pathPart) && r.request().method() === method);
    await panel().getByRole('button', { name: 'Send', exact: true }).click();
    const response = await answered;
    const requestId = response.headers()['x-request-id'];
    await panel().locator('.request-id', { hasText: requestId }).waitFor();
    return response.json();
  }

  async function openTab(name: string) {
    await page.getByRole('tab', { name, exact: true }).click();
    await page.locator(`#operation-panel[data-op="${name}"]`).waitFor();
  }

  it('shows "Loading manifest…" until the manifest arrives, and a clear error when it fails', async () => {
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    await page.route('**/api/v1/manifest', async (route) => {
      await held;
      await route.continue();
    });
    await page.goto(`${server.origin}/playground`);
    await page.getByText('Loading manifest…', { exact: true }).waitFor();
    release();
    await page.getByRole('heading', { name: 'Playground', exact: true, level: 1 }).waitFor();
    await page.unroute('**/api/v1/manifest');

    await page.route('**/api/v1/manifest', (route) =>
      route.fulfill({
        status: 503,
        contentType: 'application/problem+json',
        body: JSON.stringify({ title: 'Service unavailable', detail: 'The database is unreachable; retry shortly' }),
      }),
    );
    await page.reload();
    const alert = page.getByTestId('manifest-error');
    await alert.waitFor();
    expect(await alert.textContent()).toContain('GET /api/v1/manifest answered 503: The database is unreachable');
    await page.unroute('**/api/v1/manifest');
    await alert.getByRole('button', { name: 'Retry', exact: true }).click();
    await page.getByRole('heading', { name: 'Playground', exact: true, level: 1 }).waitFor();
  });

  it('renders the KeyResult page with every field of the seed', async () => {
    await page
      .getByRole('navigation', { name: 'Modules and resources', exact: true })
      .getByRole('link', { name: /KeyResult/ })
      .click();
    await page.getByRole('heading', { name: 'KeyResult', exact: true, level: 1 }).waitFor();
    expect(new URL(page.url()).pathname).toBe('/playground/okr/key-results');
    const head = page.locator('.resource-head');
    expect(await head.textContent()).toContain('/api/v1/okr/key-results');
    expect(await head.textContent()).toContain('A measurable result rolling up to an Objective.');
    const tabs = await page.getByRole('tab').allTextContents();
    for (const op of ['list', 'get', 'create', 'update', 'delete']) expect(tabs).toContain(op);
    expect(await page.getByTestId('client-namespace').textContent()).toBe('client.okr.keyResults.*');
    // The selected tab is marked by a 2 px accent line (3:1 and more), not by a colour of text alone.
    const tabCue = (selected: boolean) =>
      page
        .locator(`[role="tab"][aria-selected="${selected}"]`)
        .first()
        .evaluate((el) => {
          const s = getComputedStyle(el);
          return `${s.borderBottomWidth} ${s.borderBottomStyle} ${s.borderBottomColor}`;
        });
    expect(await tabCue(true)).toBe('2px solid rgb(9, 105, 218)');
    expect(await tabCue(false)).not.toContain('rgb(9, 105, 218)');

    const seed = seedFields();
    expect(seed.length).toBeGreaterThan(30);
    for (const f of seed) {
      const row = page.locator(`[data-testid="schema-table"] tr[data-field="${f.field}"]`);
      expect(await row.count(), f.field).toBe(1);
      const name = await row.locator('.field-name').textContent();
      expect(name, f.field).toBe(f.alwaysPresent ? `${f.field}*` : f.field);
      expect(await row.locator('.type').textContent(), f.field).toBe(f.type);
      expect(await row.locator('.notes').textContent(), f.field).toBe(f.notes);
      if (f.enumValues) expect(await row.locator('.enum').textContent(), f.field).toBe(f.enumValues);
    }
    // What a create may leave out, what it derives, and the bounds the server holds a value to.
    const cell = (field: string, selector: string) =>
      page.locator(`[data-testid="schema-table"] tr[data-field="${field}"] ${selector}`).textContent();
    expect(await cell('target', '.pill-required')).toBe('required unless metric_type is milestone');
    expect(await cell('current', '[data-testid="default-rule"]')).toBe('Default: baseline');
    expect(await cell('title', '[data-testid="field-limits"]')).toBe('1–200 characters');
    expect(await cell('tags', '[data-testid="field-limits"]')).toBe(
      'at most 32 items, each 1–64 characters, no repeats',
    );

    await page.screenshot({ path: `${SCREENSHOTS}keyresult-1280.png`, fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.getByRole('heading', { name: 'KeyResult', exact: true, level: 1 }).waitFor();
    // Nothing may be wider than a phone: the page itself must not scroll sideways.
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    expect(await tabCue(true)).toBe('2px solid rgb(9, 105, 218)');
    expect(await tabCue(false)).not.toContain('rgb(9, 105, 218)');
    await page.screenshot({ path: `${SCREENSHOTS}keyresult-390.png`, fullPage: true });
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  it('scrolls the schema table sideways from the keyboard where a narrow window cuts its notes off', async () => {
    // 800 px: a 1,600 px screen at 200% zoom, the sidebar still beside the page.
    await page.setViewportSize({ width: 800, height: 900 });
    try {
      await page.goto(`${server.origin}/playground/okr/key-results`);
      const region = page.getByRole('region', { name: 'Schema fields table', exact: true });
      expect(await region.getAttribute('tabindex')).toBe('0');
      const overflow = await region.evaluate((el) => el.scrollWidth - el.clientWidth);
      expect(overflow).toBeGreaterThan(0);
      await region.focus();
      for (let i = 0; i < 5; i++) await page.keyboard.press('ArrowRight');
      await page.waitForFunction(() => (document.activeElement?.scrollLeft ?? 0) > 0);
      expect(await page.evaluate(() => document.activeElement?.getAttribute('aria-label'))).toBe('Schema fields table');
    } finally {
      await page.setViewportSize({ width: 1280, height: 900 });
    }
  });

  it("brings each sidebar link the keyboard reaches whole into the phone's sideways strip", async () => {
    await page.setViewportSize({ width: 320, height: 640 });
    try {
      await page.goto(`${server.origin}/playground/okr/key-results`);
      const nav = page.getByRole('navigation', { name: 'Modules and resources', exact: true });
      const links = nav.getByRole('link');
      // The sidebar is drawn from the manifest, once it arrives: wait for it (a busy machine).
      await links.nth(3).waitFor();
      const count = await links.count();
      expect(count).toBeGreaterThan(3);
      // The strip is narrower than its links: some are out of sight until reached.
      expect(await nav.evaluate((el) => el.scrollWidth - el.clientWidth)).toBeGreaterThan(0);
      await links.first().focus();
      for (let i = 1; i < count; i++) {
        await page.keyboard.press('Tab');
        const seen = await page.evaluate(() => {
          const link = document.activeElement as HTMLElement;
          const strip = link.closest('nav') as HTMLElement;
          const [a, b] = [link.getBoundingClientRect(), strip.getBoundingClientRect()];
          return { name: link.textContent, whole: a.left >= b.left - 0.5 && a.right <= b.right + 0.5 };
        });
        expect(seen, `link ${i}`).toEqual({ name: await links.nth(i).textContent(), whole: true });
      }
    } finally {
      await page.setViewportSize({ width: 1280, height: 900 });
    }
  });

  it('keeps the focus on the selected tab when arrow keys are pressed a frame apart', async () => {
    await page.goto(`${server.origin}/playground/okr/key-results`);
    const tabs = page.getByRole('tablist', { name: 'Operations', exact: true });
    for (let round = 0; round < 6; round++) {
      await tabs.getByRole('tab', { selected: true }).focus();
      for (let i = 0; i < 3; i++) await page.keyboard.press('ArrowRight');
      // Let every render of those presses land, then ask where the focus ended up.
      await page.waitForTimeout(200);
      const state = await page.evaluate(() => ({
        focused: document.activeElement?.id,
        selected: document.querySelector('[role="tab"][aria-selected="true"]')?.id,
      }));
      expect(state.focused, `round ${round}`).toBe(state.selected);
    }
  });

  it('creates an objective and a key result from the console with a dev token', async () => {
    const minted: string[] = [];
    const onRequest = (r: { url(): string }) => {
      if (r.url().endsWith('/api/v1/dev/token')) minted.push(r.url());
    };
    page.on('request', onRequest);
    await page.goto(`${server.origin}/playground/okr/objectives#create`);
    await page.locator('#operation-panel[data-op="create"]').waitFor();
    // The manifest says the server mints dev tokens: the page asks for one only when told to.
    await page.getByRole('button', { name: 'Use dev token', exact: true }).waitFor();
    expect(minted).toEqual([]);
    // A request that gets no answer (a server restarting) says so and leaves the button in place.
    await page.route('**/api/v1/dev/token', (route) => route.abort('connectionrefused'));
    await page.getByRole('button', { name: 'Use dev token', exact: true }).click();
    expect(await page.getByTestId('dev-token-error').textContent()).toMatch(/^No answer from the server/);
    await page.unroute('**/api/v1/dev/token');
    // What the button did is said where a screen reader hears it: in a status region there before.
    expect(await page.getByTestId('dev-token-status').getAttribute('role')).toBe('status');
    expect(await page.getByTestId('dev-token-status').textContent()).toBe('');
    await page.getByRole('button', { name: 'Use dev token', exact: true }).click();
    await page.getByTestId('dev-token-info').waitFor();
    expect(
      await page
        .getByTestId('dev-token-info')
        .evaluate((el) => el.closest('[role="status"]')?.getAttribute('data-testid')),
    ).toBe('dev-token-status');
    expect(await page.getByTestId('dev-token-error').count()).toBe(0);
    page.off('request', onRequest);
    expect(minted.length).toBe(2);
    await page.getByTestId('dev-token-info').waitFor();
    expect(await page.getByLabel('Token', { exact: true }).inputValue()).toMatch(/^ey/);
    // A text field's edge is all that shows where to type: 3:1 against the page at least (WCAG 1.4.11).
    for (const control of [page.getByLabel('Token', { exact: true }), bodyEditor()]) {
      expect(await control.evaluate(edgeContrast)).toBeGreaterThanOrEqual(3);
    }
    // The dev token's tenant is the one `edm seed` fills by default.
    expect(await page.getByTestId('seed-command').textContent()).toBe('edm seed');

    const objective = (await send('/api/v1/okr/objectives', 'POST')) as { id: string };
    expect(objective.id).toMatch(/^obj_/);
    expect(await panel().getByTestId('response-status').textContent()).toMatch(/^201 Created/);
    expect(await panel().getByTestId('response-body').textContent()).toContain(objective.id);
    expect(await panel().getByTestId('response-time').textContent()).toMatch(/^\d+ ms$/);
    await panel()
      .getByText(/^Headers \(\d+\)$/)
      .click();
    expect(await panel().getByTestId('response-headers').textContent()).toContain('location');
    ids.objective = objective.id;

    // The key result's example body points at the objective just created.
    await page
      .getByRole('navigation', { name: 'Modules and resources', exact: true })
      .getByRole('link', { name: /KeyResult/ })
      .click();
    await openTab('create');
    expect(await bodyEditor().inputValue()).toContain(objective.id);
    // The SDK and curl views follow the form as it changes.
    const body = JSON.stringify({
      objective_id: objective.id,
      title: 'Grow MRR to 120k',
      baseline: 80000,
      target: 120000,
      unit: 'MRR',
    });
    await bodyEditor().fill(body);
    const curl = (await panel().getByTestId('curl-snippet').textContent()) ?? '';
    expect(curl).toContain(`curl -X POST ${server.origin}/api/v1/okr/key-results`);
    expect(JSON.parse(curl.slice(curl.indexOf("-d '") + 4, curl.lastIndexOf("'")))).toEqual(JSON.parse(body));
    const sdk = (await panel().getByTestId('sdk-snippet').textContent()) ?? '';
    expect(sdk).toContain(
      `await client.okr.keyResults.create({\n  objective_id: '${objective.id}',\n  title: 'Grow MRR to 120k',`,
    );
    // Run as it is, the program prints the key result it created.
    expect(sdk).toMatch(/\n\}\);\nconsole\.log\(keyResult\);$/);
    const keyResult = (await send('/api/v1/okr/key-results', 'POST')) as { id: string; objective_id: string };
    expect(keyResult.id).toMatch(/^kr_/);
    expect(keyResult.objective_id).toBe(objective.id);
    expect(await panel().getByTestId('response-status').textContent()).toMatch(/^201 Created/);
    await panel().getByTestId('progress-summary').waitFor();
    ids.keyResult = keyResult.id;
  });

  it('lists key results, the new one among the rows (keyboard only)', async () => {
    // Arrow keys move between operation tabs; Ctrl+Enter sends.
    await page.getByRole('tab', { name: 'create', exact: true }).focus();
    await page.keyboard.press('Home');
    await page.locator('#operation-panel[data-op="list"]').waitFor();
    expect(new URL(page.url()).hash).toBe('#list');
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('list');
    const answered = page.waitForResponse(
      (r) => r.url().includes('/api/v1/okr/key-results') && r.request().method() === 'GET',
    );
    await page.keyboard.press('Tab');
    await page.keyboard.press('Control+Enter');
    const list = (await (await answered).json()) as { data: { id: string }[] };
    expect(list.data.map((r) => r.id)).toContain(ids.keyResult);
    const row = panel().locator(`[data-testid="list-rows"] tr[data-id="${ids.keyResult}"]`);
    await row.waitFor();
    expect(await row.textContent()).toContain('Grow MRR to 120k');
    expect(await panel().getByTestId('response-status').textContent()).toMatch(/^200/);
    // The answer is announced in a few words by one status line, not read out whole by a live region.
    const announce = panel().getByTestId('response-announce');
    expect(await announce.getAttribute('role')).toBe('status');
    expect(await announce.getAttribute('aria-atomic')).toBe('true');
    const n = list.data.length;
    const ms = await panel().getByTestId('response-time').textContent();
    expect(await announce.textContent()).toBe(`200 OK, ${n} item${n === 1 ? '' : 's'}, ${ms}`);
    expect(await panel().locator('[aria-live]').count()).toBe(0);
    // The scrollers take the keyboard's focus and are named; headings go H1, H2, H3 with no level skipped.
    for (const name of ['Response body', 'Listed rows']) {
      expect(await panel().getByRole('region', { name, exact: true }).getAttribute('tabindex'), name).toBe('0');
    }
    const levels = await page
      .locator('main')
      .evaluate((m) => Array.from(m.querySelectorAll('h1, h2, h3, h4, h5, h6')).map((h) => Number(h.tagName[1])));
    expect(levels[0]).toBe(1);
    for (const [i, level] of levels.entries()) {
      expect(level - (levels[i - 1] ?? 0), levels.join()).toBeLessThanOrEqual(1);
    }
    expect(await panel().getByTestId('curl-snippet').textContent()).toContain('/api/v1/okr/key-results');
  });

  it("keeps the keyboard's place and the answer in sight, and takes a listed row as seen (a phone, a new tab)", async () => {
    const phone = await browser.newPage({ viewport: { width: 375, height: 812 } });
    try {
      phone.setDefaultTimeout(15_000);
      const phonePanel = () => phone.locator('#operation-panel');
      await phone.goto(`${server.origin}/playground/okr/objectives#list`);
      await phone.locator('#operation-panel[data-op="list"]').waitFor();
      // Busy, the buttons keep the focus: a disabled one dropped it to the page.
      await phone.getByRole('button', { name: 'Use dev token', exact: true }).focus();
      await phone.keyboard.press('Enter');
      await phone.getByTestId('dev-token-info').waitFor();
      expect(await phone.evaluate(() => document.activeElement?.textContent)).toBe('Use dev token');
      const listed = phone.waitForResponse(
        (r) => r.url().includes('/api/v1/okr/objectives') && r.request().method() === 'GET',
      );
      await phonePanel().getByRole('button', { name: 'Send', exact: true }).focus();
      await phone.keyboard.press('Enter');
      const page1 = (await (await listed).json()) as { data: { id: string }[] };
      await phonePanel().getByTestId('list-rows').waitFor();
      expect(await phone.evaluate(() => document.activeElement?.getAttribute('data-testid'))).toBe('send');
      // On a phone the answer sits below the snippets: it is brought into view.
      await phone.waitForFunction(() => {
        const top = document.querySelector('[data-testid=response-status]')?.getBoundingClientRect().top;
        return top !== undefined && top >= 0 && top < window.innerHeight;
      });
      // A listed objective is one seen: a key result's create names the list's top row, and is made.
      const top = page1.data[0]?.id as string;
      await phone.goto(`${server.origin}/playground/okr/key-results#create`);
      await phone.locator('#operation-panel[data-op="create"]').waitFor();
      expect(await phonePanel().locator('textarea').inputValue()).toContain(top);
      const created = phone.waitForResponse(
        (r) => r.url().includes('/api/v1/okr/key-results') && r.request().method() === 'POST',
      );
      await phonePanel().getByRole('button', { name: 'Send', exact: true }).click();
      expect((await created).status()).toBe(201);
      // Picking a row of a list opens it with get, the keyboard at that get's Send.
      await phone.goto(`${server.origin}/playground/okr/objectives#list`);
      await phone.locator('#operation-panel[data-op="list"]').waitFor();
      await phonePanel().getByRole('button', { name: 'Send', exact: true }).click();
      await phonePanel().locator(`[data-testid="list-rows"] tr[data-id="${top}"] button`).click();
      await phone.locator('#operation-panel[data-op="get"]').waitFor();
      await phone.waitForFunction(() => document.activeElement?.id.endsWith('-get-send') === true);
      // A deleted row picked from a list is an id to get (or restore), not a reference to prefill.
      const authorization = `Bearer ${await phone.getByLabel('Token', { exact: true }).inputValue()}`;
      const json = { authorization, 'content-type': 'application/json' };
      const gone = (await (
        await phone.request.post(`${server.origin}/api/v1/okr/objectives`, { headers: json, data: '{"title":"Gone"}' })
      ).json()) as { id: string };
      await phone.request.delete(`${server.origin}/api/v1/okr/objectives/${gone.id}`, { headers: { authorization } });
      await phone.goto(`${server.origin}/playground/okr/objectives#list`);
      await phone.locator('#operation-panel[data-op="list"]').waitFor();
      await phonePanel().locator('select[id$="-q-include_deleted"]').selectOption('true');
      await phonePanel().getByRole('button', { name: 'Send', exact: true }).click();
      await phonePanel().locator(`[data-testid="list-rows"] tr[data-id="${gone.id}"] button`).click();
      await phone.locator('#operation-panel[data-op="get"]').waitFor();
      expect(await phonePanel().locator('input[id$="-p-id"]').inputValue()).toBe(gone.id);
      await phone.goto(`${server.origin}/playground/okr/key-results#create`);
      await phone.locator('#operation-panel[data-op="create"]').waitFor();
      expect(await phonePanel().locator('textarea').inputValue()).not.toContain(gone.id);
    } finally {
      await phone.close();
    }
  });

  it('leaves a tall page where it is after Send when the answer already shows, and scrolls a short one to it', async () => {
    const frames = () => page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    // A list taller than the window: the answer's top may show while its end does not.
    await page.goto(`${server.origin}/playground/okr/cycles#list`);
    await page.locator('#operation-panel[data-op="list"]').waitFor();
    for (let i = 0; i < 40; i++) {
      await api('POST', '/api/v1/okr/cycles', { name: `Q${i}`, start_date: '2026-01-01', end_date: '2026-03-31' });
    }
    try {
      for (const [height, moves] of [
        [1400, false],
        [700, true],
      ] as const) {
        await page.setViewportSize({ width: 1280, height });
        await page.goto(`${server.origin}/playground/okr/cycles#list`);
        await page.locator('#operation-panel[data-op="list"]').waitFor();
        expect(await page.evaluate(() => window.scrollY)).toBe(0);
        await send('/api/v1/okr/cycles', 'GET');
        await frames();
        expect([height, (await page.evaluate(() => window.scrollY)) > 0]).toEqual([height, moves]);
        // Where it moved, the status shows below the sticky top bar.
        const status = await panel().getByTestId('response-status').boundingBox();
        expect(status && status.y > 52 && status.y < height).toBe(true);
      }
      // Read down the long list, then send again (the focus is still on Send): the new answer's
      // top, now above the window, is brought back into view.
      await page.mouse.move(600, 400);
      await page.mouse.wheel(0, 1500);
      await page.waitForFunction(() => window.scrollY > 1000);
      const again = page.waitForResponse(
        (r) => r.url().includes('/api/v1/okr/cycles') && r.request().method() === 'GET',
      );
      await page.keyboard.press('Enter');
      await again;
      await frames();
      const status = await panel().getByTestId('response-status').boundingBox();
      expect(status && status.y > 52 && status.y < 700).toBe(true);
    } finally {
      await page.setViewportSize({ width: 1280, height: 900 });
    }
  });

  it('draws the history chart, progress bar and status badge after two check-ins', async () => {
    // A deep link opens the operation directly; the id is the key result created above.
    await page.goto(`${server.origin}/playground/okr/key-results#checkIns.create`);
    await page.locator('#operation-panel[data-op="checkIns.create"]').waitFor();
    expect(await panel().locator('input[id$="-p-id"]').inputValue()).toBe(ids.keyResult);
    // What the body takes, as the schema table shows fields: value required, `at` never in the future.
    await panel().getByText('Body fields', { exact: true }).click();
    const bodyTable = panel().getByTestId('body-table');
    expect(await bodyTable.locator('tbody th').allTextContents()).toEqual(['value', 'note', 'confidence', 'at']);
    expect(await bodyTable.locator('tr[data-field="value"] .pill-required').count()).toBe(1);
    expect(await bodyTable.locator('tr[data-field="at"]').textContent()).toContain('never in the future');

    await bodyEditor().fill(JSON.stringify({ value: 90000, note: 'First deals', confidence: 6 }));
    const first = (await send('/check-ins', 'POST')) as { history: unknown[] };
    expect(await panel().getByTestId('response-status').textContent()).toMatch(/^201/);
    await bodyEditor().fill(JSON.stringify({ value: 100000, note: 'Halfway', confidence: 7 }));
    const second = (await send('/check-ins', 'POST')) as { history: unknown[]; progress_pct: number; status: string };
    expect(second.history.length).toBe(first.history.length + 1);

    const chart = panel().getByTestId('history-chart');
    await chart.waitFor();
    expect(await chart.getAttribute('data-points')).toBe(String(second.history.length));
    expect(await chart.locator('circle.point').count()).toBe(second.history.length);
    expect(second.history.length).toBeGreaterThanOrEqual(2);
    await chart.getByTestId('baseline-line').waitFor();
    await chart.getByTestId('target-line').waitFor();
    expect(await chart.getByTestId('target-line').textContent()).toBe('target 120K');
    const bar = panel().getByRole('progressbar');
    expect(Number(await bar.getAttribute('aria-valuenow'))).toBeCloseTo(second.progress_pct);
    expect(second.progress_pct).toBeCloseTo(50);
    expect(await panel().getByTestId('status-badge').isVisible()).toBe(true);

    // The values drawn, as a table a keyboard can scroll sideways on a phone (a named, focusable region).
    await chart.getByText(`History (${second.history.length})`, { exact: true }).click();
    const values = chart.getByRole('region', { name: 'History values', exact: true });
    expect(await values.getAttribute('tabindex')).toBe('0');
    expect(await values.locator('tbody tr').count()).toBe(second.history.length);
    await page.screenshot({ path: `${SCREENSHOTS}keyresult-history-1280.png`, fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await chart.waitFor();
    await page.screenshot({ path: `${SCREENSHOTS}keyresult-history-390.png`, fullPage: true });
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  it("lists a key result's check-ins by value and time, and names the list's filters as a query takes them", async () => {
    await page.goto(`${server.origin}/playground/okr/key-results#checkIns.list`);
    await page.locator('#operation-panel[data-op="checkIns.list"]').waitFor();
    await send('/check-ins', 'GET');
    const table = panel().getByTestId('list-rows');
    expect(await table.locator('thead th').allTextContents()).toEqual(['id', 'value', 'at', 'progress']);
    const first = await table.locator('tbody tr').first().locator('td').allTextContents();
    expect(first[1]).toBe('100000');
    expect(first[2]).toMatch(/^\d{4}-\d{2}-\d{2}T/);
    // The hint names `tag` (the parameter), not `tags` (the field).
    const hint = await page.locator('p.hint', { hasText: 'List parameters' }).textContent();
    expect(hint).toMatch(/filter by [^;]*\btag\b/);
    expect(hint).not.toMatch(/\btags\b/);
  });

  it('keeps status and progress in view beside a title of one long word, and titles each page', async () => {
    const token = await page.evaluate(
      async () => (await (await fetch('/api/v1/dev/token', { method: 'POST' })).json()).token,
    );
    const long = 'A'.repeat(200);
    const created = await fetch(`${server.origin}/api/v1/okr/key-results`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ objective_id: ids.objective, title: long, target: 1 }),
    });
    expect(created.status).toBe(201);
    await page.goto(`${server.origin}/playground/okr/key-results#list`);
    await page.locator('#operation-panel[data-op="list"]').waitFor();
    await send('/api/v1/okr/key-results', 'GET');
    const table = panel().getByTestId('list-rows');
    const scroller = panel().locator('.table-scroll').first();
    const [tableWidth, boxWidth] = await Promise.all([
      table.evaluate((el) => el.getBoundingClientRect().width),
      scroller.evaluate((el) => el.getBoundingClientRect().width),
    ]);
    expect(tableWidth).toBeLessThanOrEqual(boxWidth + 1);
    // Read by id, the summary wraps the title: its status badge stays inside the card.
    const { id } = (await created.json()) as { id: string };
    await openTab('get');
    await panel().locator('input[id$="-p-id"]').fill(id);
    await send(`/api/v1/okr/key-results/${id}`, 'GET');
    const summary = panel().getByTestId('progress-summary');
    const [card, badge] = await Promise.all([
      summary.evaluate((el) => el.getBoundingClientRect().toJSON()),
      summary.locator('.summary-head > :last-child').evaluate((el) => el.getBoundingClientRect().toJSON()),
    ]);
    expect(badge.right).toBeLessThanOrEqual(card.right);
    expect(badge.left).toBeGreaterThanOrEqual(card.left);
    // The console prefills ids with the key result read last: the tests after this use the first.
    await panel()
      .locator('input[id$="-p-id"]')
      .fill(ids.keyResult as string);
    await send(`/api/v1/okr/key-results/${ids.keyResult}`, 'GET');
    expect(await page.title()).toBe('KeyResult · Playground');
    await page.locator('a.brand').click();
    await page.waitForURL(`${server.origin}/playground`);
    await expect.poll(() => page.title()).toBe('Playground · EDM');
    await page.goto(`${server.origin}/playground/okr/key-results`);
    await page.locator('#operation-panel').waitFor();
  });

  it('sends If-Match and an Idempotency-Key from the console: a stale version is refused, a retried key replayed', async () => {
    const id = ids.keyResult as string;
    await openTab('update');
    expect(await panel().locator('input[id$="-p-id"]').inputValue()).toBe(id);
    const current = (await (
      await page.request.get(`${server.origin}/api/v1/okr/key-results/${id}`, {
        headers: { authorization: `Bearer ${await page.getByLabel('Token', { exact: true }).inputValue()}` },
      })
    ).json()) as { version: number };
    await bodyEditor().fill(JSON.stringify({ current: 105000 }));
    const ifMatch = panel().locator('input[id$="-h-If-Match"]');
    await ifMatch.fill(`"${current.version - 1}"`);
    const stale = (await send(`/key-results/${id}`, 'PATCH')) as { status: number; code: string };
    expect([stale.status, stale.code]).toEqual([412, 'precondition_failed']);
    expect(await panel().getByTestId('response-status').textContent()).toMatch(/^412/);

    await ifMatch.fill(String(current.version));
    await panel().locator('input[id$="-h-Idempotency-Key"]').fill('playground-e2e-1');
    const curl = (await panel().getByTestId('curl-snippet').textContent()) ?? '';
    expect(curl).toContain(`-H 'If-Match: "${current.version}"'`);
    expect(curl).toContain("-H 'Idempotency-Key: playground-e2e-1'");
    expect(await panel().getByTestId('token-hint').textContent()).toContain('export EDM_TOKEN=');
    expect(await panel().getByTestId('sdk-snippet').textContent()).toContain(
      `{ ifVersion: ${current.version}, idempotencyKey: 'playground-e2e-1' }`,
    );
    const headersOf = async () => {
      const answered = page.waitForResponse((r) => r.url().includes(id) && r.request().method() === 'PATCH');
      await panel().getByRole('button', { name: 'Send', exact: true }).click();
      const response = await answered;
      await panel().locator('.request-id', { hasText: response.headers()['x-request-id'] }).waitFor();
      return {
        status: response.status(),
        headers: response.headers(),
        body: (await response.json()) as { version: number },
      };
    };
    const first = await headersOf();
    expect([first.status, first.body.version]).toEqual([200, current.version + 1]);
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    // The same key again: the first answer, replayed, though If-Match names an older version now.
    const again = await headersOf();
    expect([again.status, again.body.version, again.headers['idempotent-replayed']]).toEqual([
      200,
      current.version + 1,
      'true',
    ]);

    // A header the API would refuse is caught before sending.
    await ifMatch.fill('W/"3"');
    await panel().getByRole('button', { name: 'Send', exact: true }).click();
    expect(await panel().locator('.send-row [role="alert"]').textContent()).toContain('If-Match takes the version');
    await ifMatch.fill('');
  });

  /** Calls the API directly with the console's token (set-up the page itself is not under test for). */
  async function api(method: 'GET' | 'POST', path: string, body?: unknown): Promise<Record<string, unknown>> {
    const token = await page.getByLabel('Token', { exact: true }).inputValue();
    const res = await page.request.fetch(`${server.origin}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { data: JSON.stringify(body) }),
    });
    expect(res.status(), `${method} ${path}`).toBeLessThan(300);
    return (await res.json()) as Record<string, unknown>;
  }

  it('syncs a connector with If-Match and an Idempotency-Key as headers, as the SDK snippet and curl say', async () => {
    const feed = await api('POST', '/api/v1/okr/connectors', {
      name: 'E2E feed',
      kind: 'http_json',
      config: { url: 'http://127.0.0.1:9/value', pointer: '/value' },
    });
    const id = feed.id as string;
    // A new connector is due at once: the server's schedule would sync it (a new version) within
    // its next tick, in the middle of this test. A sync now puts its next one an interval away.
    await api('POST', `/api/v1/okr/connectors/${id}/sync`);
    const { version } = (await api('GET', `/api/v1/okr/connectors/${id}`)) as { version: number };
    await page.goto(`${server.origin}/playground/okr/connectors#sync`);
    await page.locator('#operation-panel[data-op="sync"]').waitFor();
    await panel().locator('input[id$="-p-id"]').fill(id);
    const ifMatch = panel().locator('input[id$="-h-If-Match"]');
    await ifMatch.fill(String(version + 1));
    await panel().locator('input[id$="-h-Idempotency-Key"]').fill('e2e-sync-1');
    // The SDK takes a custom write's options third, after its (absent) body.
    expect(await panel().getByTestId('sdk-snippet').textContent()).toContain(
      `await client.okr.connectors.sync(\n  '${id}',\n  undefined,\n  { ifVersion: ${version + 1}, idempotencyKey: 'e2e-sync-1' },\n);`,
    );
    const curl = (await panel().getByTestId('curl-snippet').textContent()) ?? '';
    expect(curl).toContain(`-H 'If-Match: "${version + 1}"'`);
    expect(curl).toContain("-H 'Idempotency-Key: e2e-sync-1'");
    expect(curl).not.toContain(' -d ');

    const request = page.waitForRequest((r) => r.url().endsWith(`/${id}/sync`) && r.method() === 'POST');
    const stale = (await send(`/${id}/sync`, 'POST')) as { status: number; code: string };
    const sent = await request;
    expect(sent.headers()['if-match']).toBe(`"${version + 1}"`);
    expect(sent.headers()['idempotency-key']).toBe('e2e-sync-1');
    expect(sent.postData()).toBeNull();
    expect([stale.status, stale.code]).toEqual([412, 'precondition_failed']);

    await ifMatch.fill(String(version));
    await panel().locator('input[id$="-h-Idempotency-Key"]').fill('e2e-sync-2');
    const synced = (await send(`/${id}/sync`, 'POST')) as { id: string; version: number };
    expect([synced.id, synced.version], JSON.stringify(synced)).toEqual([id, version + 1]);
    expect(await panel().getByTestId('response-status').textContent()).toMatch(/^200/);
  });

  it("pushes to a webhook connector's signed URL from the console: its query, no token, no SDK method", async () => {
    const hook = await api('POST', '/api/v1/okr/connectors', { name: 'E2E hook', kind: 'webhook', config: {} });
    const id = hook.id as string;
    const signed = new URL(hook.webhook_url as string, server.origin);
    await page.goto(`${server.origin}/playground/okr/connectors#webhook`);
    await page.locator('#operation-panel[data-op="webhook"]').waitFor();
    // The API section offers no SDK method for it either.
    expect(await page.locator('.op-snippets').textContent()).not.toContain('client.okr.connectors.webhook');
    await panel().locator('input[id$="-p-id"]').fill(id);
    await panel()
      .locator('input[id$="-q-tenant_id"]')
      .fill(signed.searchParams.get('tenant_id') ?? '');
    await panel()
      .locator('input[id$="-q-signature"]')
      .fill(signed.searchParams.get('signature') ?? '');
    await bodyEditor().fill(JSON.stringify({ value: 42 }));
    const sdk = (await panel().getByTestId('sdk-snippet').textContent()) ?? '';
    expect(sdk).not.toContain('client.');
    expect(sdk).toContain(`await fetch('${server.origin}${signed.pathname}${signed.search}', {`);
    // Its code is labelled as what it is: fetch, not the SDK.
    await panel().getByRole('button', { name: 'Copy fetch', exact: true }).waitFor();
    expect(await panel().getByRole('button', { name: 'Copy SDK', exact: true }).count()).toBe(0);
    expect(await panel().getByTestId('curl-snippet').textContent()).not.toContain('Authorization');

    const request = page.waitForRequest((r) => r.url().includes(`/${id}/webhook`) && r.method() === 'POST');
    const pushed = (await send(`/${id}/webhook`, 'POST')) as { id: string; last_value: number; version: number };
    const sent = await request;
    expect(new URL(sent.url()).search).toBe(signed.search);
    expect(sent.headers().authorization).toBeUndefined();
    expect(sent.headers()['if-match']).toBeUndefined();
    expect(JSON.parse(sent.postData() ?? 'null')).toEqual({ value: 42 });
    expect(await panel().getByTestId('response-status').textContent()).toMatch(/^200/);
    expect([pushed.id, pushed.last_value]).toEqual([id, 42]);

    // A push is a write to the row: the If-Match typed in is sent, as the fetch code and curl show
    // it, and a stale one is refused.
    const ifMatch = panel().locator('input[id$="-h-If-Match"]');
    await ifMatch.fill(String(pushed.version - 1));
    expect(await panel().getByTestId('sdk-snippet').textContent()).toContain(`'if-match': '"${pushed.version - 1}"'`);
    expect(await panel().getByTestId('curl-snippet').textContent()).toContain(`-H 'If-Match: "${pushed.version - 1}"'`);
    const staleRequest = page.waitForRequest((r) => r.url().includes(`/${id}/webhook`) && r.method() === 'POST');
    const stale = (await send(`/${id}/webhook`, 'POST')) as { status: number; code: string };
    expect((await staleRequest).headers()['if-match']).toBe(`"${pushed.version - 1}"`);
    expect([stale.status, stale.code]).toEqual([412, 'precondition_failed']);
    await ifMatch.fill(String(pushed.version));
    const again = (await send(`/${id}/webhook`, 'POST')) as { version: number };
    expect(again.version).toBe(pushed.version + 1);
    await ifMatch.fill('');
  });

  it('filters a list by several values of an enum: any of them', async () => {
    await openTab('list');
    const kind = panel().getByRole('group', { name: /kind/ });
    // Each box with its value is a target of 24 × 24 px at least.
    for (const label of await kind.locator('label.choice').all()) {
      const box = await label.boundingBox();
      expect([box && box.width >= 24, box && box.height >= 24]).toEqual([true, true]);
    }
    await kind.getByLabel('http_json', { exact: true }).check();
    await kind.getByLabel('webhook', { exact: true }).check();
    expect(await panel().getByTestId('sdk-snippet').textContent()).toContain("kind: ['http_json', 'webhook']");
    expect(await panel().getByTestId('curl-snippet').textContent()).toContain('kind=http_json%2Cwebhook');
    const answered = page.waitForResponse(
      (r) => r.url().includes('/api/v1/okr/connectors?') && r.request().method() === 'GET',
    );
    await panel().getByRole('button', { name: 'Send', exact: true }).click();
    const response = await answered;
    expect(new URL(response.url()).searchParams.get('kind')).toBe('http_json,webhook');
    const list = (await response.json()) as { data: { name: string; kind: string }[] };
    expect(new Set(list.data.map((c) => c.kind))).toEqual(new Set(['http_json', 'webhook']));
    expect(list.data.map((c) => c.name)).toEqual(expect.arrayContaining(['E2E feed', 'E2E hook']));
    await kind.getByLabel('webhook', { exact: true }).uncheck();
    expect(await panel().getByTestId('curl-snippet').textContent()).toContain('kind=http_json');
    expect(await panel().getByTestId('curl-snippet').textContent()).not.toContain('webhook');
  });

  // A console shows what the server answered: a 429 with its Retry-After, not a retry's 200 later.
  it('shows a 429 as answered, with its Retry-After, sending once', async () => {
    await openTab('list');
    let sent = 0;
    const limited = (url: URL) => url.pathname === '/api/v1/okr/connectors';
    await page.route(limited, (route) => {
      sent++;
      return route.fulfill({
        status: 429,
        headers: { 'retry-after': '1', 'content-type': 'application/problem+json' },
        body: JSON.stringify({ type: 'about:blank', title: 'Too Many Requests', status: 429, code: 'rate_limited' }),
      });
    });
    try {
      await panel().getByRole('button', { name: 'Send', exact: true }).click();
      await expect
        .poll(() => panel().getByTestId('response-status').textContent(), { timeout: 10_000 })
        .toMatch(/^429/);
      expect(await panel().textContent()).toContain('retry-after');
      expect(sent).toBe(1);
    } finally {
      await page.unroute(limited);
    }
  });

  it("shows the problem's field error for a bad body", async () => {
    await page.goto(`${server.origin}/playground/okr/key-results#create`);
    await openTab('create');
    await bodyEditor().fill(JSON.stringify({ objective_id: ids.objective, title: 'Bad target', target: 'lots' }));
    const problem = (await send('/api/v1/okr/key-results', 'POST')) as {
      status: number;
      errors: { path: string; message: string }[];
    };
    expect(problem.status).toBe(400);
    const error = problem.errors.find((e) => e.path.includes('target'));
    expect(error).toBeDefined();
    expect(await panel().getByTestId('response-status').textContent()).toMatch(/^400/);
    const shown = panel().getByTestId('field-errors');
    await shown.waitFor();
    expect(await shown.textContent()).toContain(`${error?.path} ${error?.message}`);
    // Announced once, in a few words, by the status line: the problem panel is no second live region.
    const announce = panel().getByTestId('response-announce');
    expect(await announce.textContent()).toBe(
      `400 Bad Request: validation_failed, ${problem.errors.length} field error${problem.errors.length === 1 ? '' : 's'}`,
    );
    expect(await panel().locator('[role="alert"], [aria-live]').count()).toBe(0);
    // Shown again (another tab and back), the stored answer is not announced again.
    await openTab('list');
    await openTab('create');
    await panel().getByTestId('field-errors').waitFor();
    expect(await panel().locator('[role="alert"], [aria-live]').count()).toBe(0);
    expect(await announce.textContent()).toBe('');

    // A body that is not JSON is caught before sending.
    await bodyEditor().fill('{"title": ');
    await panel().getByRole('button', { name: 'Send', exact: true }).click();
    expect(await panel().locator('.send-row [role="alert"]').textContent()).toContain('not valid JSON');
    // Reset to example goes with the edit it undoes: the keyboard goes on in the body, not at the page.
    await panel().getByRole('button', { name: 'Reset to example', exact: true }).click();
    expect(await page.evaluate(() => document.activeElement?.id.endsWith('-body'))).toBe(true);
    expect(await bodyEditor().inputValue()).toContain('"title"');
  });

  it('marks a query parameter the server refused at its input, its message and hint read with it', async () => {
    await page.goto(`${server.origin}/playground/okr/key-results#list`);
    await openTab('list');
    const limit = panel().locator('input[id$="-q-limit"]');
    expect(await limit.getAttribute('aria-invalid')).toBeNull();
    await limit.fill('0');
    const problem = (await send('/api/v1/okr/key-results', 'GET')) as { errors: { path: string; message: string }[] };
    const said = problem.errors.find((e) => e.path === 'limit')?.message as string;
    expect(said).toBeDefined();
    expect(await limit.getAttribute('aria-invalid')).toBe('true');
    const described = ((await limit.getAttribute('aria-describedby')) ?? '').split(' ');
    const texts = await Promise.all(described.map((id) => page.locator(`[id="${id}"]`).textContent()));
    expect(texts[0]).toBe(said);
    expect(texts[1]).toMatch(/1–200/);
    // Answered well, the mark goes.
    await limit.fill('5');
    await send('/api/v1/okr/key-results', 'GET');
    expect(await limit.getAttribute('aria-invalid')).toBeNull();

    // One under "More parameters", the fold closed again before sending: the answer opens it.
    const fold = panel().locator('details.more-params');
    await fold.locator('summary').click();
    const folded = panel().locator('input[id$="-q-progress_pct-gte-"]');
    await folded.fill('lots');
    await fold.locator('summary').click();
    expect(await fold.evaluate((el) => (el as HTMLDetailsElement).open)).toBe(false);
    const refused = (await send('/api/v1/okr/key-results', 'GET')) as { errors: { path: string }[] };
    expect(refused.errors.map((e) => e.path)).toContain('progress_pct[gte]');
    expect(await fold.evaluate((el) => (el as HTMLDetailsElement).open)).toBe(true);
    expect([await folded.isVisible(), await folded.getAttribute('aria-invalid')]).toEqual([true, 'true']);
    // Once: closed again, it stays closed while the answer stands.
    await fold.locator('summary').click();
    await folded.evaluate((el) => el.dispatchEvent(new Event('input', { bubbles: true })));
    expect(await fold.evaluate((el) => (el as HTMLDetailsElement).open)).toBe(false);
    await fold.locator('summary').click();
    await folded.fill('');
    await send('/api/v1/okr/key-results', 'GET');
  });

  it('copies a snippet, and where the page may not write the clipboard selects it and says to press Ctrl+C', async () => {
    await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.origin });
    await page.bringToFront(); // the clipboard is the focused page's (an earlier test opened another)
    await page.goto(`${server.origin}/playground/okr/key-results#list`);
    await page.locator('#operation-panel[data-op="list"]').waitFor();
    const curl = panel().getByTestId('curl-snippet');
    const copyCurl = panel().getByRole('button', { name: 'Copy curl', exact: true });
    const status = panel()
      .locator('.code', { has: page.getByTestId('curl-snippet') })
      .getByRole('status');
    await copyCurl.click();
    await expect.poll(() => status.textContent({ timeout: 2000 }), { timeout: 5000 }).toBe('curl copied');
    expect(await copyCurl.textContent()).toBe('Copied');
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(await curl.textContent());

    // A plain-HTTP address other than localhost has no navigator.clipboard.
    await page.evaluate(() => Object.defineProperty(window.navigator, 'clipboard', { value: undefined }));
    await page.evaluate(() => window.getSelection()?.removeAllRanges());
    await copyCurl.click();
    await expect
      .poll(() => status.textContent({ timeout: 2000 }), { timeout: 5000 })
      .toBe('Selected: press Ctrl+C (⌘C) to copy');
    expect(await copyCurl.textContent()).toBe('Copy');
    expect(await page.evaluate(() => window.getSelection()?.toString())).toBe(await curl.textContent());
    await page.reload();
  });

  // The API section's links changed the console's tab ~2,800 px above and left the page, and
  // the keyboard's place, where they were.
  it("takes an operation's link in the API section to its console tab, in view and focused", async () => {
    await page.goto(`${server.origin}/playground/okr/key-results#list`);
    await page.locator('#operation-panel[data-op="list"]').waitFor();
    const link = page.locator('.op-snippets a', { hasText: 'okr.keyResults.update' });
    await link.scrollIntoViewIfNeeded();
    const tabInView = () =>
      page.evaluate(() => {
        const box = document.getElementById('tab-update')?.getBoundingClientRect();
        return box !== undefined && box.top >= 0 && box.bottom <= window.innerHeight;
      });
    expect(await tabInView()).toBe(false);
    await link.focus();
    await page.keyboard.press('Enter');
    await page.locator('#operation-panel[data-op="update"]').waitFor();
    expect(new URL(page.url()).hash).toBe('#update');
    // Focus and scroll follow the render (a frame later): polled, not read at once.
    const focused = () => page.evaluate(() => document.activeElement?.id);
    await expect.poll(focused).toBe('tab-update');
    await expect.poll(tabInView).toBe(true);
    // The operation chosen already: its tab is brought back into view all the same.
    await link.scrollIntoViewIfNeeded();
    expect(await tabInView()).toBe(false);
    await link.click();
    await expect.poll(focused).toBe('tab-update');
    await expect.poll(tabInView).toBe(true);
  });

  it('never hides the focused control under the sticky top bar when tabbing backwards', async () => {
    await page.goto(`${server.origin}/playground/okr/key-results#create`);
    await page.locator('#operation-panel[data-op="create"]').waitFor();
    // A control scrolled up under the bar, the keyboard on the next one: Shift+Tab brings it out.
    for (const selector of ['#token', 'input[id$="-h-Idempotency-Key"]']) {
      const field = panel().locator(selector);
      await field.evaluate((el) => {
        window.scrollBy(0, el.getBoundingClientRect().top - 20);
        (el as HTMLElement).focus({ preventScroll: true });
      });
      await page.keyboard.press('Tab');
      await page.keyboard.press('Shift+Tab');
      const [top, barBottom] = await field.evaluate((el) => [
        document.activeElement === el ? el.getBoundingClientRect().top : Number.NaN,
        document.querySelector('.topbar')?.getBoundingClientRect().bottom ?? 0,
      ]);
      expect(top, selector).toBeGreaterThanOrEqual(barBottom);
    }
  });

  it('prefills a reference with the live row seen before, once the one created after it is deleted (a new tab)', async () => {
    const tab = await browser.newPage();
    try {
      tab.setDefaultTimeout(15_000);
      const tabPanel = () => tab.locator('#operation-panel');
      const sendIn = async (path: string, method: string) => {
        const answered = tab.waitForResponse((r) => r.url().includes(path) && r.request().method() === method);
        await tabPanel().getByRole('button', { name: 'Send', exact: true }).click();
        const response = await answered;
        await tabPanel().locator('.request-id', { hasText: response.headers()['x-request-id'] }).waitFor();
        return { status: response.status(), body: (await response.json()) as Record<string, unknown> };
      };
      const openIn = async (name: string) => {
        await tab.getByRole('tab', { name, exact: true }).click();
        await tab.locator(`#operation-panel[data-op="${name}"]`).waitFor();
      };
      await tab.goto(`${server.origin}/playground/okr/objectives#list`);
      await tab.locator('#operation-panel[data-op="list"]').waitFor();
      await tab.getByRole('button', { name: 'Use dev token', exact: true }).click();
      await tab.getByTestId('dev-token-info').waitFor();
      const listed = await sendIn('/api/v1/okr/objectives', 'GET');
      const top = (listed.body.data as { id: string; is_deleted: boolean }[])[0];
      expect(top?.is_deleted).toBe(false);
      await openIn('create');
      const created = await sendIn('/api/v1/okr/objectives', 'POST');
      expect(created.status).toBe(201);
      await openIn('delete');
      expect(await tabPanel().locator('input[id$="-p-id"]').inputValue()).toBe(created.body.id);
      const deleted = await sendIn(`/api/v1/okr/objectives/${created.body.id}`, 'DELETE');
      expect([deleted.status, deleted.body.is_deleted]).toEqual([200, true]);
      // The objective created is gone: a key result's create names the list's top row again, and is made.
      await tab.goto(`${server.origin}/playground/okr/key-results#create`);
      await tab.locator('#operation-panel[data-op="create"]').waitFor();
      expect(JSON.parse(await tabPanel().locator('textarea').inputValue()).objective_id).toBe(top?.id);
      const made = await sendIn('/api/v1/okr/key-results', 'POST');
      expect([made.status, made.body.objective_id]).toEqual([201, top?.id]);
    } finally {
      await tab.close();
    }
  });

  it('talked to no origin but its own, without script errors', () => {
    expect(foreign).toEqual([]);
    expect(pageErrors).toEqual([]);
  });
});
