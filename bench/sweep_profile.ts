/**
 * Iterating on the pruning sweep's speed (issue 11): the prune_any.ts nets (same seeds) on
 * --n random images per set, cut activations cached in --cache DIR, the sweep timed
 * --reps times (wall and CPU) with its parts, and every step compared with the
 * tail-mask path (computed once, cached). `node dist/bench/bench/sweep_profile.js --n 9500`.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import seedrandom from 'seedrandom';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from '../src/engine/backend.js';
import { channelMeans, type CutActivations } from '../src/defense/activations.js';
import { findCutPoint, headModel, tailModel } from '../src/defense/graph.js';
import { prepareSweep, sweep } from '../src/defense/sweep.js';
import type { FastSweepOptions } from '../src/defense/fastsweep.js';
import { benchNets } from './nets.js';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : dflt;
};
const N = Number(arg('n', '9500'));
const REPS = Number(arg('reps', '3'));
const CACHE = arg('cache', '/tmp/goodnet-sweep-profile');
const ONLY = arg('only', '');
const FAST = JSON.parse(arg('fast', '{}')) as FastSweepOptions;

async function acts(name: string, head: tfl.LayersModel, shape: number[]): Promise<CutActivations[]> {
  const dir = join(CACHE, `${name}-${N}`);
  const outShape = (head.outputs[0]!.shape.slice(1) as number[]);
  const per = outShape.reduce((a, b) => a * b, 1);
  if (!existsSync(join(dir, 'labels'))) {
    mkdirSync(dir, { recursive: true });
    const rng = seedrandom(name);
    const vals: Float32Array[] = [];
    const labs: Int32Array[] = [];
    for (let s = 0; s < 2; s++) {
      const out = new Float32Array(N * per);
      for (let start = 0; start < N; start += 500) {
        const m = Math.min(500, N - start);
        const x = new Float32Array(m * shape.reduce((a, b) => a * b, 1)).map(() => Math.floor(rng() * 256));
        const y = tf.tidy(() => head.predict(tf.tensor(x, [m, ...shape]), { batchSize: m }) as tf.Tensor);
        out.set(y.dataSync() as Float32Array, start * per);
        y.dispose();
      }
      vals.push(out);
      labs.push(Int32Array.from({ length: N }, () => Math.floor(rng() * 10)));
    }
    writeFileSync(join(dir, 'values'), Buffer.concat(vals.map((v) => Buffer.from(v.buffer))));
    writeFileSync(join(dir, 'labels'), Buffer.concat(labs.map((v) => Buffer.from(v.buffer))));
  }
  const vb = readFileSync(join(dir, 'values'));
  const lb = readFileSync(join(dir, 'labels'));
  const v = new Float32Array(vb.buffer.slice(vb.byteOffset, vb.byteOffset + vb.byteLength));
  const l = new Int32Array(lb.buffer.slice(lb.byteOffset, lb.byteOffset + lb.byteLength));
  return [0, 1].map((s) => ({ values: tf.tensor(v.subarray(s * N * per, (s + 1) * N * per), [N, ...outShape]) as unknown as tf.Tensor2D, labels: l.slice(s * N, (s + 1) * N), source: `${name}${s}` }));
}

async function main(): Promise<void> {
  await initBackend('wasm');
  const nets = benchNets();
  for (const [name, net, shape] of [['mnist', nets.mnist, [28, 28, 1]], ['resnet', nets.resnet, [32, 32, 3]]] as [string, tfl.LayersModel, number[]][]) {
    if (ONLY && ONLY !== name) continue;
    const cut = findCutPoint(net);
    const head = headModel(net, cut);
    const tail = await tailModel(net, cut);
    prepareSweep(tail, cut.channels, FAST); // as runPrune: the engine or helper starts while the head runs
    const [clean, poisoned] = await acts(name, head, [...shape]);
    const means = await channelMeans(clean!);
    const refFile = join(CACHE, `${name}-${N}`, 'ref.json');
    if (!existsSync(refFile)) {
      const ref = await sweep(tail, clean!, poisoned!, means, { order: 'asc', target: 0, fast: false });
      const refD = await sweep(tail, clean!, poisoned!, means, { order: 'desc', target: 0, fast: false });
      writeFileSync(refFile, JSON.stringify({ asc: ref.steps, desc: refD.steps }));
    }
    const ref = JSON.parse(readFileSync(refFile, 'utf8')) as Record<'asc' | 'desc', { accuracy: number; asr: number }[]>;
    for (let r = 0; r < REPS; r++) {
      for (const order of ['asc', 'desc'] as const) {
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        const s = await sweep(tail, clean!, poisoned!, means, { order, target: 0, fast: FAST });
        const wall = (performance.now() - t0) / 1000;
        const cu = process.cpuUsage(c0);
        const equal = s.steps.every((st, k) => st.accuracy === ref[order][k]!.accuracy && st.asr === ref[order][k]!.asr);
        console.log(`${name} ${order}: ${wall.toFixed(3)} s wall, ${((cu.user + cu.system) / 1e6).toFixed(3)} CPU s, ${JSON.stringify(s.stats)} equal ${equal}`);
        if (!equal) process.exitCode = 1;
      }
    }
    tf.dispose([clean!.values, poisoned!.values]);
  }
}

await main();
