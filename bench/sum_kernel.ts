/**
 * goodnet's wasm Sum (leading axes, src/engine/kernels/sum.ts) vs the native kernel it
 * replaces, median of 30 interleaved calls per shape (bias-gradient shapes of the lab nets).
 *
 *   npx tsc -p bench && node dist/bench/bench/sum_kernel.js
 */
import { initBackend, tf } from '../src/engine/backend.js';
import { nativeWasmKernel } from '../src/engine/kernels/index.js';

await initBackend('wasm');
const med = (v: number[]) => [...v].sort((p, q) => p - q)[v.length >> 1]!;
for (const shape of [[64, 28, 28, 20], [64, 14, 14, 40], [64, 28, 28, 16], [64, 160]]) {
  const x = tf.randomUniform(shape);
  const attrs = { axis: shape.length === 4 ? [0, 1, 2] : [0], keepDims: false } as unknown as tf.NamedAttrMap;
  const mine: number[] = [], native: number[] = [];
  for (let rep = 0; rep < 30; rep++) {
    let t = performance.now();
    const a = tf.engine().runKernel('Sum', { x }, attrs) as tf.Tensor;
    mine.push(performance.now() - t);
    a.dispose();
    t = performance.now();
    const b = nativeWasmKernel('Sum')!({ inputs: { x }, attrs, backend: tf.backend() }) as tf.TensorInfo;
    native.push(performance.now() - t);
    tf.backend().disposeData(b.dataId);
  }
  console.log(`${shape.join('x')}: goodnet ${med(mine).toFixed(3)} ms, native ${med(native).toFixed(3)} ms per call`);
  x.dispose();
}
