/**
 * Training throughput on the wasm backend, and where the time goes.
 *
 *   npx tsc -p bench && node dist/bench/bench/train_speed.js [deepid|fmnist|all] [batches]
 *
 * initBackend installs goodnet's wasm kernels, including the XNNPACK-based Conv2DBackpropInput
 * and BatchMatMul replacements for the native scalar loops.
 *
 * Nets: DeepID (55x47x3 -> 1283 classes, the YouTube-Face BadNets architecture) and the same
 * topology sized for 28x28x1 / 10 classes (convs 'same' so that conv_4 still has a 3x3 input).
 * Reports images/s of model.fit (Adam, batch 64, random data), the per-kernel time split of one
 * training step (tf.profile), and Conv2DBackpropFilter vs Conv2D per call on each layer's shapes.
 */
import * as tfl from '@tensorflow/tfjs-layers';
import { initBackend, tf } from '../src/engine/backend.js';

interface NetSpec {
  name: string;
  input: [number, number, number];
  classes: number;
  padding: 'valid' | 'same';
}
const NETS: Record<string, NetSpec> = {
  deepid: { name: 'DeepID 55x47x3/1283', input: [55, 47, 3], classes: 1283, padding: 'valid' },
  fmnist: { name: 'DeepID-topology 28x28x1/10', input: [28, 28, 1], classes: 10, padding: 'same' },
};
const BATCH = 64;

function buildNet(spec: NetSpec): tfl.LayersModel {
  const conv = (name: string, filters: number, k: number, padding: 'valid' | 'same') =>
    tfl.layers.conv2d({ name, filters, kernelSize: k, padding, activation: 'relu' });
  const pool = (name: string) => tfl.layers.maxPooling2d({ name, poolSize: 2 });
  const input = tfl.input({ shape: spec.input });
  let x = conv('conv_1', 20, 4, spec.padding).apply(input) as tfl.SymbolicTensor;
  x = pool('pool_1').apply(x) as tfl.SymbolicTensor;
  x = conv('conv_2', 40, 3, spec.padding).apply(x) as tfl.SymbolicTensor;
  x = pool('pool_2').apply(x) as tfl.SymbolicTensor;
  x = conv('conv_3', 60, 3, spec.padding).apply(x) as tfl.SymbolicTensor;
  const pool3 = pool('pool_3').apply(x) as tfl.SymbolicTensor;
  const fc1 = tfl.layers.dense({ name: 'fc_1', units: 160 })
    .apply(tfl.layers.flatten().apply(pool3)) as tfl.SymbolicTensor;
  const conv4 = conv('conv_4', 80, 2, 'valid').apply(pool3) as tfl.SymbolicTensor;
  const fc2 = tfl.layers.dense({ name: 'fc_2', units: 160 })
    .apply(tfl.layers.flatten().apply(conv4)) as tfl.SymbolicTensor;
  const merged = tfl.layers.add().apply([fc1, fc2]) as tfl.SymbolicTensor;
  const act = tfl.layers.activation({ activation: 'relu' }).apply(merged) as tfl.SymbolicTensor;
  const out = tfl.layers.dense({ name: 'output', units: spec.classes, activation: 'softmax' })
    .apply(act) as tfl.SymbolicTensor;
  return tfl.model({ inputs: input, outputs: out });
}

function randomBatch(spec: NetSpec, n: number): { x: tf.Tensor; y: tf.Tensor } {
  const x = tf.randomUniform([n, ...spec.input]);
  const labels = tf.randomUniform([n], 0, spec.classes, 'int32');
  const y = tf.oneHot(labels, spec.classes);
  labels.dispose();
  return { x, y };
}

async function throughput(spec: NetSpec, model: tfl.LayersModel, batches: number): Promise<number> {
  const { x, y } = randomBatch(spec, BATCH * batches);
  const warm = randomBatch(spec, BATCH * 2);
  await model.fit(warm.x, warm.y, { epochs: 1, batchSize: BATCH, verbose: 0 });
  const t0 = performance.now();
  await model.fit(x, y, { epochs: 1, batchSize: BATCH, verbose: 0 });
  const seconds = (performance.now() - t0) / 1000;
  tf.dispose([x, y, warm.x, warm.y]);
  return (BATCH * batches) / seconds;
}

/** Kernel-time split of one trainOnBatch, from tf.profile. */
async function kernelSplit(spec: NetSpec, model: tfl.LayersModel): Promise<void> {
  const { x, y } = randomBatch(spec, BATCH);
  await model.trainOnBatch(x, y);
  const t0 = performance.now();
  const info = await tf.profile(async () => { await model.trainOnBatch(x, y); return []; });
  const wall = performance.now() - t0;
  const byName = new Map<string, { ms: number; calls: number }>();
  let total = 0;
  for (const k of info.kernels) {
    const t = await k.kernelTimeMs;
    const ms = typeof t === 'number' ? t : 0;
    const e = byName.get(k.name) ?? { ms: 0, calls: 0 };
    e.ms += ms;
    e.calls += 1;
    byName.set(k.name, e);
    total += ms;
  }
  console.log(`  one training step (profiled): ${total.toFixed(1)} ms in kernels, ${wall.toFixed(1)} ms wall`);
  for (const [name, e] of [...byName].sort((a, b) => b[1].ms - a[1].ms).slice(0, 9)) {
    console.log(`    ${name.padEnd(22)} ${e.ms.toFixed(1).padStart(7)} ms ${(100 * e.ms / total).toFixed(1).padStart(5)}%  (${e.calls} calls)`);
  }
  tf.dispose([x, y]);
}

function timeIt(f: () => tf.Tensor, reps: number): number {
  f().dispose();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) f().dispose();
  return (performance.now() - t0) / reps;
}

/** Conv2DBackpropFilter vs forward Conv2D (and Conv2DBackpropInput) on each conv layer's shapes. */
function perLayer(model: tfl.LayersModel): void {
  console.log('  per call, batch 64:       Conv2D   BackpropFilter  BackpropInput');
  for (const name of ['conv_1', 'conv_2', 'conv_3', 'conv_4']) {
    const layer = model.getLayer(name);
    const inShape = [BATCH, ...(layer.input as tfl.SymbolicTensor).shape.slice(1)] as [number, number, number, number];
    const outShape = [BATCH, ...(layer.output as tfl.SymbolicTensor).shape.slice(1)] as number[];
    const w = layer.getWeights()[0]!;
    const fShape = w.shape as [number, number, number, number];
    const pad = (layer.getConfig().padding as 'valid' | 'same');
    const x = tf.randomNormal(inShape);
    const dy = tf.randomNormal(outShape);
    const reps = 5;
    const fwd = timeIt(() => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, pad), reps);
    const bpf = timeIt(() => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy },
      { strides: 1, pad, dataFormat: 'NHWC', filterShape: fShape }) as tf.Tensor, reps);
    const bpi = timeIt(() => tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: w },
      { strides: 1, pad, dataFormat: 'NHWC', inputShape: inShape }) as tf.Tensor, reps);
    console.log(`    ${name} ${inShape.slice(1).join('x')} * ${fShape.join('x')}: ${fwd.toFixed(2).padStart(7)} ms ${bpf.toFixed(2).padStart(9)} ms ${bpi.toFixed(2).padStart(12)} ms`);
    tf.dispose([x, dy]);
  }
}

async function main(): Promise<void> {
  const flags = process.argv.slice(2).filter((a) => a.startsWith('--'));
  const [which = 'all', batchArg = '10'] = process.argv.slice(2).filter((a) => !a.startsWith('--'));
  const batches = Number(batchArg);
  await initBackend('wasm');
  for (const key of which === 'all' ? Object.keys(NETS) : [which]) {
    const spec = NETS[key];
    if (spec === undefined) throw new Error(`unknown net '${key}'`);
    const model = buildNet(spec);
    model.compile({ optimizer: tf.train.adam(1e-3), loss: 'categoricalCrossentropy' });
    console.log(`${spec.name}: ${model.countParams()} params, backend ${tf.getBackend()} ${flags.join(' ')}`);
    const ips = await throughput(spec, model, batches);
    console.log(`  model.fit: ${ips.toFixed(1)} images/s (${batches} batches of ${BATCH})`);
    await kernelSplit(spec, model);
    perLayer(model);
    model.dispose();
  }
}

await main();
