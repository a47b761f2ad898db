/** The ort training engine (models/ort_train*.ts): gradients, loss, BN statistics and Adam steps equal tfjs's on tiny models. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from '../src/engine/backend.js';
import { OrtTrainer, OrtWeights, nchwcBlockSize, ortTrainObstacle, resolveTrainEngine, type TrainEngineName } from '../src/models/ort_train.js';
import { buildTrainGraph, type TrainGraphOptions } from '../src/models/ort_train_graph.js';
import { shardGradients } from '../src/models/parallel.js';
import { buildArchitecture } from '../src/models/index.js';
import { train } from '../src/models/train.js';
import { GoodnetError } from '../src/errors.js';
import { OnnxClip, OnnxConstArith, OnnxHardSigmoid, OnnxHardSwish, OnnxPad2D, OnnxSub } from '../src/io/onnx_layers.js';
import { getMaxPoolGradTies, setMaxPoolGradTies } from '../src/engine/kernels/index.js';

await initBackend('wasm');

const SHAPE: [number, number, number] = [12, 10, 3];

function data(n: number, k: number, seed: number, shape = SHAPE): { x: Float32Array; y: Float32Array; labels: Int32Array; images: Uint8Array } {
  let s = seed >>> 0;
  const next = () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s >>> 8; };
  const images = Uint8Array.from({ length: n * shape[0] * shape[1] * shape[2] }, () => next() & 255);
  const labels = Int32Array.from({ length: n }, () => next() % k);
  const x = Float32Array.from(images, (v) => v / 255);
  const y = new Float32Array(n * k);
  labels.forEach((l, i) => { y[i * k + l] = 1; });
  return { x, y, labels, images };
}

/** Worst per-tensor relative error max|a - b| / max|b| over the gradients. */
function worstRel(a: Float32Array[], b: tf.Tensor[], names: string[]): { rel: number; where: string; minScale: number } {
  let rel = 0, where = '', minScale = Infinity;
  a.forEach((g, i) => {
    const r = b[i]!.dataSync();
    assert.equal(g.length, r.length, `gradient ${names[i]} size`);
    let d = 0, s = 0;
    for (let j = 0; j < g.length; j++) { d = Math.max(d, Math.abs(g[j]! - r[j]!)); s = Math.max(s, Math.abs(r[j]!)); }
    minScale = Math.min(minScale, s);
    const e = d / Math.max(s, 1e-12);
    if (e > rel) { rel = e; where = names[i]!; }
  });
  return { rel, where, minScale };
}

/** The model of `layers` applied in order to a SHAPE input, ending in a Dense softmax over `classes` (seeded). */
function chain(layers: tfl.layers.Layer[], classes = 4, seed = 0): tfl.LayersModel {
  const input = tfl.input({ shape: SHAPE });
  let x = input;
  for (const l of [...layers, tfl.layers.dense({ units: classes, activation: 'softmax', kernelInitializer: tfl.initializers.glorotUniform({ seed: seed + 99 }) })]) x = l.apply(x) as tfl.SymbolicTensor;
  return tfl.model({ inputs: input, outputs: x });
}
const glorot = (seed: number) => tfl.initializers.glorotUniform({ seed });
const conv = (filters: number, kernelSize: number | [number, number], seed: number, more: Partial<Parameters<typeof tfl.layers.conv2d>[0]> = {}) =>
  tfl.layers.conv2d({ filters, kernelSize, activation: 'relu', kernelInitializer: glorot(seed), ...more });

/** A model with the awkward cases: strided convs whose stride does not divide the input, same-padded pools, Dense ReLU, BN on vectors. */
function oddNet(seed: number): tfl.LayersModel {
  const init = (i: number) => tfl.initializers.glorotUniform({ seed: seed + i });
  const input = tfl.input({ shape: SHAPE });
  let x = tfl.layers.conv2d({ filters: 5, kernelSize: 3, strides: 2, padding: 'valid', activation: 'relu', kernelInitializer: init(1) }).apply(input) as tfl.SymbolicTensor; // 12x10 -> 5x4
  x = tfl.layers.conv2d({ filters: 6, kernelSize: [2, 3], strides: [2, 1], padding: 'same', activation: 'relu', kernelInitializer: init(2) }).apply(x) as tfl.SymbolicTensor; // -> 3x4
  x = tfl.layers.batchNormalization({ momentum: 0.8 }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.activation({ activation: 'relu' }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same' }).apply(x) as tfl.SymbolicTensor; // overlapping windows -> 2x2
  x = tfl.layers.flatten().apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.dense({ units: 7, activation: 'relu', kernelInitializer: init(3) }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.batchNormalization({ momentum: 0.9 }).apply(x) as tfl.SymbolicTensor;
  const out = tfl.layers.dense({ units: 4, activation: 'softmax', kernelInitializer: init(4) }).apply(x) as tfl.SymbolicTensor;
  return tfl.model({ inputs: input, outputs: out });
}

/** Stride-1 'same' convolutions with even, 1-wide and 5x5 kernels (asymmetric pads: the 'flat' filter gradient's row-edge masks), and a 'valid' one. */
function sameNet(seed: number): tfl.LayersModel {
  const init = (i: number) => tfl.initializers.glorotUniform({ seed: seed + i });
  const input = tfl.input({ shape: SHAPE });
  let x = input;
  const specs: [number, number | [number, number], string][] = [[4, [2, 4], 'same'], [3, [1, 3], 'same'], [5, [3, 1], 'same'], [4, 5, 'same'], [3, [2, 3], 'valid']];
  specs.forEach(([filters, kernelSize, padding], i) => {
    x = tfl.layers.conv2d({ filters, kernelSize, padding: padding as 'same', activation: 'relu', kernelInitializer: init(i) }).apply(x) as tfl.SymbolicTensor;
  });
  x = tfl.layers.flatten().apply(x) as tfl.SymbolicTensor;
  const out = tfl.layers.dense({ units: 4, activation: 'softmax', kernelInitializer: init(9) }).apply(x) as tfl.SymbolicTensor;
  return tfl.model({ inputs: input, outputs: out });
}

/** 1x1 DepthwiseConv2D per-channel scales: a trainable one with a bias and ReLU, and a frozen mask (defense/mask.ts's layer) with zeros. */
function scaleNet(seed: number): tfl.LayersModel {
  const mask = tfl.layers.depthwiseConv2d({ kernelSize: 1, useBias: false, trainable: false, depthwiseInitializer: 'ones', name: 'mask' });
  const net = chain([
    conv(4, 3, seed + 1),
    tfl.layers.depthwiseConv2d({ kernelSize: 1, activation: 'relu', depthwiseInitializer: tfl.initializers.randomUniform({ minval: 0.5, maxval: 1.5, seed }), biasInitializer: tfl.initializers.randomUniform({ minval: -0.1, maxval: 0.1, seed: seed + 1 }) }),
    conv(5, 3, seed + 2), mask, tfl.layers.maxPooling2d({ poolSize: 2 }), tfl.layers.flatten(),
  ], 4, seed);
  const m = mask.getWeights()[0]!.dataSync().slice();
  m[1] = 0; m[3] = 0;
  mask.setWeights([tf.tensor(m, [1, 1, 5, 1])]);
  return net;
}

/**
 * The layers of imported models (MobileNet-style and PyTorch ResNet exports, Keras 3): Rescaling,
 * depthwise convs (3x3 same stride 2 multiplier 2; 3x3 valid with bias), ReLU6, OnnxClip, an
 * average pool, and a -Infinity pad before an overlapping max pool (PyTorch's padded MaxPool).
 */
function importedNet(seed: number): tfl.LayersModel {
  return chain([
    tfl.layers.rescaling({ scale: 2, offset: -1 }),
    tfl.layers.depthwiseConv2d({ kernelSize: 3, strides: 2, padding: 'same', depthMultiplier: 2, useBias: false, depthwiseInitializer: glorot(seed + 1) }), // 12x10x3 -> 6x5x6
    tfl.layers.reLU({ maxValue: 0.5 }), // a low cap, so that both bounds are hit
    tfl.layers.conv2d({ filters: 5, kernelSize: 1, kernelInitializer: tfl.initializers.randomUniform({ minval: -2, maxval: 2, seed: seed + 2 }) }),
    new OnnxClip({ min: -0.5, max: 0.6 }),
    tfl.layers.depthwiseConv2d({ kernelSize: [3, 2], padding: 'valid', depthwiseInitializer: glorot(seed + 3), biasInitializer: tfl.initializers.randomUniform({ minval: -0.2, maxval: 0.2, seed }), activation: 'relu' }), // -> 4x4x5
    new OnnxPad2D({ padding: [[1, 1], [1, 1]], value: null }), // -> 6x6
    tfl.layers.maxPooling2d({ poolSize: 3, strides: 2, padding: 'valid' }), // -> 2x2
    conv(6, 1, seed + 4),
    tfl.layers.averagePooling2d({ poolSize: 2, strides: 1 }), // -> 1x1
    tfl.layers.flatten(),
  ], 4, seed);
}

/** Average pools: non-overlapping with a remainder (5x? rows), and overlapping stride 1. */
function avgNet(seed: number): tfl.LayersModel {
  return chain([
    conv(4, 3, seed + 1), // 10x8
    tfl.layers.averagePooling2d({ poolSize: [3, 2], strides: [3, 2] }), // 3x4 (a row left over)
    conv(5, 1, seed + 2),
    tfl.layers.averagePooling2d({ poolSize: 2, strides: 1, padding: 'valid' }), // 2x3
    tfl.layers.flatten(),
  ], 4, seed);
}

/** Concatenate: two conv branches and the input itself on the channel axis, then dense features on vectors. */
function concatNet(seed: number): tfl.LayersModel {
  const init = (i: number) => tfl.initializers.glorotUniform({ seed: seed + i });
  const input = tfl.input({ shape: SHAPE });
  const a = tfl.layers.conv2d({ filters: 3, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(1) }).apply(input) as tfl.SymbolicTensor;
  const c = tfl.layers.conv2d({ filters: 2, kernelSize: 1, activation: 'relu', kernelInitializer: init(2) }).apply(input) as tfl.SymbolicTensor;
  let x = tfl.layers.concatenate().apply([a, input, c]) as tfl.SymbolicTensor;
  x = tfl.layers.conv2d({ filters: 4, kernelSize: 3, strides: 2, activation: 'relu', kernelInitializer: init(3) }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.flatten().apply(x) as tfl.SymbolicTensor;
  const d1 = tfl.layers.dense({ units: 5, activation: 'relu', kernelInitializer: init(4) }).apply(x) as tfl.SymbolicTensor;
  const d2 = tfl.layers.dense({ units: 3, activation: 'relu', kernelInitializer: init(5) }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.concatenate({ axis: 1 }).apply([d1, d2]) as tfl.SymbolicTensor;
  const out = tfl.layers.dense({ units: 4, activation: 'softmax', kernelInitializer: init(6) }).apply(x) as tfl.SymbolicTensor;
  return tfl.model({ inputs: input, outputs: out });
}

/** Activations: sigmoid, tanh, LeakyReLU, swish, PReLU (shared over H, W), ONNX HardSwish, hard sigmoid, ELU, relu6. */
function activationNet(seed: number): tfl.LayersModel {
  return chain([
    conv(4, 3, seed + 1, { activation: 'sigmoid' }),
    conv(4, 1, seed + 2, { activation: 'tanh', biasInitializer: tfl.initializers.constant({ value: -0.5 }) }),
    tfl.layers.leakyReLU({ alpha: 0.2 }),
    conv(5, 3, seed + 3, { padding: 'same', activation: 'swish' }),
    tfl.layers.prelu({ sharedAxes: [1, 2], alphaInitializer: tfl.initializers.constant({ value: 0.25 }) }),
    new OnnxHardSwish({}),
    conv(3, 1, seed, { activation: 'hardSigmoid', kernelInitializer: tfl.initializers.randomUniform({ minval: -4, maxval: 4, seed }) }),
    conv(3, 2, seed + 4, { strides: 2, activation: 'linear', biasInitializer: tfl.initializers.constant({ value: -0.4 }) }),
    tfl.layers.elu(),
    tfl.layers.flatten(),
    tfl.layers.prelu({ alphaInitializer: tfl.initializers.constant({ value: 0.1 }) }), // per feature
    tfl.layers.dense({ units: 6, activation: 'relu6', kernelInitializer: tfl.initializers.randomUniform({ minval: -3, maxval: 3, seed: seed + 5 }), biasInitializer: tfl.initializers.constant({ value: 6.5 }) }),
    tfl.layers.dense({ units: 5, activation: 'elu', kernelInitializer: glorot(seed + 6) }),
  ], 4, seed);
}

/** Element-wise layers of ONNX imports: constants per channel, per position and scalar (add, div, mul, rsub, rdiv), Multiply, OnnxSub, OnnxHardSigmoid. */
function arithNet(seed: number): tfl.LayersModel {
  const init = (i: number) => tfl.initializers.glorotUniform({ seed: seed + i });
  const [H, W] = [SHAPE[0], SHAPE[1]];
  const input = tfl.input({ shape: SHAPE });
  let a = tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(1) }).apply(input) as tfl.SymbolicTensor;
  let c = tfl.layers.conv2d({ filters: 4, kernelSize: 1, kernelInitializer: init(2) }).apply(input) as tfl.SymbolicTensor;
  a = new OnnxConstArith({ op: 'mul', value: [0.5, -1.5, 2, 1] }).apply(a) as tfl.SymbolicTensor;
  c = new OnnxConstArith({ op: 'div', value: Array.from({ length: H * W }, (_, i) => 1 + (i % 7) / 3), shape: [H, W, 1] }).apply(c) as tfl.SymbolicTensor;
  c = new OnnxConstArith({ op: 'rsub', value: [0.25] }).apply(c) as tfl.SymbolicTensor;
  const m = tfl.layers.multiply().apply([a, c]) as tfl.SymbolicTensor;
  let d = new OnnxSub({}).apply([m, a]) as tfl.SymbolicTensor;
  d = new OnnxConstArith({ op: 'add', value: Array.from({ length: H * W * 4 }, (_, i) => ((i * 37) % 11) / 10 - 0.5), shape: [H, W, 4] }).apply(d) as tfl.SymbolicTensor;
  d = new OnnxHardSigmoid({ alpha: 1 / 6, beta: 0.5 }).apply(d) as tfl.SymbolicTensor;
  d = new OnnxConstArith({ op: 'add', value: [1] }).apply(d) as tfl.SymbolicTensor; // 1..2
  d = new OnnxConstArith({ op: 'rdiv', value: [2] }).apply(d) as tfl.SymbolicTensor;
  d = tfl.layers.conv2d({ filters: 3, kernelSize: 3, strides: 2, activation: 'relu', kernelInitializer: init(3) }).apply(d) as tfl.SymbolicTensor;
  d = tfl.layers.flatten().apply(d) as tfl.SymbolicTensor;
  const out = tfl.layers.dense({ units: 4, activation: 'softmax', kernelInitializer: init(4) }).apply(d) as tfl.SymbolicTensor;
  return tfl.model({ inputs: input, outputs: out });
}

const NETS: [string, (seed: number) => tfl.LayersModel, number][] = [
  ['activations (sigmoid, tanh, LeakyReLU, swish, PReLU, HardSwish, hard sigmoid, ELU, relu6)', activationNet, 4],
  ['element-wise layers (constant add/div/mul/rsub/rdiv per channel, position and scalar; Multiply; OnnxSub; OnnxHardSigmoid)', arithNet, 4],
  ['Concatenate (conv branches with the input on channels; vectors)', concatNet, 4],
  ['imported layers (Rescaling, depthwise 3x3 stride 2 x2 and 3x2 with bias, ReLU6-style cap, OnnxClip, -inf pad + max pool, average pool)', importedNet, 4],
  ['average pools (with a remainder; overlapping)', avgNet, 4],
  ['1x1 DepthwiseConv2D scales (trainable with bias, a frozen pruning mask)', scaleNet, 4],
  ['same-padded stride-1 convs with 2x4, 1x3, 3x1, 5x5 kernels and a valid 2x3', sameNet, 4],
  ['deepid', (seed) => buildArchitecture('deepid', { inputShape: SHAPE, numClasses: 5, seed }), 5],
  ['vgg', (seed) => buildArchitecture('vgg', { inputShape: SHAPE, numClasses: 5, seed, filters: [4, 6], units: 8 } as never), 5],
  ['resnet', (seed) => buildArchitecture('resnet', { inputShape: SHAPE, numClasses: 5, seed, stemFilters: 4, blocks: [4, 6, 8] } as never), 5],
  ['odd (strided convs, overlapping same pool, Dense BN)', oddNet, 4],
  ['resnet 16/32 channels (NCHWc convolutions where the CPU has them)', (seed) => buildArchitecture('resnet', { inputShape: SHAPE, numClasses: 5, seed, stemFilters: 16, blocks: [16, 32] } as never), 5],
  ['vgg 16 channels, Dense without bias (NCHWc)', (seed) => buildArchitecture('vgg', { inputShape: SHAPE, numClasses: 5, seed, filters: [16], units: 8 } as never), 5],
];

const VARIANTS: [string, TrainGraphOptions][] = [['', {}], [', filter gradient by strided slices with one Gemm per slice, argmax pool backward, BN backward with xc', { filterGradient: 'gemm', filterGemmSplit: 0, maxPoolBackward: 'argmax', batchNormBackward: 'plain' }], [', flat filter gradient on every conv (valid and strided ones too)', { filterGradient: 'flat' }], [', filter gradient by Conv, input gradient by Conv, ReLU not fused into pools, no MaxUnpool, BN by ReduceMean/Sub/Mul, ReLU backward by Where', { filterGradient: 'conv', inputGradient: 'conv', fuseReluPool: false, poolUnpool: false, batchNormOp: false, reluBackward: 'where' }]];
for (const [name, make, k] of NETS) for (const [variant, graph] of name === 'deepid' ? VARIANTS.slice(0, 1) : VARIANTS) {
  test(`ort training step = tfjs's gradients (relative error <= 1e-4), loss, correct count and BN moving statistics: ${name}${variant}`, async () => {
    const a = make(7);
    const b = make(7);
    const n = 9;
    const { x, y } = data(n, k, 11);
    const ref = shardGradients(a, x, y, n, n, SHAPE);
    const trainer = await OrtTrainer.create(b, { graph });
    try {
      const r = await trainer.step(x, y, n);
      assert.equal(r.grads.length, a.trainableWeights.length);
      const { rel, where, minScale } = worstRel(r.grads, ref.grads, a.trainableWeights.map((w) => w.name));
      assert.ok(minScale > 0, 'every reference gradient is non-zero somewhere');
      assert.ok(rel <= 1e-4, `worst relative gradient error ${rel} at ${where}`);
      assert.ok(Math.abs(r.lossSum - ref.lossSum) <= 1e-5 * ref.lossSum, `loss ${r.lossSum} vs ${ref.lossSum}`);
      assert.equal(r.correct, ref.correct);
      // Moving statistics (non-trainable weights) after one training-mode step.
      a.weights.forEach((w, i) => {
        if (w.trainable && a.trainableWeights.includes(w)) return;
        const u = w.read().dataSync(), v = b.weights[i]!.read().dataSync();
        for (let j = 0; j < u.length; j++) assert.ok(Math.abs(u[j]! - v[j]!) <= 1e-5 * Math.max(1, Math.abs(u[j]!)), `${w.name}[${j}]: ${v[j]} vs ${u[j]}`);
      });
    } finally {
      tf.dispose(ref.grads);
      await trainer.dispose();
    }
  });
}

test('train({engine: "ort"}): 2 epochs of 3 Adam steps (last batch smaller) give weights close to tfjs\'s, with the JS Adam and with the tfjs optimizer', async () => {
  const make = () => buildArchitecture('vgg', { inputShape: SHAPE, numClasses: 5, seed: 2, filters: [4, 6], units: 8 } as never);
  const n = 20;
  const { images, labels } = data(n, 5, 5);
  const set = { images, labels, n, shape: SHAPE };
  const a = make();
  const ha = await train(a, set, { epochs: 2, batchSize: 8, scale: 255, seed: 1 });
  const w0 = make().getWeights();
  for (const [how, extra] of [['JS Adam (OrtWeights)', {}], ['tfjs optimizer (afterStep given)', { afterStep: () => {} }]] as const) {
    const b = make();
    const hb = await train(b, set, { epochs: 2, batchSize: 8, scale: 255, seed: 1, engine: 'ort', ...extra });
    ha.forEach((h, e) => {
      assert.ok(Math.abs(h.loss - hb[e]!.loss) <= 1e-5 * h.loss, `${how}, epoch ${e + 1}: loss ${hb[e]!.loss} vs ${h.loss}`);
      assert.equal(hb[e]!.accuracy, h.accuracy);
    });
    let moved = 0;
    a.getWeights().forEach((wa, i) => {
      const u = wa.dataSync(), v = b.getWeights()[i]!.dataSync(), z = w0[i]!.dataSync();
      for (let j = 0; j < u.length; j++) {
        moved = Math.max(moved, Math.abs(u[j]! - z[j]!));
        assert.ok(Math.abs(u[j]! - v[j]!) <= 2e-5 * Math.max(1, Math.abs(u[j]!)), `${how}: weight ${a.weights[i]!.name}[${j}]: ort ${v[j]} vs tfjs ${u[j]}`);
      }
    });
    assert.ok(moved > 1e-3, `training moved the weights (${moved})`);
  }
});

test('Adam inside the graph (stepAdam) = session gradients + OrtWeights.adam in JS: same weights, moments and BN statistics after 3 steps (last batch smaller)', async () => {
  for (const arch of ['vgg', 'resnet'] as const) {
    const opts = arch === 'vgg' ? { filters: [4, 6], units: 8 } : { stemFilters: 4, blocks: [4, 6] };
    const net = buildArchitecture(arch, { inputShape: SHAPE, numClasses: 5, seed: 3, ...opts } as never);
    const js = new OrtWeights(net, 0.01);
    const graph = new OrtWeights(net, 0.01);
    const trainer = await OrtTrainer.create(net);
    try {
      for (const [n, seed] of [[8, 1], [8, 2], [5, 3]] as const) {
        const { x, y } = data(n, 5, seed);
        const a = await trainer.stepWith(x, y, n, js.values);
        js.adam(a.grads);
        const b = await trainer.stepAdam(x, y, n, graph);
        assert.equal(b.grads.length, 0);
        assert.ok(Math.abs(a.lossSum - b.lossSum) <= 1e-6 * a.lossSum, `${arch}: loss ${b.lossSum} vs ${a.lossSum}`);
        assert.equal(b.correct, a.correct);
      }
      let moved = 0;
      js.values.forEach((u, i) => {
        const v = graph.values[i]!;
        const w0 = net.weights[i]!.read().dataSync();
        for (let j = 0; j < u.length; j++) {
          moved = Math.max(moved, Math.abs(u[j]! - w0[j]!));
          assert.ok(Math.abs(u[j]! - v[j]!) <= 1e-6 * Math.max(1, Math.abs(u[j]!)), `${arch}: ${net.weights[i]!.name}[${j}]: graph ${v[j]} vs JS ${u[j]}`);
        }
      });
      for (const [p, q] of [[js.flatM, graph.flatM], [js.flatV, graph.flatV]] as const) {
        for (let j = 0; j < p.length; j++) assert.ok(Math.abs(p[j]! - q[j]!) <= 1e-6 * Math.max(1e-3, Math.abs(p[j]!)), `${arch}: moment [${j}]: ${q[j]} vs ${p[j]}`);
      }
      assert.ok(moved > 1e-3, `${arch}: the steps moved the weights (${moved})`);
    } finally {
      await trainer.dispose();
      net.dispose();
    }
  }
});

test('ort training engine refuses unsupported layers before any work, naming the layer', async () => {
  const input = tfl.input({ shape: SHAPE });
  let x = tfl.layers.conv2d({ filters: 2, kernelSize: 3, activation: 'relu' }).apply(input) as tfl.SymbolicTensor;
  x = tfl.layers.gaussianNoise({ stddev: 0.1, name: 'noise' }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.flatten().apply(x) as tfl.SymbolicTensor;
  const out = tfl.layers.dense({ units: 3, activation: 'softmax' }).apply(x) as tfl.SymbolicTensor;
  const net = tfl.model({ inputs: input, outputs: out });
  assert.match(ortTrainObstacle(net) ?? '', /'noise' \(GaussianNoise\)/);
  await assert.rejects(OrtTrainer.create(net), (e: unknown) => e instanceof GoodnetError && /--train-engine tfjs/.test(e.message));
  const { images, labels } = data(4, 3, 1);
  await assert.rejects(train(net, { images, labels, n: 4, shape: SHAPE }, { epochs: 1, engine: 'ort' }), GoodnetError);
  // A sigmoid output is not softmax cross-entropy.
  const i2 = tfl.input({ shape: SHAPE });
  const f = tfl.layers.flatten().apply(i2) as tfl.SymbolicTensor;
  const o2 = tfl.layers.dense({ units: 3, activation: 'sigmoid' }).apply(f) as tfl.SymbolicTensor;
  assert.match(ortTrainObstacle(tfl.model({ inputs: i2, outputs: o2 })) ?? '', /'dense_[A-Za-z0-9]*' is not a softmax/);
  assert.throws(() => buildTrainGraph(tfl.model({ inputs: i2, outputs: o2 }), 4), GoodnetError);
  // Dilated 'valid' depthwise convolutions (tfjs-layers mis-sizes them).
  const i3 = tfl.input({ shape: SHAPE });
  const dw = tfl.layers.depthwiseConv2d({ kernelSize: 3, dilationRate: 2, name: 'dw3' }).apply(i3) as tfl.SymbolicTensor;
  const o3 = tfl.layers.dense({ units: 3, activation: 'softmax' }).apply(tfl.layers.flatten().apply(dw) as tfl.SymbolicTensor) as tfl.SymbolicTensor;
  assert.match(ortTrainObstacle(tfl.model({ inputs: i3, outputs: o3 })) ?? '', /'dw3' is a dilated 'valid' DepthwiseConv2D/);
});

test('tied maxima in pool windows: the gradient goes where tfjs sends it (argmax backward: either tie rule; indices: first)', async () => {
  // A 1x2 all-ones kernel: patches (0.2, 0.4) and (0.4, 0.2) tie at 0.6 but pass different kernel gradients.
  const make = () => {
    const input = tfl.input({ shape: [2, 5, 1] });
    let x = tfl.layers.conv2d({ filters: 1, kernelSize: [1, 2], useBias: false, activation: 'relu', kernelInitializer: 'ones' }).apply(input) as tfl.SymbolicTensor; // 2x4
    x = tfl.layers.maxPooling2d({ poolSize: 2 }).apply(x) as tfl.SymbolicTensor; // 1x2
    x = tfl.layers.flatten().apply(x) as tfl.SymbolicTensor;
    return tfl.model({ inputs: input, outputs: tfl.layers.dense({ units: 3, activation: 'softmax', kernelInitializer: tfl.initializers.glorotUniform({ seed: 2 }) }).apply(x) as tfl.SymbolicTensor });
  };
  const n = 3;
  const img = [0.2, 0.4, 0.2, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1];
  const x = new Float32Array(n * 10);
  for (let i = 0; i < n; i++) img.forEach((v, j) => { x[i * 10 + j] = v * (i + 1); });
  const y = new Float32Array(n * 3);
  for (let i = 0; i < n; i++) y[i * 3 + (i % 3)] = 1;
  const names = make().trainableWeights.map((w) => w.name);
  const saved = getMaxPoolGradTies();
  try {
    for (const [ties, graph] of [['last', { maxPoolBackward: 'argmax' }], ['first', { maxPoolBackward: 'argmax' }], ['first', {}]] as const) {
      setMaxPoolGradTies(ties);
      const ref = shardGradients(make(), x, y, n, n, [2, 5, 1]);
      const t = await OrtTrainer.create(make(), { graph });
      const r = await t.step(x, y, n);
      const { rel, where } = worstRel(r.grads, ref.grads, names);
      assert.ok(rel <= 1e-4, `ties ${ties} ${JSON.stringify(graph)}: worst relative error ${rel} at ${where}`);
      // The other rule gives another gradient here (so the test can fail).
      const other = await OrtTrainer.create(make(), { graph: { maxPoolBackward: 'argmax', maxPoolTies: ties === 'last' ? 'first' : 'last' } });
      const o = await other.step(x, y, n);
      assert.ok(worstRel(o.grads, ref.grads, names).rel > 1e-2, 'the tie rule matters on this input');
      tf.dispose(ref.grads);
      await t.dispose();
      await other.dispose();
    }
  } finally {
    setMaxPoolGradTies(saved);
  }
});

test("max pools' 'prefix' backward (plain pools anchored at the window corner + MaxUnpool or ScatterElements) = the Indices output's, bit for bit: 2x2, 3x3 of stride 1, 2 and 3, 2x3; tied maxima everywhere, odd sizes, valid and same padding, with and without a ReLU before the pool", async () => {
  // Small-integer images and a 2x2 kernel of small integers: many pool windows hold tied maxima
  // from different patches (so which one gets the gradient changes the kernel's gradient).
  type Pool = { poolSize: number | [number, number]; strides: number };
  const make = (activation: 'relu' | 'linear', shape: [number, number, number], padding: 'valid' | 'same', pool: Pool) => {
    const input = tfl.input({ shape });
    let x = tfl.layers.conv2d({ filters: 3, kernelSize: 2, padding: 'same', activation, kernelInitializer: tfl.initializers.randomUniform({ minval: -1, maxval: 1, seed: 3 }) }).apply(input) as tfl.SymbolicTensor;
    x = tfl.layers.maxPooling2d({ ...pool, padding }).apply(x) as tfl.SymbolicTensor;
    x = tfl.layers.flatten().apply(x) as tfl.SymbolicTensor;
    const net = tfl.model({ inputs: input, outputs: tfl.layers.dense({ units: 4, activation: 'softmax', kernelInitializer: tfl.initializers.glorotUniform({ seed: 2 }) }).apply(x) as tfl.SymbolicTensor });
    const [k, bias] = net.layers[1]!.getWeights();
    net.layers[1]!.setWeights([tf.round(tf.add(k!, activation === 'relu' ? 1 : 0)), tf.round(tf.mul(bias!, 2))]); // kernel in 0..2 before a ReLU (most outputs > 0), else -1..1
    return net;
  };
  const pools: Pool[] = [{ poolSize: 2, strides: 2 }, { poolSize: 3, strides: 2 }, { poolSize: 3, strides: 1 }, { poolSize: 3, strides: 3 }, { poolSize: [2, 3], strides: 2 }];
  for (const pool of pools) {
    const [ph, pw] = typeof pool.poolSize === 'number' ? [pool.poolSize, pool.poolSize] : pool.poolSize;
    for (const [activation, padding] of [['relu', 'valid'], ['linear', 'valid'], ['relu', 'same'], ['linear', 'same']] as const) {
      let matters = 0;
      for (const shape of (ph === 2 && pw === 2 ? [[7, 9, 1], [6, 8, 2], [6, 9, 1]] : [[7, 9, 1], [6, 8, 2]]) as [number, number, number][]) {
        const n = 5;
        const per = shape[0] * shape[1] * shape[2];
        const x = Float32Array.from({ length: n * per }, (_, i) => ((i * 2654435761) >>> 29) % 3);
        const y = new Float32Array(n * 4);
        for (let i = 0; i < n; i++) y[i * 4 + (i % 4)] = 1;
        const run = async (graph: TrainGraphOptions) => {
          const t = await OrtTrainer.create(make(activation, shape, padding, pool), { graph });
          try {
            return await t.step(x, y, n);
          } finally {
            await t.dispose();
          }
        };
        const prefix = await run({ maxPoolBackward: 'prefix' });
        const indices = await run({ maxPoolBackward: 'indices' });
        const what = `${ph}x${pw} pool, stride ${pool.strides}, ${activation}, ${padding}, ${shape.join('x')}`;
        // Same padding that pads at the start (an odd total) takes the Indices path itself.
        const startPad = padding === 'same' && [[shape[0], ph], [shape[1], pw]].some(([size, kk]) => Math.floor(Math.max((Math.ceil(size! / pool.strides) - 1) * pool.strides + kk! - size!, 0) / 2) > 0);
        const net = make(activation, shape, padding, pool);
        const same = Buffer.from(buildTrainGraph(net, n, { maxPoolBackward: 'prefix' }).bytes).equals(Buffer.from(buildTrainGraph(net, n, { maxPoolBackward: 'indices' }).bytes));
        assert.equal(same, startPad, `${what}: the prefix graph is ${same ? '' : 'not '}the Indices one`);
        prefix.grads.forEach((g, i) => assert.deepEqual(g, indices.grads[i], `${what}: gradient ${i}`));
        assert.equal(prefix.lossSum, indices.lossSum, what);
        if (ph === 2 && pw === 2 && padding === 'valid') {
          // The last maximum instead of the first gives another kernel gradient on these images.
          const last = await run({ maxPoolBackward: 'argmax', maxPoolTies: 'last' });
          if (last.grads[0]!.some((v, i) => v !== prefix.grads[0]![i])) matters++;
        }
      }
      if (ph === 2 && pw === 2 && padding === 'valid') assert.ok(matters > 0, `${activation}: the tie rule matters on some of these images`);
    }
  }
});

test("max pools' backward 'auto' (the default): anchored pools where the pool's channels are a multiple of the NCHWc block, the Indices output elsewhere", () => {
  const net = (filters: number) => {
    const input = tfl.input({ shape: [8, 8, 1] });
    let x = tfl.layers.conv2d({ filters, kernelSize: 3, padding: 'same', activation: 'relu' }).apply(input) as tfl.SymbolicTensor;
    x = tfl.layers.maxPooling2d({ poolSize: 2 }).apply(x) as tfl.SymbolicTensor;
    x = tfl.layers.flatten().apply(x) as tfl.SymbolicTensor;
    return tfl.model({ inputs: input, outputs: tfl.layers.dense({ units: 3, activation: 'softmax' }).apply(x) as tfl.SymbolicTensor });
  };
  const bytes = (m: tfl.LayersModel, options: TrainGraphOptions) => Buffer.from(buildTrainGraph(m, 4, options).bytes);
  for (const [filters, block, picks] of [[16, 16, 'prefix'], [32, 16, 'prefix'], [16, 8, 'prefix'], [20, 16, 'indices'], [20, 8, 'indices'], [16, 0, 'indices']] as const) {
    const m = net(filters);
    assert.ok(bytes(m, { nchwcBlock: block }).equals(bytes(m, { nchwcBlock: block, maxPoolBackward: picks })), `${filters} channels, block ${block}: ${picks}`);
    assert.ok(!bytes(m, { nchwcBlock: block, maxPoolBackward: 'prefix' }).equals(bytes(m, { nchwcBlock: block, maxPoolBackward: 'indices' })), 'the two graphs differ');
  }
});

test('NCHWc convolutions: used for 16-channel convolutions when onnxruntime has them on this CPU, never for others', async (t) => {
  const block = await nchwcBlockSize();
  t.diagnostic(`onnxruntime NCHWc block on this CPU: ${block || 'none'}`);
  assert.ok(block === 0 || block === 8 || block === 16, `block ${block}`);
  const wide = buildArchitecture('vgg', { inputShape: SHAPE, numClasses: 5, seed: 1, filters: [16], units: 8 } as never);
  const narrow = buildArchitecture('vgg', { inputShape: SHAPE, numClasses: 5, seed: 1, filters: [4], units: 8 } as never);
  const has = (net: tfl.LayersModel, nchwcBlock: number) => Buffer.from(buildTrainGraph(net, 4, { nchwcBlock }).bytes).includes('com.microsoft.nchwc');
  assert.equal(has(wide, 16), true);
  assert.equal(has(wide, 8), true);
  assert.equal(has(narrow, 16), false);
  assert.equal(has(wide, 0), false);
});

test('data-parallel ort steps = the tfjs engine\'s data-parallel steps: gradients, loss, correct count and BN moving statistics (2 threads: shards of 5 and 4; 3 threads: 2, 1 and 2)', async () => {
  const { DataParallel } = await import('../src/models/parallel.js');
  for (const [arch, threads, n] of [['resnet', 2, 9], ['deepid', 2, 9], ['resnet', 3, 5]] as const) {
    const make = () => buildArchitecture(arch, { inputShape: SHAPE, numClasses: 5, seed: 4, ...(arch === 'resnet' ? { stemFilters: 4, blocks: [4, 6] } : {}) } as never);
    const a = make();
    const b = make();
    const { x, y } = data(n, 5, 21);
    const dp = await DataParallel.create(a, threads);
    const trainer = await OrtTrainer.create(b, { threads });
    try {
      const ref = await dp.step(x, y, n, SHAPE);
      const r = await trainer.step(x, y, n);
      const { rel, where } = worstRel(r.grads, ref.grads, a.trainableWeights.map((w) => w.name));
      assert.ok(rel <= 1e-4, `${arch}: worst relative gradient error ${rel} at ${where}`);
      assert.ok(Math.abs(r.lossSum - ref.lossSum) <= 1e-5 * ref.lossSum, `${arch}: loss ${r.lossSum} vs ${ref.lossSum}`);
      assert.equal(r.correct, ref.correct);
      a.weights.forEach((w, i) => {
        if (a.trainableWeights.includes(w)) return;
        const u = w.read().dataSync(), v = b.weights[i]!.read().dataSync();
        for (let j = 0; j < u.length; j++) assert.ok(Math.abs(u[j]! - v[j]!) <= 1e-5 * Math.max(1, Math.abs(u[j]!)), `${arch}: ${w.name}[${j}]: ${v[j]} vs ${u[j]}`);
      });
      if (arch === 'resnet' && threads === 2) {
        // Per-shard BN: not the whole batch's gradients (so the comparison above can fail).
        const whole = await OrtTrainer.create(make());
        try {
          assert.ok(worstRel((await whole.step(x, y, n)).grads, ref.grads, a.trainableWeights.map((w) => w.name)).rel > 1e-3, 'shards normalise apart');
        } finally {
          await whole.dispose();
        }
      }
      tf.dispose(ref.grads);
    } finally {
      await dp.close();
      await trainer.dispose();
    }
  }
});

test('train({engine: "ort", threads: 2}): deterministic (two runs equal to the bit), close to the tfjs engine on 2 threads, last batch of 1 run unsharded', async () => {
  const make = () => buildArchitecture('vgg', { inputShape: SHAPE, numClasses: 5, seed: 2, filters: [4, 6], units: 8 } as never);
  const n = 17; // batches of 8, 8 and 1
  const { images, labels } = data(n, 5, 8);
  const set = { images, labels, n, shape: SHAPE };
  const opts = { epochs: 2, batchSize: 8, scale: 255, seed: 3, threads: 2 };
  const a = make();
  const ha = await train(a, set, { ...opts, engine: 'ort' });
  const b = make();
  const hb = await train(b, set, { ...opts, engine: 'ort' });
  const c = make();
  const hc = await train(c, set, opts); // tfjs, 2 data-parallel threads
  assert.deepEqual(hb.map((h) => [h.loss, h.accuracy]), ha.map((h) => [h.loss, h.accuracy]));
  a.getWeights().forEach((w, i) => assert.deepEqual(b.getWeights()[i]!.dataSync(), w.dataSync(), `weight ${i} differs between two identical runs`));
  hc.forEach((h, e) => assert.ok(Math.abs(h.loss - ha[e]!.loss) <= 1e-4 * h.loss, `epoch ${e + 1}: ort ${ha[e]!.loss} vs tfjs ${h.loss}`));
  c.getWeights().forEach((w, i) => {
    const u = w.dataSync(), v = a.getWeights()[i]!.dataSync();
    for (let j = 0; j < u.length; j++) assert.ok(Math.abs(u[j]! - v[j]!) <= 1e-4 * Math.max(1, Math.abs(u[j]!)), `weight ${c.weights[i]!.name}[${j}]: ort ${v[j]} vs tfjs ${u[j]}`);
  });
});

test('train({engine: "auto"}): ort where it can train the net (the same weights as "ort", to the bit), tfjs (the same as "tfjs") with the reason where it cannot, and when onnxruntime fails before the first step', async () => {
  const n = 12;
  const { images, labels } = data(n, 5, 9);
  const set = { images, labels, n, shape: SHAPE };
  const opts = { epochs: 1, batchSize: 8, scale: 255, seed: 4 };
  const runWith = async (make: () => tfl.LayersModel, engine: 'auto' | TrainEngineName) => {
    const net = make();
    const seen: [TrainEngineName, string | undefined][] = [];
    const h = await train(net, set, { ...opts, engine, onEngine: (e, why) => seen.push([e, why]) });
    return { h, w: net.getWeights().map((t) => t.dataSync()), seen };
  };
  const vgg = () => buildArchitecture('vgg', { inputShape: SHAPE, numClasses: 5, seed: 2, filters: [4, 6], units: 8 } as never);
  assert.deepEqual(resolveTrainEngine(vgg(), 'auto'), { engine: 'ort' });
  const auto = await runWith(vgg, 'auto'), ort = await runWith(vgg, 'ort'), tfjs = await runWith(vgg, 'tfjs');
  assert.deepEqual(auto.seen, [['ort', undefined]]);
  assert.deepEqual(auto.h.map((h) => h.loss), ort.h.map((h) => h.loss));
  auto.w.forEach((w, i) => assert.deepEqual(w, ort.w[i], `weight ${i}: auto is not the ort run`));
  assert.ok(auto.w.some((w, i) => w.some((v, j) => v !== tfjs.w[i]![j])), 'the tfjs run differs somewhere (else this test could not tell them apart)');

  // GaussianNoise: tfjs, and why.
  const noiseNet = () => {
    const input = tfl.input({ shape: SHAPE });
    let x = tfl.layers.conv2d({ filters: 3, kernelSize: 3, activation: 'relu', kernelInitializer: tfl.initializers.glorotUniform({ seed: 1 }) }).apply(input) as tfl.SymbolicTensor;
    x = tfl.layers.gaussianNoise({ stddev: 0.1, name: 'noise' }).apply(x) as tfl.SymbolicTensor;
    x = tfl.layers.flatten().apply(x) as tfl.SymbolicTensor;
    return tfl.model({ inputs: input, outputs: tfl.layers.dense({ units: 5, activation: 'softmax', kernelInitializer: tfl.initializers.glorotUniform({ seed: 2 }) }).apply(x) as tfl.SymbolicTensor });
  };
  assert.equal(resolveTrainEngine(noiseNet(), 'auto').engine, 'tfjs');
  const d = await runWith(noiseNet, 'auto');
  assert.equal(d.seen.length, 1);
  assert.equal(d.seen[0]![0], 'tfjs');
  assert.match(d.seen[0]![1] ?? '', /'noise' \(GaussianNoise\)/);

  // onnxruntime failing to start: the run starts again on tfjs, from the untouched weights.
  const create = OrtTrainer.create;
  OrtTrainer.create = async () => { throw new Error('no onnxruntime binary for this platform'); };
  try {
    const f = await runWith(vgg, 'auto');
    assert.deepEqual(f.seen.map(([e]) => e), ['ort', 'tfjs']);
    assert.match(f.seen[1]![1] ?? '', /no onnxruntime binary/);
    assert.deepEqual(f.h.map((h) => h.loss), tfjs.h.map((h) => h.loss));
    f.w.forEach((w, i) => assert.deepEqual(w, tfjs.w[i], `weight ${i}: the fallback is not the tfjs run`));
    await assert.rejects(runWith(vgg, 'ort'), /no onnxruntime binary/); // asked for ort: no fallback
  } finally {
    OrtTrainer.create = create;
  }
  assert.throws(() => resolveTrainEngine(vgg(), 'torch' as never), GoodnetError);
});

/** x * a fixed mask (NHWC, the whole batch): the reference for a Dropout step with known masks. */
class FixedMask extends tfl.layers.Layer {
  static className = 'FixedMask';
  constructor(private readonly mask: tf.Tensor) { super({}); }
  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.mul(Array.isArray(inputs) ? inputs[0]! : inputs, this.mask);
  }
}

/** Conv -> Dropout(0.4) on maps -> conv -> flatten -> Dense -> Dropout(0.25) on vectors -> softmax; `drop` makes the dropout layers. */
function dropoutNet(seed: number, drop: (rate: number, i: number) => tfl.layers.Layer): tfl.LayersModel {
  return chain([
    conv(4, 3, seed + 1), drop(0.4, 0), conv(3, 3, seed + 2, { strides: 2 }), tfl.layers.flatten(),
    tfl.layers.dense({ units: 6, activation: 'relu', kernelInitializer: glorot(seed + 3) }), drop(0.25, 1),
  ], 4, seed);
}

test('Dropout on the ort engine: the step = tfjs\'s gradients with the same masks fixed (maps and vectors); masks drop about the rate, scale the rest by 1 / (1 - rate), follow the seed, not the thread count', async () => {
  const n = 9;
  const { x, y } = data(n, 4, 12);
  const b = dropoutNet(3, (rate) => tfl.layers.dropout({ rate }));
  const trainer = await OrtTrainer.create(b, { seed: 5 });
  let masks: Float32Array[];
  let r: Awaited<ReturnType<OrtTrainer['step']>>;
  try {
    r = await trainer.step(x, y, n);
    masks = trainer.lastMasks;
  } finally {
    await trainer.dispose();
  }
  assert.equal(masks.length, 2);
  // The maps' mask comes in NCHW (the graph's layout): the reference multiplies NHWC.
  const [C, H, W] = [4, SHAPE[0] - 2, SHAPE[1] - 2];
  const fixed = [tf.transpose(tf.tensor4d(masks[0]!, [n, C, H, W]), [0, 2, 3, 1]), tf.tensor2d(masks[1]!, [n, 6])];
  const a = dropoutNet(3, (_rate, i) => new FixedMask(fixed[i]!));
  const ref = shardGradients(a, x, y, n, n, SHAPE);
  try {
    const { rel, where, minScale } = worstRel(r.grads, ref.grads, a.trainableWeights.map((w) => w.name));
    assert.ok(minScale > 0, 'every reference gradient is non-zero somewhere');
    assert.ok(rel <= 1e-4, `worst relative gradient error ${rel} at ${where}`);
    assert.ok(Math.abs(r.lossSum - ref.lossSum) <= 1e-5 * ref.lossSum, `loss ${r.lossSum} vs ${ref.lossSum}`);
  } finally {
    tf.dispose([...ref.grads, ...fixed]);
  }
  for (const [m, rate] of [[masks[0]!, 0.4], [masks[1]!, 0.25]] as const) {
    const dropped = m.filter((v) => v === 0).length / m.length;
    assert.ok(Math.abs(dropped - rate) < 0.12, `dropped ${dropped}, rate ${rate}`);
    assert.ok(m.every((v) => v === 0 || v === Math.fround(1 / (1 - rate))), 'kept values scaled by 1 / (1 - rate)');
  }
  // Training: the same seed gives the same weights on 1 and 2 threads (the masks are drawn for
  // the whole batch; no BN, so only float summation order differs), another seed other weights.
  const set = { images: data(17, 4, 13).images, labels: data(17, 4, 13).labels, n: 17, shape: SHAPE };
  const fit = async (seed: number, threads: number) => {
    const net = dropoutNet(3, (rate) => tfl.layers.dropout({ rate }));
    const h = await train(net, set, { epochs: 2, batchSize: 8, scale: 255, seed, threads, engine: 'ort' });
    return { h, w: net.getWeights().map((t) => t.dataSync()) };
  };
  const one = await fit(1, 1), again = await fit(1, 1), two = await fit(1, 2), other = await fit(2, 1);
  one.w.forEach((w, i) => assert.deepEqual(again.w[i], w, `weight ${i}: two runs of one seed differ`));
  one.w.forEach((w, i) => { for (let j = 0; j < w.length; j++) assert.ok(Math.abs(w[j]! - two.w[i]![j]!) <= 1e-4 * Math.max(1, Math.abs(w[j]!)), `weight ${i}[${j}]: 2 threads ${two.w[i]![j]} vs 1 thread ${w[j]}`); });
  assert.ok(one.w.some((w, i) => w.some((v, j) => v !== other.w[i]![j])), 'another seed, other masks, other weights');
});

/** Dilated convs (3x3 d2 same; depthwise 2x3 d(2,1) x2 same; 2x2 d(1,3) valid), or with `expand` the same convs undilated with their kernels spread out (zeros between taps). */
function dilatedNet(seed: number, expand: boolean): tfl.LayersModel {
  const k = (size: [number, number], d: [number, number]): [number, number] => (expand ? [(size[0] - 1) * d[0] + 1, (size[1] - 1) * d[1] + 1] : size);
  const dil = (d: [number, number]) => (expand ? [1, 1] as [number, number] : d);
  return chain([
    conv(4, k([3, 3], [2, 2]), seed + 1, { name: 'c1', dilationRate: dil([2, 2]), padding: 'same' }),
    tfl.layers.depthwiseConv2d({ name: 'd2', kernelSize: k([2, 3], [2, 1]), dilationRate: dil([2, 1]), depthMultiplier: 2, padding: 'same', activation: 'relu', depthwiseInitializer: glorot(seed + 2) }),
    conv(3, k([2, 2], [1, 3]), seed + 3, { name: 'c3', dilationRate: dil([1, 3]) }),
    tfl.layers.flatten(),
  ], 4, seed);
}

test('dilated convolutions on the ort engine (tfjs has no gradient for them): gradients = tfjs\'s on the same convs undilated with spread-out kernels, at the taps', async () => {
  const dilated = dilatedNet(4, false);
  const expanded = dilatedNet(4, true);
  const DIL: Record<string, [number, number]> = { c1: [2, 2], d2: [2, 1], c3: [1, 3] };
  // The expanded net's kernels: the dilated ones at (i*d0, j*d1), zero elsewhere.
  const spread = (t: tf.Tensor, d: [number, number], into: number[]): tf.Tensor => {
    const [kh, kw, a, c] = t.shape as number[];
    const v = t.dataSync(), out = new Float32Array(into.reduce((p, q) => p * q, 1));
    for (let i = 0; i < kh!; i++) for (let j = 0; j < kw!; j++) for (let r = 0; r < a! * c!; r++) out[((i * d[0]) * into[1]! + j * d[1]) * a! * c! + r] = v[(i * kw! + j) * a! * c! + r]!;
    return tf.tensor(out, into);
  };
  expanded.layers.forEach((l, li) => {
    const src = dilated.layers[li]!;
    const d = DIL[l.name];
    l.setWeights(src.getWeights().map((w, wi) => (d && wi === 0 ? spread(w, d, l.getWeights()[0]!.shape as number[]) : w)));
  });
  const n = 9;
  const { x, y } = data(n, 4, 21);
  const ref = shardGradients(expanded, x, y, n, n, SHAPE);
  // The reference gradients at the taps, in the dilated kernels' shapes.
  const taps = ref.grads.map((g, i) => {
    const name = dilated.trainableWeights[i]!.name;
    const layer = Object.keys(DIL).find((l) => name.startsWith(`${l}/`) && /kernel/.test(name));
    if (!layer) return g;
    const [kh, kw, a, c] = dilated.trainableWeights[i]!.shape as number[];
    const v = g.dataSync(), gw = g.shape[1]!, out = new Float32Array(kh! * kw! * a! * c!);
    for (let p = 0; p < kh!; p++) for (let q = 0; q < kw!; q++) for (let r = 0; r < a! * c!; r++) out[(p * kw! + q) * a! * c! + r] = v[((p * DIL[layer]![0]) * gw + q * DIL[layer]![1]) * a! * c! + r]!;
    return tf.tensor(out, [kh!, kw!, a!, c!]);
  });
  const trainer = await OrtTrainer.create(dilated);
  try {
    const r = await trainer.step(x, y, n);
    const { rel, where, minScale } = worstRel(r.grads, taps, dilated.trainableWeights.map((w) => w.name));
    assert.ok(minScale > 0, 'every reference gradient is non-zero somewhere');
    assert.ok(rel <= 1e-4, `worst relative gradient error ${rel} at ${where}`);
    assert.ok(Math.abs(r.lossSum - ref.lossSum) <= 1e-5 * ref.lossSum, `loss ${r.lossSum} vs ${ref.lossSum}`);
  } finally {
    tf.dispose([...ref.grads, ...taps]);
    await trainer.dispose();
  }
  // tfjs refuses them (no gradient) up front, naming the layer.
  const { images, labels } = data(4, 4, 1);
  await assert.rejects(train(dilatedNet(4, false), { images, labels, n: 4, shape: SHAPE }, { epochs: 1, engine: 'tfjs' }),
    (e: unknown) => e instanceof GoodnetError && /layer 'c1' \(Conv2D\) is a dilated convolution, which tfjs has no gradient for/.test(e.message));
});

test('average pools with \'same\' padding that pads: the exact gradient (each window\'s real pixels), = tfjs\'s on zero padding + a valid pool + a per-position rescale (tfjs\'s own AvgPoolGrad divides by the whole window)', async () => {
  const init = (i: number) => tfl.initializers.glorotUniform({ seed: 30 + i });
  // 12x10 -> conv 3x3 valid -> 10x8x4 -> avg 3x3 stride 2 same (out 5x4; pads 1/2 rows, 1/1 cols) -> 5x4x4.
  const make = (reference: boolean) => {
    const input = tfl.input({ shape: SHAPE });
    let x = tfl.layers.conv2d({ filters: 4, kernelSize: 3, activation: 'relu', kernelInitializer: init(1) }).apply(input) as tfl.SymbolicTensor;
    if (!reference) x = tfl.layers.averagePooling2d({ poolSize: 3, strides: 2, padding: 'same' }).apply(x) as tfl.SymbolicTensor;
    else {
      // TensorFlow's same pads for 10 rows (k 3, s 2 -> 5): 0 top, 1 bottom; 8 cols (-> 4): 0 left, 1 right.
      x = tfl.layers.zeroPadding2d({ padding: [[0, 1], [0, 1]] }).apply(x) as tfl.SymbolicTensor;
      x = tfl.layers.averagePooling2d({ poolSize: 3, strides: 2, padding: 'valid' }).apply(x) as tfl.SymbolicTensor;
      const count = (o: number, n: number) => Math.min(n, o * 2 + 3) - o * 2;
      const scale = Array.from({ length: 20 }, (_, p) => 9 / (count(Math.floor(p / 4), 10) * count(p % 4, 8)));
      x = new OnnxConstArith({ op: 'mul', value: scale, shape: [5, 4, 1] }).apply(x) as tfl.SymbolicTensor;
    }
    x = tfl.layers.flatten().apply(x) as tfl.SymbolicTensor;
    const out = tfl.layers.dense({ units: 4, activation: 'softmax', kernelInitializer: init(2) }).apply(x) as tfl.SymbolicTensor;
    return tfl.model({ inputs: input, outputs: out });
  };
  const a = make(true), b = make(false);
  assert.deepEqual(a.outputs[0]!.shape, b.outputs[0]!.shape);
  const n = 9;
  const { x, y } = data(n, 4, 31);
  const pa = (a.predict(tf.tensor4d(x, [n, ...SHAPE])) as tf.Tensor).dataSync(), pb = (b.predict(tf.tensor4d(x, [n, ...SHAPE])) as tf.Tensor).dataSync();
  pa.forEach((v, i) => assert.ok(Math.abs(v - pb[i]!) < 1e-6, 'the reference computes the same function'));
  const ref = shardGradients(a, x, y, n, n, SHAPE);
  const trainer = await OrtTrainer.create(b);
  try {
    const r = await trainer.step(x, y, n);
    const { rel, where } = worstRel(r.grads, ref.grads, b.trainableWeights.map((w) => w.name));
    assert.ok(rel <= 1e-4, `worst relative gradient error ${rel} at ${where}`);
  } finally {
    tf.dispose(ref.grads);
    await trainer.dispose();
  }
});

test('Adam in WebAssembly (OrtWeights.adamShards) = the JS loop to the bit: weights and both moments, 1 and 3 gradient vectors, an odd length', async () => {
  const net = buildArchitecture('vgg', { inputShape: SHAPE, numClasses: 5, seed: 3, filters: [3, 5], units: 7 } as never);
  const total = net.trainableWeights.reduce((s, w) => s + w.shape.reduce((p: number, q) => p * q!, 1), 0);
  assert.ok(total % 4 !== 0, `an odd length exercises the scalar tail (${total})`);
  const wasm = new OrtWeights(net, 0.01, 0.9, 0.999, 1e-7, { slots: 3 });
  const js = new OrtWeights(net, 0.01, 0.9, 0.999, 1e-7, { wasm: false });
  let s = 7;
  const rnd = () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return (s / 2 ** 32 - 0.5) * 0.02; };
  for (const shards of [1, 3, 2, 1]) {
    const gs = Array.from({ length: shards }, () => Float32Array.from({ length: total }, rnd));
    wasm.adamShards(gs);
    const sum = Float32Array.from(gs[0]!);
    for (const g of gs.slice(1)) for (let j = 0; j < total; j++) sum[j] = sum[j]! + g[j]!;
    let off = 0;
    js.adam(net.trainableWeights.map((w) => { const k = w.shape.reduce((p: number, q) => p * q!, 1); off += k; return sum.subarray(off - k, off); }));
  }
  assert.ok(wasm.flatW.buffer !== js.flatW.buffer);
  assert.deepEqual(wasm.flatW, js.flatW);
  assert.deepEqual(wasm.flatM, js.flatM);
  assert.deepEqual(wasm.flatV, js.flatV);
  assert.ok(js.flatM.some((v) => v !== 0));
});
