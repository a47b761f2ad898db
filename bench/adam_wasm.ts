/**
 * The ort engine's data-parallel Adam step: two shards' gradient vectors summed and Adam
 * applied over every trainable weight of each lab architecture (28x28x1, 10 classes), with
 * the JS loop against the WebAssembly SIMD kernel (models/adam_wasm.ts; the same float32
 * results, tested): the mean of 300 calls after 50 warm-up calls.
 *
 *   npx tsc -p bench && node dist/bench/bench/adam_wasm.js
 */
import { initBackend } from '../src/engine/backend.js';
import { buildArchitecture } from '../src/models/index.js';
import { OrtWeights } from '../src/models/ort_train.js';

await initBackend('wasm');
for (const arch of ['resnet', 'vgg', 'deepid'] as const) {
  const net = buildArchitecture(arch, { inputShape: [28, 28, 1], numClasses: 10, seed: 0 });
  const ms: string[] = [];
  for (const wasm of [false, true]) {
    const h = new OrtWeights(net, 1e-3, 0.9, 0.999, 1e-7, { slots: 2, wasm });
    const g0 = new Float32Array(h.flatW.length).fill(0.01);
    const g1 = new Float32Array(h.flatW.length).fill(0.02);
    for (let i = 0; i < 50; i++) h.adamShards([g0, g1]);
    const t = performance.now();
    for (let i = 0; i < 300; i++) h.adamShards([g0, g1]);
    ms.push(((performance.now() - t) / 300).toFixed(3));
  }
  console.log(`${arch} (${net.trainableWeights.reduce((a, w) => a + (w.shape as number[]).reduce((p, q) => p * q, 1), 0)} weights): two gradient vectors summed + Adam: JS ${ms[0]} ms, WebAssembly ${ms[1]} ms`);
  net.dispose();
}
