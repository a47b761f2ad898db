/**
 * Which sweep ideas help, side by side in one process on the real lab3 weights and generated
 * images: tail-mask (first steps, extrapolated), incremental in-thread / 2 workers, with and
 * without skipping the output layer. `node dist/bench/bench/ablation.js [images per set]`
 */
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import seedrandom from 'seedrandom';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/engine/backend.js';
import { loadModel } from '../src/io/model.js';
import '../src/models/index.js'; // registers the architectures for weights-only Keras files
import { findCutPoint, headModel, tailModel } from '../src/defense/graph.js';
import { channelMeans, type CutActivations } from '../src/defense/activations.js';
import { sweep, type SweepOptions } from '../src/defense/sweep.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
await initBackend('wasm');
const n = Number(process.argv[2] ?? 3000);
const model = await loadModel(join(ROOT, '../shared/csaw/lab3_sunglasses_bd_weights.h5'));
const cut = findCutPoint(model.net);
const head = headModel(model.net, cut);
const tail = await tailModel(model.net, cut);
const make = (seed: string): CutActivations => {
  const rng = seedrandom(seed);
  const parts: tf.Tensor[] = [];
  for (let s = 0; s < n; s += 500) {
    const m = Math.min(500, n - s);
    const x = tf.tensor4d(Float32Array.from({ length: m * 55 * 47 * 3 }, () => Math.floor(rng() * 256)), [m, 55, 47, 3]);
    parts.push(head.predict(x) as tf.Tensor);
    x.dispose();
  }
  const values = tf.concat(parts, 0) as tf.Tensor4D;
  tf.dispose(parts);
  return { values, labels: Int32Array.from({ length: n }, () => Math.floor(rng() * 1283)), source: seed };
};
const clean = make('a-clean');
const poisoned = make('a-poisoned');
const means = await channelMeans(clean);
const run = async (name: string, fast: SweepOptions['fast'], stopAt?: number) => {
  const t0 = performance.now();
  const r = await sweep(tail, clean, poisoned, means, { order: 'asc', target: 0, fast, stopAt });
  const s = ((performance.now() - t0) / 1000) * (stopAt === undefined ? 1 : 61 / (stopAt + 1));
  console.log(`${name.padEnd(44)} ${s.toFixed(2).padStart(8)} s${stopAt === undefined ? '' : ` (steps 0..${stopAt}, extrapolated)`}`);
  return { r, s };
};
console.log(`asc sweep, ${n} + ${n} images, 61 evaluations`);
const ref = await run('tail-mask (general path)', false, 3);
const a = await run('incremental, in-thread, no output skip', { workers: 0, skip: false });
const b = await run('incremental, 2 workers, no output skip', { workers: 2, skip: false });
const c = await run('incremental, in-thread, output skip', { workers: 0, skip: true });
const d = await run('incremental, 2 workers, output skip (default)', { workers: 2, skip: true });
const same = [a, b, c, d].every((x) => x.r.steps.every((st, k) => JSON.stringify(st) === JSON.stringify(a.r.steps[k])))
  && ref.r.steps.every((st, k) => JSON.stringify(st) === JSON.stringify(a.r.steps[k]));
console.log(`all variants give identical steps (and equal tail-mask on steps 0..3): ${same}`);
console.log(`speed-ups: incremental ${(ref.s / a.s).toFixed(1)}x over tail-mask; workers ${(a.s / b.s).toFixed(2)}x; output skip ${(b.s / d.s).toFixed(2)}x (in-thread ${(a.s / c.s).toFixed(2)}x)`);
