/**
 * The linear kind's engines (tailkinds.ts, ortsweep.ts) against the general tail-mask path,
 * step by step: onnxruntime (1 and 2 threads), tfjs, and the lazy JS path of a pooled cut
 * into the output layer, in both orders and with a stop before the last channel.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import seedrandom from 'seedrandom';
import { initBackend } from '../src/engine/backend.js';
import { findCutPoint, headModel, tailModel } from '../src/defense/graph.js';
import { channelMeans, type CutActivations } from '../src/defense/activations.js';
import { prepareSweep, sweep } from '../src/defense/sweep.js';
import { linearKind, matchTail, type LinearTail } from '../src/defense/tailkinds.js';
import { linearSweepGraph, ortLinearShare } from '../src/defense/ortsweep.js';
import type { FastSweepOptions } from '../src/defense/fastsweep.js';

await initBackend('wasm');

const glorot = (seed: number) => tfl.initializers.glorotUniform({ seed });
const normal = (seed: number) => tfl.initializers.randomNormal({ seed });

function cut(head: tfl.LayersModel, n: number, shape: number[], classes: number, seed: string): CutActivations {
  const rng = seedrandom(seed);
  const x = new Float32Array(n * shape.reduce((a, b) => a * b, 1)).map(() => rng() * 255);
  const labels = Int32Array.from({ length: n }, () => Math.floor(rng() * classes));
  const values = tf.tidy(() => head.predict(tf.tensor4d(x, [n, ...shape] as [number, number, number, number])) as tf.Tensor4D);
  return { values, labels, source: seed };
}

/** Every fast variant equals the tail-mask sweep at every step, asc and desc, whole layer and stopped early. */
async function checkEngines(net: tfl.LayersModel, shape: number[], classes: number, variants: { fast: FastSweepOptions; engine: string }[]): Promise<void> {
  const c = findCutPoint(net);
  const tail = await tailModel(net, c);
  const head = headModel(net, c);
  const clean = cut(head, 160, shape, classes, 'oc');
  const poisoned = cut(head, 120, shape, classes, 'op');
  const means = await channelMeans(clean);
  try {
    for (const order of ['asc', 'desc'] as const) {
      for (const stopAt of [undefined, 3]) {
        const ref = await sweep(tail, clean, poisoned, means, { order, target: 0, stopAt, fast: false });
        assert.equal(ref.stats.path, 'tail-mask');
        assert.ok(new Set(ref.steps.map((s) => s.accuracy)).size > 1 || stopAt !== undefined, 'accuracy changes along the sweep');
        for (const v of variants) {
          const got = await sweep(tail, clean, poisoned, means, { order, target: 0, stopAt, fast: v.fast });
          assert.equal(got.stats.kind, 'linear');
          assert.equal(got.stats.engine, v.engine, JSON.stringify(v.fast));
          assert.deepEqual(got.channelOrder, ref.channelOrder);
          assert.equal(got.steps.length, ref.steps.length);
          got.steps.forEach((s, k) => assert.deepEqual(s, ref.steps[k], `${order} stop ${stopAt} ${JSON.stringify(v.fast)} step ${k}`));
          if (v.fast.tol === Infinity) assert.equal(got.stats.recomputed, ref.steps.length * 280, 'tol Infinity recomputes every image-step');
          else assert.ok(got.stats.recomputed < 0.05 * 280 * got.steps.length, `recomputed ${got.stats.recomputed}`);
        }
      }
    }
  } finally {
    tf.dispose([clean.values, poisoned.values]);
    tail.dispose();
  }
}

const ENGINES = [
  { fast: {}, engine: 'ort' },
  { fast: { threads: 2 }, engine: 'ort' },
  { fast: { engine: 'tfjs' as const }, engine: 'tfjs' },
  { fast: { tol: Infinity }, engine: 'ort' },
];

test('linear kind, Flatten -> Dense(relu) -> Dense(softmax): onnxruntime (1, 2 threads) and tfjs equal the tail-mask sweep at every step', async () => {
  const net = tfl.sequential({ layers: [
    tfl.layers.conv2d({ inputShape: [12, 12, 1], filters: 5, kernelSize: 3, activation: 'relu', kernelInitializer: glorot(1) }),
    tfl.layers.averagePooling2d({ poolSize: 2 }), tfl.layers.flatten(),
    tfl.layers.dense({ units: 16, activation: 'relu', kernelInitializer: glorot(2), biasInitializer: normal(3) }),
    tfl.layers.dense({ units: 6, activation: 'softmax', kernelInitializer: glorot(4), biasInitializer: normal(5) }),
  ] });
  await checkEngines(net, [12, 12, 1], 6, ENGINES);
});

test('linear kind, Flatten -> output Dense and GAP -> Dense(tanh) -> Dense: onnxruntime equals the tail-mask sweep', async () => {
  const flat = tfl.sequential({ layers: [
    tfl.layers.conv2d({ inputShape: [10, 10, 2], filters: 4, kernelSize: 3, activation: 'relu', kernelInitializer: glorot(6) }),
    tfl.layers.maxPooling2d({ poolSize: 2 }), tfl.layers.flatten(),
    tfl.layers.dense({ units: 5, activation: 'softmax', kernelInitializer: glorot(7), biasInitializer: normal(8) }),
  ] });
  await checkEngines(flat, [10, 10, 2], 5, [ENGINES[0]!, ENGINES[2]!]);
  const gap = tfl.sequential({ layers: [
    tfl.layers.conv2d({ inputShape: [8, 8, 3], filters: 6, kernelSize: 3, activation: 'relu', kernelInitializer: glorot(9) }),
    tfl.layers.globalAveragePooling2d({}),
    tfl.layers.dense({ units: 12, activation: 'tanh', kernelInitializer: glorot(10), biasInitializer: normal(11) }),
    tfl.layers.dense({ units: 4, activation: 'softmax', kernelInitializer: glorot(12), biasInitializer: normal(13) }),
  ] });
  await checkEngines(gap, [8, 8, 3], 4, [ENGINES[0]!, ENGINES[2]!]);
});

test('linear kind, pooled cut into the output layer: the lazy JS path equals the tail-mask sweep, skips most image-steps, and flags everything when a weight is not finite', async () => {
  const gap = tfl.sequential({ layers: [
    tfl.layers.conv2d({ inputShape: [8, 8, 3], filters: 8, kernelSize: 3, activation: 'relu', kernelInitializer: glorot(14) }),
    tfl.layers.globalAveragePooling2d({}),
    tfl.layers.dense({ units: 5, activation: 'softmax', kernelInitializer: glorot(15), biasInitializer: normal(16) }),
  ] });
  await checkEngines(gap, [8, 8, 3], 5, [{ fast: {}, engine: 'wasm' }, { fast: { tol: Infinity }, engine: 'wasm' }]);
  const c = findCutPoint(gap);
  const head = headModel(gap, c);
  const a = cut(head, 100, [8, 8, 3], 5, 'lazy');
  const tail = await tailModel(gap, c);
  const means = await channelMeans(a);
  const s = await sweep(tail, a, a, means, { order: 'asc', target: 0 });
  assert.ok(s.stats.outputRuns! < 200 * s.steps.length / 2, `logits read on ${s.stats.outputRuns} of ${200 * s.steps.length} image-steps`);
  // A NaN bias: no bound holds, every image-step goes to the tail-mask path.
  const out = tail.layers.at(-1)!;
  const [k, b] = out.getWeights();
  const nanBias = tf.tensor1d(Array.from(b!.dataSync(), (v, i) => (i === 2 ? NaN : v)));
  const broken = await tailModel(gap, c);
  broken.layers.at(-1)!.setWeights([k!, nanBias]);
  const ref = await sweep(broken, a, a, means, { order: 'asc', target: 0, fast: false });
  const got = await sweep(broken, a, a, means, { order: 'asc', target: 0 });
  assert.equal(got.stats.recomputed, 200 * got.steps.length);
  got.steps.forEach((st, i) => assert.deepEqual(st, ref.steps[i]));
  tf.dispose([a.values, nanBias]);
  tail.dispose();
  broken.dispose();
});

test('the onnxruntime sweep graph: its logits are the masked tail\'s at every step (order and chunk padding included)', async () => {
  const net = tfl.sequential({ layers: [
    tfl.layers.conv2d({ inputShape: [6, 6, 1], filters: 3, kernelSize: 3, activation: 'relu', kernelInitializer: glorot(17) }),
    tfl.layers.flatten(),
    tfl.layers.dense({ units: 7, activation: 'relu', kernelInitializer: glorot(18), biasInitializer: normal(19) }),
    tfl.layers.dense({ units: 3, activation: 'softmax', kernelInitializer: glorot(20), biasInitializer: normal(21) }),
  ] });
  const c = findCutPoint(net);
  const tail = await tailModel(net, c);
  const t = matchTail(tail, 3)!.t as LinearTail;
  assert.equal(matchTail(tail, 3)!.kind, linearKind);
  assert.ok(linearSweepGraph(t, 4).length > 0);
  const a = cut(headModel(net, c), 5, [6, 6, 1], 3, 'graph');
  const x = await a.values.data() as Float32Array;
  const order = [2, 0, 1];
  // tol 0: no image is ambiguous unless two logits tie exactly, so every label is the graph's own.
  const r = await ortLinearShare(t, x, 5, order, 3, 0);
  assert.ok(r, 'onnxruntime-node loads here');
  for (let k = 0; k <= 3; k++) {
    const mask = new Float32Array(3).fill(1);
    for (const ch of order.slice(0, k)) mask[ch] = 0;
    const want = tf.tidy(() => tf.argMax(tail.predict(tf.mul(a.values, tf.tensor1d(mask))) as tf.Tensor2D, 1).dataSync());
    for (let i = 0; i < 5; i++) if (!r.ambiguous[k * 5 + i]) assert.equal(r.labels[k * 5 + i], want[i], `step ${k} image ${i}`);
  }
  a.values.dispose();
  tail.dispose();
});

test('prepareSweep starts the engine ahead of the sweep without changing it, and never throws', async () => {
  const net = tfl.sequential({ layers: [
    tfl.layers.conv2d({ inputShape: [8, 8, 1], filters: 4, kernelSize: 3, activation: 'relu', kernelInitializer: glorot(22) }),
    tfl.layers.maxPooling2d({ poolSize: 2 }), tfl.layers.flatten(),
    tfl.layers.dense({ units: 6, activation: 'relu', kernelInitializer: glorot(23), biasInitializer: normal(24) }),
    tfl.layers.dense({ units: 3, activation: 'softmax', kernelInitializer: glorot(25), biasInitializer: normal(26) }),
  ] });
  const c = findCutPoint(net);
  const tail = await tailModel(net, c);
  prepareSweep(tail, c.channels);
  prepareSweep(tail, c.channels, false);
  prepareSweep(tail, c.channels + 1); // no kind matches: nothing to start
  const a = cut(headModel(net, c), 60, [8, 8, 1], 3, 'prep');
  const means = await channelMeans(a);
  const got = await sweep(tail, a, a, means, { order: 'asc', target: 0 });
  const ref = await sweep(tail, a, a, means, { order: 'asc', target: 0, fast: false });
  assert.equal(got.stats.engine, 'ort');
  got.steps.forEach((s, k) => assert.deepEqual(s, ref.steps[k]));
  a.values.dispose();
  tail.dispose();
});

test('linear kind, Dense -> separate ReLU or Activation layer (and Dropout) -> output Dense, as the lab VGG: onnxruntime equals the tail-mask sweep', async () => {
  for (const actLayer of [() => tfl.layers.reLU({}), () => tfl.layers.activation({ activation: 'tanh' })]) {
    const net = tfl.sequential({ layers: [
      tfl.layers.conv2d({ inputShape: [10, 10, 1], filters: 4, kernelSize: 3, activation: 'relu', kernelInitializer: glorot(27) }),
      tfl.layers.maxPooling2d({ poolSize: 2 }), tfl.layers.flatten(),
      tfl.layers.dense({ units: 12, kernelInitializer: glorot(28), biasInitializer: normal(29) }),
      actLayer(), tfl.layers.dropout({ rate: 0.5 }),
      tfl.layers.dense({ units: 5, activation: 'softmax', kernelInitializer: glorot(30), biasInitializer: normal(31) }),
    ] });
    const tail = await tailModel(net, findCutPoint(net));
    const t = matchTail(tail, 4)!.t as LinearTail;
    assert.ok(t.out, 'the activation layer and the output Dense are run directly, not through a model');
    tail.dispose();
    await checkEngines(net, [10, 10, 1], 5, [ENGINES[0]!, ENGINES[2]!]);
  }
});
