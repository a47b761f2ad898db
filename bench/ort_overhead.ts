/**
 * What goodnet's ort engine costs over a bare onnxruntime-node session on the same graph:
 * the lab ResNet (28x28x1 -> 10, random weights), batch 64, 40 batches, interleaved 3 rounds of
 * OrtEngine.predictBatch (on views into one big input, and on per-batch copies) and
 * session.run (own tensors, and views). Images per wall second and per CPU second.
 *
 *   npx tsc -p bench && node dist/bench/bench/ort_overhead.js
 */
import * as ort from 'onnxruntime-node';
import { initBackend } from '../src/engine/backend.js';
import { buildArchitecture } from '../src/models/index.js';
import { describeModel } from '../src/io/model.js';
import { ortEngineFor, ortExportOf } from '../src/eval/ort_model.js';

await initBackend('wasm');
const net = buildArchitecture('resnet', { inputShape: [28, 28, 1], numClasses: 10, seed: 0 });
const model = describeModel(net, 'resnet', 'tfjs');
const B = 64, N = 40, per = 784;
const x = new Float32Array(B * N * per).map((_, i) => ((i * 2654435761) >>> 24) / 255);
const eng = await ortEngineFor(model, { threads: 1 });
const sess = await ort.InferenceSession.create(ortExportOf(model).bytes, { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all' });
const copies = Array.from({ length: N }, (_, b) => x.slice(b * B * per, (b + 1) * B * per));
const input = sess.inputNames[0]!;
async function time(f: (b: number) => Promise<unknown>): Promise<string> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let b = 0; b < N; b++) await f(b);
  const c = process.cpuUsage(c0);
  return `${(B * N / ((performance.now() - t0) / 1000)).toFixed(0)} img/s, ${(B * N / ((c.user + c.system) / 1e6)).toFixed(0)} per CPU s`;
}
for (let round = 0; round < 3; round++) {
  console.log('OrtEngine, views  ', await time((b) => eng.predictBatch(x.subarray(b * B * per, (b + 1) * B * per), B)));
  console.log('OrtEngine, copies ', await time((b) => eng.predictBatch(copies[b]!, B)));
  console.log('session.run, own  ', await time((b) => sess.run({ [input]: new ort.Tensor('float32', copies[b]!, [B, 28, 28, 1]) })));
  console.log('session.run, views', await time((b) => sess.run({ [input]: new ort.Tensor('float32', x.subarray(b * B * per, (b + 1) * B * per), [B, 28, 28, 1]) })));
}
await eng.dispose();
await sess.release();
