/** Data-parallel training (models/parallel.ts): shard gradients summed = the single-engine gradient; deterministic; BN statistics averaged. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from '../src/engine/backend.js';
import { DataParallel, dataParallelObstacle, shardGradients } from '../src/models/parallel.js';
import { buildArchitecture } from '../src/models/index.js';
import { train } from '../src/models/train.js';
import { GoodnetError } from '../src/errors.js';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, assertBadInput, sameWeights, tempDir } from './helpers.js';

await initBackend('wasm');

const SHAPE: [number, number, number] = [12, 10, 3];

function data(n: number, k: number, seed: number): { x: Float32Array; y: Float32Array; labels: Int32Array; images: Uint8Array } {
  let s = seed >>> 0;
  const next = () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s >>> 8; };
  const images = Uint8Array.from({ length: n * SHAPE[0] * SHAPE[1] * SHAPE[2] }, () => next() & 255);
  const labels = Int32Array.from({ length: n }, () => next() % k);
  const x = Float32Array.from(images, (v) => v / 255);
  const y = new Float32Array(n * k);
  labels.forEach((l, i) => { y[i * k + l] = 1; });
  return { x, y, labels, images };
}

function maxDiff(a: tf.Tensor[], b: tf.Tensor[]): { diff: number; scale: number } {
  let diff = 0, scale = 0;
  a.forEach((t, i) => {
    const u = t.dataSync(), v = b[i]!.dataSync();
    assert.equal(u.length, v.length);
    for (let j = 0; j < u.length; j++) { diff = Math.max(diff, Math.abs(u[j]! - v[j]!)); scale = Math.max(scale, Math.abs(v[j]!)); }
  });
  return { diff, scale };
}

test('2-thread shard gradients summed = the single-engine gradient of the whole batch (tiny DeepID); the loss is trainOnBatch\'s', async () => {
  const net = buildArchitecture('deepid', { inputShape: SHAPE, numClasses: 5, seed: 3 });
  const n = 37; // uneven shards: 18 + 19
  const { x, y } = data(n, 5, 1);
  const whole = shardGradients(net, x, y, n, n, SHAPE);
  const dp = await DataParallel.create(net, 2);
  try {
    const r = await dp.step(x, y, n, SHAPE);
    const { diff, scale } = maxDiff(r.grads, whole.grads);
    assert.ok(scale > 1e-3, `gradients are not all ~0 (${scale})`);
    assert.ok(diff <= 1e-5 * Math.max(1, scale), `max |g_2threads - g_1| = ${diff} (scale ${scale})`);
    assert.ok(Math.abs(r.lossSum - whole.lossSum) <= 1e-4 * whole.lossSum, `loss ${r.lossSum} vs ${whole.lossSum}`);
    assert.equal(r.correct, whole.correct);
    // Same again: the same bits (fixed summation order).
    const again = await dp.step(x, y, n, SHAPE);
    assert.equal(maxDiff(again.grads, r.grads).diff, 0);
    tf.dispose([...r.grads, ...again.grads]);
  } finally {
    await dp.close();
    tf.dispose(whole.grads);
  }
  // The loss shardGradients minimises is the one trainOnBatch reports.
  const { x: x2, y: y2 } = data(16, 5, 2);
  const ref = shardGradients(net, x2, y2, 16, 16, SHAPE);
  tf.dispose(ref.grads);
  net.compile({ optimizer: tf.train.sgd(0), loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
  const out = (await net.trainOnBatch(tf.tensor4d(x2, [16, ...SHAPE]), tf.tensor2d(y2, [16, 5]))) as number[];
  assert.ok(Math.abs(out[0]! - ref.lossSum / 16) <= 1e-5 * Math.max(1, out[0]!), `trainOnBatch loss ${out[0]} vs ${ref.lossSum / 16}`);
  assert.equal(Math.round(out[1]! * 16), ref.correct);
  net.dispose();
});

test('train({threads: 2}): same seed, same weights; close to 1 thread; BN moving statistics averaged over shards', async () => {
  const k = 4, n = 96;
  const { images, labels } = data(n, k, 5);
  const set = { images, labels, n, shape: SHAPE };
  const run = async (arch: 'deepid' | 'resnet', threads: number) => {
    const net = buildArchitecture(arch, { inputShape: SHAPE, numClasses: k, seed: 1 });
    const h = await train(net, set, { epochs: 1, batchSize: 32, scale: 255, seed: 7, threads });
    return { net, h };
  };
  const a = await run('deepid', 2), b = await run('deepid', 2), c = await run('deepid', 1);
  assert.ok(sameWeights(a.net, b.net), 'deterministic for a seed and a thread count');
  let diff = 0, moved = 0;
  const init = buildArchitecture('deepid', { inputShape: SHAPE, numClasses: k, seed: 1 });
  a.net.weights.forEach((w, i) => {
    const u = w.read().dataSync(), v = c.net.weights[i]!.read().dataSync(), z = init.weights[i]!.read().dataSync();
    for (let j = 0; j < u.length; j++) { diff = Math.max(diff, Math.abs(u[j]! - v[j]!)); moved = Math.max(moved, Math.abs(v[j]! - z[j]!)); }
  });
  assert.ok(moved > 1e-4, `training moved the weights (${moved})`);
  assert.ok(diff <= 1e-4, `2 threads vs 1 thread after 3 Adam steps: max weight difference ${diff}`);
  assert.ok(Math.abs(a.h[0]!.loss - c.h[0]!.loss) <= 1e-4, `epoch loss ${a.h[0]!.loss} vs ${c.h[0]!.loss}`);
  assert.equal(a.h[0]!.accuracy, c.h[0]!.accuracy);
  // ResNet (BatchNormalization): runs, deterministic, and the moving statistics moved.
  const r1 = await run('resnet', 2), r2 = await run('resnet', 2);
  assert.ok(sameWeights(r1.net, r2.net));
  const mv = r1.net.weights.find((w) => /moving_variance/.test(w.originalName))!;
  assert.ok(mv.read().dataSync().some((v) => Math.abs(v - 1) > 1e-4), 'moving variance updated');
  for (const m of [a, b, c, r1, r2]) m.net.dispose();
  init.dispose();
});

test('nets a shard cannot reproduce (dropout) are refused for threads > 1 before any work', async () => {
  const inp = tfl.input({ shape: SHAPE });
  const f = tfl.layers.flatten().apply(inp) as tfl.SymbolicTensor;
  const d = tfl.layers.dropout({ rate: 0.5 }).apply(f) as tfl.SymbolicTensor;
  const out = tfl.layers.dense({ units: 2, activation: 'softmax' }).apply(d) as tfl.SymbolicTensor;
  const net = tfl.model({ inputs: inp, outputs: out });
  assert.match(dataParallelObstacle(net) ?? '', /Dropout/);
  const { images, labels } = data(8, 2, 9);
  let batches = 0;
  await assert.rejects(train(net, { images, labels, n: 8, shape: SHAPE }, { epochs: 1, threads: 2, onBatch: () => { batches++; } }),
    (e: unknown) => e instanceof GoodnetError && /cannot train in 2 threads: .*Dropout/.test(e.message));
  assert.equal(batches, 0);
  await assert.rejects(train(net, { images, labels, n: 8, shape: SHAPE }, { epochs: 1, threads: -1 }), /threads must be/);
});

test('goodnet attack / fineprune --threads: a bad value is a one-line usage error before any work', () => {
  const { dir, cleanup } = tempDir('goodnet-threads-');
  try {
    for (const [cmd, extra] of [['attack', ['-o', join(dir, 'lab')]], ['fineprune', ['-m', join(dir, 'm.h5'), '--clean-valid', join(dir, 'c.h5')]]] as const) {
      const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'goodnet.js'), cmd, ...extra, '--threads', '-2'], { encoding: 'utf8', timeout: 60_000 });
      assertBadInput({ code: r.status, err: r.stderr }, /--threads/);
    }
    assert.equal(existsSync(join(dir, 'lab')), false);
  } finally {
    cleanup();
  }
});
