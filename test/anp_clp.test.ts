/**
 * ANP and CLP as their original code does it, on tiny BN networks built here (one test per
 * deviation fixed): ANP prunes BN weight only (the mask-0 forward), optimises with batch
 * statistics without touching the moving ones, measures --max-drop on a held-out share;
 * CLP's bound uses sqrt(running var) and torch's unbiased std.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import seedrandom from 'seedrandom';
import { initBackend } from '../src/engine/backend.js';
import { describeModel } from '../src/io/model.js';
import { ANP_DEFAULTS, anpMasks, anpPrune, runAnp } from '../src/defense/anp.js';
import { recoverMasks, unlearn } from '../src/defense/rnp.js';
import { runDefense } from '../src/defense/run.js';
import { measure } from '../src/defense/interface.js';
import { loadModel } from '../src/io/model.js';
import '../src/defense/registry.js';
import { channelLipschitz, spectralNorm } from '../src/defense/clp.js';
import { channelUnits, forwardScaled, zeroUnitChannels, type ChannelScale } from '../src/defense/channels.js';
import { cloneNet } from '../src/defense/graph.js';
import type { TrainingSet } from '../src/models/train.js';
import { writeCsawData } from '../src/attack/csaw_layout.js';
import { tempDir, runCli } from './helpers.js';

await initBackend('wasm');

/** conv(4) -> BN -> ReLU -> conv(3) -> BN -> ReLU -> GAP -> dense softmax, with non-trivial BN statistics. */
function bnNet(seed = 1): tfl.LayersModel {
  const input = tfl.input({ shape: [6, 6, 2] });
  let x = tfl.layers.conv2d({ name: 'c1', filters: 4, kernelSize: 3, padding: 'same', useBias: false, kernelInitializer: tfl.initializers.glorotUniform({ seed }) }).apply(input) as tfl.SymbolicTensor;
  x = tfl.layers.reLU().apply(tfl.layers.batchNormalization({ name: 'bn1' }).apply(x)) as tfl.SymbolicTensor;
  x = tfl.layers.conv2d({ name: 'c2', filters: 3, kernelSize: 3, useBias: false, kernelInitializer: tfl.initializers.glorotUniform({ seed: seed + 1 }) }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.reLU().apply(tfl.layers.batchNormalization({ name: 'bn2' }).apply(x)) as tfl.SymbolicTensor;
  const out = tfl.layers.dense({ units: 3, activation: 'softmax', kernelInitializer: tfl.initializers.glorotUniform({ seed: seed + 2 }) })
    .apply(tfl.layers.globalAveragePooling2d({}).apply(x)) as tfl.SymbolicTensor;
  const net = tfl.model({ inputs: input, outputs: out });
  const rng = seedrandom(`bn:${seed}`);
  for (const name of ['bn1', 'bn2']) {
    const ws = net.getLayer(name).getWeights();
    const c = ws[0]!.shape[0]!;
    const v = (lo: number, hi: number) => tf.tensor1d(Float32Array.from({ length: c }, () => lo + (hi - lo) * rng()));
    net.getLayer(name).setWeights([v(0.5, 2), v(-0.5, 0.5), v(-0.3, 0.3), v(0.2, 3)]);
  }
  return net;
}

const rand = (n: number, seed: number) => tf.randomUniform([n, 6, 6, 2], 0, 1, 'float32', seed) as tf.Tensor4D;

test('ANP prunes like its mask 0 (the original): BN weight zeroed, bias kept, same outputs as the masked forward', async () => {
  const net = bnNet();
  const units = channelUnits(net);
  assert.deepEqual(units.map((u) => [u.conv, u.layer, u.kind]), [['c1', 'bn1', 'bn'], ['c2', 'bn2', 'bn']]);
  const chosen = [{ conv: 'c1', layer: 'bn1', channel: 2, mask: 0 }, { conv: 'c2', layer: 'bn2', channel: 0, mask: 0.1 }];
  const pruned = await anpPrune(net, units, chosen);
  const [g1, b1] = pruned.getLayer('bn1').getWeights();
  const [g0, b0] = net.getLayer('bn1').getWeights();
  assert.equal(g1!.dataSync()[2], 0);
  assert.equal(b1!.dataSync()[2], b0!.dataSync()[2]); // beta kept, as prune_neuron_cifar.py
  assert.notEqual(b0!.dataSync()[2], 0);
  assert.equal(g1!.dataSync()[1], g0!.dataSync()[1]);
  const x = rand(5, 7);
  const masks = new Map<string, ChannelScale>([
    ['bn1', { w: tf.tensor1d([1, 1, 0, 1]) }],
    ['bn2', { w: tf.tensor1d([0, 1, 1]) }],
  ]);
  const a = (pruned.predict(x) as tf.Tensor).dataSync();
  const b = forwardScaled(net, x, masks).dataSync();
  a.forEach((v, i) => assert.ok(Math.abs(v - b[i]!) < 1e-5, `output ${i}: ${v} vs ${b[i]}`));
  // The old rule (beta zeroed too) computes something else on this net.
  const both = await cloneNet(net);
  zeroUnitChannels(both, units[0]!, [2]);
  zeroUnitChannels(both, units[1]!, [0]);
  const c = (both.predict(x) as tf.Tensor).dataSync();
  assert.ok(c.some((v, i) => Math.abs(v - b[i]!) > 1e-4), 'zeroing beta as well should change the outputs');
  pruned.dispose();
  both.dispose();
});

test('ANP optimises with batch statistics (train mode) and leaves the moving statistics alone', () => {
  const net = bnNet();
  const before = net.getLayer('bn1').getWeights().map((w) => w.dataSync().slice());
  const x = tf.add(tf.mul(rand(16, 3), 5), 2) as tf.Tensor4D; // far from the stored statistics
  // bn1's output per channel, batch mode: mean over the batch = beta exactly.
  const head = tfl.model({ inputs: net.inputs, outputs: net.getLayer('bn1').output as tfl.SymbolicTensor });
  const sub = new Map<string, ChannelScale>();
  const yBatch = forwardScaled(head, x, sub, { batchStats: true });
  const yRun = forwardScaled(head, x, sub);
  const beta = net.getLayer('bn1').getWeights()[1]!.dataSync();
  const mBatch = tf.mean(yBatch, [0, 1, 2]).dataSync();
  const mRun = tf.mean(yRun, [0, 1, 2]).dataSync();
  for (let c = 0; c < 4; c++) assert.ok(Math.abs(mBatch[c]! - beta[c]!) < 1e-4, `channel ${c}: batch mean ${mBatch[c]} vs beta ${beta[c]}`);
  assert.ok([...mRun].some((v, c) => Math.abs(v - beta[c]!) > 0.1), 'running statistics give other means on shifted data');
  // Scaled: weight part x w, bias part x b.
  const s = new Map<string, ChannelScale>([['bn1', { w: tf.tensor1d([0, 1, 2, 1]), b: tf.tensor1d([1, 0, 1, 1]) }]]);
  const ys = forwardScaled(head, x, s, { batchStats: true });
  const d0 = tf.sub(tf.gather(ys, [0], 3), beta[0]!);
  assert.ok(tf.max(tf.abs(d0)).dataSync()[0]! < 1e-5, 'mask 0: channel is its beta');
  const d2 = tf.sub(tf.gather(ys, [2], 3), tf.add(tf.mul(tf.sub(tf.gather(yBatch, [2], 3), beta[2]!), 2), beta[2]!));
  assert.ok(tf.max(tf.abs(d2)).dataSync()[0]! < 1e-4, 'mask 2: weight part doubled');
  const after = net.getLayer('bn1').getWeights().map((w) => w.dataSync());
  before.forEach((w, i) => assert.deepEqual([...after[i]!], [...w], `BN weight ${i} unchanged`));
});

test('ANP masks move on a BN net in batch mode; max-drop is measured on a held-out share', async () => {
  const { dir, cleanup } = tempDir('goodnet-anpclp-');
  try {
    const net = bnNet(5);
    const n = 60;
    const rng = seedrandom('data');
    const images = new Uint8Array(n * 72);
    for (let i = 0; i < images.length; i++) images[i] = Math.floor(256 * rng());
    const x = tf.div(tf.tensor4d(images, [n, 6, 6, 2]), 255) as tf.Tensor4D;
    const labels = Int32Array.from(tf.argMax(net.predict(x) as tf.Tensor, 1).dataSync()); // the net is right on its own answers
    const set: TrainingSet = { images: Float32Array.from(x.dataSync()), labels, n, shape: [6, 6, 2] };
    let maxNoise = 0;
    const r = await anpMasks(net, set, 3, { iterations: 15, batchSize: 16 }, {
      seed: 1, onNoise: (w, b) => { for (const v of [...w, ...b]) for (const x of v) maxNoise = Math.max(maxNoise, Math.abs(x)); },
    });
    // Random start in [-0.4, 0.4] plus one signed step of 0.4, not clipped back (the original).
    assert.ok(maxNoise > 0.4 && maxNoise <= 0.8 + 1e-6, `largest noise ${maxNoise}`);
    const all = r.masks.flatMap((m) => [...m]);
    assert.equal(all.length, 7);
    assert.ok(all.every((v) => v >= 0 && v <= 1));
    assert.ok(all.some((v) => v < 1), 'noise on BN pushes some mask down');
    await writeCsawData(`${dir}/clean.h5`, images, labels, n, 6, 6, 2);
    const model = describeModel(net, 'bn', 'tfjs');
    const run = await runAnp({ model, cleanValid: `${dir}/clean.h5`, scale: 255 }, { iterations: 5, batchSize: 16, maxDrop: 5, holdOut: 0.25 });
    assert.equal(run.details.heldOut, true);
    assert.equal(run.details.accuracyImages, 15);
    assert.equal(run.details.baseValidAccuracy, 1);
    assert.ok((run.details.baseValidAccuracy - run.details.validAccuracy) * 100 <= 5 + 1e-9);
    assert.equal(run.details.curve![0], 1);
    run.repaired?.dispose();
  } finally {
    cleanup();
  }
});

test('ANP defaults are the original\'s (optimize_mask_cifar.py, prune_neuron_cifar.py)', () => {
  assert.deepEqual(
    { eps: ANP_DEFAULTS.eps, steps: ANP_DEFAULTS.noiseSteps, alpha: ANP_DEFAULTS.alpha, lr: ANP_DEFAULTS.learningRate, it: ANP_DEFAULTS.iterations, bs: ANP_DEFAULTS.batchSize, bn: ANP_DEFAULTS.bnStats, t: ANP_DEFAULTS.threshold },
    { eps: 0.4, steps: 1, alpha: 0.2, lr: 0.2, it: 2000, bs: 128, bn: 'batch', t: 0.2 },
  );
});

test('CLP as the original: |gamma / sqrt(running var)| (no epsilon), threshold with the unbiased std', () => {
  assert.ok(Math.abs(spectralNorm([1, 2, 3, 2, 4, 6], 2, 3) - Math.sqrt(5) * Math.sqrt(14)) < 1e-9); // rank 1: |u| |v|
  const net = bnNet(3);
  const [gamma, , , variance] = net.getLayer('bn1').getWeights();
  const kernel = net.getLayer('c1').getWeights()[0]!; // (3, 3, 2, 4)
  const k = kernel.dataSync();
  const layer = channelLipschitz(net)[0]!.layer;
  for (let o = 0; o < 4; o++) {
    const m: number[] = [];
    for (let ci = 0; ci < 2; ci++) for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) m.push(k[((i * 3 + j) * 2 + ci) * 4 + o]!);
    const want = spectralNorm(m, 2, 9) * Math.abs(gamma!.dataSync()[o]! / Math.sqrt(variance!.dataSync()[o]!));
    assert.ok(Math.abs(layer.uclc[o]! - want) / want < 1e-5, `channel ${o}: ${layer.uclc[o]} vs ${want}`);
  }
  const mean = layer.uclc.reduce((a, b) => a + b, 0) / 4;
  const unbiased = Math.sqrt(layer.uclc.reduce((a, b) => a + (b - mean) ** 2, 0) / 3);
  assert.ok(Math.abs(layer.std - unbiased) < 1e-9);
});

test('RNP: unlearning lowers clean accuracy, masks recover it, and the saved model evaluates as reported', async () => {
  const { dir, cleanup } = tempDir('goodnet-rnp-');
  try {
    const net = bnNet(7);
    const n = 64;
    const rng = seedrandom('rnp');
    const images = new Uint8Array(n * 72);
    for (let i = 0; i < images.length; i++) images[i] = Math.floor(256 * rng());
    const x = tf.div(tf.tensor4d(images, [n, 6, 6, 2]), 255) as tf.Tensor4D;
    const labels = Int32Array.from(tf.argMax(net.predict(x) as tf.Tensor, 1).dataSync());
    const set: TrainingSet = { images: Float32Array.from(x.dataSync()), labels, n, shape: [6, 6, 2] };
    const before = net.getWeights().map((w) => w.dataSync().slice());
    const u = await unlearn(net, set, 3, { unlearnLr: 0.05, unlearnEpochs: 8, cleanThreshold: 0.3, batchSize: 16 });
    net.getWeights().forEach((w, i) => assert.deepEqual([...w.dataSync()], [...before[i]!], 'the original is not touched'));
    assert.ok(u.accuracy.at(-1)! < u.accuracy[0]!, `unlearning accuracy ${u.accuracy.join(', ')}`);
    const r = await recoverMasks(u.net, set, 3, { recoverEpochs: 4, batchSize: 16 });
    assert.ok(r.accuracy.at(-1)! >= r.accuracy[0]!, `recovering accuracy ${r.accuracy.join(', ')}`);
    assert.ok(r.masks.flat().length === 2 && [...r.masks[0]!, ...r.masks[1]!].every((v) => v >= 0 && v <= 1));
    u.net.dispose();
    await writeCsawData(`${dir}/clean.h5`, images, labels, n, 6, 6, 2);
    const model = describeModel(net, 'bn', 'tfjs');
    const m = { cleanTest: `${dir}/clean.h5`, poisonedTest: `${dir}/clean.h5`, target: 0, scale: 255 };
    const { result } = await runDefense({
      defense: 'rnp', model, cleanValid: `${dir}/clean.h5`, out: `${dir}/rnp.h5`, options: { unlearnEpochs: 3, recoverEpochs: 2, batchSize: 16, threshold: 0.9 }, ...m,
    });
    const saved = await loadModel(`${dir}/rnp.h5`);
    assert.deepEqual(await measure(saved, saved.net, m), result.after);
    assert.equal(result.cleanImages, n);
    const d = result.details as { pruned: { mask: number }[]; masks: { mask: number }[] };
    assert.equal(d.pruned.length, d.masks.filter((c) => c.mask < 0.9).length);
  } finally {
    cleanup();
  }
});

test('goodnet rnp / anp: bad input is one line, exit 2, nothing written', async () => {
  const { dir, cleanup } = tempDir('goodnet-rnpcli-');
  try {
    const { saveModel } = await import('../src/io/model.js');
    const { assertBadInput } = await import('./helpers.js');
    const { existsSync } = await import('node:fs');
    const net = bnNet(2);
    await saveModel(describeModel(net, 'bn', 'tfjs'), `${dir}/m.h5`);
    const images = new Uint8Array(8 * 72).fill(100);
    await writeCsawData(`${dir}/clean.h5`, images, new Int32Array(8), 8, 6, 6, 2);
    const run = runCli;
    assertBadInput(await run(['rnp', '-m', `${dir}/m.h5`, '--clean-valid', `${dir}/missing.h5`, '-o', `${dir}/x.h5`]), /missing\.h5: file or folder not found/);
    assertBadInput(await run(['rnp', '-m', `${dir}/m.h5`, '--clean-valid', `${dir}/clean.h5`, '-o', `${dir}/x.h5`, '--clean-threshold', '2']), /--clean-threshold must be in \[0, 1\]/);
    assertBadInput(await run(['anp', '-m', `${dir}/m.h5`, '--clean-valid', `${dir}/clean.h5`, '-o', `${dir}/x.h5`, '--bn-stats', 'moving']), /bn-stats/);
    assert.ok(!existsSync(`${dir}/x.h5`));
  } finally {
    cleanup();
  }
});
