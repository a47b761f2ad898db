/** The pruning defense and GoodNet on a tiny BadNet built in the test, and on the real CSAW weights. */
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from '../src/engine/backend.js';
import { runAttack } from '../src/attack/lab.js';
import { evaluate } from '../src/eval/evaluate.js';
import { loadModel, type LoadedModel, describeModel } from '../src/io/model.js';
import '../src/models/index.js'; // weights-only Keras files load into the registered architectures
import { inspectModel } from '../src/models/inspect.js';
import { runPrune, type PruneSummary } from '../src/defense/prune.js';
import { findCutPoint } from '../src/defense/graph.js';
import { pruneChannels } from '../src/defense/mask.js';
import { channelOrder, pickThresholds } from '../src/defense/sweep.js';
import { classifyGoodNet, evaluateGoodNet, goodnetLabels, goodnetMetrics } from '../src/defense/goodnet.js';
import { CSAW, needsCsaw, tempDir } from './helpers.js';

await initBackend('wasm');

const { dir, cleanup } = tempDir('goodnet-defense-');
const lab = join(dir, 'lab');
const f = (p: string) => join(lab, p);
let model: LoadedModel;
let summary: PruneSummary;

before(async () => {
  await runAttack({ out: lab, dataset: 'mnist', split: { train: 1500, valid: 300, test: 300 }, epochs: 2, batchSize: 32, seed: 5 });
  model = await loadModel(f('models/bd_net.h5'));
  summary = await runPrune({
    model, cleanValid: f('data/cl/valid.h5'), poisonedValid: f('data/bd/bd_valid.h5'),
    cleanTest: f('data/cl/test.h5'), poisonedTest: f('data/bd/bd_test.h5'), target: 0, out: join(dir, 'prune'),
  });
});
after(cleanup);

test('prune writes its outputs and leaves no temp files', () => {
  for (const p of ['summary.json', 'profile.json', 'goodnet.json', 'goodnet.csv', 'goodnet.md', 'asc/sweep.csv', 'asc/sweep.json',
    'asc/prune.json', 'desc/prune.json', 'asc/models/repaired_2.h5', 'asc/models/repaired_2/model.json']) {
    assert.ok(existsSync(join(dir, 'prune', p)), p);
  }
  assert.deepEqual(readdirSync(dir).sort(), ['lab', 'prune']);
  const csv = readFileSync(join(dir, 'prune', 'asc', 'sweep.csv'), 'utf8').trim().split('\n');
  assert.equal(csv[0], 'step,channel,fraction_pruned,accuracy,asr');
  assert.equal(csv.length, 1 + 61);
});

test('the sweep finds pool_3/conv_3 and prunes in ascending / descending order of mean activation', () => {
  assert.equal(summary.profile.poolLayer, 'pool_3');
  assert.equal(summary.profile.convLayer, 'conv_3');
  assert.equal(summary.profile.mean.length, 60);
  const [asc, desc] = summary.sweeps;
  assert.deepEqual(asc!.channelOrder, channelOrder(summary.profile.mean, 'asc'));
  assert.deepEqual(desc!.channelOrder, [...channelOrder(summary.profile.mean, 'desc')]);
  const m = summary.profile.mean;
  for (let i = 1; i < 60; i++) assert.ok(m[asc!.channelOrder[i - 1]!]! <= m[asc!.channelOrder[i]!]!);
  assert.equal(asc!.steps.length, 61);
  assert.equal(asc!.steps.at(-1)!.fractionPruned, 1);
  // DeepID's tail takes the incremental path, so the exactness tests below cover it.
  for (const s of summary.sweeps) assert.equal(s.stats?.path, 'incremental');
});

test('step 0 equals goodnet eval on the validation sets', async () => {
  const r = await evaluate(model, { clean: f('data/cl/valid.h5'), poisoned: f('data/bd/bd_valid.h5'), target: 0 });
  for (const s of summary.sweeps) {
    assert.equal(s.steps[0]!.accuracy, r.clean!.accuracy);
    assert.equal(s.steps[0]!.asr, r.poisoned!.asr);
  }
});

test('fast path: every step equals re-running the fully pruned model', async () => {
  for (const s of summary.sweeps) {
    for (const step of s.steps) {
      const net = await pruneChannels(model.net, 'conv_3', s.channelOrder.slice(0, step.step));
      const pruned = describeModel(net, 'pruned', 'tfjs');
      const r = await evaluate(pruned, { clean: f('data/cl/valid.h5'), poisoned: f('data/bd/bd_valid.h5'), target: 0 });
      assert.equal(r.clean!.accuracy, step.accuracy, `${s.order} step ${step.step} accuracy`);
      assert.equal(r.poisoned!.asr, step.asr, `${s.order} step ${step.step} ASR`);
      net.dispose();
    }
  }
});

test('picks: B\'_X dropped by >= X points and the step before by < X; the saved models have exactly those channels zeroed', async () => {
  const n = 300;
  for (const s of summary.sweeps) {
    const c0 = Math.round(s.steps[0]!.accuracy * n);
    for (const p of s.picks) {
      if (p.step === null) {
        assert.ok(s.steps.every((st) => (c0 - Math.round(st.accuracy * n)) * 100 < p.threshold * n));
        continue;
      }
      const drop = (k: number) => ((c0 - Math.round(s.steps[k]!.accuracy * n)) * 100) / n;
      assert.ok(drop(p.step) >= p.threshold, `${s.order} X=${p.threshold}: drop ${drop(p.step)}`);
      for (let k = 1; k < p.step; k++) assert.ok(drop(k) < p.threshold, `${s.order} X=${p.threshold}: step ${k} already dropped`);
      const saved = await loadModel(join(dir, 'prune', p.model!.keras));
      const conv3 = inspectModel(saved.net).convs.find((c) => c.layer === 'conv_3')!;
      assert.deepEqual(conv3.zeroChannels, [...p.pruned].sort((a, b) => a - b));
    }
  }
});

test('last-within picks the step before first-drop', () => {
  const s = summary.sweeps[0]!;
  const first = pickThresholds(s.steps, s.channelOrder, [2, 4, 10], 'first-drop', 300);
  const last = pickThresholds(s.steps, s.channelOrder, [2, 4, 10], 'last-within', 300);
  first.forEach((p, i) => {
    if (p.step !== null) assert.equal(last[i]!.step, p.step - 1);
  });
});

test('GoodNet arithmetic on a hand-made B and B\'', () => {
  // 4 classes; backdoor answer = 4. Clean: B right everywhere, B' disagrees on items 1 and 3.
  const clean = { labels: [0, 1, 2, 3, 1], bad: [0, 1, 2, 3, 1], repaired: [0, 2, 2, 0, 1] };
  // Poisoned (target 0): true labels 1,2,3,0(ignored); B sends all to 0; B' undoes 2 of the 3 counted.
  const poisoned = { labels: [1, 2, 3, 0], bad: [0, 0, 0, 0], repaired: [1, 2, 0, 0] };
  assert.deepEqual([...goodnetLabels(clean.bad, clean.repaired, 4)], [0, 4, 2, 4, 1]);
  const m = goodnetMetrics({ numClasses: 4, target: 0, clean, poisoned });
  assert.equal(m.repaired.accuracy, 3 / 5);
  assert.equal(m.repaired.asr, 1 / 3);
  assert.equal(m.goodnet.accuracy, 3 / 5);
  assert.equal(m.goodnet.asr, 1 / 3);
  assert.equal(m.goodnet.detectionRate, 2 / 3);
  assert.equal(m.goodnet.falseAlarmRate, 2 / 5);
});

test('goodnet command numbers (full models) equal prune\'s table (fast path), for every B\'_X', async () => {
  for (const row of summary.goodnet!) {
    const pick = summary.sweeps.find((s) => s.order === row.order)!.picks.find((p) => p.threshold === row.threshold)!;
    const repaired = await loadModel(join(dir, 'prune', pick.model!.keras));
    const r = await evaluateGoodNet({ bad: model, repaired, cleanTest: f('data/cl/test.h5'), poisonedTest: f('data/bd/bd_test.h5'), target: 0 });
    assert.deepEqual({ repaired: r.repaired, goodnet: r.goodnet }, { repaired: row.repaired, goodnet: row.goodnet }, `${row.order} ${row.threshold}`);
    assert.equal(r.bad.accuracy, summary.baseline.testAccuracy);
  }
});

test('GoodNet refuses a repaired model of another architecture; predict --goodnet answers N for disagreements', async () => {
  const other = describeModel(tfl.sequential({ layers: [tfl.layers.flatten({ inputShape: [28, 28, 1] }), tfl.layers.dense({ units: 10, activation: 'softmax' })] }), 'other.h5', 'tfjs');
  await assert.rejects(evaluateGoodNet({ bad: model, repaired: other, cleanTest: f('data/cl/test.h5'), poisonedTest: f('data/bd/bd_test.h5'), target: 0 }),
    /other\.h5: repaired model does not match the BadNet's architecture/);
  const pick = summary.sweeps[0]!.picks.at(-1)!;
  const repaired = await loadModel(join(dir, 'prune', pick.model!.keras));
  const answers = await classifyGoodNet(model, repaired, [f('data/bd/bd_test.h5')]);
  for (const a of answers) assert.equal(a.goodnet, a.bad === a.repaired ? a.bad : 10);
});

test('bad prune input: thresholds outside (0,100), a model without conv, a layer without channels', async () => {
  const base = { model, cleanValid: f('data/cl/valid.h5'), poisonedValid: f('data/bd/bd_valid.h5'), target: 0, out: join(dir, 'x') };
  await assert.rejects(runPrune({ ...base, thresholds: [0] }), /threshold 0 is outside \(0, 100\)/);
  await assert.rejects(runPrune({ ...base, thresholds: [100] }), /threshold 100 is outside/);
  await assert.rejects(runPrune({ ...base, layer: 'fc_1' }), /layer 'fc_1' is a Dense with output \(N, 160\), which has no channels/);
  await assert.rejects(runPrune({ ...base, target: 10 }), /target label 10 is out of range/);
  const flat = tfl.sequential({ layers: [tfl.layers.flatten({ inputShape: [8, 8, 1] }), tfl.layers.dense({ units: 3, activation: 'softmax' })] });
  assert.throws(() => findCutPoint(flat, undefined, 'flat.h5'), /flat\.h5: the model has no convolutional layer to prune/);
  assert.ok(!existsSync(join(dir, 'x')));
});

test('prune on the real CSAW BadNet with the ten real images as validation: step 0 matches eval', needsCsaw, async () => {
  const { dir: d, cleanup: done } = tempDir();
  try {
    mkdirSync(join(d, 'cl'));
    mkdirSync(join(d, 'bd'));
    for (const img of readdirSync(join(CSAW, 'images'))) copyFileSync(join(CSAW, 'images', img), join(d, img.startsWith('cl') ? 'cl' : 'bd', img));
    const bd = await loadModel(join(CSAW, 'lab3_sunglasses_bd_weights.h5'));
    const s = await runPrune({ model: bd, cleanValid: join(d, 'cl'), poisonedValid: join(d, 'bd'), target: 0, out: join(d, 'out') });
    const r = await evaluate(bd, { clean: join(d, 'cl'), poisoned: join(d, 'bd'), target: 0 });
    assert.equal(s.profile.convLayer, 'conv_3');
    assert.equal(s.sweeps[0]!.steps.length, 61);
    assert.equal(s.sweeps[0]!.steps[0]!.accuracy, r.clean!.accuracy);
    assert.equal(s.sweeps[0]!.steps[0]!.asr, r.poisoned!.asr);
    // The profile over the 5 clean images is the reference's (expected.json, rounded to 5 decimals).
    const exp = JSON.parse(readFileSync(join(CSAW, 'expected.json'), 'utf8')).models['lab3_sunglasses_bd_weights.h5'].pool_3_mean_activation_over_5_clean_images as number[];
    s.profile.mean.forEach((v, i) => assert.ok(Math.abs(v - exp[i]!) < 1e-3 * Math.max(1, Math.abs(exp[i]!)), `channel ${i}: ${v} vs ${exp[i]}`));
  } finally {
    done();
  }
});
