/**
 * The lazy JS kernel of the pooled linear tail on two threads (lazy_pool.ts): the same labels,
 * flags and counts as on one thread, for sets of unequal size, and a sweep through prepareSweep
 * (which starts the helper) equal to the tail-mask sweep.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { spawnSync } from 'node:child_process';
import seedrandom from 'seedrandom';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from '../src/engine/backend.js';
import { lazyShares, LAZY_SPLIT_MIN, startLazyWorker, stopLazyWorker } from '../src/defense/lazy_pool.js';
import { pooledShare } from '../src/defense/lazy_kernel.js';
import { findCutPoint, headModel, tailModel } from '../src/defense/graph.js';
import { channelMeans } from '../src/defense/activations.js';
import { prepareSweep, sweep } from '../src/defense/sweep.js';

await initBackend('wasm');
after(() => stopLazyWorker());

function weights(c: number, u: number, seed: string) {
  const rng = seedrandom(seed);
  return { c, u, kernel: new Float32Array(c * u).map(() => rng() - 0.5), bias: new Float32Array(u).map(() => (rng() - 0.5) * 0.1) };
}
function values(n: number, c: number, seed: string): Float32Array {
  const rng = seedrandom(seed);
  return new Float32Array(n * c).map(() => rng() * 2);
}

test('lazyShares on this thread and a helper worker equals pooledShare on one thread, sets of unequal size', async () => {
  const t = weights(12, 7, 'w');
  const ns = [3001, LAZY_SPLIT_MIN + 17]; // the split falls inside the second set
  const fs = ns.map((n, s) => values(n, t.c, `f${s}`));
  const order = [5, 2, 11, 0, 7, 3, 9, 1, 4];
  const last = order.length;
  startLazyWorker();
  const two = await lazyShares(t, fs, ns, order, last, 1e-3);
  const one = await lazyShares(t, fs, ns, order, last, 1e-3, false);
  ns.forEach((n, s) => {
    const labels = new Int32Array((last + 1) * n);
    const ambiguous = new Uint8Array((last + 1) * n);
    const computed = pooledShare(t, fs[s]!, n, 0, n, order, last, 1e-3, labels, ambiguous);
    assert.deepEqual(one[s]!.labels, labels);
    assert.deepEqual(one[s]!.ambiguous, ambiguous);
    assert.equal(one[s]!.computed, computed);
    assert.deepEqual(two[s]!.labels, labels, `set ${s} labels`);
    assert.deepEqual(two[s]!.ambiguous, ambiguous, `set ${s} flags`);
  });
  const sum = (r: typeof one) => r.reduce((a, x) => a + x.computed!, 0);
  assert.equal(sum(two), sum(one));
  assert.ok(new Set(one[1]!.labels).size > 1, 'labels vary');
  assert.ok(one[1]!.labels.subarray(0, ns[1]!).some((v, i) => v !== one[1]!.labels[last * ns[1]! + i]), 'pruning changes some labels');
});

test('a GAP -> output Dense sweep with the helper worker started by prepareSweep equals the tail-mask sweep', { skip: availableParallelism() < 2 ? 'one core: no helper' : false }, async () => {
  const net = tfl.sequential({ layers: [
    tfl.layers.conv2d({ inputShape: [6, 6, 2], filters: 10, kernelSize: 3, activation: 'relu', kernelInitializer: tfl.initializers.glorotUniform({ seed: 3 }) }),
    tfl.layers.globalAveragePooling2d({}),
    tfl.layers.dense({ units: 4, activation: 'softmax', kernelInitializer: tfl.initializers.glorotUniform({ seed: 4 }), biasInitializer: tfl.initializers.randomNormal({ seed: 5 }) }),
  ] });
  const c = findCutPoint(net);
  const tail = await tailModel(net, c);
  prepareSweep(tail, c.channels);
  const head = headModel(net, c);
  const rng = seedrandom('gap');
  const n = LAZY_SPLIT_MIN / 2 + 50; // both sets together are split
  const mk = () => {
    const x = new Float32Array(n * 72).map(() => rng() * 255);
    return { values: tf.tidy(() => head.predict(tf.tensor4d(x, [n, 6, 6, 2])) as tf.Tensor4D), labels: Int32Array.from({ length: n }, () => Math.floor(rng() * 4)), source: 'gap' };
  };
  const clean = mk();
  const poisoned = mk();
  const means = await channelMeans(clean);
  for (const order of ['asc', 'desc'] as const) {
    const ref = await sweep(tail, clean, poisoned, means, { order, target: 0, fast: false });
    const got = await sweep(tail, clean, poisoned, means, { order, target: 0 });
    assert.equal(got.stats.engine, 'js');
    got.steps.forEach((s, k) => assert.deepEqual(s, ref.steps[k], `${order} step ${k}`));
  }
  tf.dispose([clean.values, poisoned.values]);
  tail.dispose();
});

test('the helper worker never keeps a process alive: idle, and after a job', () => {
  const lib = new URL('../src/defense/lazy_pool.js', import.meta.url).href;
  const code = `import { startLazyWorker, lazyShares } from '${lib}';
startLazyWorker();
if (process.argv[1] === 'job') {
  const t = { c: 2, u: 3, kernel: new Float32Array([1, 0, -1, 0.5, 2, 0]), bias: new Float32Array(3) };
  const r = await lazyShares(t, [new Float32Array(2 * 5000).fill(1)], [5000], [1], 1, 1e-3);
  console.log(r[0].labels.length);
}`;
  for (const mode of ['idle', 'job']) {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code, mode], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, `${mode}: ${r.stderr} (signal ${r.signal})`);
    if (mode === 'job') assert.equal(r.stdout.trim(), '10000');
  }
});
