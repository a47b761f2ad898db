/** The incremental DeepID sweep (fastsweep.ts) against the general tail-mask path, step by step. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import seedrandom from 'seedrandom';
import { initBackend } from '../src/engine/backend.js';
import { deepId } from '../src/models/deepid.js';
import { findCutPoint, headModel, tailModel } from '../src/defense/graph.js';
import { channelMeans, type CutActivations } from '../src/defense/activations.js';
import { sweep } from '../src/defense/sweep.js';
import { matchDeepIdTail } from '../src/defense/fastsweep.js';
import { matchTail } from '../src/defense/tailkinds.js';

await initBackend('wasm');

function cut(head: tfl.LayersModel, n: number, shape: number[], classes: number, seed: string): CutActivations {
  const rng = seedrandom(seed);
  const x = new Float32Array(n * shape.reduce((a, b) => a * b, 1)).map(() => rng() * 255);
  const labels = Int32Array.from({ length: n }, () => Math.floor(rng() * classes));
  const values = tf.tidy(() => head.predict(tf.tensor4d(x, [n, ...shape] as [number, number, number, number])) as tf.Tensor4D);
  return { values, labels, source: seed };
}

test('incremental sweep equals the tail-mask sweep at every step (asc and desc, in-thread and 2 workers, all recomputed)', async () => {
  const net = deepId({ inputShape: [40, 36, 3], numClasses: 7, seed: 3 });
  const c = findCutPoint(net);
  const head = headModel(net, c);
  const tail = await tailModel(net, c);
  assert.ok(matchDeepIdTail(tail), 'DeepID tail is recognised');
  const clean = cut(head, 700, [40, 36, 3], 7, 'clean');
  const poisoned = cut(head, 600, [40, 36, 3], 7, 'poisoned');
  const means = await channelMeans(clean);
  try {
    for (const order of ['asc', 'desc'] as const) {
      const ref = await sweep(tail, clean, poisoned, means, { order, target: 0, fast: false });
      assert.equal(ref.stats.path, 'tail-mask');
      for (const fast of [{ workers: 0 }, { workers: 2 }, { workers: 0, skip: false }, { workers: 0, tol: Infinity }]) {
        const got = await sweep(tail, clean, poisoned, means, { order, target: 0, fast });
        assert.equal(got.stats.path, 'incremental');
        assert.deepEqual(got.channelOrder, ref.channelOrder);
        assert.equal(got.steps.length, ref.steps.length);
        got.steps.forEach((s, k) => assert.deepEqual(s, ref.steps[k], `${order} ${JSON.stringify(fast)} step ${k}`));
        if (fast.tol === Infinity) assert.equal(got.stats.recomputed, (ref.steps.length) * 1300);
      }
    }
  } finally {
    tf.dispose([clean.values, poisoned.values]);
    tail.dispose();
    net.dispose();
  }
});

test('a Flatten -> Dense tail takes the linear kind; a tail starting with a conv takes the general path', async () => {
  const net = tfl.sequential({ layers: [
    tfl.layers.conv2d({ inputShape: [8, 8, 1], filters: 3, kernelSize: 3, activation: 'relu' }),
    tfl.layers.maxPooling2d({ poolSize: 2 }), tfl.layers.flatten(), tfl.layers.dense({ units: 4, activation: 'softmax' }),
  ] });
  const c = findCutPoint(net);
  const tail = await tailModel(net, c);
  assert.equal(matchDeepIdTail(tail), null);
  const a = cut(headModel(net, c), 50, [8, 8, 1], 4, 'x');
  const s = await sweep(tail, a, a, await channelMeans(a), { order: 'asc', target: 0 });
  assert.equal(s.stats.path, 'incremental');
  assert.equal(s.stats.kind, 'linear');
  assert.equal(s.steps.length, 4);
  a.values.dispose();
  const deep = tfl.sequential({ layers: [
    tfl.layers.conv2d({ inputShape: [8, 8, 1], filters: 3, kernelSize: 3, activation: 'relu' }),
    tfl.layers.conv2d({ filters: 2, kernelSize: 3, activation: 'relu' }), tfl.layers.flatten(), tfl.layers.dense({ units: 4, activation: 'softmax' }),
  ] });
  const c2 = findCutPoint(deep, deep.layers[0]!.name);
  const t2 = await tailModel(deep, c2);
  assert.equal(matchTail(t2, 3), null);
  const b = cut(headModel(deep, c2), 20, [8, 8, 1], 4, 'y');
  const s2 = await sweep(t2, b, b, await channelMeans(b), { order: 'asc', target: 0 });
  assert.equal(s2.stats.path, 'tail-mask');
  b.values.dispose();
});

test('linear kind (Conv-AvgPool-Conv-AvgPool-Flatten-Dense-Dense, and GAP -> Dense): equals the tail-mask sweep at every step, few recomputes', async () => {
  // Random output biases: with zero biases a fully pruned net ties every class (all ambiguous, recomputed).
  const mnist = tfl.sequential({ layers: [
    tfl.layers.conv2d({ inputShape: [28, 28, 1], filters: 6, kernelSize: 5, activation: 'relu', kernelInitializer: tfl.initializers.glorotUniform({ seed: 1 }) }),
    tfl.layers.averagePooling2d({ poolSize: 2 }),
    tfl.layers.conv2d({ filters: 12, kernelSize: 5, activation: 'relu', kernelInitializer: tfl.initializers.glorotUniform({ seed: 2 }) }),
    tfl.layers.averagePooling2d({ poolSize: 2 }), tfl.layers.flatten(),
    tfl.layers.dense({ units: 32, activation: 'relu', kernelInitializer: tfl.initializers.glorotUniform({ seed: 3 }), biasInitializer: tfl.initializers.randomNormal({ seed: 7 }) }),
    tfl.layers.dense({ units: 10, activation: 'softmax', kernelInitializer: tfl.initializers.glorotUniform({ seed: 4 }), biasInitializer: tfl.initializers.randomNormal({ seed: 8 }) }),
  ] });
  const gap = tfl.sequential({ layers: [
    tfl.layers.conv2d({ inputShape: [8, 8, 3], filters: 8, kernelSize: 3, activation: 'relu', kernelInitializer: tfl.initializers.glorotUniform({ seed: 5 }) }),
    tfl.layers.globalAveragePooling2d({}), tfl.layers.dense({ units: 5, activation: 'softmax', kernelInitializer: tfl.initializers.glorotUniform({ seed: 6 }), biasInitializer: tfl.initializers.randomNormal({ seed: 9 }) }),
  ] });
  for (const [net, shape, classes] of [[mnist, [28, 28, 1], 10], [gap, [8, 8, 3], 5]] as const) {
    const c = findCutPoint(net);
    const tail = await tailModel(net, c);
    const clean = cut(headModel(net, c), 300, [...shape], classes, 'lc');
    const poisoned = cut(headModel(net, c), 200, [...shape], classes, 'lp');
    const means = await channelMeans(clean);
    for (const order of ['asc', 'desc'] as const) {
      const ref = await sweep(tail, clean, poisoned, means, { order, target: 0, fast: false });
      const got = await sweep(tail, clean, poisoned, means, { order, target: 0 });
      assert.equal(got.stats.kind, 'linear');
      got.steps.forEach((s, k) => assert.deepEqual(s, ref.steps[k], `${order} step ${k}`));
      assert.ok(got.stats.recomputed < 0.05 * 500 * got.steps.length, `recomputed ${got.stats.recomputed}`);
      // GAP -> output Dense: images whose label provably cannot change are not re-read.
      if (net === gap) assert.ok(got.stats.outputRuns! < 500 * got.steps.length, `output runs ${got.stats.outputRuns}`);
      assert.ok(new Set(ref.steps.map((s) => s.accuracy)).size > 1, 'accuracy changes along the sweep');
    }
    tf.dispose([clean.values, poisoned.values]);
  }
});
