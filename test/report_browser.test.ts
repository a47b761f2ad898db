/**
 * The HTML report in a real browser (see browser.ts), on synthetic data; test/demo.test.ts
 * does the same on a report built from a real run.
 */
import { test } from 'node:test';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { renderReport } from '../src/report/html.js';
import { syntheticReportData } from './report_fixtures.js';
import { checkReportInBrowser, needsChromium } from './browser.js';

test('the report opens cleanly in headless Chromium', { ...needsChromium, timeout: 120_000 }, async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'goodnet-report-'));
  const file = join(out, 'report.html');
  const data = await syntheticReportData();
  writeFileSync(file, renderReport(data));
  const shot = await checkReportInBrowser(file, { images: 2, svgs: data.figures.length - 2, goodnetRows: data.goodnet.length }, join(out, 'report.png'));
  t.diagnostic(`report: ${file}`);
  t.diagnostic(`screenshot: ${shot}`);
});
