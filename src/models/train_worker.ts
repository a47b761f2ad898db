/** worker_threads entry for parallel.ts: one tfjs wasm engine, the model rebuilt from its topology, one shard per step. */
import { parentPort, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from '../engine/backend.js';
import '../io/onnx_layers.js'; // goodnet's layer classes for graphs read from ONNX
import { shardGradients } from './parallel.js';

interface Step { kind: 'step'; weights: Float32Array; x: Float32Array; y: Float32Array; n: number; total: number; shape: [number, number, number] }

const port = parentPort!;
let net: tfl.LayersModel | undefined;
const fail = (e: unknown) => port.postMessage({ error: e instanceof Error ? e.stack ?? e.message : String(e) });

async function setUp(): Promise<void> {
  await initBackend('wasm');
  net = await tfl.models.modelFromJSON({ modelTopology: JSON.parse((workerData as { topology: string }).topology) as never });
}
const ready = setUp();

port.on('message', (m: { kind: 'ready' } | Step) => {
  ready.then(() => {
    if (m.kind === 'ready') return port.postMessage({ grads: new Float32Array(0), lossSum: 0, correct: 0, stats: new Float32Array(0) });
    const all = net!.weights;
    let o = 0;
    for (const w of all) {
      const size = w.shape.reduce<number>((a, b) => a * b!, 1);
      const t = tf.tensor(m.weights.subarray(o, o + size), w.shape as number[]);
      w.write(t);
      t.dispose();
      o += size;
    }
    const r = shardGradients(net!, m.x, m.y, m.n, m.total, m.shape);
    const sizes = r.grads.map((g) => g.size);
    const grads = new Float32Array(sizes.reduce((a, b) => a + b, 0));
    let g0 = 0;
    r.grads.forEach((g, i) => { grads.set(g.dataSync() as Float32Array, g0); g0 += sizes[i]!; });
    tf.dispose(r.grads);
    const statVals = all.filter((w) => !w.trainable && /moving_(mean|variance)/.test(w.originalName ?? w.name)).map((w) => w.read().dataSync() as Float32Array);
    const stats = new Float32Array(statVals.reduce((a, v) => a + v.length, 0));
    let s0 = 0;
    for (const v of statVals) { stats.set(v, s0); s0 += v.length; }
    port.postMessage({ grads, lossSum: r.lossSum, correct: r.correct, stats }, [grads.buffer, stats.buffer]);
  }).catch(fail);
});
