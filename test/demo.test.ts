/** `goodnet demo` end to end on a tiny configuration, and its report in a real browser. */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { initBackend } from '../src/engine/backend.js';
import { runDemo } from '../src/demo.js';
import { der } from '../src/defense/compare.js';
import { evaluate } from '../src/eval/evaluate.js';
import { loadModel } from '../src/io/model.js';
import { checkReportInBrowser, needsChromium } from './browser.js';
import { tempDir } from './helpers.js';

await initBackend('wasm');
const { dir, cleanup } = tempDir('goodnet-demo-');
const out = join(dir, 'demo');
after(cleanup);
const demo = runDemo({ out, dataset: 'mnist', epochs: 2, attack: { split: { train: 1500, valid: 300, test: 300 } }, fineTune: { epochs: 1 }, strip: { n: 10 } });

test('demo: attack -> eval -> prune (both orders, 2/4/10) -> report', async () => {
  const r = await demo;
  for (const p of ['lab/attack.json', 'lab/models/bd_net.h5', 'prune/summary.json', 'prune/asc/sweep.csv', 'prune/desc/sweep.csv',
    'report.html', 'figures/sweep.png', 'figures/sweep.svg', 'figures/samples-poisoned.png', 'figures/activation-profile.svg']) {
    assert.ok(existsSync(join(out, p)), p);
  }
  assert.equal(r.report, join(out, 'report.html'));
  // The eval stage gives attack.json's test numbers.
  assert.equal(r.eval.clean!.accuracy, r.attack.results.cleanTestAccuracy);
  assert.equal(r.eval.poisoned!.asr, r.attack.results.asrTest);
  // 0% pruned equals goodnet eval on the validation sets.
  const model = await loadModel(join(out, 'lab/models/bd_net.h5'));
  const v = await evaluate(model, { clean: join(out, 'lab/data/cl/valid.h5'), poisoned: join(out, 'lab/data/bd/bd_valid.h5'), target: 0 });
  assert.equal(r.prune.baseline.validAccuracy, v.clean!.accuracy);
  assert.equal(r.prune.baseline.validAsr, v.poisoned!.asr);
  assert.deepEqual(r.prune.sweeps.map((s) => s.order), ['asc', 'desc']);
  for (const s of r.prune.sweeps) assert.deepEqual(s.picks.map((p) => p.threshold), [2, 4, 10]);
  // Both tables have one row per reached threshold, and the report shows them.
  // Fine-pruning, STRIP and the comparison made it to disk and into the report.
  assert.ok(r.prune.finePrune!.length >= 1);
  assert.ok(existsSync(join(out, 'strip/strip.json')) && existsSync(join(out, 'comparison.json')));
  const kinds = r.comparison.map((c) => c.kind);
  for (const k of ['none', 'prune', 'goodnet', 'fineprune', 'strip']) assert.ok(kinds.includes(k as never), k);
  const html = readFileSync(r.report, 'utf8');
  for (const title of ['All defenses compared', 'Fine-pruning', 'STRIP']) assert.ok(html.includes(title), title);
  for (const row of r.prune.goodnet!) assert.ok(html.includes(`${row.threshold}%`));
  assert.doesNotMatch(html, /(src|href)=["']?https?:/, 'no external resources');
});

test('demo report opens cleanly in headless Chromium', { ...needsChromium, timeout: 120_000 }, async (t) => {
  const r = await demo;
  const shot = await checkReportInBrowser(r.report, { images: 2, svgs: 6, goodnetRows: r.prune.goodnet!.length }, join(dir, 'report.png'));
  t.diagnostic(`screenshot: ${shot}`);
});

test('the comparison table repeats the individual commands\' numbers; DER arithmetic', async () => {
  const r = await demo;
  const row = (kind: string, x?: number) => r.comparison.find((c) => c.kind === kind && c.threshold === x)!;
  assert.equal(row('none').accuracy, r.eval.clean!.accuracy);
  assert.equal(row('none').asr, r.eval.poisoned!.asr);
  for (const g of r.prune.goodnet!.filter((x) => x.order === 'asc')) {
    assert.deepEqual({ accuracy: row('prune', g.threshold).accuracy, asr: row('prune', g.threshold).asr }, g.repaired);
    assert.equal(row('goodnet', g.threshold).detectionRate, g.goodnet.detectionRate);
    assert.equal(row('goodnet', g.threshold).falseAlarmRate, g.goodnet.falseAlarmRate);
  }
  for (const f of r.prune.finePrune!) assert.deepEqual({ accuracy: row('fineprune', f.threshold).accuracy, asr: row('fineprune', f.threshold).asr }, f.after);
  assert.equal(row('strip').detectionRate, 1 - r.strip.poisonedTest!.far);
  assert.equal(row('strip').falseAlarmRate, r.strip.cleanTest!.frr);
  // DER = [max(0, dASR) - max(0, dACC) + 1] / 2
  assert.equal(der({ accuracy: 0.9, asr: 1 }, { accuracy: 0.88, asr: 0.1 }), (0.9 - 0.02 + 1) / 2);
  assert.equal(der({ accuracy: 0.9, asr: 0.5 }, { accuracy: 0.95, asr: 0.7 }), 0.5);
  for (const c of r.comparison) if (c.kind !== 'none') assert.equal(c.der, der(row('none'), c));
});

test('demo refuses an existing folder without --force', async () => {
  await demo;
  const { dir: d, cleanup: done } = tempDir();
  try {
    await assert.rejects(runDemo({ out: d }), /already exists \(use --force to overwrite\)/);
  } finally {
    done();
  }
});
