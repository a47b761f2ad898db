/**
 * How far the incremental sweep's float32 logits drift from recomputing the tail from the
 * masked activations, on the real lab3 weights and generated images, over all 60 steps:
 * the evidence behind the 1e-3 relative margin in fastsweep.ts. `node dist/bench/bench/drift.js [n]`
 */
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import seedrandom from 'seedrandom';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from '../src/engine/backend.js';
import { loadModel } from '../src/io/model.js';
import '../src/models/index.js'; // registers the architectures for weights-only Keras files
import { findCutPoint, headModel, tailModel } from '../src/defense/graph.js';
import { channelOrder } from '../src/defense/sweep.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
await initBackend('wasm');
const n = Number(process.argv[2] ?? 1000);
const model = await loadModel(join(ROOT, '../shared/csaw/lab3_sunglasses_bd_weights.h5'));
const cut = findCutPoint(model.net);
const rng = seedrandom('drift');
const x = tf.tensor4d(Float32Array.from({ length: n * 55 * 47 * 3 }, () => Math.floor(rng() * 256)), [n, 55, 47, 3]);
const p = headModel(model.net, cut).predict(x) as tf.Tensor4D;
const tail = await tailModel(model.net, cut);
// The tail up to the output layer's pre-activation (logits): the same layers, output softmax dropped.
const out = tail.getLayer('output');
const [oK, oB] = out.getWeights();
const hidden = tfl.model({ inputs: tail.inputs, outputs: tail.getLayer('activation_1').inboundNodes.at(-1)!.outputTensors[0] as tfl.SymbolicTensor });
const logitsOf = (a: tf.Tensor4D) => tf.tidy(() => tf.add(tf.matMul(hidden.predict(a) as tf.Tensor2D, oK as tf.Tensor2D), oB!));
const means = Array.from(await tf.mean(p, [0, 1, 2]).data());
const order = channelOrder(means, 'asc');
// Incremental, as fastsweep does it (z1, z4 updated by subtraction).
const w = (name: string) => tail.getLayer(name).getWeights();
const [aK, aB] = w('fc_1');
const [bK, bB] = w('fc_2');
const [cK, cB] = w('conv_4');
let z1 = tf.add(tf.matMul(tf.reshape(p, [n, 1200]), aK as tf.Tensor2D), tf.add(aB!, bB!));
let z4 = tf.add(tf.conv2d(p, cK as tf.Tensor4D, 1, 'valid'), cB!) as tf.Tensor4D;
let worst = 0;
let worstMargin = Infinity;
for (let k = 0; k <= 60; k++) {
  if (k > 0) {
    const ch = order[k - 1]!;
    const mask = tf.reshape(tf.oneHot(tf.tensor1d([ch], 'int32'), 60), [60]);
    const pc = tf.mul(p, mask) as tf.Tensor4D;
    const n1 = tf.sub(z1, tf.matMul(tf.reshape(pc, [n, 1200]), aK as tf.Tensor2D));
    const n4 = tf.sub(z4, tf.conv2d(pc, cK as tf.Tensor4D, 1, 'valid')) as tf.Tensor4D;
    tf.dispose([z1, z4, pc, mask]);
    z1 = n1;
    z4 = n4;
  }
  const inc = tf.tidy(() => tf.add(tf.matMul(tf.relu(tf.add(z1, tf.matMul(tf.reshape(tf.relu(z4), [n, 960]), bK as tf.Tensor2D))), oK as tf.Tensor2D), oB!));
  const m = new Float32Array(60).fill(1);
  for (let i = 0; i < k; i++) m[order[i]!] = 0;
  const ref = logitsOf(tf.mul(p, tf.tensor1d(m)) as tf.Tensor4D);
  const [a, b] = [inc.dataSync(), ref.dataSync()];
  for (let i = 0; i < n; i++) {
    let top = -Infinity;
    let second = -Infinity;
    for (let j = 0; j < 1283; j++) {
      const d = Math.abs(a[i * 1283 + j]! - b[i * 1283 + j]!) / (1 + Math.abs(b[i * 1283 + j]!));
      if (d > worst) worst = d;
      const v = b[i * 1283 + j]!;
      if (v > top) { second = top; top = v; } else if (v > second) second = v;
    }
    worstMargin = Math.min(worstMargin, (top - second) / (1 + Math.abs(top)));
  }
  tf.dispose([inc, ref]);
}
console.log(`${n} images, steps 0..60: worst |incremental - recomputed| / (1 + |logit|) = ${worst.toExponential(2)} (margin rule 1e-3: ${(1e-3 / worst).toFixed(0)}x headroom); smallest relative top-2 margin seen ${worstMargin.toExponential(2)}`);
