/**
 * The report page in a real headless Chromium: the binary shipped by the npm package
 * @sparticuz/chromium (unpacked to /tmp at first use), driven by playwright-core. Needs nothing
 * beyond `npm ci`. Loads results/report/index.html from file:// with every network request
 * blocked, and checks: no console errors, every chart container holds a vega-embed SVG with
 * marks, the no-JS fallback has marks too, and saves a screenshot to test/artifacts/report.png.
 *
 * Fallback: if the sparticuz binary cannot start, /usr/bin/chromium (Debian) is tried; if neither
 * works the tests FAIL, on every machine: the browser comes with `npm ci`, so a missing one is a
 * broken setup, never a reason to pass or skip.
 */
import chromiumBinary from '@sparticuz/chromium';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildReport, type ReportResult } from '../../../lib/report/index.ts';
import { createSyntheticDb, syntheticLatentBrowser } from './fixture.ts';

const ARTIFACTS = path.resolve('test/artifacts');

let tmp: string;
let report: ReportResult;
let browser: Browser | undefined;
/** One page for both tests: with --single-process (sparticuz's flags) a second browser context hangs. */
let page: Page | undefined;
let launchedWith = '';
const launchErrors: string[] = [];

async function launch(): Promise<Browser | undefined> {
  if (process.env.GSAE_TEST_NO_BROWSER === '1') {
    launchErrors.push('GSAE_TEST_NO_BROWSER=1 (simulated: no browser can start)');
    return undefined;
  }
  try {
    const executablePath = await chromiumBinary.executablePath();
    const b = await chromium.launch({ executablePath, args: chromiumBinary.args, headless: true });
    launchedWith = `@sparticuz/chromium (${executablePath})`;
    return b;
  } catch (e) {
    launchErrors.push(`@sparticuz/chromium: ${(e as Error).message.split('\n')[0]}`);
  }
  const system = '/usr/bin/chromium';
  if (existsSync(system)) {
    try {
      const b = await chromium.launch({
        executablePath: system,
        headless: true,
        args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      });
      launchedWith = system;
      return b;
    } catch (e) {
      launchErrors.push(`${system}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  return undefined;
}

beforeAll(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'report-browser-'));
  const db = path.join(tmp, 'results.duckdb');
  await createSyntheticDb(db);
  report = await buildReport({ dbPath: db, outDir: path.join(tmp, 'report'), latentBrowser: syntheticLatentBrowser() });
  browser = await launch();
  if (!browser) {
    throw new Error(`report browser test: no headless Chromium could be started (it ships with npm ci):\n${launchErrors.map((e) => `  ${e}`).join('\n')}`);
  }
});

afterAll(async () => {
  await browser?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('report page in headless Chromium', () => {
  it('loads offline with no console errors; every chart holds an SVG with marks; screenshot saved', async () => {
    page = await browser!.newPage({ viewport: { width: 1300, height: 900 } });
    const errors: string[] = [];
    const external: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(`console.error: ${m.text()}`);
    });
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
    page.on('requestfailed', (r) => {
      if (r.url().startsWith('file:')) errors.push(`failed to load ${r.url()}`);
    });
    // Offline: anything that is not a file next to the page is blocked and reported.
    await page.route('**/*', (route) => {
      const url = route.request().url();
      if (url.startsWith('file:') || url.startsWith('data:') || url.startsWith('blob:')) return route.continue();
      external.push(url);
      return route.abort();
    });
    await page.goto(pathToFileURL(report.indexHtml).href);
    await page.waitForSelector('body[data-embed="done"]', { timeout: 60_000 });

    const charts = await page.evaluate(() =>
      [...document.querySelectorAll('figure.chart')].map((fig) => {
        const svg = fig.querySelector('.vega-target svg');
        const canvas = fig.querySelector('.vega-target canvas');
        return {
          id: fig.id,
          status: fig.getAttribute('data-status'),
          embedded: fig.getAttribute('data-embedded'),
          hasGraphic: Boolean(svg || canvas),
          marks: svg ? svg.querySelectorAll('g.role-mark > path, g.role-mark > line, g.role-mark > rect, g.role-mark > circle').length : 0,
          staticLeft: Boolean(fig.querySelector('.static')),
        };
      }),
    );
    expect(charts.length).toBe(report.charts.length);
    for (const c of charts) {
      expect(c.status, c.id).toBe('ok');
      expect(c.embedded, c.id).toBe('ok');
      expect(c.hasGraphic, c.id).toBe(true);
      expect(c.marks, c.id).toBeGreaterThan(0);
      expect(c.staticLeft, c.id).toBe(false);
    }

    // The copy button under a SQL block works without errors (clipboard or selection fallback).
    const button = page.locator('button.copy').first();
    await button.click();
    await expect.poll(async () => button.textContent()).toMatch(/Copied|Selected/);

    // The claims table and the latent browser are there.
    expect(await page.locator('table.claims td.verdict').count()).toBeGreaterThan(10);
    expect(await page.locator('#latents .tok.peak').count()).toBeGreaterThan(0);

    mkdirSync(ARTIFACTS, { recursive: true });
    const shot = path.join(ARTIFACTS, 'report.png');
    await page.screenshot({ path: shot, fullPage: true });
    expect(statSync(shot).size).toBeGreaterThan(50_000);

    expect(external, 'network requests (the page must work offline)').toEqual([]);
    expect(errors).toEqual([]);
    console.log(`report browser test: ran in ${launchedWith}; screenshot ${shot}`);
  });

  it('without JavaScript, every chart still shows its static SVG with marks', async () => {
    if (!page) throw new Error('the first browser test did not open the page');
    // Scripts off via the DevTools protocol (a second context with javaScriptEnabled: false would hang).
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Emulation.setScriptExecutionDisabled', { value: true });
    await page.goto(pathToFileURL(report.indexHtml).href);
    const state = await page.evaluate(() => ({
      embed: document.body.getAttribute('data-embed'),
      marks: [...document.querySelectorAll('figure.chart')].map((fig) => fig.querySelectorAll('.static svg g.role-mark > *').length),
    }));
    expect(state.embed, 'scripts really were off').toBeNull();
    expect(state.marks.length).toBe(report.charts.length);
    for (const n of state.marks) expect(n).toBeGreaterThan(0);
    await cdp.send('Emulation.setScriptExecutionDisabled', { value: false });
    await cdp.detach();
  });
});
