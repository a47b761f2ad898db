/**
 * The browser page (issue 15) in Debian's Chromium via playwright-core: loaded from `goodnet serve`
 * (serveWeb), files set through its file inputs, a run whose numbers must equal the CLI's summary.json
 * on the same files, Cancel, a bad file's one-line error, the demo button, and no request leaving
 * 127.0.0.1. The finished page's screenshot is kept at dist/test-artifacts/web.png.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CHROMIUM, needsChromium } from './browser.js';
import { serveWeb, WEB_ROOT } from '../src/web/server.js';
import { initBackend } from '../src/engine/backend.js';
import { loadModel, saveModel } from '../src/io/model.js';
import { openDataset } from '../src/io/dataset.js';
import { encodePng } from '../src/io/images.js';
import { zipSync } from 'fflate';

// Page-side functions below run in Chromium (the test's TypeScript has no DOM types). They are passed as
// functions, not strings: the page's Content-Security-Policy forbids evaluating strings.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
declare const document: any;

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const DEMO = join(ROOT, 'web', 'demo');
const ARTIFACTS = join(ROOT, 'dist', 'test-artifacts');
const FILES = { model: 'bd_net.h5', cleanValid: 'clean_valid.h5', poisonedValid: 'poisoned_valid.h5', cleanTest: 'clean_test.h5', poisonedTest: 'poisoned_test.h5' };

interface Summary {
  baseline: Record<string, number>;
  sweeps: { order: string; channelOrder: number[]; steps: { step: number; accuracy: number; asr: number }[]; picks: Record<string, unknown>[] }[];
  goodnet: unknown[];
  profile: { mean: number[] };
}

/** What must be equal between the CLI and the page: every number, not paths, times or model file names. */
function numbers(s: Summary) {
  return {
    baseline: s.baseline,
    channelMeans: s.profile.mean,
    sweeps: s.sweeps.map((w) => ({
      order: w.order, channelOrder: w.channelOrder, steps: w.steps,
      picks: w.picks.map(({ model: _m, ...p }) => p),
    })),
    goodnet: s.goodnet,
  };
}

test('the web page: files in, run equals the CLI, cancel, bad file, demo button, nothing leaves 127.0.0.1', { ...needsChromium, timeout: 600_000 }, async (t) => {
  if (!existsSync(join(WEB_ROOT, 'index.html'))) execFileSync(process.execPath, [join(ROOT, 'scripts', 'build-web.mjs')], { stdio: 'inherit' });
  const out = mkdtempSync(join(tmpdir(), 'goodnet-web-'));
  // The CLI on the same files.
  execFileSync(process.execPath, [join(ROOT, 'bin', 'goodnet.js'), 'prune', '-m', join(DEMO, FILES.model), '--clean-valid', join(DEMO, FILES.cleanValid),
    '--poisoned-valid', join(DEMO, FILES.poisonedValid), '--clean-test', join(DEMO, FILES.cleanTest), '--poisoned-test', join(DEMO, FILES.poisonedTest),
    '-t', '0', '-o', join(out, 'cli')], { stdio: ['ignore', 'ignore', 'pipe'] });
  const cli = JSON.parse(readFileSync(join(out, 'cli', 'summary.json'), 'utf8')) as Summary;
  const cliTables = readFileSync(join(out, 'cli', 'goodnet.md'), 'utf8').trim();
  const bad = join(out, 'bad.h5');
  writeFileSync(bad, 'this is not an HDF5 file\n');

  const server = await serveWeb({ port: 0 });
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const outside: string[] = [];
  const problems: string[] = [];
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: false });
    // Every request of the page and its worker: only the server's own origin is let through.
    await context.route('**/*', (route) => {
      const url = route.request().url();
      if (url.startsWith(server.url) || url.startsWith('data:') || url.startsWith('blob:')) return route.continue();
      outside.push(url);
      return route.abort();
    });
    context.on('request', (r) => {
      const url = r.url();
      if (!url.startsWith(server.url) && !url.startsWith('data:') && !url.startsWith('blob:')) outside.push(url);
    });
    const page = await context.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    await page.goto(server.url);
    await page.waitForSelector('body[data-state=ready]', { timeout: 120_000 });
    // The page's Content-Security-Policy is in force: an inline script is refused, not run.
    const violated = await page.evaluate(() => new Promise<string>((done) => {
      document.addEventListener('securitypolicyviolation', (e: { violatedDirective: string }) => done(e.violatedDirective), { once: true });
      const s = document.createElement('script');
      s.textContent = 'document.body.dataset.inline = "ran"';
      document.body.append(s);
      setTimeout(() => done(document.body.dataset.inline ?? 'no violation reported'), 5000);
    }));
    assert.match(violated, /^script-src/);
    assert.ok(problems.every((p) => p.includes('Content Security Policy')), problems.join('\n'));
    problems.length = 0; // the refusal is logged as a console error: expected here, nowhere else

    // A bad file: its one-line error next to it, nothing else changes.
    await page.setInputFiles('#file-poisonedTest', bad);
    await page.waitForSelector('#error-poisonedTest:not(:empty)');
    const err = await page.textContent('#error-poisonedTest');
    assert.match(err!, /^goodnet: error: bad\.h5: not an HDF5 file/);
    assert.ok(!err!.includes('\n'), 'one line');

    // A tfjs folder through the folder input (the same BadNet, written by saveModel).
    await initBackend('wasm');
    const tfjsDir = join(out, 'bd_net_tfjs');
    const m = await loadModel(join(DEMO, FILES.model));
    await saveModel(m, tfjsDir);
    m.net.dispose();
    await page.setInputFiles('#dir-model', tfjsDir);
    await page.waitForFunction(() => /classes/.test(document.getElementById('info-model').textContent));
    assert.equal(await page.textContent('#info-model'), 'tfjs, 28×28×1 → 10 classes');

    // A zip of PNG images (labels in the names), read as the CLI reads an image folder: 20 images of the clean set.
    const ds = await openDataset(join(DEMO, FILES.cleanValid));
    const pngs: Record<string, Uint8Array> = {};
    for await (const b of ds.batches(20)) {
      for (let i = 0; i < b.n; i++) pngs[`imgs/img${i}-label${b.y[i]}.png`] = encodePng(b.x.subarray(i * 784, (i + 1) * 784), 28, 28, 1);
      break;
    }
    ds.close();
    writeFileSync(join(out, 'imgs.zip'), zipSync(pngs));
    await page.setInputFiles('#file-cleanValid', join(out, 'imgs.zip'));
    await page.waitForFunction(() => /images/.test(document.getElementById('info-cleanValid').textContent) || document.getElementById('error-cleanValid').textContent);
    assert.equal(await page.textContent('#error-cleanValid'), '');
    assert.equal(await page.textContent('#info-cleanValid'), '20 images 28×28×1');

    // The real files through the file inputs.
    for (const [role, name] of Object.entries(FILES)) await page.setInputFiles(`#file-${role}`, join(DEMO, name));
    await page.waitForFunction(() => document.querySelectorAll('#data-read canvas').length === 4 && !document.getElementById('run').disabled);
    assert.equal(await page.textContent('#error-poisonedTest'), '', 'the error goes when a good file replaces the bad one');
    assert.match((await page.textContent('#model-read'))!, /input 28×28×1, 10 classes/);
    assert.match((await page.textContent('#info-cleanValid'))!, /1,000 images 28×28×1/);

    let t0 = performance.now();
    await page.click('#run');
    await page.waitForSelector('body[data-state=done]', { timeout: 300_000 });
    t.diagnostic(`run from the file inputs: ${((performance.now() - t0) / 1000).toFixed(1)} s in Chromium`);
    const web = JSON.parse((await page.textContent('#summary-json'))!) as Summary;
    assert.deepEqual(numbers(web), numbers(cli));
    assert.equal((await page.textContent('#tables'))!.trim(), cliTables);
    const downloads = await page.$$eval('#downloads a', (as) => as.map((a) => a.textContent));
    assert.ok(downloads.includes('goodnet-prune.zip') && downloads.includes('summary.json') && downloads.includes('asc/models/repaired_2.h5'), downloads.join(' '));
    const reportRows = await page.frameLocator('#report').locator('table.goodnet tbody tr').count();
    assert.equal(reportRows, cli.goodnet.length, 'the report shows every GoodNet row');
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'web.png'), fullPage: true });

    // Cancel during the sweep: the page clicks Cancel as soon as step 2 is shown; no step comes after.
    await page.evaluate(() => {
      const p = document.getElementById('progress');
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      new (globalThis as any).MutationObserver(() => {
        if (Number(p.dataset.step) >= 2 && document.body.dataset.state === 'running') document.getElementById('cancel').click();
      }).observe(p, { attributes: true, attributeFilter: ['data-step'] });
    });
    await page.click('#run');
    await page.waitForSelector('body[data-state=cancelled]', { timeout: 300_000 });
    const at = await page.getAttribute('#progress', 'data-cancelled-at');
    assert.match(at!, /^asc:\d+$/);
    const stepAt = await page.getAttribute('#progress', 'data-step');
    // Run is enabled again once a fresh worker has read all five files: by then the old one would have posted more
    // steps. (Whether Run is still disabled right here depends on how fast the fresh worker reads: not asserted.)
    await page.waitForFunction(() => !document.getElementById('run').disabled);
    assert.equal(await page.textContent('#info-cleanValid'), '1,000 images 28×28×1');
    assert.equal(await page.getAttribute('#progress', 'data-step'), stepAt, 'no step after Cancel');
    assert.equal(await page.getAttribute('body', 'data-steps-after-cancel'), '0');
    assert.equal(await page.getAttribute('body', 'data-state'), 'cancelled');

    // The demo button, on a fresh page: the shipped lab BadNet, the same numbers.
    await page.reload();
    await page.waitForSelector('body[data-state=ready]', { timeout: 120_000 });
    t0 = performance.now();
    await page.click('#demo');
    await page.waitForSelector('body[data-state=done]', { timeout: 300_000 });
    t.diagnostic(`demo button: ${((performance.now() - t0) / 1000).toFixed(1)} s in Chromium`);
    assert.deepEqual(numbers(JSON.parse((await page.textContent('#summary-json'))!) as Summary), numbers(cli));

    // A file over the page's memory budget (lowered to 0.5 MiB here) is refused, with the reason, before it is read.
    await page.goto(`${server.url}?max-file-mib=0.5`);
    await page.waitForSelector('body[data-state=ready]', { timeout: 120_000 });
    await page.setInputFiles('#file-cleanValid', join(DEMO, FILES.cleanValid));
    await page.waitForSelector('#error-cleanValid:not(:empty)');
    assert.match((await page.textContent('#error-cleanValid'))!, /^goodnet: error: clean_valid\.h5: file is 0\.6 MiB, over this page's memory budget of 0\.5 MiB per file/);

    assert.deepEqual(problems, []);
    assert.deepEqual(outside, [], 'no request leaves 127.0.0.1');
    t.diagnostic(`screenshot: ${join(ARTIFACTS, 'web.png')}`);
  } finally {
    await browser.close();
    await server.close();
  }
});
