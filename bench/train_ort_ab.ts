/**
 * A/B of two ort training-graph variants (TrainGraphOptions as JSON, plus an optional
 * "session" key with onnxruntime session options) on one lab architecture, 28x28x1, batch 64,
 * 1 intra-op thread unless "session" says otherwise (NCHWc block asked of onnxruntime unless
 * the options set nchwcBlock): session runs alternated, median wall and CPU ms per run, so both
 * variants see the same neighbours on a loaded machine.
 *
 *   npx tsc -p bench && node dist/bench/bench/train_ort_ab.js vgg '{}' '{"maxPoolBackward":"argmax"}' [runs]
 *   node dist/bench/bench/train_ort_ab.js resnet '{"session":{"intraOpNumThreads":2}}' '{"session":{"intraOpNumThreads":2,"executionMode":"parallel","interOpNumThreads":2}}'
 */
import * as ort from 'onnxruntime-node';
import { initBackend } from '../src/engine/backend.js';
import { buildTrainGraph, type TrainGraphOptions } from '../src/models/ort_train_graph.js';
import { nchwcBlockSize } from '../src/models/ort_train.js';
import { buildArchitecture } from '../src/models/index.js';

const [arch = 'vgg', a = '{}', b = '{}', runsArg = '30'] = process.argv.slice(2);
const runs = Number(runsArg);
const B = Number(process.env.BATCH ?? 64);
await initBackend('wasm');
const net = buildArchitecture(arch, { inputShape: [28, 28, 1], numClasses: 10, seed: 0 });
const x = new Float32Array(B * 784).map((_, i) => ((i * 2654435761) >>> 24) / 255);
const y = new Float32Array(B * 10);
for (let i = 0; i < B; i++) y[i * 10 + (i % 10)] = 1;
async function setUp(spec: TrainGraphOptions & { session?: ort.InferenceSession.SessionOptions }) {
  const { session: sessionOptions, ...opts } = spec;
  const g = buildTrainGraph(net, B, { nchwcBlock: await nchwcBlockSize(), ...opts });
  const session = await ort.InferenceSession.create(g.bytes, { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all', ...sessionOptions });
  const feeds: Record<string, ort.Tensor> = { x: new ort.Tensor('float32', x, [B, 28, 28, 1]), y: new ort.Tensor('float32', y, [B, 10]) };
  for (const w of g.weightInputs) {
    const v = net.weights[w.weight]!;
    feeds[w.name] = new ort.Tensor('float32', v.read().dataSync() as Float32Array<ArrayBuffer>, v.shape as number[]);
  }
  await session.run(feeds);
  return { session, feeds, wall: [] as number[], cpu: [] as number[] };
}
const variants = [await setUp(JSON.parse(a) as TrainGraphOptions), await setUp(JSON.parse(b) as TrainGraphOptions)];
for (let i = 0; i < runs; i++) {
  for (const v of variants) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await v.session.run(v.feeds);
    v.wall.push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    v.cpu.push((c.user + c.system) / 1000);
  }
}
const med = (xs: number[]) => [...xs].sort((p, q) => p - q)[xs.length >> 1]!;
[a, b].forEach((o, i) => console.log(`${arch} ${o}: median ${med(variants[i]!.wall).toFixed(1)} ms wall, ${med(variants[i]!.cpu).toFixed(1)} ms CPU per step`));
