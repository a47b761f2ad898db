/**
 * Where an ort training step's time goes: onnxruntime's profiler over N session runs of the
 * training graph (models/ort_train_graph.ts) of one lab architecture, 28x28x1, batch 64,
 * 1 intra-op thread; time per op type and the slowest nodes.
 *
 *   [THREADS=2] [TOP=15] npx tsc -p bench && node dist/bench/bench/train_ort_profile.js [deepid|vgg|resnet] [runs] [gemm|conv|'{TrainGraphOptions JSON}']
 */
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { initBackend } from '../src/engine/backend.js';
import { buildTrainGraph, type TrainGraphOptions } from '../src/models/ort_train_graph.js';
import { nchwcBlockSize } from '../src/models/ort_train.js';
import { buildArchitecture } from '../src/models/index.js';

const arch = process.argv[2] ?? 'vgg';
const runs = Number(process.argv[3] ?? 20);
const B = Number(process.env.BATCH ?? 64);
await initBackend('wasm');
const net = buildArchitecture(arch, { inputShape: [28, 28, 1], numClasses: 10, seed: 0 });
const opt4 = process.argv[4] ?? 'gemm';
const g = buildTrainGraph(net, B, { nchwcBlock: await nchwcBlockSize(), ...(opt4.startsWith('{') ? (JSON.parse(opt4) as TrainGraphOptions) : { filterGradient: opt4 as 'gemm' | 'conv' }) });
const prefix = join(tmpdir(), `goodnet-ortprof-${process.pid}`);
const session = await ort.InferenceSession.create(g.bytes, { intraOpNumThreads: Number(process.env.THREADS ?? 1), interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all', enableProfiling: true, profileFilePrefix: prefix });
const x = new Float32Array(B * 784).map((_, i) => ((i * 2654435761) >>> 24) / 255);
const y = new Float32Array(B * 10);
for (let i = 0; i < B; i++) y[i * 10 + (i % 10)] = 1;
const feeds: Record<string, ort.Tensor> = { x: new ort.Tensor('float32', x, [B, 28, 28, 1]), y: new ort.Tensor('float32', y, [B, 10]) };
for (const w of g.weightInputs) {
  const v = net.weights[w.weight]!;
  feeds[w.name] = new ort.Tensor('float32', v.read().dataSync() as Float32Array<ArrayBuffer>, v.shape as number[]);
}
await session.run(feeds);
const t0 = performance.now();
for (let i = 0; i < runs; i++) await session.run(feeds);
const ms = (performance.now() - t0) / runs;
session.endProfiling();
await session.release();
// onnxruntime-node's endProfiling returns nothing: the file is <prefix>_<date>.json.
const base = `goodnet-ortprof-${process.pid}`;
const file = join(tmpdir(), readdirSync(tmpdir()).find((f) => f.startsWith(base) && f.endsWith('.json'))!);
const events = JSON.parse(readFileSync(file, 'utf8')) as { cat: string; name: string; dur: number; args?: { op_name?: string } }[];
rmSync(file, { force: true });
const byOp = new Map<string, number>();
const byNode = new Map<string, number>();
let total = 0;
for (const e of events) {
  if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time')) continue;
  const op = e.args?.op_name ?? '?';
  byOp.set(op, (byOp.get(op) ?? 0) + e.dur);
  const node = e.name.replace(/_kernel_time$/, '');
  byNode.set(`${node} (${op})`, (byNode.get(`${node} (${op})`) ?? 0) + e.dur);
  total += e.dur;
}
const per = (us: number) => (us / (runs + 1) / 1000).toFixed(2);
console.log(`${arch}: ${ms.toFixed(1)} ms per session run (wall, ${runs} runs), kernels ${per(total)} ms\n`);
console.log('| op | ms per step | share |\n|:--|--:|--:|');
for (const [op, us] of [...byOp].sort((a, b) => b[1] - a[1])) console.log(`| ${op} | ${per(us)} | ${((100 * us) / total).toFixed(1)}% |`);
// Per layer and pass: node names start with 'layer/' (forward) or 'layer:grad/' (backward).
const byLayer = new Map<string, number>();
for (const [n, us] of byNode) {
  const scope = n.includes('/') ? n.slice(0, n.indexOf('/')) : '(graph)';
  byLayer.set(scope, (byLayer.get(scope) ?? 0) + us);
}
console.log('\n| layer (:grad = backward) | ms per step | share |\n|:--|--:|--:|');
for (const [l, us] of [...byLayer].sort((a, b) => b[1] - a[1])) console.log(`| ${l} | ${per(us)} | ${((100 * us) / total).toFixed(1)}% |`);
console.log('\nslowest nodes:');
for (const [n, us] of [...byNode].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.TOP ?? 15))) console.log(`  ${n}: ${per(us)} ms`);
