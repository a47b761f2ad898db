/**
 * `goodnet compare` and the report iterate over the registry: a fake defense registered
 * here shows up in the comparison, its sections.json and the report's defense sections,
 * beside every real one; STRIP runs on the contract as a detector (no model). A tiny random
 * conv net on 8x8 images, every real defense with cut-short settings.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tfl from '@tensorflow/tfjs-layers';
import seedrandom from 'seedrandom';
import { initBackend } from '../src/engine/backend.js';
import { describeModel, type LoadedModel } from '../src/io/model.js';
import { writeCsawData } from '../src/attack/csaw_layout.js';
import { cloneNet } from '../src/defense/graph.js';
import { registerDefense, registeredDefenses, repairRow } from '../src/defense/interface.js';
import { comparisonTable, runComparison } from '../src/defense/comparison.js';
import { defenseSections, readComparisonFolder } from '../src/report/defenses.js';
import { runStrip } from '../src/detect/strip.js';
import { tempDir } from './helpers.js';

await initBackend('wasm');
const { dir, cleanup } = tempDir('goodnet-compare-');
after(cleanup);
const f = (p: string) => join(dir, p);
const H = 8;
let model: LoadedModel;

// Registered at import, like every defense module: compare must pick it up without being told.
let fakeRuns = 0;
registerDefense<{ note: string }, { note: string }>({
  name: 'fake-test',
  title: 'Fake defense (test)',
  summary: 'returns a copy of the model',
  kind: 'repair',
  defaults: { note: 'default' },
  run: async (input, options = {}) => {
    fakeRuns++;
    return { defense: 'fake-test', repaired: await cloneNet(input.model.net), cleanImages: 7, seconds: 0.5, details: { note: options.note ?? 'default' } };
  },
  rows: (run, m) => repairRow(`fake (${run.details.note})`, run, m),
  section: (run) => ({
    title: 'Fake defense (test)', text: [`a <fake> paragraph: ${run.details.note}`],
    tables: [{ headers: ['k', 'v'], rows: [['answer', 42]] }],
    images: [{ caption: 'fake image', width: 4, height: 4, channels: 1, pixels: Float32Array.from({ length: 16 }, (_, i) => i / 15) }],
  }),
});

const QUICK: Record<string, Record<string, unknown>> = {
  'fine-pruning': { epochs: 1 },
  nc: { maxEpochs: 1, stepsPerEpoch: 1, unlearnEpochs: 1 },
  anp: { iterations: 2 },
  strip: { n: 4, limit: 30, heldOut: 0.5 },
  'fake-test': { note: 'given' },
  unlearn: { rounds: 1, reverseEpochs: 1, reverseStepsPerEpoch: 1, epochs: 1 },
  sau: { epochs: 1, steps: 1 },
};

before(async () => {
  const input = tfl.input({ shape: [H, H, 1], name: 'input' });
  const c = tfl.layers.conv2d({ name: 'conv_1', filters: 4, kernelSize: 3, activation: 'relu', kernelInitializer: tfl.initializers.glorotUniform({ seed: 1 }) }).apply(input);
  const p = tfl.layers.maxPooling2d({ name: 'pool_1', poolSize: 2 }).apply(c);
  const o = tfl.layers.dense({ name: 'output', units: 3, activation: 'softmax', kernelInitializer: tfl.initializers.glorotUniform({ seed: 2 }) })
    .apply(tfl.layers.flatten({ name: 'flatten' }).apply(p)) as tfl.SymbolicTensor;
  model = describeModel(tfl.model({ inputs: input, outputs: o }), 'tiny', 'tfjs');
  for (const [name, n, seed] of [['valid.h5', 60, 'v'], ['test.h5', 40, 't'], ['bd_test.h5', 40, 'b']] as const) {
    const rng = seedrandom(seed);
    const x = Uint8Array.from({ length: n * H * H }, () => Math.floor(rng() * 256));
    if (name === 'bd_test.h5') for (let i = 0; i < n; i++) for (let r = 5; r < 8; r++) for (let q = 5; q < 8; q++) x[i * H * H + r * H + q] = 255;
    await writeCsawData(f(name), x, Int32Array.from({ length: n }, (_, i) => (name === 'bd_test.h5' ? 1 + (i % 2) : i % 3)), n, H, H, 1);
  }
});

test('compare runs every registered defense, the fake one included, and writes its table, sections and models', async () => {
  const names = registeredDefenses().map((d) => d.name);
  assert.ok(names.includes('fake-test') && names.includes('strip'));
  const c = await runComparison({
    model, cleanValid: f('valid.h5'), cleanImages: 50, cleanTest: f('test.h5'), poisonedTest: f('bd_test.h5'), target: 0, scale: 255,
    options: QUICK, out: f('cmp'),
  });
  assert.deepEqual(c.names, names, 'every registered defense, in registry order');
  assert.equal(fakeRuns, 1);
  const fake = c.rows.find((r) => r.defense === 'fake (given)');
  assert.ok(fake, 'the fake defense\'s row, with the options given for it');
  // A copy of the model measures exactly like the BadNet.
  assert.equal(fake.accuracy, c.before.accuracy);
  assert.equal(fake.asr, c.before.asr);
  assert.equal(fake.der, 0.5);
  assert.equal(fake.cleanImages, 7);
  assert.ok(existsSync(f('cmp/models/fake-test.h5')) && existsSync(f('cmp/fake-test.json')));
  assert.ok(!existsSync(f('cmp/models/strip.h5')), 'a detector saves no model');
  // STRIP on the contract equals `goodnet strip` run on the same clean images' calibration... and is a filter in front of B.
  const strip = c.results.find((r) => r.defense === 'strip')!;
  assert.equal(strip.cleanImages, 50);
  assert.ok(strip.after!.detectionRate !== undefined && strip.after!.falseAlarmRate !== undefined);
  const t = comparisonTable(c.rows);
  assert.ok(t.headers.includes('detection') && t.headers.includes('clean images'));
  assert.equal(t.rows.length, c.rows.length);
  const md = readFileSync(f('cmp/comparison.md'), 'utf8');
  assert.match(md, /fake \(given\)/);

  // The report renders the comparison (table + scatter) and every defense's own section from the folder.
  const folder = readComparisonFolder(f('cmp'))!;
  assert.deepEqual(folder.sections.map((s) => s.name), names);
  const r = await defenseSections(folder, { command: 'goodnet compare ...' });
  assert.equal(r.sections.length, names.length + 1);
  assert.match(r.sections[0]!.html, /<table>.*fake \(given\)/s);
  assert.match(r.sections[0]!.html, /BackdoorBench/);
  const fakeSection = r.sections.find((s) => s.title === 'Defense: Fake defense (test)')!;
  assert.match(fakeSection.html, /a &lt;fake&gt; paragraph: given/, 'text escaped');
  assert.match(fakeSection.html, /<td>42<\/td>/);
  assert.match(fakeSection.html, /id="figure-samples-defense-fake-test"/);
  const names2 = r.figures.map((x) => x.name);
  assert.ok(names2.includes('defenses-scatter') && names2.includes('samples-defense-fake-test'), names2.join(', '));
  const scatter = r.figures.find((x) => x.name === 'defenses-scatter')!;
  // One point per row (the BadNet and each defense), and its labels.
  assert.ok(scatter.svg.includes('fake'));
});

test('STRIP on the contract: the same threshold and test entropies as `goodnet strip` on the same clean images', async () => {
  const c = await runComparison({
    model, cleanValid: f('valid.h5'), cleanTest: f('test.h5'), poisonedTest: f('bd_test.h5'), target: 0, scale: 255,
    defenses: ['strip'], options: { strip: { n: 4, heldOut: 0.5 } },
  });
  const d = c.results[0]!.details as { threshold: number; result: { cleanTest: { entropies: number[] }; poisonedTest: { entropies: number[]; far: number } } };
  const s = await runStrip(model, { cleanValid: f('valid.h5'), cleanTest: f('test.h5'), poisonedTest: f('bd_test.h5'), target: 0, scale: 255, n: 4, heldOut: 0.5 });
  assert.equal(d.threshold, s.threshold);
  assert.deepEqual(d.result.cleanTest.entropies, s.cleanTest!.entropies);
  assert.deepEqual(d.result.poisonedTest.entropies, s.poisonedTest!.entropies);
  assert.equal(c.results[0]!.after!.detectionRate, 1 - s.poisonedTest!.far);
  assert.equal(c.results[0]!.after!.falseAlarmRate, s.cleanTest!.frr);
  assert.equal(c.results[0]!.cleanImages, 60);
});
