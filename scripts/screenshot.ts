/**
 * Screenshot of the report for the README: `npx tsx scripts/screenshot.ts [report dir] [out.png] [section anchor]`.
 * Uses the Chromium shipped by @sparticuz/chromium (no system install), driven by playwright-core.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import chromiumBinary from '@sparticuz/chromium';
import { chromium } from 'playwright-core';

const reportDir = path.resolve(process.argv[2] ?? 'results/report');
const out = path.resolve(process.argv[3] ?? 'docs/report.png');
const browser = await chromium.launch({ executablePath: await chromiumBinary.executablePath(), args: chromiumBinary.args, headless: true });
const page = await browser.newPage({ viewport: { width: 1300, height: 1000 } });
const anchor = process.argv[4] ?? 'claims';
await page.goto(`${pathToFileURL(path.join(reportDir, 'index.html')).href}#${anchor}`);
await page.waitForSelector('.vega-embed svg', { timeout: 30_000 }).catch(() => undefined);
await page.waitForTimeout(500);
await page.screenshot({ path: out, fullPage: false });
await browser.close();
console.log(`screenshot: ${out}`);
