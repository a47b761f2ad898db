/**
 * Lever 3 of issue 14, measured and not kept: Conv2DBackpropFilter as im2col (patches built in
 * JS, transposed, (K, M)) times dy (M, O) on the wasm BatchMatMul (XNNPACK), against goodnet's
 * kernel (a Conv2D with dy as the filter, src/engine/kernels/conv2d_backprop_filter.ts), on the
 * demo's and the lab's DeepID conv shapes, batch 64, CPU ms per call; also the largest
 * difference between the two relative to the result's scale.
 *
 *   npx tsc -p bench && node dist/bench/bench/conv_backprop.js
 */
import { loadavg } from 'node:os';
import { initBackend, tf } from '../src/engine/backend.js';

await initBackend('wasm');
const cpuMs = (f: () => void, reps = 10) => {
  f();
  const c0 = process.cpuUsage();
  for (let r = 0; r < reps; r++) f();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000 / reps;
};
console.log(`load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}\n`);
console.log('| x (valid conv) | kernel | out | goodnet | im2col + matmul | relative difference |');
console.log('|:--|:-:|--:|--:|--:|--:|');
const cases: Array<[[number, number, number, number], number, number]> = [
  [[64, 32, 32, 1], 4, 20], [[64, 14, 14, 20], 3, 40], [[64, 6, 6, 40], 3, 60],
  [[64, 55, 47, 3], 4, 20], [[64, 26, 22, 20], 3, 40], [[64, 12, 10, 40], 3, 60],
];
for (const [xs, ks, o] of cases) {
  const [B, H, W, C] = xs;
  const OH = H - ks + 1;
  const OW = W - ks + 1;
  const M = B * OH * OW;
  const K = ks * ks * C;
  const x = tf.randomNormal(xs, 0, 1, 'float32', 1);
  const dy = tf.randomNormal([B, OH, OW, o], 0, 1, 'float32', 2);
  const attrs = { strides: 1, pad: 'valid', dataFormat: 'NHWC', filterShape: [ks, ks, C, o] } as unknown as tf.NamedAttrMap;
  const current = () => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, attrs) as tf.Tensor;
  const xv = x.dataSync() as Float32Array;
  const im2col = () => tf.tidy(() => {
    const pt = new Float32Array(K * M); // row k = (i*ks + j)*C + c, column m = (b*OH + p)*OW + q
    for (let i = 0; i < ks; i++) for (let j = 0; j < ks; j++) for (let c = 0; c < C; c++) {
      const row = ((i * ks + j) * C + c) * M;
      let m = 0;
      for (let b = 0; b < B; b++) for (let p = 0; p < OH; p++) {
        let src = ((b * H + p + i) * W + j) * C + c;
        for (let q = 0; q < OW; q++, src += C) pt[row + m++] = xv[src]!;
      }
    }
    return tf.reshape(tf.matMul(tf.tensor3d(pt, [1, K, M]), tf.reshape(dy, [1, M, o])), [ks, ks, C, o]);
  });
  const ref = current();
  const got = im2col();
  const diff = tf.tidy(() => tf.div(tf.max(tf.abs(tf.sub(got, ref))), tf.max(tf.abs(ref))).dataSync()[0]!);
  const tRef = cpuMs(() => current().dispose());
  const tNew = cpuMs(() => im2col().dispose());
  console.log(`| ${xs.join('x')} | ${ks}x${ks} | ${o} | ${tRef.toFixed(2)} ms | ${tNew.toFixed(2)} ms | ${diff.toExponential(1)} |`);
  tf.dispose([x, dy, ref, got]);
}
