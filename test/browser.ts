/**
 * Open an HTML report in headless Chromium (playwright-core driving Debian's chromium) and
 * check it as a reader would: nothing errors, nothing is fetched, every image decodes, every
 * inline SVG has a size, no horizontal scrolling. Saves a full-page screenshot.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

export const CHROMIUM = process.env['GOODNET_CHROMIUM'] ?? '/usr/bin/chromium';
export const needsChromium = existsSync(CHROMIUM) ? {} : { skip: `${CHROMIUM} not found (apt-get install chromium): browser test skipped` };

export interface BrowserExpect {
  images: number;
  svgs: number;
  goodnetRows: number;
}

/** Assert the report renders cleanly; returns the screenshot path. */
export async function checkReportInBrowser(file: string, expect: BrowserExpect, screenshot: string): Promise<string> {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
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
    const images = await page.$$eval('img', (imgs) => imgs.map((i) => ({ alt: i.alt, ok: i.complete && i.naturalWidth > 0 })));
    assert.equal(images.length, expect.images, 'images');
    for (const i of images) assert.ok(i.ok, `image decoded: ${i.alt}`);
    const svgs = await page.$$eval('svg', (els) => els.map((s) => {
      const r = s.getBoundingClientRect();
      return { label: s.getAttribute('aria-label'), w: r.width, h: r.height };
    }));
    assert.equal(svgs.length, expect.svgs, 'every chart inline');
    for (const s of svgs) assert.ok(s.w > 100 && s.h > 100, `svg has a size: ${s.label} ${s.w}x${s.h}`);
    const overflow = (await page.evaluate('document.documentElement.scrollWidth - document.documentElement.clientWidth')) as number;
    assert.ok(overflow <= 0, `page overflows horizontally by ${overflow}px`);
    const rows = await page.$$eval('table.goodnet tbody tr', (r) => r.length);
    assert.equal(rows, expect.goodnetRows);
    await page.screenshot({ path: screenshot, fullPage: true });
    assert.deepEqual(problems, []);
    assert.deepEqual(requests, [], 'no network requests');
    return screenshot;
  } finally {
    await browser.close();
  }
}
