/**
 * Trigger unlearning (src/defense/unlearn.ts) and SAU (src/defense/sau.ts) on tiny models built here: the unlearning set
 * is the clean data with a share stamped and every label kept (nothing poisoned enters it),
 * the defense lowers a tiny trained BadNet's ASR from clean data only, its saved model
 * evaluates as reported, it is registered, and its CLI refuses bad input in one line.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { existsSync, readFileSync } from 'node:fs';
import * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from '../src/engine/backend.js';
import { describeModel, loadModel, type LoadedModel } from '../src/io/model.js';
import { writeCsawData } from '../src/attack/csaw_layout.js';
import { measure, registeredDefenses } from '../src/defense/interface.js';
import { runDefense } from '../src/defense/run.js';
import { runTriggerUnlearning, unlearningSet, UNLEARN_DEFAULTS } from '../src/defense/unlearn.js';
import { train, type TrainingSet } from '../src/models/train.js';
import * as tf from '@tensorflow/tfjs-core';
import { sharedPgd, SAU_DEFAULTS } from '../src/defense/sau.js';
import { crossEntropyLogits, forwardLogits } from '../src/defense/channels.js';
import { cloneNet } from '../src/defense/graph.js';
import { anomalyIndices, flaggedLabels } from '../src/defense/nc.js';
import '../src/defense/registry.js';
import { assertBadInput, tempDir, trainTinyBadNet, TINY_H, tinyImages, runCli } from './helpers.js';

await initBackend('wasm');
const { dir, cleanup } = tempDir('goodnet-unlearn-');
const f = (p: string) => join(dir, p);
const H = TINY_H;
const TARGET = 0;

const images = tinyImages;

const MEASURE = () => ({ cleanTest: f('test.h5'), poisonedTest: f('bd_test.h5'), target: TARGET, scale: 255 });
/** Small settings for the tiny model (4 labels, 16x16). */
const SMALL = { labels: 'below-median' as const, reverseEpochs: 25, reverseStepsPerEpoch: 5, reverseBatchSize: 16, rounds: 2, epochs: 5, learningRate: 1e-2, batchSize: 32, maxDrop: 5 };
let badnet: LoadedModel;

before(async () => {
  for (const [name, n, trig] of [['clean.h5', 400, false], ['test.h5', 200, false], ['bd_test.h5', 150, true]] as const) {
    const { x, y } = images(n, name, trig);
    await writeCsawData(f(name), x, y, n, H, H, 1);
  }
  // A small conv net trained on clean images plus 60 with the white 3x3 zone relabelled 0.
  const clean = images(400, 'train-clean', false);
  const bad = images(60, 'train-bad', true);
  badnet = describeModel(await trainTinyBadNet(clean, { x: bad.x, n: 60 }, H, TARGET), 'tiny-badnet', 'tfjs');
});
after(cleanup);

test('the unlearning set is every clean image plus stamped copies of a share, each with its true label', () => {
  const n = 50;
  const per = H * H;
  const images = Float32Array.from({ length: n * per }, (_, i) => (i * 7) % 255);
  const labels = Int32Array.from({ length: n }, (_, i) => i % 4);
  const clean: TrainingSet = { images, labels, n, shape: [H, H, 1] };
  const mask = new Float32Array(per);
  mask[per - 1] = 1; // one pixel, fully replaced
  mask[0] = 0.5;
  const pattern = new Float32Array(per).fill(1000); // a value no clean pixel has
  const { set, stamped } = unlearningSet(clean, [{ mask, pattern }], 0.4, 's');
  assert.equal(stamped, 20);
  assert.equal(set.n, n + 20);
  // The clean images first, unchanged, with their labels.
  assert.deepEqual(Array.from(set.images.subarray(0, n * per)), Array.from(images));
  assert.deepEqual(Array.from(set.labels).slice(0, n), Array.from(labels));
  // Each stamped copy is one clean image with the trigger applied, and keeps that image's label.
  const used = new Set<number>();
  for (let r = n; r < n + 20; r++) {
    const x = set.images.subarray(r * per, (r + 1) * per);
    assert.equal(x[per - 1], 1000);
    const src = [...Array(n).keys()].find((i) => !used.has(i) && x[0] === 0.5 * images[i * per]! + 500
      && Array.from({ length: per - 2 }, (_, p) => p + 1).every((p) => x[p] === images[i * per + p]));
    assert.ok(src !== undefined, `stamped copy ${r} comes from a clean image`);
    used.add(src);
    assert.equal(set.labels[r], labels[src], 'true label, never the trigger\'s');
  }
  assert.equal(images[per - 1], (per - 1) * 7 % 255, 'the clean set itself is not modified');
});

test('trigger unlearning lowers a tiny trained BadNet\'s ASR from clean data only; its saved model evaluates as reported', async () => {
  const before = await measure(badnet, badnet.net, MEASURE());
  assert.ok(before.accuracy > 0.9 && before.asr > 0.9, `the tiny BadNet: accuracy ${before.accuracy}, ASR ${before.asr}`);
  const out = f('unlearn.h5');
  const { result } = await runDefense({ defense: 'unlearn', model: badnet, cleanValid: f('clean.h5'), seed: 1, out, options: SMALL, ...MEASURE() });
  const d = result.details as Awaited<ReturnType<typeof runTriggerUnlearning>>['details'];
  assert.ok(d.rounds.length >= 1);
  const r1 = d.rounds[0]!;
  assert.equal(r1.labels.length, 4);
  // Round 1 stamps every label below the median norm that reached the threshold (no detection, no anomaly index).
  const sorted = r1.labels.map((l) => l.norm).sort((a, b) => a - b);
  const med = (sorted[1]! + sorted[2]!) / 2;
  assert.equal(d.median, med);
  assert.deepEqual(r1.labels.filter((l) => l.stamped).map((l) => l.label), r1.labels.filter((l) => l.reached && l.norm < med).map((l) => l.label));
  assert.ok(r1.triggers >= 1);
  assert.equal(d.heldOut, 80);
  // The kept epoch respects the clean criterion on the held-out images.
  for (const r of d.rounds) assert.ok(r.epochs[r.bestEpoch]!.cleanAccuracy >= d.baseline - SMALL.maxDrop / 100 - 1e-9);
  // The pruning after the rounds: channels the stamped triggers excite, within its held-out budget of the unlearned model's accuracy.
  const p = d.pruning!;
  assert.ok(p, 'the default prunes after the rounds');
  // The gate: some round-1 trigger far below the median norm (the planted trigger is 9 pixels, a label's quadrant 64).
  assert.ok(d.pruneLabels!.length >= 1 && d.pruneLabels!.every((l) => r1.labels[l]!.norm < UNLEARN_DEFAULTS.pruneNorm * d.median));
  const k = p.pruned.length;
  assert.deepEqual(p.pruned, p.order.slice(0, k));
  // Its budget: pruneDrop below the unlearned model, and never below maxDrop under the original (the whole defense's bound).
  const budget = p.settings.maxDrop;
  assert.ok(budget <= UNLEARN_DEFAULTS.pruneDrop + 1e-9);
  assert.ok(p.steps[k]!.cleanAccuracy >= p.baseline - budget / 100 - 1e-9);
  assert.ok(p.steps[k]!.cleanAccuracy >= d.baseline - SMALL.maxDrop / 100 - 1e-9);
  if (k < p.order.length) assert.ok(p.steps[k + 1]!.cleanAccuracy < p.baseline - budget / 100 - 1e-9);
  const after = result.after!;
  assert.ok(after.asr < before.asr / 2, `ASR ${before.asr} -> ${after.asr}`);
  assert.ok(after.accuracy > before.accuracy - 0.1, `accuracy ${before.accuracy} -> ${after.accuracy}`);
  const saved = await loadModel(out);
  assert.deepEqual(await measure(saved, saved.net, MEASURE()), after);
  assert.equal(result.rows!.length, 1);
  assert.equal(result.cleanImages, 400);
});

test('trigger unlearning is registered, after the defenses before it, and checks its options', async () => {
  const names = registeredDefenses().map((x) => x.name);
  assert.ok(names.includes('unlearn') && names.indexOf('unlearn') > names.indexOf('nc'), names.join(','));
  assert.equal(UNLEARN_DEFAULTS.labels, 'flagged');
  await assert.rejects(runTriggerUnlearning({ model: badnet, cleanValid: f('clean.h5'), scale: 255 }, { share: 1.5 }), /share must be in \(0, 1\]/);
  await assert.rejects(runTriggerUnlearning({ model: badnet, cleanValid: f('clean.h5'), scale: 255 }, { rounds: 0 }), /rounds must be an integer >= 1/);
  await assert.rejects(runTriggerUnlearning({ model: badnet, cleanValid: f('clean.h5'), scale: 255 }, { pruneNorm: 0 }), /prune norm must be > 0/);
  await assert.rejects(runTriggerUnlearning({ model: badnet, cleanValid: f('clean.h5'), scale: 255 }, { labels: 'some' as never }), /labels must be 'all', 'below-median', 'flagged'/);
  await assert.rejects(runTriggerUnlearning({ model: badnet, cleanValid: f('clean.h5'), scale: 255 }, { anomalyThreshold: -1 }), /anomaly threshold must be >= 0/);
  // No round-1 trigger below the gate: nothing is pruned.
  const gated = await runTriggerUnlearning({ model: badnet, cleanValid: f('clean.h5'), scale: 255, seed: 1 }, { ...SMALL, rounds: 1, pruneNorm: 1e-6 });
  assert.equal(gated.details.pruning, undefined);
  gated.repaired!.dispose();
});

test('detection-gated unlearning (--labels flagged) stamps only the labels Neural Cleanse\'s anomaly index flags, and prunes only then', async () => {
  const out = f('unlearn-flagged.h5');
  const { result } = await runDefense({ defense: 'unlearn', model: badnet, cleanValid: f('clean.h5'), seed: 1, out, options: { ...SMALL, labels: 'flagged', starts: 2 }, ...MEASURE() });
  const d = result.details as Awaited<ReturnType<typeof runTriggerUnlearning>>['details'];
  const r1 = d.rounds[0]!;
  const norms = r1.labels.map((l) => l.norm);
  // The flags are goodnet nc's: log-scale MAD index of round 1's norms > 2, below the median. Here the planted target only.
  assert.deepEqual(d.flagged, flaggedLabels(r1.labels.map((l) => l.label), norms, 2, 'log'));
  assert.deepEqual(d.flagged, [TARGET], `norms ${norms.map((x) => x.toFixed(1)).join(', ')}`);
  assert.deepEqual(d.anomalyIndex, anomalyIndices(norms, 'log').index);
  assert.ok(d.anomalyIndex![TARGET]! > 2);
  // Round 1 stamps only the flagged label's trigger; the others are reversed (for the median) but not stamped.
  assert.equal(r1.labels.length, 4);
  assert.deepEqual(r1.labels.filter((l) => l.stamped).map((l) => l.label), [TARGET]);
  // starts 2: the flagged label reversed once more from a fresh start; stamped too when it works below the median.
  assert.equal(r1.starts!.length, 1);
  const s2 = r1.starts![0]!;
  assert.deepEqual([s2.label, s2.start, s2.stamped], [TARGET, 2, s2.reached && s2.norm < d.median]);
  assert.equal(r1.triggers, 1 + (s2.stamped ? 1 : 0));
  // Later rounds re-reverse only the flagged labels and stamp one only while it works below the first round's median.
  for (const r of d.rounds.slice(1)) {
    assert.deepEqual(r.labels.map((l) => l.label), [TARGET]);
    for (const l of r.labels) assert.equal(l.stamped, l.reached && l.norm < d.median);
  }
  if (d.stopped === 'no trigger works') assert.ok(d.lastReversal!.every((l) => l.label === TARGET && !(l.reached && l.norm < d.median)));
  // The pruning's gate is "some label flagged"; its channels are ranked by the flagged label's trigger(s).
  assert.deepEqual(d.pruneLabels, [TARGET]);
  assert.ok(d.pruning);
  const after = result.after!;
  assert.ok(after.asr < result.before!.asr / 2, `ASR ${result.before!.asr} -> ${after.asr}`);
  assert.ok(after.accuracy > result.before!.accuracy - 0.1, `accuracy ${result.before!.accuracy} -> ${after.accuracy}`);
  const saved = await loadModel(out);
  assert.deepEqual(await measure(saved, saved.net, MEASURE()), after);
});

test('detection-gated unlearning with nothing flagged returns the model unchanged and says so (CLI and JSON)', async () => {
  const { saveModel } = await import('../src/io/model.js');
  const m = f('m-flag.h5');
  await saveModel(badnet, m, { overwrite: true });
  const out = f('unflagged.h5');
  const json = f('unflagged.json');
  // An anomaly threshold no index reaches: nothing is flagged.
  const r = await runCli(['unlearn', '-m', m, '--clean-valid', f('clean.h5'), '-o', out, '--json', json, '--labels', 'flagged', '--anomaly-threshold', '1000',
    '--reverse-epochs', '3', '--steps-per-epoch', '2', '--clean-test', f('test.h5'), '--poisoned-test', f('bd_test.h5'), '-t', String(TARGET)]);
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(readFileSync(json, 'utf8')) as { details: { stopped: string; flagged: number[]; anomalyIndex: number[]; rounds: unknown[]; pruning?: unknown; lastReversal: { stamped: boolean }[]; settings: { labels: string; anomalyThreshold: number } }; rows: string[][]; before: { asr: number }; after: { asr: number } };
  assert.equal(j.details.stopped, 'nothing flagged');
  assert.deepEqual(j.details.flagged, []);
  assert.equal(j.details.anomalyIndex.length, 4);
  assert.deepEqual(j.details.rounds, []);
  assert.equal(j.details.pruning, undefined);
  assert.ok(j.details.lastReversal.every((l) => !l.stamped));
  assert.equal(j.details.settings.labels, 'flagged');
  assert.equal(j.details.settings.anomalyThreshold, 1000);
  assert.deepEqual(j.after, j.before);
  assert.match(JSON.stringify(j.rows), /nothing flagged: model unchanged/);
  // The saved model computes exactly what the original does: every weight equal.
  const saved = await loadModel(out);
  const a = saved.net.getWeights().map((w) => Array.from(w.dataSync()));
  const b = badnet.net.getWeights().map((w) => Array.from(w.dataSync()));
  assert.deepEqual(a, b);
});

test('CLI: goodnet unlearn refuses bad input in one line, exit 2, writing nothing', async () => {
  const run = runCli;
  const { saveModel } = await import('../src/io/model.js');
  const m = f('m.h5');
  await saveModel(badnet, m, { overwrite: true });
  assertBadInput(await run(['unlearn', '-m', m, '--clean-valid', f('missing.h5'), '-o', f('x.h5')]), /missing\.h5: file or folder not found/);
  assertBadInput(await run(['unlearn', '-m', m, '--clean-valid', f('clean.h5')]), /-o, --out/);
  assertBadInput(await run(['unlearn', '-m', m, '--clean-valid', f('clean.h5'), '-o', f('x.h5'), '--labels', 'some']), /--labels/);
  assertBadInput(await run(['unlearn', '-m', m, '--clean-valid', f('clean.h5'), '-o', f('x.h5'), '--labels', 'flagged', '--anomaly-threshold', '-1']), /--anomaly-threshold/);
  assertBadInput(await run(['unlearn', '-m', m, '--clean-valid', f('clean.h5'), '-o', f('x.h5'), '--rounds', '0']), /--rounds/);
  assertBadInput(await run(['unlearn', '-m', m, '--clean-valid', f('clean.h5'), '-o', f('x.h5'), '--prune-drop', '-1']), /--prune-drop/);
  assertBadInput(await run(['unlearn', '-m', m, '--clean-valid', f('clean.h5'), '-o', f('x.h5'), '--prune-rank', 'both']), /--prune-rank/);
  assertBadInput(await run(['unlearn', '-m', m, '--clean-valid', f('clean.h5'), '-o', f('x.h5'), '--prune-norm', '0']), /--prune-norm/);
  assertBadInput(await run(['unlearn', '-m', m, '--clean-valid', f('clean.h5'), '-o', f('x.h5'), '--clean-test', f('test.h5')]), /together/);
  assertBadInput(await run(['sau', '-m', m, '--clean-valid', f('clean.h5'), '-o', f('x.h5'), '--eps', '-1']), /--eps/);
  assertBadInput(await run(['sau', '-m', m, '--clean-valid', f('missing.h5'), '-o', f('x.h5')]), /missing\.h5: file or folder not found/);
  assert.ok(!existsSync(f('x.h5')));
});

test('SAU\'s shared PGD stays within its L_inf bound and raises the model\'s loss', async () => {
  const { x: raw, y } = images(32, 'pgd', false);
  const x = tf.tensor4d(Float32Array.from(raw, (v) => v / 255), [32, H, H, 1]);
  const labels = tf.tensor1d(y, 'int32');
  const ref = await cloneNet(badnet.net);
  const eps = 0.2;
  const { pert, shared } = sharedPgd(badnet.net, ref, x, labels, 4, { ...SAU_DEFAULTS, eps, stepSize: eps });
  const maxAbs = tf.max(tf.abs(pert)).dataSync()[0]!;
  assert.ok(maxAbs <= eps + 1e-6 && maxAbs > 0, `max |perturbation| ${maxAbs}`);
  const loss = (t: tf.Tensor4D) => tf.tidy(() => crossEntropyLogits(forwardLogits(badnet.net, t), labels, 4).dataSync()[0]!);
  const xp = tf.add(x, pert) as tf.Tensor4D;
  assert.ok(loss(xp) > loss(x), `loss ${loss(x)} -> ${loss(xp)}`);
  assert.ok(shared >= 0 && shared <= 32);
  tf.dispose([x, labels, pert, xp]);
  ref.dispose();
});

test('SAU lowers the tiny BadNet\'s ASR on the contract: registered, its saved model evaluates as reported, the kept epoch respects the clean criterion', async () => {
  assert.ok(registeredDefenses().some((x) => x.name === 'sau'));
  const out = f('sau.h5');
  const { result } = await runDefense({ defense: 'sau', model: badnet, cleanValid: f('clean.h5'), seed: 1, out, options: { epochs: 3, batchSize: 32, learningRate: 1e-2, maxDrop: 5 }, ...MEASURE() });
  const d = result.details as { baseline: number; bestEpoch: number; epochs: { cleanAccuracy: number; sharedRate: number }[] };
  assert.equal(d.epochs.length, 4);
  assert.ok(d.epochs[d.bestEpoch]!.cleanAccuracy >= d.baseline - 0.05 - 1e-9);
  assert.ok(d.epochs.every((e) => e.sharedRate >= d.epochs[d.bestEpoch]!.sharedRate || e.cleanAccuracy < d.baseline - 0.05 - 1e-9));
  const saved = await loadModel(out);
  assert.deepEqual(await measure(saved, saved.net, MEASURE()), result.after);
  assert.ok(result.after!.asr < result.before!.asr / 2, `ASR ${result.before!.asr} -> ${result.after!.asr}`);
  assert.ok(result.after!.accuracy > result.before!.accuracy - 0.1, `accuracy ${result.before!.accuracy} -> ${result.after!.accuracy}`);
});
