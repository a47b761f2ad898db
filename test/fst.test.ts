/**
 * FST (feature shift tuning) on tiny models built here: which layers it re-initialises, the
 * norm constraint and the direction of the inner-product term, that nothing but the clean
 * data decides the repaired model, the augmentation, the CLI's bad-input lines, and its
 * place in the registry and in compare's quick settings.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import seedrandom from 'seedrandom';
import { initBackend } from '../src/engine/backend.js';
import { describeModel, loadModel, saveModel } from '../src/io/model.js';
import { writeCsawData } from '../src/attack/csaw_layout.js';
import { augmentBatch, cosineRate, denseHead, frobenius, FST_DEFAULTS, fstHeadStep, runFst, samAscent, samUndo } from '../src/defense/fst.js';
import { measure, registeredDefenses } from '../src/defense/interface.js';
import { runDefense } from '../src/defense/run.js';
import { QUICK_DEFENSE_OPTIONS } from '../src/defense/comparison.js';
import { COMMAND_SPECS } from '../src/cli/main.js';
import '../src/defense/registry.js';
import { assertBadInput, sameWeights, tempDir, runCli } from './helpers.js';

await initBackend('wasm');

const H = 8;

/** conv -> pool -> flatten -> fc (relu) -> output (softmax), DeepID-like: a two-level Dense head. */
function tinyNet(seed = 1): tfl.LayersModel {
  const input = tfl.input({ shape: [H, H, 1], name: 'input' });
  const c = tfl.layers.conv2d({ name: 'conv_1', filters: 4, kernelSize: 3, activation: 'relu', kernelInitializer: tfl.initializers.glorotUniform({ seed }) }).apply(input);
  const p = tfl.layers.maxPooling2d({ name: 'pool_1', poolSize: 2 }).apply(c);
  const flat = tfl.layers.flatten({ name: 'flatten' }).apply(p);
  const fc1 = tfl.layers.dense({ name: 'fc_1', units: 6, kernelInitializer: tfl.initializers.glorotUniform({ seed: seed + 1 }) }).apply(flat);
  const fc2 = tfl.layers.dense({ name: 'fc_2', units: 6, kernelInitializer: tfl.initializers.glorotUniform({ seed: seed + 2 }) }).apply(flat);
  const sum = tfl.layers.add({ name: 'add_1' }).apply([fc1, fc2] as tfl.SymbolicTensor[]);
  const act = tfl.layers.activation({ name: 'act', activation: 'relu' }).apply(sum);
  const o = tfl.layers.dense({ name: 'output', units: 3, activation: 'softmax', kernelInitializer: tfl.initializers.glorotUniform({ seed: seed + 3 }) })
    .apply(act) as tfl.SymbolicTensor;
  return tfl.model({ inputs: input, outputs: o });
}

async function writeSets(dir: string): Promise<void> {
  for (const [name, n, seed] of [['clean.h5', 60, 'v'], ['test.h5', 30, 't'], ['bd_a.h5', 30, 'a'], ['bd_b.h5', 30, 'b']] as const) {
    const rng = seedrandom(seed);
    const x = Uint8Array.from({ length: n * H * H }, () => Math.floor(rng() * 256));
    await writeCsawData(`${dir}/${name}`, x, Int32Array.from({ length: n }, (_, i) => (name.startsWith('bd') ? 1 + (i % 2) : i % 3)), n, H, H, 1);
  }
}

const kernelOf = (net: tfl.LayersModel, name: string) => net.getLayer(name).getWeights()[0]!;
const cosine = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => tf.sum(tf.mul(a, b)).dataSync()[0]!) / (frobenius(a) * frobenius(b));

test('FST: the head levels it finds, the head re-initialised at the original norm, the rest tuned, the saved model as measured', async () => {
  const { dir, cleanup } = tempDir('goodnet-fst-');
  try {
    const net = tinyNet(3);
    assert.deepEqual(denseHead(net, 1).map((l) => l.name), ['output']);
    assert.deepEqual(denseHead(net, 2).map((l) => l.name).sort(), ['fc_1', 'fc_2', 'output']);
    await writeSets(dir);
    const model = describeModel(net, 'tiny', 'tfjs');
    const before = net.getWeights().map((w) => w.dataSync().slice());
    const m = { cleanTest: `${dir}/test.h5`, poisonedTest: `${dir}/bd_a.h5`, target: 0, scale: 255 };
    const { result } = await runDefense({ defense: 'fst', model, cleanValid: `${dir}/clean.h5`, out: `${dir}/fst.h5`, options: { epochs: 3, batchSize: 16 }, ...m });
    net.getWeights().forEach((w, i) => assert.deepEqual([...w.dataSync()], [...before[i]!], 'the BadNet is not touched'));
    const saved = await loadModel(`${dir}/fst.h5`);
    assert.deepEqual(await measure(saved, saved.net, m), result.after, 'the saved model evaluates as reported');
    const w0 = kernelOf(net, 'output');
    const w = kernelOf(saved.net, 'output');
    assert.ok(Math.abs(frobenius(w) - frobenius(w0)) < 1e-4 * frobenius(w0), `head norm ${frobenius(w)} vs ${frobenius(w0)}`);
    assert.ok(cosine(w, w0) < 0.9, `the head is a new one (cosine to the original ${cosine(w, w0)})`);
    // Level 1 only: fc_1 is tuned from its old weights, not re-initialised.
    assert.ok(cosine(kernelOf(saved.net, 'fc_1'), kernelOf(net, 'fc_1')) > 0.9);
    const d = result.details as { reinitialised: string[]; history: unknown[]; bestEpoch: number; trainImages: number; heldOutImages: number };
    assert.deepEqual(d.reinitialised, ['output']);
    assert.equal(d.history.length, 3);
    assert.ok(d.bestEpoch >= 1 && d.bestEpoch <= 3);
    assert.equal(d.trainImages + d.heldOutImages, 60);
    assert.equal(result.cleanImages, 60);
    saved.net.dispose();
  } finally {
    cleanup();
  }
});

test('FST: the alpha term pushes the head away from the original (sign), and the norm stays the original\'s', () => {
  const rng = seedrandom('head');
  const w0 = tf.tensor2d(Float32Array.from({ length: 12 }, () => rng() - 0.5), [4, 3]);
  const layer = tfl.layers.dense({ units: 3, inputShape: [4] });
  tfl.sequential({ layers: [layer] });
  const start = tf.add(w0, tf.mul(0.3, tf.randomUniform([4, 3], -1, 1, 'float32', 5)));
  const norm0 = frobenius(w0);
  const run = (alpha: number) => {
    layer.setWeights([start, tf.zeros([3])]);
    const kernel = layer.trainableWeights[0]!;
    for (let step = 1; step <= 5; step++) fstHeadStep(kernel, w0, { lr: 0.1, alpha, momentum: 0.9, step, norm0 });
    return kernel.read().clone();
  };
  const still = run(0);
  const pushed = run(0.5);
  assert.ok(Math.abs(frobenius(pushed) - norm0) < 1e-4 * norm0 && Math.abs(frobenius(still) - norm0) < 1e-4 * norm0, 'projected to ||W0||');
  assert.ok(cosine(pushed, w0) < cosine(still, w0) - 0.05, `alpha lowers <W, W0>: ${cosine(pushed, w0)} vs ${cosine(still, w0)}`);
  tf.dispose([w0, start, still, pushed]);
});

test('FST reads only the clean data: the poisoned test set changes nothing the defense chose', async () => {
  const { dir, cleanup } = tempDir('goodnet-fst-clean-');
  try {
    await writeSets(dir);
    const model = describeModel(tinyNet(5), 'tiny', 'tfjs');
    const opts = { epochs: 2, batchSize: 16 };
    // The run itself gets no poisoned path at all (DefenseInput has none) ...
    const alone = await runFst({ model, cleanValid: `${dir}/clean.h5`, scale: 255 }, opts);
    // ... and measuring with one poisoned set or another saves the same model.
    for (const bd of ['bd_a.h5', 'bd_b.h5']) {
      await runDefense({ defense: 'fst', model, cleanValid: `${dir}/clean.h5`, scale: 255, options: opts, out: `${dir}/${bd}.fst.h5`, cleanTest: `${dir}/test.h5`, poisonedTest: `${dir}/${bd}`, target: 0 });
    }
    const a = await loadModel(`${dir}/bd_a.h5.fst.h5`);
    const b = await loadModel(`${dir}/bd_b.h5.fst.h5`);
    assert.ok(sameWeights(a.net, b.net));
    assert.ok(sameWeights(a.net, alone.repaired!));
    alone.repaired!.dispose();
  } finally {
    cleanup();
  }
});

test('FST augmentation: a shift moves the image and fills zeros; the cosine schedule', () => {
  const x = Float32Array.from({ length: 2 * 4 * 4 }, (_, i) => i + 1);
  const copy = x.slice();
  // rng 0 -> shift -pad on both axes (content moves down-right by pad), no flip.
  augmentBatch(x, 1, [4, 4, 1], 1, false, () => 0);
  assert.deepEqual([...x.subarray(0, 4)], [0, 0, 0, 0]);
  assert.equal(x[5], copy[0]);
  assert.equal(x[15], copy[10]);
  assert.deepEqual([...x.subarray(16)], [...copy.subarray(16)], 'only the first image was asked for');
  assert.equal(cosineRate(0.01, 1, 10), 0.01);
  assert.ok(Math.abs(cosineRate(0.01, 6, 10) - 0.005) < 1e-12);
});

test('FST --sam: the ascent moves the weights by rho and raises the loss; the undo restores them', () => {
  const net = tinyNet(4);
  const before = net.getWeights().map((w) => w.dataSync().slice());
  const n = 6;
  const rng = seedrandom('sam');
  const x = Float32Array.from({ length: n * H * H }, () => rng());
  const y = new Float32Array(n * 3);
  for (let i = 0; i < n; i++) y[i * 3 + (i % 3)] = 1;
  const loss = () => tf.tidy(() => {
    const p = net.predict(tf.tensor4d(x, [n, H, H, 1])) as tf.Tensor;
    return -tf.mean(tf.sum(tf.mul(tf.tensor2d(y, [n, 3]), tf.log(p)), 1)).dataSync()[0]!;
  });
  const l0 = loss();
  const shifts = samAscent(net, x, y, n, [H, H, 1], 0.05);
  const norm = Math.sqrt(shifts.reduce((a, t) => a + tf.sum(tf.square(t)).dataSync()[0]!, 0));
  assert.ok(Math.abs(norm - 0.05) < 1e-5, `shift norm ${norm}`);
  assert.ok(loss() > l0, 'uphill');
  samUndo(net, shifts);
  net.getWeights().forEach((w, i) => {
    const a = w.dataSync();
    assert.ok(a.every((v, j) => Math.abs(v - before[i]![j]!) < 1e-6), `weight ${i} restored`);
  });
});

test('FST is registered, has quick settings, and a lazy CLI entry', () => {
  assert.ok(registeredDefenses().some((d) => d.name === 'fst' && d.kind === 'repair'));
  assert.ok(QUICK_DEFENSE_OPTIONS.fst && (QUICK_DEFENSE_OPTIONS.fst.epochs as number) < FST_DEFAULTS.epochs);
  assert.ok(COMMAND_SPECS.some((c) => c.name === 'fst'));
});

test('goodnet fst: bad input is one line, exit 2, nothing written', async () => {
  const { dir, cleanup } = tempDir('goodnet-fstcli-');
  try {
    await saveModel(describeModel(tinyNet(2), 'tiny', 'tfjs'), `${dir}/m.h5`);
    // A model whose output does not come from a Dense layer.
    const input = tfl.input({ shape: [H, H, 1] });
    const gap = tfl.layers.globalAveragePooling2d({}).apply(tfl.layers.conv2d({ filters: 3, kernelSize: 3 }).apply(input));
    const noHead = tfl.model({ inputs: input, outputs: tfl.layers.activation({ activation: 'softmax' }).apply(gap) as tfl.SymbolicTensor });
    await saveModel(describeModel(noHead, 'nohead', 'tfjs'), `${dir}/nohead.h5`);
    await writeSets(dir);
    const run = runCli;
    const base = ['fst', '-m', `${dir}/m.h5`, '--clean-valid', `${dir}/clean.h5`, '-o', `${dir}/x.h5`];
    assertBadInput(await run(['fst', '-m', `${dir}/m.h5`, '--clean-valid', `${dir}/missing.h5`, '-o', `${dir}/x.h5`]), /missing\.h5: file or folder not found/);
    assertBadInput(await run([...base, '--alpha', '-1']), /--alpha must be a number >= 0/);
    assertBadInput(await run([...base, '--augment', 'rotate']), /option '--augment <a>' argument 'rotate' is invalid\. Allowed choices are none, shift, shift-flip/);
    assertBadInput(await run([...base, '--reinit-layers', '0']), /--reinit-layers 0 \(plain fine-tuning\) needs --alpha 0/);
    assertBadInput(await run([...base, '--momentum', '1']), /--momentum must be in \[0, 1\)/);
    assertBadInput(await run([...base, '--distill', '2']), /--distill must be in \[0, 1\]/);
    assertBadInput(await run([...base, '--sam', '-0.5']), /--sam must be a number >= 0/);
    assertBadInput(await run(['fst', '-m', `${dir}/nohead.h5`, '--clean-valid', `${dir}/clean.h5`, '-o', `${dir}/x.h5`]), /nohead\.h5: FST needs a Dense classifier head/);
    assertBadInput(await run([...base, '--clean-test', `${dir}/test.h5`]), /give --clean-test, --poisoned-test and --target together/);
    assert.ok(!existsSync(`${dir}/x.h5`));
  } finally {
    cleanup();
  }
});
