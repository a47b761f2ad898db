/**
 * Where one training step's time goes, per lab architecture (28x28x1, 10 classes, Adam,
 * batch 64, trainOnBatch on tfjs-wasm): kernel time by kernel name from tf.profile over
 * `steps` steps (after 2 warm-up steps), and wall time per step.
 *
 *   npx tsc -p bench && node dist/bench/bench/train_profile.js [steps]
 */
import { initBackend, tf } from '../src/engine/backend.js';
import { buildArchitecture } from '../src/models/index.js';

const STEPS = Number(process.argv[2] ?? 3);
await initBackend('wasm');
for (const arch of ['deepid', 'vgg', 'resnet'] as const) {
  const net = buildArchitecture(arch, { inputShape: [28, 28, 1], numClasses: 10, seed: 0 });
  net.compile({ optimizer: tf.train.adam(1e-3), loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
  const x = tf.randomUniform([64, 28, 28, 1], 0, 1, 'float32', 1);
  const y = tf.cast(tf.oneHot(tf.randomUniform([64], 0, 10, 'int32', 2) as tf.Tensor1D, 10), 'float32');
  for (let i = 0; i < 2; i++) await net.trainOnBatch(x, y);
  const t0 = performance.now();
  const info = await tf.profile(async () => { for (let i = 0; i < STEPS; i++) await net.trainOnBatch(x, y); return []; });
  const wall = (performance.now() - t0) / STEPS;
  const byName = new Map<string, { ms: number; calls: number }>();
  let total = 0;
  for (const k of info.kernels) {
    const t = await k.kernelTimeMs;
    const ms = typeof t === 'number' ? t / STEPS : 0;
    const e = byName.get(k.name) ?? { ms: 0, calls: 0 };
    e.ms += ms;
    e.calls += 1 / STEPS;
    byName.set(k.name, e);
    total += ms;
  }
  console.log(`${arch}: ${wall.toFixed(1)} ms wall per step (profiled), ${total.toFixed(1)} ms in kernels, ${info.kernels.length / STEPS} kernel calls per step`);
  for (const [name, e] of [...byName].sort((a, b) => b[1].ms - a[1].ms).slice(0, 12)) {
    console.log(`    ${name.padEnd(26)} ${e.ms.toFixed(1).padStart(7)} ms ${(100 * e.ms / total).toFixed(1).padStart(5)}%  (${e.calls.toFixed(0)} calls)`);
  }
  tf.dispose([x, y]);
  net.dispose();
}
