/**
 * goodnet's wasm MaxPoolGrad (src/engine/kernels/max_pool_grad.ts): with ties 'first',
 * bit-identical to the cpu backend's kernel; with ties 'last' (the default), bit-identical to
 * the native wasm kernel it replaces. Random data with many ties, 'same'/'valid'/explicit
 * padding, strides 1 and 2, overlapping and non-overlapping windows, and windows holding only
 * -Infinity or NaN.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { initBackend, tf, type BackendName } from '../src/engine/backend.js';
import { getMaxPoolGradTies, nativeWasmKernel, overridesInstalled, setMaxPoolGradTies } from '../src/engine/kernels/index.js';

type Shape4 = [number, number, number, number];

/** Seeded values from a few levels, so that most windows hold ties. */
function tiedData(n: number, seed: number, levels: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s >>> 8) % levels - levels / 2;
  }
  return out;
}

interface PoolCase { x: Shape4; filterSize: [number, number]; strides: [number, number]; pad: 'same' | 'valid' | number; rounding?: 'floor' | 'ceil' | 'round' }

const CASES: PoolCase[] = [
  { x: [2, 8, 6, 3], filterSize: [2, 2], strides: [2, 2], pad: 'valid' },
  { x: [2, 7, 5, 3], filterSize: [2, 2], strides: [2, 2], pad: 'same' },
  { x: [2, 7, 5, 3], filterSize: [2, 2], strides: [2, 2], pad: 'valid' },
  { x: [1, 6, 7, 4], filterSize: [3, 3], strides: [1, 1], pad: 'same' },
  { x: [1, 6, 7, 4], filterSize: [3, 2], strides: [1, 1], pad: 'valid' },
  { x: [2, 9, 8, 2], filterSize: [3, 3], strides: [2, 2], pad: 'same' },
  { x: [2, 9, 8, 5], filterSize: [3, 3], strides: [2, 1], pad: 'valid' },
  { x: [1, 5, 5, 1], filterSize: [2, 2], strides: [1, 1], pad: 'valid' },
  { x: [1, 9, 9, 2], filterSize: [3, 3], strides: [2, 2], pad: 1, rounding: 'floor' },
];

/** MaxPoolGrad on `backend`; 'native' is the wasm backend's own kernel, bypassing goodnet's. */
async function maxPoolGradOn(backend: BackendName | 'native', c: PoolCase, xv: Float32Array): Promise<Float32Array> {
  await initBackend(backend === 'native' ? 'wasm' : backend);
  const x = tf.tensor4d(xv, c.x);
  const attrs = { filterSize: c.filterSize, strides: c.strides, pad: c.pad, dimRoundingMode: c.rounding } as unknown as tf.NamedAttrMap;
  const y = tf.engine().runKernel('MaxPool', { x }, attrs) as tf.Tensor;
  const dy = tf.tensor(tiedData(y.size, 99, 1000).map((v) => v / 7), y.shape);
  const inputs = { dy, input: x, output: y };
  const dx = backend === 'native'
    ? tf.engine().makeTensorFromTensorInfo(nativeWasmKernel('MaxPoolGrad')!({ inputs, attrs, backend: tf.backend() }) as tf.TensorInfo)
    : tf.engine().runKernel('MaxPoolGrad', inputs, attrs) as tf.Tensor;
  const values = dx.dataSync() as Float32Array;
  tf.dispose([x, y, dy, dx]);
  return values;
}

/**
 * The native kernel starts each window's search at the first tap with a positive floor, so
 * where a window's maximum is <= 0 it sends the gradient to that first tap, not to a maximum
 * (after a ReLU such windows are all zero and the ReLU's gradient drops it either way); it is
 * compared on positive data only.
 */
async function assertSame(reference: BackendName | 'native', ties: 'first' | 'last'): Promise<void> {
  await initBackend('wasm');
  assert.ok(overridesInstalled());
  assert.equal(getMaxPoolGradTies(), 'last', 'the default keeps the native kernel\'s ties');
  setMaxPoolGradTies(ties);
  try {
    let seed = 1;
    for (const c of CASES) {
      for (const levels of [3, 1000]) {
        const xv = tiedData(c.x.reduce((a, b) => a * b, 1), seed++, levels);
        if (reference === 'native') xv.forEach((v, i) => { xv[i] = v + levels; });
        const ref = await maxPoolGradOn(reference, c, xv);
        const got = await maxPoolGradOn('wasm', c, xv);
        assert.deepEqual(Array.from(got), Array.from(ref), JSON.stringify({ ...c, levels, ties }));
        assert.ok(ref.some((v) => v !== 0), 'the case passes some gradient');
      }
    }
  } finally {
    setMaxPoolGradTies('last');
  }
}

test("ties 'first': bit-identical to the cpu kernel", () => assertSame('cpu', 'first'));

test("ties 'last' (default): bit-identical to the native wasm kernel", () => assertSame('native', 'last'));

test('the two tie rules differ where a window holds equal maxima', async () => {
  const c: PoolCase = { x: [1, 2, 2, 1], filterSize: [2, 2], strides: [2, 2], pad: 'valid' };
  const xv = Float32Array.from([1, 3, 3, 0]);
  setMaxPoolGradTies('first');
  const first = await maxPoolGradOn('wasm', c, xv);
  setMaxPoolGradTies('last');
  const last = await maxPoolGradOn('wasm', c, xv);
  assert.deepEqual(Array.from(first, (v) => v !== 0), [false, true, false, false]);
  assert.deepEqual(Array.from(last, (v) => v !== 0), [false, false, true, false]);
});

test('windows of only -Infinity or NaN pass no gradient, as on cpu', async () => {
  const c: PoolCase = { x: [1, 4, 4, 2], filterSize: [2, 2], strides: [2, 2], pad: 'valid' };
  const xv = tiedData(32, 7, 5);
  for (const i of [0, 2, 8, 10]) xv[i] = Number.NEGATIVE_INFINITY; // window (0,0), channel 0
  for (const i of [5, 7, 13, 15]) xv[i] = Number.NaN; // window (0,1), channel 1
  const ref = await maxPoolGradOn('cpu', c, xv);
  const nonZero = (a: Float32Array) => a.filter((v) => v !== 0).length;
  for (const ties of ['first', 'last'] as const) {
    setMaxPoolGradTies(ties);
    const got = await maxPoolGradOn('wasm', c, xv);
    if (ties === 'first') assert.deepEqual(Array.from(got), Array.from(ref));
    assert.deepEqual([0, 2, 8, 10, 5, 7, 13, 15].map((i) => got[i]), [0, 0, 0, 0, 0, 0, 0, 0], ties);
    assert.equal(nonZero(got), 6, `${ties}: one gradient per window with a maximum, 8 - 2`);
  }
  setMaxPoolGradTies('last');
});
