/**
 * Forward-only inference, side by side in one run: tfjs-layers on wasm (goodnet's default
 * engine) vs goodnet's ort engine (src/engine/ort.ts: onnxruntime-node on onnxBytes(model),
 * with the NHWC batch copy and the output copy it makes) vs raw onnxruntime-node (the same
 * session options, the same graph, one prebuilt input tensor), 1 and 2 intra-op threads.
 * Models: the lab's DeepID 55x47x3 -> 1283 and the demo's 28x28x1 -> 10 DeepID, random
 * weights (seed 0), batch 64, random inputs. Prints images/s per wall second and per CPU
 * second of the process, with the 1-minute load average over each measurement.
 *
 *   npx tsc -p bench && node dist/bench/bench/ort_engine.js [--batches N]
 */
import { loadavg } from 'node:os';
import * as ort from 'onnxruntime-node';
import { initBackend, tf } from '../src/engine/backend.js';
import { OrtEngine } from '../src/engine/ort.js';
import { onnxBytes } from '../src/io/onnx_write.js';
import { deepId } from '../src/models/deepid.js';

const i = process.argv.indexOf('--batches');
const BATCHES = i >= 0 ? Number(process.argv[i + 1]) : 20;
const BATCH = 64;

interface Row { model: string; engine: string; threads: number; imagesPerSecond: number; imagesPerCpuSecond: number; load: number }

async function measure(f: () => Promise<void>): Promise<Pick<Row, 'imagesPerSecond' | 'imagesPerCpuSecond' | 'load'>> {
  await f(); await f(); // warm-up
  const l0 = loadavg()[0]!;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let b = 0; b < BATCHES; b++) await f();
  const wall = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  const n = BATCHES * BATCH;
  return { imagesPerSecond: n / wall, imagesPerCpuSecond: n / ((c.user + c.system) / 1e6), load: (l0 + loadavg()[0]!) / 2 };
}

await initBackend('wasm');
const rows: Row[] = [];
for (const [name, shape, k] of [['DeepID 55x47x3 -> 1283', [55, 47, 3], 1283], ['DeepID 28x28x1 -> 10', [28, 28, 1], 10]] as const) {
  const net = deepId({ inputShape: [...shape], numClasses: k, seed: 0 });
  const per = shape[0] * shape[1] * shape[2];
  const x = new Float32Array(BATCH * per);
  for (let j = 0; j < x.length; j++) x[j] = ((j * 2654435761) >>> 24) / 255;
  const xt = tf.tensor4d(x, [BATCH, ...shape]);
  rows.push({ model: name, engine: 'tfjs-wasm predict', threads: 1, ...await measure(async () => {
    const y = net.predict(xt) as tf.Tensor;
    await y.data();
    y.dispose();
  }) });
  const bytes = onnxBytes(net);
  for (const threads of [1, 2]) {
    const eng = await OrtEngine.create(bytes, { layout: 'nhwc', inputShape: shape, threads });
    rows.push({ model: name, engine: 'goodnet ort engine', threads, ...await measure(async () => { await eng.predictBatch(x, BATCH); }) });
    await eng.dispose();
    const s = await ort.InferenceSession.create(bytes, { intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all' });
    const feeds = { [s.inputNames[0]!]: new ort.Tensor('float32', x, [BATCH, ...shape]) };
    rows.push({ model: name, engine: 'raw onnxruntime-node', threads, ...await measure(async () => { await s.run(feeds); }) });
    await s.release();
  }
  xt.dispose();
  net.dispose();
}
console.log(`\nforward-only inference, batch ${BATCH}, ${BATCHES} batches per row, ${new Date().toISOString()}, onnxruntime-node ${ort.env.versions.common}, tfjs ${tf.version_core}\n`);
console.log('| model | engine | threads | images/s (wall) | images/CPU-s | load avg (1 min) |');
console.log('|---|---|---:|---:|---:|---:|');
for (const r of rows) console.log(`| ${r.model} | ${r.engine} | ${r.threads} | ${r.imagesPerSecond.toFixed(0)} | ${r.imagesPerCpuSecond.toFixed(0)} | ${r.load.toFixed(2)} |`);
