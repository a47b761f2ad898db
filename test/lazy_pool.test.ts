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
import { lazyWasm, pooledShareWasm, stepMetrics } from '../src/defense/lazy_wasm.js';
import { stepAccuracies, stepAttackSuccessRates } from '../src/eval/metrics.js';
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

test('the WebAssembly kernel gives the JS kernel\'s labels, flags and counts (blocks, offsets, ties, NaN, many classes)', () => {
  assert.ok(lazyWasm(), 'the embedded module loads');
  for (const [c, u, n, seed] of [[7, 3, 300, 'a'], [33, 50, 1000, 'b'], [5, 10, 257, 'c']] as const) {
    const t = weights(c, u, `wj-${seed}`);
    const f = values(n, c, `fj-${seed}`);
    f[11 * c + 1] = NaN; // one image with a NaN value
    for (let j = 0; j < c; j++) f[20 * c + j] = 0; // an image at the bias alone
    if (seed === 'c') t.kernel.fill(0.25, 0, u); // channel 0's row: equal weights (ties after its pruning)
    const rng = seedrandom(seed);
    const order = Array.from({ length: c }, (_, i) => i).sort(() => rng() - 0.5).slice(0, c - 1);
    const last = order.length;
    const start = 13;
    const total = n + 40; // the output has other columns: only [start, start + n) is written
    const run = (wasm: boolean, blockBytes?: number) => {
      const labels = new Int32Array((last + 1) * total).fill(-7);
      const ambiguous = new Uint8Array((last + 1) * total); // callers pass fresh (zero) flags
      const computed = wasm
        ? pooledShareWasm(t, f, n, start, total, order, last, 1e-3, labels, ambiguous, blockBytes)
        : pooledShare(t, f, n, start, total, order, last, 1e-3, labels, ambiguous, 'js');
      return { labels, ambiguous, computed };
    };
    const js = run(false);
    for (const blockBytes of [undefined, 4000]) { // 4,000 bytes: blocks of a few images
      const w = run(true, blockBytes);
      assert.equal(w.computed, js.computed, `${seed}: logits read as often`);
      assert.deepEqual(w.labels, js.labels, `${seed}: labels`);
      assert.deepEqual(w.ambiguous, js.ambiguous, `${seed}: flags`);
    }
    assert.equal(js.labels[0], -7, 'columns outside the share untouched');
    assert.ok(js.ambiguous.subarray(0, (last + 1) * total).some((a) => a === 1), `${seed}: some image-steps flagged`);
  }
});

test('the WebAssembly step metrics equal stepAccuracies and stepAttackSuccessRates', () => {
  const rng = seedrandom('wm');
  const n = 301;
  const steps = 7;
  const labels = Int32Array.from({ length: n * steps }, () => Math.floor(rng() * 4));
  for (const truth of [Int32Array.from({ length: n }, () => Math.floor(rng() * 5) - 1), new Int32Array(n).fill(1)]) {
    assert.deepEqual(stepMetrics(labels, truth, steps, 'accuracy'), stepAccuracies(labels, truth, steps));
    assert.deepEqual(stepMetrics(labels, truth, steps, 1), stepAttackSuccessRates(labels, truth, steps, 1));
  }
  assert.deepEqual(stepMetrics(labels, new Int32Array(0), steps, 'accuracy'), stepAccuracies(labels, new Int32Array(0), steps), 'no images: the JS path');
});

test('pooledShare: an image with a NaN or infinite value is flagged at every step; the other images are untouched', () => {
  const t = weights(6, 5, 'nf');
  const n = 40;
  const f = values(n, t.c, 'nf-f');
  const bad = f.slice();
  bad[3 * t.c + 2] = NaN;
  bad[17 * t.c + 5] = Infinity;
  bad[30 * t.c] = -Infinity;
  const order = [4, 1, 5, 0];
  const last = order.length;
  const run = (x: Float32Array) => {
    const labels = new Int32Array((last + 1) * n);
    const ambiguous = new Uint8Array((last + 1) * n);
    pooledShare(t, x, n, 0, n, order, last, 1e-3, labels, ambiguous);
    return { labels, ambiguous };
  };
  const ok = run(f);
  const got = run(bad);
  for (let k = 0; k <= last; k++) {
    for (let i = 0; i < n; i++) {
      const o = k * n + i;
      if (i === 3 || i === 17 || i === 30) assert.equal(got.ambiguous[o], 1, `image ${i} step ${k} flagged`);
      else {
        assert.equal(got.labels[o], ok.labels[o]);
        assert.equal(got.ambiguous[o], ok.ambiguous[o]);
      }
    }
  }
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
    assert.equal(got.stats.engine, 'wasm');
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
