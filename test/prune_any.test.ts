/**
 * Pruning any CNN (issue 11): the prune point, the cut and the saved models on tiny models
 * built here (random weights): a separate Activation layer, batch norm with positive and
 * negative shifts, VGG-BN, a residual Add with global pooling, the stem trap, a mask layer,
 * an Add before Flatten. For each: at every step of both orders the sweep's accuracy and
 * ASR equal those of the pruned model saved as Keras .h5 and tfjs folder, re-loaded from
 * file and re-evaluated with `evaluate`.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import seedrandom from 'seedrandom';
import { initBackend } from '../src/engine/backend.js';
import { writeCsawData } from '../src/attack/csaw_layout.js';
import { evaluate } from '../src/eval/evaluate.js';
import { loadModel, saveModel, type LoadedModel } from '../src/io/model.js';
import { inspectModel } from '../src/models/inspect.js';
import { runPrune } from '../src/defense/prune.js';
import { findCutPoint, type CutPoint } from '../src/defense/graph.js';
import { applyMaskInPlace, maskedCopy, prunedChannels } from '../src/defense/mask.js';
import { fineTune, runFinePrune } from '../src/defense/fineprune.js';
import { evaluateGoodNet } from '../src/defense/goodnet.js';
import { spawnSync } from 'node:child_process';
import { ROOT, assertBadInput, tempDir } from './helpers.js';

await initBackend('wasm');
const { dir, cleanup } = tempDir('goodnet-prune-any-');
after(cleanup);

const H = 8;
const N = 48;
const CLASSES = 4;
type ST = tfl.SymbolicTensor;

let seedCount = 0;
const init = () => tfl.initializers.glorotUniform({ seed: 100 + seedCount++ });
const conv = (name: string, filters: number, activation: 'relu' | 'linear' = 'linear') =>
  tfl.layers.conv2d({ name, filters, kernelSize: 3, padding: 'same', activation, kernelInitializer: init() });
const bn = (name: string) => tfl.layers.batchNormalization({ name });
const relu = (name: string) => tfl.layers.activation({ name, activation: 'relu' });
const head = (x: ST, flat = false) => {
  const y = flat ? tfl.layers.flatten({ name: 'flatten' }).apply(x) as ST : tfl.layers.globalAveragePooling2d({ name: 'gap' }).apply(x) as ST;
  return tfl.layers.dense({ name: 'out', units: CLASSES, activation: 'softmax', kernelInitializer: init() }).apply(y) as ST;
};
const pool = (name: string) => tfl.layers.maxPooling2d({ name, poolSize: 2 });

/** Random BN statistics: gamma and beta of both signs, so the shift beta - gamma*mean/sigma is positive for some channels and negative for others. */
function randomBn(net: tfl.LayersModel, seed: string): void {
  const rng = seedrandom(seed);
  for (const l of net.layers.filter((x) => x.getClassName() === 'BatchNormalization')) {
    const c = l.getWeights()[0]!.shape[0]!;
    const r = (lo: number, hi: number) => tf.tensor1d(Float32Array.from({ length: c }, () => lo + (hi - lo) * rng()));
    const ws = [r(-1.5, 1.5), r(-1, 1), r(-20, 60), r(50, 2000)];
    l.setWeights(ws);
    tf.dispose(ws);
  }
}

const models: Record<string, () => tfl.LayersModel> = {
  /** Conv -> Activation('relu') -> MaxPool -> Flatten -> Dense. */
  activation: () => {
    const input = tfl.input({ shape: [H, H, 3], name: 'input' });
    const x = pool('pool').apply(relu('act').apply(conv('conv', 4).apply(input))) as ST;
    return tfl.model({ inputs: input, outputs: head(x, true) });
  },
  /** VGG-BN: (Conv-BN-ReLU) x2 -> MaxPool, twice, then Flatten -> Dense. */
  vgg: () => {
    const input = tfl.input({ shape: [H, H, 3], name: 'input' });
    let x: ST = input;
    for (const b of [1, 2]) {
      for (const i of [1, 2]) x = tfl.layers.reLU({ name: `relu${b}${i}` }).apply(bn(`bn${b}${i}`).apply(conv(`conv${b}${i}`, b * 2 + 1).apply(x))) as ST;
      x = pool(`pool${b}`).apply(x) as ST;
    }
    return tfl.model({ inputs: input, outputs: head(x, true) });
  },
  /** Stem Conv(relu) -> MaxPool, two residual blocks (BN, Add), GAP -> Dense: the stem trap. */
  resnet: () => {
    const input = tfl.input({ shape: [H, H, 3], name: 'input' });
    let x = pool('stem_pool').apply(conv('stem', 4, 'relu').apply(input)) as ST;
    for (const b of [1, 2]) {
      const y = bn(`b${b}_bn2`).apply(conv(`b${b}_conv2`, 4).apply(relu(`b${b}_relu1`).apply(bn(`b${b}_bn1`).apply(conv(`b${b}_conv1`, 4).apply(x))))) as ST;
      x = relu(`b${b}_out`).apply(tfl.layers.add({ name: `b${b}_add` }).apply([x, y])) as ST;
    }
    return tfl.model({ inputs: input, outputs: head(x) });
  },
  /** Two conv branches summed, then MaxPool -> Flatten -> Dense (the mask folds into the Dense rows, channel-last order). */
  addflat: () => {
    const input = tfl.input({ shape: [H, H, 3], name: 'input' });
    const s = tfl.layers.add({ name: 'sum' }).apply([conv('ca', 3, 'relu').apply(input) as ST, conv('cb', 3, 'relu').apply(input) as ST]) as ST;
    return tfl.model({ inputs: input, outputs: head(pool('pool').apply(s) as ST, true) });
  },
};

const built = new Map<string, { model: LoadedModel; clean: string; poisoned: string }>();

/** The model saved to and loaded from .h5, and data: clean labels = its own answers, poisoned labels random non-target. */
async function setup(name: string): Promise<{ model: LoadedModel; clean: string; poisoned: string }> {
  const got = built.get(name);
  if (got) return got;
  const net = models[name]!();
  randomBn(net, name);
  const path = join(dir, `${name}.h5`);
  await saveModel(net, path);
  net.dispose();
  const model = await loadModel(path);
  const rng = seedrandom(`data-${name}`);
  const files: string[] = [];
  for (const set of ['clean', 'poisoned']) {
    const images = Uint8Array.from({ length: N * H * H * 3 }, () => Math.floor(rng() * 256));
    let labels: Int32Array;
    if (set === 'clean') {
      labels = tf.tidy(() => tf.argMax(model.net.predict(tf.tensor4d(Float32Array.from(images), [N, H, H, 3])) as tf.Tensor2D, 1).dataSync() as Int32Array);
    } else {
      labels = Int32Array.from({ length: N }, () => 1 + Math.floor(rng() * (CLASSES - 1)));
    }
    const f = join(dir, `${name}-${set}.h5`);
    await writeCsawData(f, images, labels, N, H, H, 3);
    files.push(f);
  }
  const r = { model, clean: files[0]!, poisoned: files[1]! };
  built.set(name, r);
  return r;
}

/** Prune, then check every step of both orders against the saved-and-reloaded models. */
async function checkExact(name: string, layer: string | undefined, expect: Partial<CutPoint>, kind: string | undefined): Promise<void> {
  const { model, clean, poisoned } = await setup(name);
  const cut = findCutPoint(model.net, layer, model.source);
  for (const [k, v] of Object.entries(expect)) assert.deepEqual(cut[k as keyof CutPoint], v, `${name}: ${k}`);
  const out = join(dir, `${name}-${layer ?? 'default'}`);
  const logs: string[] = [];
  const s = await runPrune({ model, cleanValid: clean, poisonedValid: poisoned, target: 0, out, thresholds: [2, 10, 40], layer, log: (l) => logs.push(l) });
  assert.match(logs.join('\n'), new RegExp(`pruning ${cut.conv} \\(${cut.channels} channels\\)`));
  assert.equal(s.profile.convLayer, cut.conv);
  assert.equal(s.profile.poolLayer, cut.pool);
  for (const sw of s.sweeps) {
    assert.equal(sw.steps.length, cut.channels + 1);
    assert.equal(sw.stats?.kind, kind, `${name}: sweep path ${sw.stats?.path}`);
    for (const step of sw.steps) {
      const pruned = sw.channelOrder.slice(0, step.step);
      const net = await maskedCopy(model.net, cut, pruned);
      const base = join(dir, `${name}-${layer ?? 'default'}-${sw.order}-${step.step}`);
      const keras = cut.realise.kind === 'mask' ? { kerasConfig: undefined } : {};
      await saveModel({ ...model, net, ...keras }, `${base}.h5`);
      await saveModel({ ...model, net, ...keras }, base);
      net.dispose();
      for (const file of [`${base}.h5`, base]) {
        const m = await loadModel(file);
        const r = await evaluate(m, { clean, poisoned, target: 0 });
        const what = `${name} ${sw.order} step ${step.step} ${file.endsWith('.h5') ? 'h5' : 'tfjs'}`;
        assert.equal(r.clean!.accuracy, step.accuracy, `${what} accuracy`);
        assert.equal(r.poisoned!.asr, step.asr, `${what} ASR`);
        assert.deepEqual(prunedChannels(m.net, findCutPoint(m.net, cut.realise.kind === 'mask' ? cut.realise.layer : cut.conv)).sort((a, b) => a - b),
          [...pruned].sort((a, b) => a - b), `${what} pruned channels`);
        m.net.dispose();
      }
    }
    // The picks prune saved are what it measured.
    for (const p of sw.picks) {
      if (p.step === null) continue;
      const m = await loadModel(join(out, p.model!.keras));
      const r = await evaluate(m, { clean, poisoned, target: 0 });
      assert.equal(r.clean!.accuracy, p.validAccuracy);
      assert.equal(r.poisoned!.asr, p.validAsr);
      assert.ok(existsSync(join(out, p.model!.tfjs, 'model.json')));
      m.net.dispose();
    }
  }
  // Pruning changes something: the last step of some order differs from step 0.
  assert.ok(s.sweeps.some((sw) => sw.steps.some((st) => st.accuracy !== sw.steps[0]!.accuracy)), `${name}: pruning changed nothing`);
}

test('Conv -> Activation(relu) -> MaxPool: prune point is the Activation, conv weights zeroed; exact in .h5 and tfjs', async () => {
  await checkExact('activation', undefined, { conv: 'act', pool: 'pool', realise: { kind: 'zero', conv: 'conv' } }, 'linear');
});

test('VGG-BN: the last block\'s ReLU before the last MaxPool; conv and BN gamma/beta zeroed; exact', async () => {
  await checkExact('vgg', undefined, { conv: 'relu22', pool: 'pool2', realise: { kind: 'zero', conv: 'conv22', bn: 'bn22' }, channels: 5 }, 'linear');
});

test('ResNet with a stem pool: the last block\'s output after Add+ReLU (never the stem), cut at GAP, folded into the Dense; exact', async () => {
  await checkExact('resnet', undefined, { conv: 'b2_out', pool: 'gap', realise: { kind: 'fold', targets: [{ layer: 'out', kind: 'dense' }] } }, 'linear');
  // --layer gap means the same prune point.
  const { model } = await setup('resnet');
  assert.equal(findCutPoint(model.net, 'gap').conv, 'b2_out');
});

test('an inner block output read by a conv and a residual Add: a 1x1 depthwise mask layer; exact, GoodNet-compatible', async () => {
  await checkExact('resnet', 'b1_out', { conv: 'b1_out', pool: 'b1_out', realise: { kind: 'mask', layer: 'b1_out_goodnet_mask' } }, undefined);
  const { model, clean, poisoned } = await setup('resnet');
  const repaired = await loadModel(join(dir, 'resnet-b1_out-asc-2.h5'));
  assert.ok(repaired.net.layers.some((l) => l.name === 'b1_out_goodnet_mask'));
  const g = await evaluateGoodNet({ bad: model, repaired, cleanTest: clean, poisonedTest: poisoned, target: 0 });
  assert.ok(g.goodnet.accuracy >= 0 && g.goodnet.accuracy <= 1);
});

test('Add -> MaxPool -> Flatten -> Dense: folded into the Dense rows in channel-last order; exact', async () => {
  await checkExact('addflat', undefined, { conv: 'sum', pool: 'pool', realise: { kind: 'fold', targets: [{ layer: 'out', kind: 'dense-flat' }] } }, 'linear');
});

test('BN: a zero conv channel is not a pruned channel (BN shifts it); inspect reports a channel only when its block output is provably zero', async () => {
  const { model } = await setup('vgg');
  const copy = await maskedCopy(model.net, findCutPoint(model.net, 'conv12'), [1]);
  // conv12 is linear and feeds bn12: its own prune point is the conv output, zeroed by its kernel; the block output (relu12) is not zero.
  assert.deepEqual(inspectModel(copy).convs.find((c) => c.layer === 'conv12')!.zeroChannels, []);
  copy.dispose();
  const pruned = await maskedCopy(model.net, findCutPoint(model.net), [0, 3]);
  const info = inspectModel(pruned).convs.find((c) => c.layer === 'conv22')!;
  assert.equal(info.output, 'relu22');
  assert.deepEqual(info.zeroChannels, [0, 3]);
  // And the channels are zero in the network's output of that layer.
  const probe = tfl.model({ inputs: pruned.inputs, outputs: pruned.getLayer('relu22').output as ST });
  const v = tf.tidy(() => tf.max(tf.abs(tf.gather(probe.predict(tf.randomUniform([4, H, H, 3], 0, 255, 'float32', 1)) as tf.Tensor4D, [0, 3], 3))).dataSync()[0]);
  assert.equal(v, 0);
  pruned.dispose();
});

test('fine-tuning keeps pruned channels pruned through the same mechanism (BN zero, fold, mask layer)', async () => {
  for (const [name, layer] of [['vgg', undefined], ['resnet', undefined], ['resnet', 'b1_out']] as const) {
    const { model, clean } = await setup(name);
    const cut = findCutPoint(model.net, layer);
    const pruned = [0, 2];
    const net = await maskedCopy(model.net, cut, pruned);
    const { readAll } = await import('../src/defense/fineprune.js');
    const set = await readAll(clean, model.inputShape);
    await fineTune(net, cut, pruned, set, { epochs: 1, learningRate: 1e-2, batchSize: 16 });
    applyMaskInPlace(net, cut, pruned); // idempotent
    assert.deepEqual(prunedChannels(net, cut), pruned, `${name} ${layer ?? ''}`);
    net.dispose();
  }
  // goodnet fineprune on a saved model with a mask layer finds its pruned channels there.
  const { clean } = await setup('resnet');
  const saved = await loadModel(join(dir, 'resnet-b1_out-asc-2.h5'));
  const r = await runFinePrune({ model: saved, cleanValid: clean, epochs: 1, batchSize: 16 });
  assert.equal(r.conv, 'b1_out_goodnet_mask');
  assert.equal(r.pruned.length, 2);
});

test('bad prune points: a layer without channels, a conv inside a residual branch, a model without conv', async () => {
  const { model, clean, poisoned } = await setup('resnet');
  const base = { model, cleanValid: clean, poisonedValid: poisoned, target: 0, out: join(dir, 'bad') };
  await assert.rejects(runPrune({ ...base, layer: 'out' }), /resnet\.h5: layer 'out' is a Dense with output \(N, 4\), which has no channels/);
  await assert.rejects(runPrune({ ...base, layer: 'b2_conv2' }), /layer 'b2_conv2' is inside a branch that 'b2_add' \(Add\) sums with another branch/);
  await assert.rejects(runPrune({ ...base, layer: 'b2_bn2' }), /layer 'b2_bn2' is inside a branch that 'b2_add'/);
  const noConv = tfl.sequential({ layers: [tfl.layers.flatten({ inputShape: [H, H, 3] }), tfl.layers.dense({ units: CLASSES, activation: 'softmax' })] });
  assert.throws(() => findCutPoint(noConv, undefined, 'dense.h5'), /dense\.h5: the model has no convolutional layer to prune/);
  assert.ok(!existsSync(join(dir, 'bad')));
});

test('CLI: prune says which layer and why; bad prune points end in one line, exit 2, nothing written', async () => {
  const { model, clean, poisoned } = await setup('resnet');
  const run = (...args: string[]) => {
    const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'goodnet.js'), 'prune', '-m', model.source, '--clean-valid', clean, '--poisoned-valid', poisoned, '-t', '0', ...args], { encoding: 'utf8', timeout: 120_000 });
    return { code: r.status, out: r.stdout, err: r.stderr };
  };
  const ok = run('-o', join(dir, 'cli-ok'), '--order', 'asc');
  assert.equal(ok.code, 0, ok.err);
  assert.match(ok.err, /pruning b2_out \(4 channels\): the last block's output, before global pooling 'gap'; profile at gap/);
  assertBadInput(run('-o', join(dir, 'cli-bad'), '--layer', 'b1_conv2'), /resnet\.h5: layer 'b1_conv2' is inside a branch that 'b1_add' \(Add\) sums with another branch/);
  assertBadInput(run('-o', join(dir, 'cli-bad'), '--layer', 'out'), /resnet\.h5: layer 'out' is a Dense with output \(N, 4\), which has no channels/);
  assert.ok(!existsSync(join(dir, 'cli-bad')));
  // inspect names the prune point and its pruned channels, also where they are folded into the Dense.
  const saved = join(dir, 'resnet-default-asc-2.h5');
  assert.ok(existsSync(saved), 'the ResNet test above saved its step-2 model');
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'goodnet.js'), 'inspect', '-m', saved, '--json', '-'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { prunePoint?: { layer: string; realise: string; pruned: number[] } };
  assert.equal(j.prunePoint?.layer, 'b2_out');
  assert.equal(j.prunePoint?.realise, 'fold');
  assert.equal(j.prunePoint?.pruned.length, 2);
});
