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
import { registeredDefenses } from '../src/defense/registry.js';
import { percent } from '../src/report/table.js';

await initBackend('wasm');
const { dir, cleanup } = tempDir('goodnet-demo-');
const out = join(dir, 'demo');
after(cleanup);
// Tiny settings: 1,500 training images, a 600-image ResNet, every registered defense on 200 clean images.
const QUICK: Record<string, Record<string, unknown>> = {
  'fine-pruning': { epochs: 1 },
  nc: { maxEpochs: 2, stepsPerEpoch: 2, unlearnEpochs: 1 },
  anp: { iterations: 4 },
  strip: { n: 8, limit: 100, heldOut: 0.5 },
  unlearn: { rounds: 1, reverseEpochs: 2, reverseStepsPerEpoch: 2, epochs: 1 },
  sau: { epochs: 1, steps: 2 },
};
const demo = runDemo({
  out, dataset: 'mnist', epochs: 2, attack: { split: { train: 1500, valid: 300, test: 300 } },
  modern: { arch: 'resnet', epochs: 1, split: { train: 600, valid: 200, test: 200 } },
  defenses: { cleanImages: 200, options: QUICK },
});

test('demo: attack -> eval -> prune (both orders, 2/4/10) -> second BadNet -> every defense -> report', async () => {
  const r = await demo;
  for (const p of ['lab/attack.json', 'lab/models/bd_net.h5', 'prune/summary.json', 'prune/asc/sweep.csv', 'prune/desc/sweep.csv',
    'modern/lab/attack.json', 'modern/prune/summary.json', 'modern/prune/asc/sweep.csv', 'compare/comparison.json', 'compare/comparison.md',
    'compare/sections.json', 'strip/strip.json', 'summary.json',
    'report.html', 'figures/sweep.png', 'figures/sweep.svg', 'figures/samples-poisoned.png', 'figures/activation-profile.svg',
    'figures/defenses-scatter.svg', 'figures/sweep-second-badnet.svg']) {
    assert.ok(existsSync(join(out, p)), p);
  }
  assert.equal(r.report, join(out, 'report.html'));
  // The first BadNet trains on the demo's engine (ort), and the printed command says so.
  assert.match(r.commands[0]!, /^goodnet attack .*--train-engine ort/);
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
  // The second BadNet is the modern architecture, pruned in ascending order at its last block.
  assert.equal(r.modern!.attack.arch, 'resnet');
  assert.deepEqual(r.modern!.prune.sweeps.map((s) => s.order), ['asc']);
  assert.equal(r.modern!.prune.sweeps[0]!.convLayer, 'block3_relu');
  const html = readFileSync(r.report, 'utf8');
  for (const title of ['Defenses compared', 'Pruning a resnet BadNet', 'Defense: Neural Cleanse', 'Defense: STRIP', 'BackdoorBench']) {
    assert.ok(html.includes(title), title);
  }
  for (const id of ['figure-defenses-scatter', 'figure-sweep-second-badnet', 'figure-samples-defense-nc']) assert.ok(html.includes(`id="${id}"`), id);
  for (const row of r.prune.goodnet!) assert.ok(html.includes(`${row.threshold}%`));
  // The modern BadNet's B'_X rows are in the report as the prune run measured them.
  for (const g of r.modern!.prune.goodnet!) assert.ok(html.includes(percent(g.repaired.accuracy)), `B'_${g.threshold} accuracy`);
  assert.doesNotMatch(html, /(src|href)=["']?https?:/, 'no external resources');
  // Phase timings: every phase, in summary.json and in the result, adding up to at most the total.
  const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as { kind: string; phases: { phase: string; seconds: number }[]; loadAverage: { start: number[] } };
  assert.equal(summary.kind, 'demo');
  assert.deepEqual(summary.phases.map((p) => p.phase), r.phases.map((p) => p.phase));
  for (const name of ['attack (DeepID BadNet)', 'eval', 'prune (asc + desc, GoodNets)', 'attack (resnet BadNet)', 'prune (resnet, asc)', 'report']) {
    assert.ok(r.phases.some((p) => p.phase === name), name);
  }
  assert.ok(r.phases.every((p) => p.seconds >= 0 && p.cpuSeconds >= 0));
  assert.ok(r.phases.reduce((a, p) => a + p.seconds, 0) <= r.seconds + 1e-6);
  assert.equal(summary.loadAverage.start.length, 3);
});

test('the demo runs every registered defense, in registry order, and the table repeats their numbers', async () => {
  const r = await demo;
  const names = registeredDefenses().map((d) => d.name);
  assert.deepEqual(r.compare.names, names);
  for (const n of names) assert.ok(r.phases.some((p) => p.phase === `defense: ${n}`), n);
  assert.deepEqual(r.compare.sections.map((s) => s.title).length, names.length);
  // Row 0 is the BadNet as goodnet eval measures it.
  assert.equal(r.compare.rows[0]!.accuracy, r.eval.clean!.accuracy);
  assert.equal(r.compare.rows[0]!.asr, r.eval.poisoned!.asr);
  for (const res of r.compare.results) {
    if (!res.after) continue;
    const row = res.rows![0]!;
    assert.equal(row.accuracy, res.after.accuracy, res.defense);
    assert.equal(row.der, der(r.compare.before, res.after), res.defense);
  }
  // STRIP, a detector: no model, and the demo's strip/strip.json is its run.
  const strip = r.compare.results.find((x) => x.defense === 'strip')!;
  assert.ok(!existsSync(join(out, 'compare/models/strip.h5')));
  assert.equal(strip.after!.falseAlarmRate, r.strip!.cleanTest!.frr);
  assert.equal(strip.after!.detectionRate, 1 - r.strip!.poisonedTest!.far);
  // DER = [max(0, dASR) - max(0, dACC) + 1] / 2
  assert.equal(der({ accuracy: 0.9, asr: 1 }, { accuracy: 0.88, asr: 0.1 }), (0.9 - 0.02 + 1) / 2);
  assert.equal(der({ accuracy: 0.9, asr: 0.5 }, { accuracy: 0.95, asr: 0.7 }), 0.5);
});

test('demo report opens cleanly in headless Chromium', { ...needsChromium, timeout: 120_000 }, async (t) => {
  const r = await demo;
  // PNG: two sample grids and Neural Cleanse's reversed triggers; SVG: profile, sweep, repaired, two dual-axis,
  // STRIP's histogram, the defenses' scatter, the second BadNet's sweep.
  const shot = await checkReportInBrowser(r.report, { images: 3, svgs: 8, goodnetRows: r.prune.goodnet!.length }, join(dir, 'report.png'));
  t.diagnostic(`screenshot: ${shot}`);
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
