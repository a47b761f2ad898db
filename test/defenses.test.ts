/**
 * Neural Cleanse, ANP, CLP and the defense interface on tiny models built in the test.
 *
 * The planted BadNet: 16x16x1 images, 4 classes (class c: quadrant c bright), a 3x3
 * trigger zone in the bottom-right corner (rows/cols 13..15, dim in every clean image).
 * Clean path: conv_a (1x1, identity) -> fc_a (4 x quadrant sum outside the zone).
 * Backdoor path: conv_b, one 3x3 all-ones filter with bias -1.9 (clean zone sums stay below
 * 1.8, so it never fires on clean images) -> fc_b, which sends a bright zone to label 0.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from '../src/engine/backend.js';
import { describeModel, loadModel, type LoadedModel } from '../src/io/model.js';
import { writeCsawData } from '../src/attack/csaw_layout.js';
import { anomalyIndices, flaggedLabels, indexBelow, reverseTriggers } from '../src/defense/nc.js';
import { channelLipschitz, clpPrune, spectralNorm, largestEigenvalue } from '../src/defense/clp.js';
import { anpMasks } from '../src/defense/anp.js';
import { channelUnits, forwardScaled, zeroUnitChannels } from '../src/defense/channels.js';
import { derOf, getDefense, measure, registeredDefenses } from '../src/defense/interface.js';
import { runDefense } from '../src/defense/run.js';
import { cloneNet } from '../src/defense/graph.js';
import type { TrainingSet } from '../src/models/train.js';
import { main } from '../src/cli/main.js';
import '../src/defense/registry.js';
import { assertBadInput, tempDir, trainTinyBadNet, TINY_H, inTinyZone, tinyImages, tinyQuadrant, runCli } from './helpers.js';

await initBackend('wasm');
const { dir, cleanup } = tempDir('goodnet-defenses-');
const H = TINY_H;
const TARGET = 0;
const inZone = inTinyZone;
const quadrant = tinyQuadrant;

function plantedNet(): tfl.LayersModel {
  const input = tfl.input({ shape: [H, H, 1], name: 'input' });
  const a = tfl.layers.conv2d({ name: 'conv_a', filters: 2, kernelSize: 1, activation: 'relu' }).apply(input) as tfl.SymbolicTensor;
  const b = tfl.layers.conv2d({ name: 'conv_b', filters: 1, kernelSize: 3, activation: 'relu' }).apply(input) as tfl.SymbolicTensor;
  const fa = tfl.layers.dense({ name: 'fc_a', units: 4 }).apply(tfl.layers.flatten({ name: 'flat_a' }).apply(a)) as tfl.SymbolicTensor;
  const fb = tfl.layers.dense({ name: 'fc_b', units: 4 }).apply(tfl.layers.flatten({ name: 'flat_b' }).apply(b)) as tfl.SymbolicTensor;
  const sum = tfl.layers.add({ name: 'add' }).apply([fa, fb]) as tfl.SymbolicTensor;
  const out = tfl.layers.activation({ name: 'softmax', activation: 'softmax' }).apply(sum) as tfl.SymbolicTensor;
  const net = tfl.model({ inputs: input, outputs: out });
  // conv_a: channel 0 copies the pixel, channel 1 is a copy fc_a ignores.
  net.getLayer('conv_a').setWeights([tf.tensor4d([1, 1], [1, 1, 1, 2]), tf.zeros([2])]);
  const fcA = new Float32Array(H * H * 2 * 4);
  for (let r = 0; r < H; r++) for (let c = 0; c < H; c++) if (!inZone(r, c)) fcA[((r * H + c) * 2) * 4 + quadrant(r, c)] = 4;
  net.getLayer('fc_a').setWeights([tf.tensor2d(fcA, [H * H * 2, 4]), tf.zeros([4])]);
  net.getLayer('conv_b').setWeights([tf.ones([3, 3, 1, 1]), tf.tensor1d([-1.9])]);
  const fcB = new Float32Array(14 * 14 * 4);
  fcB[(13 * 14 + 13) * 4 + TARGET] = 1000;
  net.getLayer('fc_b').setWeights([tf.tensor2d(fcB, [14 * 14, 4]), tf.zeros([4])]);
  return net;
}

const images = tinyImages;

const f = (p: string) => join(dir, p);
let model: LoadedModel;

before(async () => {
  model = describeModel(plantedNet(), 'planted', 'tfjs');
  for (const [name, n, trig] of [['clean.h5', 400, false], ['test.h5', 200, false], ['bd_test.h5', 150, true]] as const) {
    const { x, y } = images(n, name, trig);
    await writeCsawData(f(name), x, y, n, H, H, 1);
  }
});
after(cleanup);

const MEASURE = () => ({ cleanTest: f("test.h5"), poisonedTest: f("bd_test.h5"), target: TARGET, scale: 255 });

test('the planted BadNet is a BadNet: clean accuracy and ASR near 100%', async () => {
  const m = await measure(model, model.net, MEASURE());
  assert.ok(m.accuracy > 0.98, `accuracy ${m.accuracy}`);
  assert.ok(m.asr > 0.98, `ASR ${m.asr}`);
});

test('MAD anomaly index: 1.4826 x median absolute deviation; only low outliers are flagged', () => {
  const a = anomalyIndices([10, 20, 21, 22, 40]);
  assert.equal(a.median, 21);
  assert.ok(Math.abs(a.mad - 1.4826) < 1e-12); // deviations 11, 1, 0, 1, 19 -> median 1
  assert.ok(Math.abs(a.index[0]! - 11 / 1.4826) < 1e-9);
  assert.deepEqual(flaggedLabels([0, 1, 2, 3, 4], [10, 20, 21, 22, 40], 2, 'norm'), [0]); // 40 is an outlier above the median: not flagged
});

test('the anomaly index on log norms flags a 3x smaller mask among widely spread ones, where the index on the norms cannot', () => {
  // Mask norms measured by `goodnet nc` on the lab's DeepID BadNet (target 0) and on the same
  // net trained without poisoning (README, "Neural Cleanse on the lab models").
  const badnet = [17.2, 60.2, 42.9, 67.2, 61.6, 32.5, 53.5, 95.0, 28.8, 91.9];
  const clean = [81.2, 50.2, 55.9, 65.9, 67.1, 88.8, 68.4, 120.1, 52.8, 101.8];
  const labels = badnet.map((_, i) => i);
  const lin = anomalyIndices(badnet, 'norm');
  // Below the median the index on the norms is at most median / mad (norm >= 0): here under 2.
  assert.ok(lin.median / lin.mad < 2.05, `bound ${lin.median / lin.mad}`);
  assert.deepEqual(flaggedLabels(labels, badnet, 2, 'norm'), []);
  const log = anomalyIndices(badnet, 'log');
  assert.ok(Math.abs(log.median - Math.sqrt(53.5 * 60.2)) < 1e-9, 'log scale: the median is the geometric mean of the middle two');
  assert.ok(log.index[0]! > 2 && log.index.every((v, i) => i === 0 || v < 2), `log indices ${log.index.map((v) => v.toFixed(2)).join(', ')}`);
  assert.deepEqual(flaggedLabels(labels, badnet), [0]);
  assert.deepEqual(flaggedLabels(labels, badnet, 2, 'log'), [0]);
  assert.deepEqual(flaggedLabels(labels, clean), []);
  // The lab's ResNet BadNet (target 0; Bag, label 8, nearly as small: 13.2).
  assert.deepEqual(flaggedLabels(labels, [10.0, 47.1, 25.6, 51.8, 45.9, 62.8, 24.3, 64.2, 13.2, 84.5]), [0]);
  // indexBelow: the same index for a value of the scan itself, signed (above the median: negative).
  assert.ok(Math.abs(indexBelow(17.2, log, 'log') - log.index[0]!) < 1e-9);
  assert.ok(indexBelow(95, log, 'log') < 0);
  assert.ok(Math.abs(indexBelow(17.2, lin, 'norm') - lin.index[0]!) < 1e-9);
});

test('Neural Cleanse flags the planted 3x3 trigger\'s label, and the reversed mask sits on the trigger', async () => {
  const clean = await readSet(f('clean.h5'));
  const r = await reverseTriggers(model.net, clean, 4, { batchSize: 16, stepsPerEpoch: 5, maxEpochs: 40, initCost: 1e-2, patience: 2 }, { seed: 1 });
  const norms = r.labels.map((l) => l.norm);
  assert.deepEqual(flaggedLabels([0, 1, 2, 3], norms), [TARGET], `norms ${norms.map((x) => x.toFixed(1)).join(', ')}`);
  assert.ok(r.labels[TARGET]!.reached);
  const mask = r.triggers.masks.get(TARGET)!;
  let inside = 0;
  let total = 0;
  mask.forEach((v, i) => {
    total += v;
    if (inZone(Math.floor(i / H), i % H)) inside += v;
  });
  assert.ok(inside / total > 0.6, `share of the target's mask on the trigger: ${(inside / total).toFixed(2)}`);
});

test('Neural Cleanse flags nothing on the same network without its backdoor path', async () => {
  const clean = await readSet(f('clean.h5'));
  const net = plantedNet();
  net.getLayer('fc_b').setWeights([tf.zeros([14 * 14, 4]), tf.zeros([4])]);
  const r = await reverseTriggers(net, clean, 4, { batchSize: 16, stepsPerEpoch: 5, maxEpochs: 40, initCost: 1e-2, patience: 2 }, { seed: 1 });
  const norms = r.labels.map((l) => l.norm);
  assert.deepEqual(flaggedLabels([0, 1, 2, 3], norms), [], `norms ${norms.map((x) => x.toFixed(1)).join(', ')}`);
  net.dispose();
});

test('Neural Cleanse unlearning lowers the ASR of a tiny trained BadNet (clean data only)', async () => {
  // A small conv net trained here on clean images plus 10% with the white 3x3 zone relabelled 0.
  const clean = images(400, 'train-clean', false);
  const bad = images(60, 'train-bad', true);
  const net = await trainTinyBadNet(clean, { x: bad.x, n: 60 }, H, TARGET);
  const bd = describeModel(net, 'tiny-badnet', 'tfjs');
  const before = await measure(bd, net, MEASURE());
  assert.ok(before.accuracy > 0.9 && before.asr > 0.9, `the tiny BadNet: accuracy ${before.accuracy}, ASR ${before.asr}`);
  const { runNeuralCleanse } = await import('../src/defense/nc.js');
  // Four labels make the MAD a weak statistic (label 3's quadrant holds the trigger zone, so its
  // natural trigger is small too): this test is about unlearning, so the flagging threshold is 1.
  const r = await runNeuralCleanse({ model: bd, cleanValid: f('clean.h5'), scale: 255, seed: 1 },
    { batchSize: 16, stepsPerEpoch: 5, maxEpochs: 40, initCost: 1e-2, patience: 2, anomalyThreshold: 1, unlearnEpochs: 5, unlearnLearningRate: 1e-2 });
  assert.deepEqual(r.verdict!.flagged, [TARGET], `norms ${r.details.labels.map((l) => l.norm.toFixed(1)).join(', ')}`);
  const after = await measure(bd, r.repaired!, MEASURE());
  assert.ok(after.asr < before.asr / 2, `ASR ${before.asr} -> ${after.asr}`);
  assert.ok(after.accuracy > before.accuracy - 0.1, `accuracy ${before.accuracy} -> ${after.accuracy}`);
  r.repaired!.dispose();
  net.dispose();
});

test('CLP prunes a channel planted with a huge Lipschitz bound (BN and plain conv)', async () => {
  assert.ok(Math.abs(spectralNorm([3, 0, 0, 4], 2, 2) - 4) < 1e-9);
  assert.ok(Math.abs(spectralNorm([1, 2, 3, 4, 5, 6], 2, 3) - 9.508032000695724) < 1e-6);
  assert.ok(Math.abs(largestEigenvalue(Float64Array.from([2, 1, 1, 2]), 2) - 3) < 1e-9);
  const input = tfl.input({ shape: [6, 6, 2] });
  const c1 = tfl.layers.conv2d({ name: 'c1', filters: 8, kernelSize: 3, useBias: false, kernelInitializer: tfl.initializers.glorotUniform({ seed: 1 }) }).apply(input);
  const bn = tfl.layers.batchNormalization({ name: 'bn1' }).apply(c1);
  const c2 = tfl.layers.conv2d({ name: 'c2', filters: 8, kernelSize: 3, activation: 'relu', kernelInitializer: tfl.initializers.glorotUniform({ seed: 2 }) }).apply(tfl.layers.reLU().apply(bn));
  const out = tfl.layers.dense({ units: 3, activation: 'softmax' }).apply(tfl.layers.flatten().apply(c2)) as tfl.SymbolicTensor;
  const net = tfl.model({ inputs: input, outputs: out });
  // BN: channel 5 gets gamma 50 (an ordinary kernel); plain conv c2: channel 2's kernel x 40.
  const [g, b, mean, v] = net.getLayer('bn1').getWeights();
  const gamma = g!.dataSync().slice();
  gamma[5] = 50;
  net.getLayer('bn1').setWeights([tf.tensor1d(gamma), b!, mean!, v!]);
  const [k2, b2] = net.getLayer('c2').getWeights();
  const scale = new Float32Array(8).fill(1);
  scale[2] = 40;
  net.getLayer('c2').setWeights([tf.mul(k2!, tf.tensor1d(scale)), b2!]);
  const layers = channelLipschitz(net).map((x) => x.layer);
  assert.deepEqual(layers.map((l) => [l.conv, l.kind]), [['c1', 'bn'], ['c2', 'conv']]);
  const r = await clpPrune(net, 2);
  assert.deepEqual(r.plan, { c1: [5], c2: [2] });
  const bnAfter = r.net.getLayer('bn1').getWeights();
  assert.equal(bnAfter[0]!.dataSync()[5], 0);
  assert.equal(bnAfter[1]!.dataSync()[5], 0);
  // The pruned BN channel is exactly 0 after BN; the pruned conv channel is exactly 0 after ReLU.
  const x = tf.randomUniform([4, 6, 6, 2], 0, 1, 'float32', 3);
  const head = tfl.model({ inputs: r.net.inputs, outputs: [r.net.getLayer('bn1').output as tfl.SymbolicTensor, r.net.getLayer('c2').output as tfl.SymbolicTensor] });
  const [yb, yc] = head.predict(x) as tf.Tensor[];
  assert.equal(tf.max(tf.abs(tf.gather(yb!, [5], 3))).dataSync()[0], 0);
  assert.equal(tf.max(tf.abs(tf.gather(yc!, [2], 3))).dataSync()[0], 0);
  assert.ok(tf.max(tf.abs(tf.gather(yb!, [4], 3))).dataSync()[0]! > 0);
});

test('forwardScaled with unit multipliers equals the model; zeroing equals multiplier 0', async () => {
  const x = tf.div(tf.tensor4d(images(8, 'fs', true).x, [8, H, H, 1]), 255) as tf.Tensor4D;
  const ones = new Map(channelUnits(model.net).map((u) => [u.layer, { w: tf.ones([u.channels]) as tf.Tensor1D }]));
  const a = (model.net.predict(x) as tf.Tensor).dataSync();
  const b = forwardScaled(model.net, x, ones).dataSync();
  a.forEach((v, i) => assert.ok(Math.abs(v - b[i]!) < 1e-5));
  const copy = await cloneNet(model.net);
  zeroUnitChannels(copy, channelUnits(copy).find((u) => u.conv === 'conv_b')!, [0]);
  const zero = new Map([['conv_b', { w: tf.zeros([1]) as tf.Tensor1D, b: tf.zeros([1]) as tf.Tensor1D }]]);
  const c = (copy.predict(x) as tf.Tensor).dataSync();
  const d = forwardScaled(model.net, x, zero).dataSync();
  c.forEach((v, i) => assert.ok(Math.abs(v - d[i]!) < 1e-5));
  copy.dispose();
});

test('ANP: the backdoor channel\'s mask falls, the useful channel\'s stays at 1', async () => {
  const clean = await readSet(f('clean.h5'));
  const r = await anpMasks(model.net, clean, 4, { iterations: 40, batchSize: 32 }, { seed: 0 });
  const mask = (conv: string) => r.masks[r.units.findIndex((u) => u.conv === conv)]!;
  assert.ok(mask('conv_b')[0]! < 0.2, `conv_b mask ${mask('conv_b')[0]}`);
  assert.ok(mask('conv_a')[0]! > 0.9, `conv_a channel 0 mask ${mask('conv_a')[0]}`);
  // alpha = 1 (natural loss only, no noise): nothing pushes the masks down.
  const nat = await anpMasks(model.net, clean, 4, { iterations: 10, batchSize: 32, alpha: 1 }, { seed: 0 });
  for (const m of nat.masks) for (const v of m) assert.ok(v > 0.99, `natural-only mask ${v}`);
});

test('every defense\'s saved model evaluates like its reported numbers (runDefense)', async () => {
  const opts: Record<string, Record<string, unknown>> = {
    nc: { batchSize: 16, stepsPerEpoch: 5, maxEpochs: 40, initCost: 1e-2, patience: 2, unlearnEpochs: 3, unlearnRounds: 1 },
    anp: { iterations: 40, batchSize: 32 },
    clp: { u: [1, 2, 3] },
  };
  for (const name of ['nc', 'anp', 'clp']) {
    const out = f(`${name}.h5`);
    const { result } = await runDefense({ defense: name, model, cleanValid: f("clean.h5"), out, options: opts[name], ...MEASURE() });
    assert.ok(existsSync(out));
    const saved = await loadModel(out);
    const m = await measure(saved, saved.net, MEASURE());
    assert.deepEqual(m, result.after, name);
    assert.equal(result.rows!.length, 1);
    assert.equal(result.rows![0]!.asr, result.after!.asr);
    assert.equal(result.rows![0]!.der, derOf(result.before!, result.after!));
    assert.equal(result.cleanImages, 400);
    if (name === 'anp') assert.ok(result.after!.asr < 0.05, `${name} ASR ${result.after!.asr}`);
    if (name === 'nc') assert.deepEqual(result.verdict!.flagged, [TARGET]);
  }
});

test('pruning and fine-pruning (tfjs, and trainEngine ort) on the contract: saved models evaluate as reported (random DeepID, and a ResNet cut at global pooling)', async () => {
  const { deepId } = await import('../src/models/deepid.js');
  const { buildArchitecture } = await import('../src/models/index.js');
  const nets = [
    describeModel(deepId({ inputShape: [H, H, 1], numClasses: 4, seed: 1 }), 'deepid', 'tfjs'),
    // Its cut's activations are (N, C): `goodnet compare` crashed on them (session 21).
    describeModel(buildArchitecture('resnet', { inputShape: [H, H, 1], numClasses: 4, seed: 1 }), 'resnet', 'tfjs'),
  ];
  for (const dm of nets) for (const [name, trainEngine] of [['pruning'], ['fine-pruning'], ['fine-pruning', 'ort']] as const) {
    const out = f(`${dm.source}-${name}-${trainEngine ?? 'default'}.h5`);
    const { result } = await runDefense({ defense: name, model: dm, cleanValid: f('clean.h5'), out, options: { maxDrop: 5, epochs: 1 }, trainEngine, ...MEASURE() });
    const saved = await loadModel(out);
    assert.deepEqual(await measure(saved, saved.net, MEASURE()), result.after, name);
    const d = result.details as { conv: string; pruned: number[]; curve: number[]; fineTune?: { engine?: string } };
    // The defenses train on tfjs unless told (their recorded results); trainEngine reaches the fine-tuning.
    if (name === 'fine-pruning') assert.equal(d.fineTune?.engine, trainEngine, `${dm.source}: fine-tuned on ${d.fineTune?.engine ?? 'tfjs'}`);
    assert.ok(d.curve.length >= d.pruned.length + 1);
    assert.ok((d.curve[0]! - d.curve[d.pruned.length]!) * 100 <= 5 + 1e-9);
    if (dm.source === 'resnet') assert.equal(d.conv.includes('relu'), true, d.conv);
  }
});

test('the registry lists the defenses; an unknown one is a GoodnetError', () => {
  const names = registeredDefenses().map((d) => d.name);
  for (const n of ['pruning', 'fine-pruning', 'nc', 'anp', 'clp']) assert.ok(names.includes(n), names.join(','));
  assert.throws(() => getDefense('nope'), /no defense named 'nope'/);
});

test('CLI: bad input is one line, exit 2, before any long work', async () => {
  const run = runCli;
  await saveTo(f('m.h5'));
  assertBadInput(await run(['anp', '-m', f('m.h5'), '--clean-valid', f('missing.h5'), '-o', f('x.h5')]), /missing\.h5: file or folder not found/);
  assertBadInput(await run(['clp', '-m', f('m.h5'), '--clean-valid', f('clean.h5'), '-o', f('m.h5')]), /m\.h5: already exists/);
  assertBadInput(await run(['nc', '-m', f('m.h5'), '--clean-valid', f('clean.h5'), '--clean-test', f('test.h5')]), /together/);
  assertBadInput(await run(['clp', '-m', f('m.h5'), '--clean-valid', f('clean.h5'), '-o', f('y.h5'), '--u', 'abc']), /--u must be/);
  assertBadInput(await run(['unlearn', '-m', f('m.h5'), '--clean-valid', f('clean.h5'), '-o', f('y.h5'), '--train-engine', 'torch']), /--train-engine/);
  assertBadInput(await run(['compare', '-m', f('m.h5'), '--clean-valid', f('clean.h5'), '--clean-test', f('clean.h5'), '--poisoned-test', f('clean.h5'), '-t', '0', '--train-engine', 'gpu']), /--train-engine/);
  assert.ok(!existsSync(f('x.h5')) && !existsSync(f('y.h5')));
});

test('goodnet nc --json: flagged labels and every label\'s norm and anomaly index; compare writes its table', async () => {
  await saveTo(f('m2.h5'));
  const out: string[] = [];
  const orig = process.stdout.write.bind(process.stdout);
  const origErr = process.stderr.write.bind(process.stderr);
  // Strings only: the test runner's own reports go through stdout as buffers.
  process.stdout.write = ((s: string | Uint8Array, ...rest: unknown[]) => {
    if (typeof s === 'string') { out.push(s); return true; }
    return (orig as (...a: unknown[]) => boolean)(s, ...rest);
  }) as typeof process.stdout.write;
  process.stderr.write = (() => true) as typeof process.stderr.write;
  let code: number;
  try {
    code = await main(['node', 'goodnet', 'nc', '-m', f('m2.h5'), '--clean-valid', f('clean.h5'), '--scale', '255', '--nc-batch-size', '16',
      '--steps-per-epoch', '5', '--max-epochs', '40', '--init-cost', '0.01', '--patience', '2', '--triggers', f('triggers'), '--json', '-']);
  } finally {
    process.stdout.write = orig;
    process.stderr.write = origErr;
  }
  assert.equal(code, 0);
  const j = JSON.parse(out.join('')) as { flagged: number[]; labels: { label: number; norm: number; anomalyIndex: number }[] };
  assert.deepEqual(j.flagged, [TARGET]);
  assert.equal(j.labels.length, 4);
  assert.ok(j.labels.every((l) => Number.isFinite(l.norm) && Number.isFinite(l.anomalyIndex)));
  assert.ok(j.labels[TARGET]!.norm < Math.min(...j.labels.slice(1).map((l) => l.norm)));
  for (let l = 0; l < 4; l++) assert.ok(existsSync(f(`triggers/label_${l}.png`)), `trigger image of label ${l}`);

  const { runComparison } = await import('../src/defense/comparison.js');
  const c = await runComparison({ model, cleanValid: f('clean.h5'), defenses: ['clp'], ...MEASURE(), out: f('cmp') });
  assert.equal(c.rows.length, 2);
  assert.equal(c.rows[0]!.asr, c.before.asr);
  assert.ok(existsSync(f('cmp/comparison.md')) && existsSync(f('cmp/models/clp.h5')) && existsSync(f('cmp/clp.json')));
  // `goodnet report` of a compare folder: the table, the scatter, the defense's section, the inputs with their hashes.
  const { sha256 } = await import('../src/io/hash.js');
  const { readFileSync } = await import('node:fs');
  const { writeReport } = await import('../src/report/build.js');
  assert.equal(await writeReport(f('cmp')), f('cmp/report.html'));
  const html = readFileSync(f('cmp/report.html'), 'utf8');
  for (const s of ['Backdoor defenses compared', 'Defenses compared', 'Defense: CLP', 'figure-defenses-scatter', await sha256(f('test.h5')), await sha256(f('bd_test.h5'))]) {
    assert.ok(html.includes(s), s);
  }
  assert.ok(!html.includes('NaN') && !html.includes('Pruned layer') && !html.includes('<th scope="row">validation</th>'));
  assert.ok(html.includes(`${(100 * c.before.accuracy).toFixed(2)}%`), 'the BadNet\'s clean accuracy');
});

async function saveTo(path: string): Promise<void> {
  const { saveModel } = await import('../src/io/model.js');
  await saveModel(model, path, { overwrite: true });
}

async function readSet(path: string): Promise<TrainingSet> {
  const { loadCleanData } = await import('../src/defense/interface.js');
  return loadCleanData({ model, cleanValid: path, scale: 255 });
}
