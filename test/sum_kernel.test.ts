/**
 * goodnet's wasm Sum (src/engine/kernels/sum.ts) for leading-axes reductions (bias
 * gradients): bit-identical to the native wasm kernel it replaces; other reductions still go
 * to the native kernel.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { initBackend, tf } from '../src/engine/backend.js';
import { nativeWasmKernel, overridesInstalled } from '../src/engine/kernels/index.js';
import { buildArchitecture } from '../src/models/index.js';
import { train } from '../src/models/train.js';
import { bitEqual, sameWeights } from './helpers.js';

await initBackend('wasm');

/** Seeded values spanning several magnitudes, so float32 summation order shows in the bits. */
function data(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (((s >>> 8) / (1 << 24)) - 0.5) * 10 ** ((s & 7) - 3);
  }
  return out;
}

function sums(shape: number[], axis: number[], keepDims: boolean, seed: number): { mine: tf.Tensor; native: tf.Tensor } {
  const x = tf.tensor(data(shape.reduce((a, b) => a * b, 1), seed), shape);
  const attrs = { axis, keepDims } as unknown as tf.NamedAttrMap;
  const mine = tf.engine().runKernel('Sum', { x }, attrs) as tf.Tensor;
  const native = tf.engine().makeTensorFromTensorInfo(nativeWasmKernel('Sum')!({ inputs: { x }, attrs, backend: tf.backend() }) as tf.TensorInfo);
  x.dispose();
  return { mine, native };
}

test('Sum over leading axes = the native wasm kernel, bit for bit; other axes unchanged', () => {
  assert.ok(overridesInstalled());
  const cases: Array<[number[], number[], boolean]> = [
    [[64, 14, 14, 20], [0, 1, 2], false], // conv bias gradient
    [[64, 160], [0], false], // dense bias gradient
    [[7, 5, 3, 2], [0, 1, 2], true],
    [[3, 1000, 3], [1, 0], false], // unsorted axes: native (its row order follows the axes' order)
    [[5, 4, 3], [1, 2], false], // trailing: native
    [[5, 4, 3], [0, 2], false], // not contiguous: native
    [[6, 1], [0], false], // inner size 1: native
  ];
  let differsFromNaive = false;
  cases.forEach(([shape, axis, keep], i) => {
    const { mine, native } = sums(shape, axis, keep, i + 1);
    assert.deepEqual(mine.shape, native.shape, `${shape} / ${axis}`);
    const a = mine.dataSync(), b = native.dataSync();
    assert.ok(bitEqual(a, b), `${shape} / ${axis}: not bit-identical`);
    // A double-precision sum would round differently somewhere: the comparison has teeth.
    if (i === 0) {
      const x = tf.tensor(data(shape.reduce((p, q) => p * q, 1), 1), shape);
      const v = x.dataSync();
      const inner = 20;
      for (let c = 0; c < inner && !differsFromNaive; c++) {
        let d = 0;
        for (let r = c; r < v.length; r += inner) d += v[r]!;
        if (Math.fround(d) !== a[c]) differsFromNaive = true;
      }
      x.dispose();
    }
    tf.dispose([mine, native]);
  });
  assert.ok(differsFromNaive, 'float32 accumulation order matters on this data');
  // int32 goes to the native kernel.
  const xi = tf.tensor([[1, 2], [3, 4]], [2, 2], 'int32');
  assert.deepEqual(Array.from(tf.sum(xi, 0).dataSync()), [4, 6]);
  xi.dispose();
});

test('training with goodnet\'s Sum gives the same weights, bit for bit, as with the native kernel (tiny DeepID and ResNet, 3 Adam steps)', async () => {
  const shape: [number, number, number] = [12, 10, 3];
  const n = 96;
  const images = Uint8Array.from(data(n * 360, 7), (v) => Math.floor(Math.abs(v) * 1000) & 255);
  const labels = Int32Array.from({ length: n }, (_, i) => (i * 7) % 4);
  const config = tf.getKernel('Sum', 'wasm')!;
  const run = async (arch: 'deepid' | 'resnet') => {
    const net = buildArchitecture(arch, { inputShape: shape, numClasses: 4, seed: 2 });
    await train(net, { images, labels, n, shape }, { epochs: 1, batchSize: 32, scale: 255, seed: 3 });
    return net;
  };
  for (const arch of ['deepid', 'resnet'] as const) {
    const mine = await run(arch);
    tf.unregisterKernel('Sum', 'wasm');
    tf.registerKernel({ ...config, kernelFunc: nativeWasmKernel('Sum')! });
    let native: Awaited<ReturnType<typeof run>>;
    try {
      native = await run(arch);
    } finally {
      tf.unregisterKernel('Sum', 'wasm');
      tf.registerKernel(config);
    }
    assert.ok(sameWeights(mine, native), `${arch}: weights differ`);
    mine.dispose();
    native.dispose();
  }
  assert.ok(overridesInstalled());
});
