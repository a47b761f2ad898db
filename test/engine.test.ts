/**
 * The wasm gradient kernels (src/engine/kernels) against the cpu backend's reference kernels,
 * plus end-to-end training of small tfjs-layers conv nets on wasm.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tfl from '@tensorflow/tfjs-layers';
import { initBackend, tf, type BackendName } from '../src/engine/backend.js';
import {
  overridesInstalled, registerWasmKernelOverrides, registerWasmKernels, WASM_KERNEL_OVERRIDES, WASM_KERNELS,
} from '../src/engine/kernels/index.js';

type Shape4 = [number, number, number, number];
type Attrs = Record<string, unknown>;

async function use(backend: BackendName): Promise<void> {
  await initBackend(backend);
}

/** Deterministic uniform(-1, 1) data (mulberry32). */
function randomData(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}

const size = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** max |a - b| / max |b|, i.e. error relative to the reference's scale. */
function relError(got: ArrayLike<number>, ref: ArrayLike<number>): number {
  assert.equal(got.length, ref.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < ref.length; i++) {
    diff = Math.max(diff, Math.abs(got[i]! - ref[i]!));
    scale = Math.max(scale, Math.abs(ref[i]!));
  }
  return diff / Math.max(scale, 1e-12);
}

/** Run kernel `name` on `backend` with seeded inputs of the given shapes. */
async function runOn(
  backend: BackendName, name: string, shapes: Record<string, number[]>, attrs: Attrs,
): Promise<{ shape: number[]; values: Float32Array }> {
  await use(backend);
  const inputs: Record<string, tf.Tensor> = {};
  let seed = 1;
  for (const [key, shape] of Object.entries(shapes)) inputs[key] = tf.tensor(randomData(size(shape), seed++), shape);
  const out = tf.engine().runKernel(name, inputs, attrs as tf.NamedAttrMap) as tf.Tensor;
  const result = { shape: out.shape, values: out.dataSync() as Float32Array };
  tf.dispose([out, ...Object.values(inputs)]);
  return result;
}

async function assertMatchesCpu(name: string, shapes: Record<string, number[]>, attrs: Attrs): Promise<void> {
  const ref = await runOn('cpu', name, shapes, attrs);
  await use('wasm');
  const tensorsBefore = tf.memory().numTensors;
  const dataIdsBefore = tf.backend().numDataIds();
  const got = await runOn('wasm', name, shapes, attrs);
  const label = `${name} ${JSON.stringify(shapes)} ${JSON.stringify(attrs)}`;
  assert.deepEqual(got.shape, ref.shape, label);
  const err = relError(got.values, ref.values);
  assert.ok(err < 1e-4, `${label}: relative error ${err}`);
  // Intermediates are raw TensorInfos: make sure none is left behind in the wasm backend.
  assert.equal(tf.memory().numTensors, tensorsBefore, `${label}: leaked tensors`);
  assert.equal(tf.backend().numDataIds(), dataIdsBefore, `${label}: leaked wasm buffers`);
}

/** Output spatial shape of the forward conv, for sizing dy. */
function dyShape(xShape: Shape4, filterShape: Shape4, attrs: Attrs, depthwise: boolean): number[] {
  const info = tf.backend_util.computeConv2DInfo(
    xShape, filterShape, attrs.strides as number, 1, attrs.pad as 'same', attrs.dimRoundingMode as 'ceil',
    depthwise, attrs.dataFormat === 'NCHW' ? 'channelsFirst' : 'channelsLast');
  return info.outShape;
}

// [x shape, filter shape, strides, pad, dimRoundingMode?, dataFormat?]
type ConvCase = [Shape4, Shape4, number | [number, number], unknown, ('floor' | 'round' | 'ceil')?, ('NHWC' | 'NCHW')?];
const CONV_CASES: ConvCase[] = [
  [[1, 5, 5, 1], [3, 3, 1, 1], 1, 'valid'],
  [[2, 7, 6, 3], [3, 3, 3, 4], 1, 'same'],
  [[3, 9, 8, 2], [3, 2, 2, 5], 2, 'valid'],
  [[1, 9, 9, 3], [3, 3, 3, 4], 2, 'same'],
  [[2, 8, 7, 3], [4, 4, 3, 2], 2, 'same'],
  [[2, 11, 10, 2], [2, 2, 2, 3], 2, 'valid'],
  [[2, 10, 9, 3], [3, 3, 3, 5], [2, 1], [[0, 0], [1, 2], [2, 0], [0, 0]]],
  [[2, 10, 9, 3], [3, 3, 3, 5], 2, 1, 'ceil'],
  [[2, 10, 9, 3], [3, 3, 3, 5], 2, 1, 'floor'],
  [[2, 10, 9, 3], [4, 4, 3, 5], 2, 0, 'round'],
  [[4, 23, 19, 3], [4, 4, 3, 20], 1, 'valid'],
];

test('registers the missing wasm kernels, idempotently', async () => {
  await use('wasm');
  for (const config of WASM_KERNELS) {
    assert.equal(config.backendName, 'wasm');
    assert.equal(tf.getKernel(config.kernelName, 'wasm')?.kernelFunc, config.kernelFunc);
  }
  const before = tf.getKernelsForBackend('wasm').length;
  registerWasmKernels();
  registerWasmKernels();
  assert.equal(tf.getKernelsForBackend('wasm').length, before);
});

test('Conv2DBackpropFilter on wasm matches cpu', async () => {
  const cases: ConvCase[] = [...CONV_CASES, [[2, 3, 7, 6], [3, 3, 3, 4], 2, 'same', undefined, 'NCHW'],
    [[1, 2, 8, 7], [2, 3, 2, 3], 1, 'valid', undefined, 'NCHW']];
  for (const [xShape, filterShape, strides, pad, dimRoundingMode, dataFormat = 'NHWC'] of cases) {
    const attrs: Attrs = { strides, pad, dataFormat, dimRoundingMode, filterShape };
    await assertMatchesCpu('Conv2DBackpropFilter',
      { x: xShape, dy: dyShape(xShape, filterShape, attrs, false) }, attrs);
  }
});

// Depthwise filters are (kh, kw, C, multiplier).
const DEPTHWISE_CASES: ConvCase[] = [
  [[1, 5, 5, 1], [3, 3, 1, 1], 1, 'valid'],
  [[2, 7, 6, 3], [3, 3, 3, 1], 1, 'same'],
  [[3, 9, 8, 2], [3, 2, 2, 2], 2, 'valid'],
  [[1, 9, 9, 3], [3, 3, 3, 2], 2, 'same'],
  [[2, 8, 7, 3], [4, 4, 3, 1], 2, 'same'],
  [[2, 10, 9, 2], [2, 2, 2, 3], [2, 1], [[0, 0], [3, 1], [0, 2], [0, 0]]],
  [[2, 10, 9, 3], [3, 3, 3, 2], 2, 1, 'ceil'],
  [[3, 12, 11, 4], [5, 5, 4, 1], 1, 'same'],
];

test('DepthwiseConv2dNativeBackpropFilter on wasm matches cpu', async () => {
  for (const [xShape, filterShape, strides, pad, dimRoundingMode] of DEPTHWISE_CASES) {
    const attrs: Attrs = { strides, dilations: 1, pad, dimRoundingMode, filterShape };
    await assertMatchesCpu('DepthwiseConv2dNativeBackpropFilter',
      { x: xShape, dy: dyShape(xShape, filterShape, attrs, true) }, attrs);
  }
});

test('DepthwiseConv2dNativeBackpropInput on wasm matches cpu', async () => {
  for (const [xShape, filterShape, strides, pad, dimRoundingMode] of DEPTHWISE_CASES) {
    const attrs: Attrs = { strides, dilations: 1, pad, dimRoundingMode, inputShape: xShape };
    await assertMatchesCpu('DepthwiseConv2dNativeBackpropInput',
      { dy: dyShape(xShape, filterShape, attrs, true), filter: filterShape }, attrs);
  }
});

test('gradient kernels reject dilations > 1 and non-float32 inputs', async () => {
  await use('wasm');
  const x = tf.ones([1, 6, 6, 2]);
  const dy = tf.ones([1, 2, 2, 2]);
  assert.throws(() => tf.engine().runKernel('DepthwiseConv2dNativeBackpropFilter', { x, dy },
    { strides: 1, dilations: 2, pad: 'valid', filterShape: [3, 3, 2, 1] }), /dilations/);
  const xi = tf.ones([1, 4, 4, 1], 'int32');
  const dyi = tf.ones([1, 2, 2, 1], 'int32');
  assert.throws(() => tf.engine().runKernel('Conv2DBackpropFilter', { x: xi, dy: dyi },
    { strides: 1, pad: 'valid', dataFormat: 'NHWC', filterShape: [3, 3, 1, 1] }), /float32/);
  tf.dispose([x, dy, xi, dyi]);
});

// ---------------------------------------------------------------------------------------------
// End to end

const IMG: Shape4 = [48, 12, 12, 1];
const CLASSES = 3;

/** Seeded images; the label is the brightest third of the image (learnable). */
function dataset(): { xs: Float32Array; ys: Float32Array } {
  const [n, h, w] = IMG;
  const xs = randomData(size(IMG), 7);
  const ys = new Float32Array(n * CLASSES);
  for (let i = 0; i < n; i++) {
    const sums = [0, 0, 0];
    for (let r = 0; r < h; r++) for (let c = 0; c < w; c++) sums[Math.floor((r * 3) / h)]! += xs[(i * h + r) * w + c]!;
    ys[i * CLASSES + sums.indexOf(Math.max(...sums))] = 1;
  }
  return { xs, ys };
}

function tinyConvNet(depthwise: boolean): tfl.LayersModel {
  const init = (seed: number) => tfl.initializers.glorotUniform({ seed });
  const model = tfl.sequential();
  model.add(tfl.layers.conv2d({
    inputShape: IMG.slice(1), filters: 4, kernelSize: 3, strides: depthwise ? 2 : 1,
    padding: depthwise ? 'same' : 'valid', activation: 'relu', kernelInitializer: init(1),
  }));
  if (depthwise) {
    // Later conv layers make backprop reach their inputs too (the *BackpropInput kernels).
    model.add(tfl.layers.depthwiseConv2d({
      kernelSize: 3, depthMultiplier: 2, padding: 'same', activation: 'relu', depthwiseInitializer: init(2),
    }));
    model.add(tfl.layers.conv2d({
      filters: 5, kernelSize: 2, strides: 1, padding: 'valid', activation: 'relu', kernelInitializer: init(4),
    }));
  }
  model.add(tfl.layers.maxPooling2d({ poolSize: 2 }));
  model.add(tfl.layers.flatten());
  model.add(tfl.layers.dense({ units: CLASSES, activation: 'softmax', kernelInitializer: init(3) }));
  return model;
}

/** Loss gradients of every trainable weight, and the weights after one SGD step. */
async function oneStep(backend: BackendName, depthwise: boolean): Promise<{ grads: Float32Array[]; after: Float32Array[] }> {
  await use(backend);
  const { xs, ys } = dataset();
  const model = tinyConvNet(depthwise);
  const x = tf.tensor4d(xs, IMG);
  const y = tf.tensor2d(ys, [IMG[0], CLASSES]);
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const { grads } = tf.variableGrads(
    () => tf.losses.softmaxCrossEntropy(y, model.apply(x) as tf.Tensor) as tf.Scalar, vars);
  const gradValues = vars.map((v) => grads[v.name]!.dataSync() as Float32Array);
  model.compile({ optimizer: tf.train.sgd(0.5), loss: 'categoricalCrossentropy' });
  await model.trainOnBatch(x, y);
  const after = model.getWeights().map((w) => w.dataSync() as Float32Array);
  tf.dispose([x, y, ...Object.values(grads)]);
  model.dispose();
  return { grads: gradValues, after };
}

function endToEndTests(label: string): void {
  test(`a small conv net trains with model.fit on wasm${label}`, async () => {
    await use('wasm');
    const { xs, ys } = dataset();
    const model = tinyConvNet(false);
    model.compile({ optimizer: tf.train.sgd(0.1), loss: 'categoricalCrossentropy' });
    const x = tf.tensor4d(xs, IMG);
    const y = tf.tensor2d(ys, [IMG[0], CLASSES]);
    const history = await model.fit(x, y, { epochs: 8, batchSize: 16, shuffle: false, verbose: 0 });
    const losses = history.history.loss as number[];
    assert.ok(losses.every(Number.isFinite), `losses ${losses}`);
    assert.ok(losses.at(-1)! < 0.9 * losses[0]!, `loss did not decrease: ${losses}`);
    tf.dispose([x, y]);
    model.dispose();
  });
  for (const depthwise of [false, true]) {
    test(`one gradient step on wasm matches cpu (${depthwise ? 'conv + depthwise + conv' : 'conv'} net)${label}`, async () => {
      const ref = await oneStep('cpu', depthwise);
      const got = await oneStep('wasm', depthwise);
      assert.equal(got.grads.length, ref.grads.length);
      got.grads.forEach((g, i) => {
        const err = relError(g, ref.grads[i]!);
        assert.ok(err < 1e-4, `gradient ${i}: relative error ${err}`);
      });
      got.after.forEach((w, i) => {
        const err = relError(w, ref.after[i]!);
        assert.ok(err < 1e-4, `weight ${i} after one step: relative error ${err}`);
      });
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Opt-in replacements for slow native wasm kernels

const MATMUL_CASES: Array<[number[], number[], boolean, boolean]> = [
  [[7, 5], [5, 3], false, false],
  [[5, 7], [5, 3], true, false],
  [[7, 5], [3, 5], false, true],
  [[5, 7], [3, 5], true, true],
  [[1, 64, 33], [1, 64, 19], true, false],
  [[2, 6, 4], [2, 5, 4], false, true],
  [[2, 4, 6], [1, 4, 5], true, false],
];

function overridesTest(): void {
  test('initBackend installs the kernel overrides, idempotently, and they match cpu', async () => {
    await use('wasm');
    assert.ok(overridesInstalled());
    const replaced = WASM_KERNEL_OVERRIDES.map((o) => tf.getKernel(o.kernelName, 'wasm')!);
    registerWasmKernelOverrides();
    WASM_KERNEL_OVERRIDES.forEach((o, i) => {
      assert.equal(tf.getKernel(o.kernelName, 'wasm')!.kernelFunc, replaced[i]!.kernelFunc, o.kernelName);
    });
    const cases: ConvCase[] = [...CONV_CASES, [[2, 3, 7, 6], [3, 3, 3, 4], 2, 'same', undefined, 'NCHW']];
    for (const [xShape, filterShape, strides, pad, dimRoundingMode, dataFormat = 'NHWC'] of cases) {
      const attrs: Attrs = { strides, pad, dataFormat, dimRoundingMode, inputShape: xShape };
      await assertMatchesCpu('Conv2DBackpropInput',
        { dy: dyShape(xShape, filterShape, attrs, false), filter: filterShape }, attrs);
    }
    for (const [a, b, transposeA, transposeB] of MATMUL_CASES) {
      await assertMatchesCpu('BatchMatMul', { a, b }, { transposeA, transposeB });
    }
  });
}

overridesTest();
endToEndTests('');
