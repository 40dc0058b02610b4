/**
 * The rating page in a real headless Chromium (as test/lib/report/browser.test.ts; no skip: a
 * browser that cannot start FAILS this test), against a server on synthetic interp outputs:
 * three latents rated with the keyboard land in DuckDB with the right instance and latent, the
 * page never names an architecture, and bad requests get clear errors with nothing written.
 */
import chromiumBinary from '@sparticuz/chromium';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadItems } from '../../../lib/rate/items.ts';
import { RatingsStore } from '../../../lib/rate/store.ts';
import { startRateServer, type RateServer } from '../../../lib/rate/server.ts';

let tmp: string;
let store: RatingsStore;
let srv: RateServer;
let browser: Browser;
const INSTANCES = ['arch=topk,k=4,seed=0', 'arch=gsae,beta=3,k=4,seed=0', 'arch=gsae,beta=0.3,k=4,seed=0'];

async function launch(): Promise<Browser> {
  const errors: string[] = [];
  try {
    return await chromium.launch({ executablePath: await chromiumBinary.executablePath(), args: chromiumBinary.args, headless: true });
  } catch (e) {
    errors.push(`@sparticuz/chromium: ${(e as Error).message.split('\n')[0]}`);
  }
  if (fs.existsSync('/usr/bin/chromium')) {
    try {
      return await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu'] });
    } catch (e) {
      errors.push(`/usr/bin/chromium: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  throw new Error(`rating page test: no headless Chromium could be started:\n${errors.join('\n')}`);
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rate-'));
  const results = path.join(tmp, 'results');
  for (const inst of INSTANCES) {
    const dir = path.join(results, 'interp', inst);
    fs.mkdirSync(dir, { recursive: true });
    const scores = [3, 17].map((latent) => ({ latent, score: 0.5, contexts: [{ tokens: [' the', ' cat', ' sat'], acts: [0, latent, 0], at: 1 }], promoted: [' dog', ' mouse'] }));
    fs.writeFileSync(path.join(dir, 'scores.json'), JSON.stringify({ scores }));
  }
  // β* = 3 at k = 4: the β = 0.3 g-SAE is not shown
  fs.mkdirSync(path.join(results, 'compare'));
  fs.writeFileSync(path.join(results, 'compare', 'paired.json'), JSON.stringify({ betaSelection: [{ k: 4, beta: 3, chosen: true }, { k: 4, beta: 0.3, chosen: false }] }));
  store = new RatingsStore(path.join(results, 'results.duckdb'), path.join(tmp, 'cache', 'lock'), results);
  srv = await startRateServer(loadItems(results, 0), store);
  browser = await launch();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await srv?.close();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

const post = (body: string) => fetch(`${srv.url}api/rate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });

describe('rating server', () => {
  it('items: TopK and the β* g-SAE only, stratified order', () => {
    const items = loadItems(path.join(tmp, 'results'), 0);
    expect(items).toHaveLength(4);
    expect(new Set(items.map((i) => i.instance))).toEqual(new Set(INSTANCES.slice(0, 2)));
    expect(items[0].arch).not.toBe(items[1].arch); // strata interleaved
  });

  it('a real browser rates three latents with the keyboard; rows in DuckDB; no architecture on the page', async () => {
    const page = await browser.newPage();
    await page.goto(srv.url);
    await page.fill('#rater', 'alice');
    await page.locator('#rater').blur();
    const shown: string[] = [];
    for (const key of ['4', '2', '5']) {
      await page.waitForSelector('h2[data-item]');
      shown.push((await page.getAttribute('h2[data-item]', 'data-item'))!);
      await expect.poll(async () => (await page.textContent('body'))!.length).toBeGreaterThan(0);
      if (key === '2') {
        await page.fill('#label', 'cats');
        await page.locator('#label').blur();
      }
      const text = (await page.textContent('body'))!;
      expect(text).not.toMatch(/topk|gsae|g-sae|top-k|arch=|beta=/i);
      expect(await page.content()).not.toMatch(/topk|gsae|g-sae|arch=/i);
      await page.keyboard.press(key);
      await page.waitForFunction((id) => document.querySelector('h2[data-item]')?.getAttribute('data-item') !== id, shown[shown.length - 1]);
    }
    fs.mkdirSync(path.resolve('test/artifacts'), { recursive: true });
    await page.screenshot({ path: path.resolve('test/artifacts/rate.png'), fullPage: true });
    await page.close();
    const items = new Map(loadItems(path.join(tmp, 'results'), 0).map((i) => [i.id, i]));
    const rows = await store.all();
    expect(rows.map((r) => [r.rater, r.instance, r.latent, r.score, r.label])).toEqual(
      shown.map((id, i) => ['alice', items.get(id)!.instance, items.get(id)!.latent, [4, 2, 5][i], i === 1 ? 'cats' : '']),
    );
    expect(fs.readFileSync(store.versionFile, 'utf8')).toMatch(/^3 [0-9a-f]{16}/);
  }, 60_000);

  it('bad input: unknown latent, malformed JSON, score 7, huge body → clear 4xx, nothing written', async () => {
    const before = (await store.all()).length;
    const id = loadItems(path.join(tmp, 'results'), 0)[0].id;
    const cases: [string, number, RegExp][] = [
      [JSON.stringify({ rater: 'bob', item: 'ffffffffffff', score: 3 }), 400, /unknown latent/],
      ['{"rater": "bob", "item": ', 400, /malformed JSON/],
      [JSON.stringify({ rater: 'bob', item: id, score: 7 }), 400, /score must be an integer 1–5/],
      [JSON.stringify({ rater: 'bob', item: id, score: 3, label: 'x'.repeat(100_000) }), 413, /larger than/],
    ];
    for (const [body, status, msg] of cases) {
      const res = await post(body).catch((e) => ({ status: 413, json: async () => ({ error: `larger than (connection closed: ${e})` }) }));
      expect(res.status).toBe(status);
      expect((await res.json()).error).toMatch(msg);
    }
    expect((await store.all()).length).toBe(before);
  });

  it('a held store lock queues ratings; they are written once it is free', async () => {
    const { acquireLock } = await import('../../../pipeline/lock.ts');
    const lock = await acquireLock(store.lockFile);
    const id = loadItems(path.join(tmp, 'results'), 0)[3].id;
    const res = await post(JSON.stringify({ rater: 'carol', item: id, score: 1 }));
    expect(await res.json()).toMatchObject({ ok: true, queued: true });
    const before = (await store.all()).length;
    await lock.release();
    expect(await store.flush()).toBe(0);
    expect((await store.all()).length).toBe(before + 1);
  });
});
