/**
 * The HTML report in a real browser: headless Chromium opens the file offline, nothing
 * errors, every image decodes, every inline SVG has a size. Saves a full-page screenshot
 * and prints its path. Skips when /usr/bin/chromium is not installed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { renderReport } from '../src/report/html.js';
import { syntheticReportData } from './report_fixtures.js';

const CHROMIUM = process.env['GOODNET_CHROMIUM'] ?? '/usr/bin/chromium';
const needsChromium = existsSync(CHROMIUM) ? {} : { skip: `${CHROMIUM} not found (apt-get install chromium): browser test skipped` };

test('the report opens cleanly in headless Chromium', { ...needsChromium, timeout: 120_000 }, async (t) => {
  const { chromium } = await import('playwright-core');
  const out = mkdtempSync(join(tmpdir(), 'goodnet-report-'));
  const file = join(out, 'report.html');
  const data = await syntheticReportData();
  writeFileSync(file, renderReport(data));

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ], // playwright gives the browser a fresh temporary profile of its own
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const problems: string[] = [];
    const requests: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('request', (r) => {
      const url = r.url();
      if (!url.startsWith('file:') && !url.startsWith('data:')) requests.push(url);
    });
    await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });

    const images = await page.$$eval('img', (imgs) =>
      imgs.map((i) => ({ alt: i.alt, ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth })),
    );
    assert.equal(images.length, 2, 'the two sample grids');
    for (const i of images) assert.ok(i.ok, `image decoded: ${i.alt}`);

    const svgs = await page.$$eval('svg', (els) =>
      els.map((s) => {
        const r = s.getBoundingClientRect();
        return { label: s.getAttribute('aria-label'), w: r.width, h: r.height };
      }),
    );
    assert.equal(svgs.length, data.figures.length - 2, 'every chart inline');
    for (const s of svgs) assert.ok(s.w > 100 && s.h > 100, `svg has a size: ${s.label} ${s.w}x${s.h}`);

    // Nothing wider than the page: no horizontal scrolling.
    const overflow = (await page.evaluate('document.documentElement.scrollWidth - document.documentElement.clientWidth')) as number;
    assert.ok(overflow <= 0, `page overflows horizontally by ${overflow}px`);
    const tables = await page.$$eval('table.goodnet tbody tr', (rows) => rows.length);
    assert.equal(tables, data.goodnet.length);

    const shot = join(out, 'report.png');
    await page.screenshot({ path: shot, fullPage: true });
    t.diagnostic(`report: ${file}`);
    t.diagnostic(`screenshot: ${shot}`);
    assert.deepEqual(problems, []);
    assert.deepEqual(requests, [], 'no network requests');
  } finally {
    await browser.close();
  }
});
