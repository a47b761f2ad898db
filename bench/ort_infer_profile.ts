/**
 * Where a forward pass's time goes in onnxruntime: its profiler over 100 batches of 64 of a
 * model's ONNX export, 1 intra-op thread, the slowest kernels; with `aligned` the graph after
 * the ort engine's channel-block rewrite (eval/ort_align.ts), else the plain export.
 *
 *   npx tsc -p bench && node dist/bench/bench/ort_infer_profile.js [full-deepid|deepid|vgg|resnet] [plain|aligned]
 */
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { initBackend } from '../src/engine/backend.js';
import { alignPooledChannels } from '../src/eval/ort_align.js';
import { onnxBytes } from '../src/io/onnx_write.js';
import { buildArchitecture } from '../src/models/index.js';
import { nchwcBlockSize } from '../src/models/ort_train.js';

const [which = 'full-deepid', mode = 'plain'] = process.argv.slice(2);
await initBackend('wasm');
const full = which === 'full-deepid';
const shape: [number, number, number] = full ? [55, 47, 3] : [28, 28, 1];
const net = buildArchitecture(full ? 'deepid' : which, { inputShape: shape, numClasses: full ? 1283 : 10, seed: 0 });
let bytes = onnxBytes({ net }, which);
if (mode === 'aligned') bytes = alignPooledChannels(bytes, await nchwcBlockSize());
const prefix = join(tmpdir(), `goodnet-inferprof-${process.pid}`);
const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1, graphOptimizationLevel: 'all', enableProfiling: true, profileFilePrefix: prefix });
const per = shape[0] * shape[1] * shape[2];
const x = new Float32Array(64 * per).map((_, i) => ((i * 2654435761) >>> 24) / 255);
const feeds = { [session.inputNames[0]!]: new ort.Tensor('float32', x, [64, ...shape]) };
const runs = 100;
for (let i = 0; i < runs; i++) await session.run(feeds);
session.endProfiling();
const file = join(tmpdir(), readdirSync(tmpdir()).find((f) => f.startsWith(`goodnet-inferprof-${process.pid}`) && f.endsWith('.json'))!);
const events = JSON.parse(readFileSync(file, 'utf8')) as { cat: string; name: string; dur: number; args?: { op_name?: string } }[];
rmSync(file, { force: true });
const byNode = new Map<string, number>();
let total = 0;
for (const e of events) {
  if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time')) continue;
  const k = `${e.name.replace(/_kernel_time$/, '')} (${e.args?.op_name ?? '?'})`;
  byNode.set(k, (byNode.get(k) ?? 0) + e.dur);
  total += e.dur;
}
console.log(`${which} ${mode}: kernels ${(total / runs / 1000).toFixed(2)} ms per batch of 64 (profiled; the first run included)\n`);
for (const [k, us] of [...byNode].sort((a, b) => b[1] - a[1]).slice(0, 14)) console.log(`${(us / runs / 1000).toFixed(3).padStart(7)} ms ${((100 * us) / total).toFixed(1).padStart(5)}%  ${k}`);
