/**
 * Training throughput of the ort training engine (models/ort_train*.ts: forward + backward as
 * one onnxruntime-node session run, Adam applied by the same tfjs optimizer) against the tfjs
 * engine (tfjs wasm, 1 thread, the default) and the PyTorch peer (bench/train_peer_torch.py,
 * 1 and 2 threads), side by side in one run, for the lab architectures at 28x28x1, 10
 * classes, Adam, batch 64, random data. goodnet runs through `train()` (the loop `goodnet
 * attack` uses), timed from the end of the first batch to the end of the last (session
 * creation and the first step left out, as the peer's 5 warm-up steps are). Also the bare
 * session run (OrtTrainer.step, no optimizer): what the graph itself costs.
 *
 *   npx tsc -p bench && node dist/bench/bench/train_ort.js [--batches 30] [--arch deepid,vgg,resnet] [--repeat 1]
 *
 * With --repeat R every trainer runs R times, interleaved, and each row shows its best run (wall
 * and CPU rates are each the best of the R): on a machine shared with other work the best run
 * is the one least disturbed by it.
 *
 * Prints one table of ratios (against PyTorch's better thread count) with the load average,
 * and writes the raw numbers to bench/results_train_ort.json.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/engine/backend.js';
import { OrtTrainer } from '../src/models/ort_train.js';
import { buildArchitecture } from '../src/models/index.js';
import { train } from '../src/models/train.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const argOf = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const BATCHES = Number(argOf('batches') ?? 30);
const ARCHS = (argOf('arch') ?? 'deepid,vgg,resnet').split(',') as Arch[];
const BATCH = 64;
const REPEAT = Number(argOf('repeat') ?? 1);
type Arch = 'deepid' | 'vgg' | 'resnet';
const ARCH_NAME: Record<Arch, string> = { deepid: 'DeepID', vgg: 'VGG-BN', resnet: 'ResNet' };

interface Rate { engine: string; imagesPerSecond: number; imagesPerCpuSecond: number; load: number }

function dataset(n: number) {
  const images = new Uint8Array(n * 784);
  for (let i = 0; i < images.length; i++) images[i] = (i * 2654435761) >>> 24;
  const labels = Int32Array.from({ length: n }, (_, i) => i % 10);
  return { images, labels, n, shape: [28, 28, 1] as [number, number, number] };
}

async function viaTrain(arch: Arch, engine: 'tfjs' | 'ort', threads: number): Promise<Rate> {
  const n = (BATCHES + 1) * BATCH;
  const set = dataset(n);
  const net = buildArchitecture(arch, { inputShape: set.shape, numClasses: 10, seed: 0 });
  let t0 = 0, c0 = process.cpuUsage(), t1 = 0, c1 = c0;
  const before = loadavg()[0]!;
  await train(net, set, {
    epochs: 1, batchSize: BATCH, scale: 255, threads, engine,
    onBatch: (_e, done) => {
      if (done === BATCH) { t0 = performance.now(); c0 = process.cpuUsage(); }
      if (done === n) { t1 = performance.now(); c1 = process.cpuUsage(c0); }
    },
  });
  net.dispose();
  const images = BATCHES * BATCH;
  const name = engine === 'tfjs' ? `goodnet train(), tfjs ${tf.version_core} ${tf.getBackend()}, ${threads} thread` : `goodnet train({engine: 'ort'}), ${threads} intra-op thread${threads > 1 ? 's' : ''}`;
  return { engine: name, imagesPerSecond: images / ((t1 - t0) / 1000), imagesPerCpuSecond: images / ((c1.user + c1.system) / 1e6), load: (before + loadavg()[0]!) / 2 };
}

/** The session run alone (OrtTrainer.step on a fixed batch; no optimizer step, weights unchanged). */
async function bareStep(arch: Arch, threads: number): Promise<Rate> {
  const net = buildArchitecture(arch, { inputShape: [28, 28, 1], numClasses: 10, seed: 0 });
  const x = new Float32Array(BATCH * 784);
  for (let i = 0; i < x.length; i++) x[i] = ((i * 2654435761) >>> 24) / 255;
  const y = new Float32Array(BATCH * 10);
  for (let i = 0; i < BATCH; i++) y[i * 10 + (i % 10)] = 1;
  const tr = await OrtTrainer.create(net, { threads });
  const before = loadavg()[0]!;
  try {
    await tr.step(x, y, BATCH); // session creation
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < BATCHES; i++) await tr.step(x, y, BATCH);
    const wall = (performance.now() - t0) / 1000;
    const c = process.cpuUsage(c0);
    const images = BATCHES * BATCH;
    return { engine: `OrtTrainer.step alone, ${threads} data-parallel thread${threads > 1 ? 's' : ''}`, imagesPerSecond: images / wall, imagesPerCpuSecond: images / ((c.user + c.system) / 1e6), load: (before + loadavg()[0]!) / 2 };
  } finally {
    await tr.dispose();
    net.dispose();
  }
}

function torch(arch: Arch, threads: number): Rate | undefined {
  const before = loadavg()[0]!;
  try {
    const out = execFileSync('/usr/bin/python3', [join(ROOT, 'bench', 'train_peer_torch.py'), '--arch', arch, '--batches', String(BATCHES), '--threads', String(threads)],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const r = JSON.parse(out.trim().split('\n').at(-1)!) as { torch: string; imagesPerSecond: number; imagesPerCpuSecond: number };
    return { engine: `PyTorch ${r.torch}, ${threads} thread${threads > 1 ? 's' : ''}`, imagesPerSecond: r.imagesPerSecond, imagesPerCpuSecond: r.imagesPerCpuSecond, load: (before + loadavg()[0]!) / 2 };
  } catch (err) {
    console.error(`PyTorch peer unavailable: ${(err as Error).message.split('\n')[0]}`);
    return undefined;
  }
}

await initBackend('wasm');
const started = new Date().toISOString();
const loadStart = loadavg();
const results: Record<string, Rate[]> = {};
console.log(`training throughput, 28x28x1, 10 classes, Adam, batch ${BATCH}, ${BATCHES} timed batches, best of ${REPEAT} run${REPEAT > 1 ? 's' : ''}; load average at start ${loadStart.map((l) => l.toFixed(1)).join(' ')}\n`);
console.log('| model | trainer | img/s | img/CPU s | vs PyTorch best (wall) | vs PyTorch best (CPU) | load |');
console.log('|:--|:--|--:|--:|--:|--:|--:|');
for (const arch of ARCHS) {
  // Interleaved, so every trainer sees the same neighbours; best of REPEAT runs each.
  const runs: (Rate | undefined)[][] = [];
  for (let rep = 0; rep < REPEAT; rep++) {
    runs.push([await viaTrain(arch, 'tfjs', 1), torch(arch, 1), await viaTrain(arch, 'ort', 1), torch(arch, 2), await viaTrain(arch, 'ort', 2), await bareStep(arch, 1)]);
  }
  const best = (i: number): Rate | undefined => {
    const rs = runs.map((r) => r[i]).filter((r): r is Rate => r !== undefined);
    if (rs.length === 0) return undefined;
    return { ...rs[0]!, imagesPerSecond: Math.max(...rs.map((r) => r.imagesPerSecond)), imagesPerCpuSecond: Math.max(...rs.map((r) => r.imagesPerCpuSecond)),
      load: rs.reduce((a, r) => a + r.load, 0) / rs.length };
  };
  const [tf1, t1, o1, t2, o2, bare] = [0, 1, 2, 3, 4, 5].map(best);
  const rows = [tf1!, o1!, o2!, bare!];
  const peers = [t1, t2].filter((r): r is Rate => r !== undefined);
  rows.push(...peers);
  const top = peers.reduce<Rate | undefined>((a, r) => (!a || r.imagesPerSecond > a.imagesPerSecond ? r : a), undefined);
  const bestCpu = peers.reduce<Rate | undefined>((a, r) => (!a || r.imagesPerCpuSecond > a.imagesPerCpuSecond ? r : a), undefined);
  for (const r of rows) {
    const ratio = top ? `${(r.imagesPerSecond / top.imagesPerSecond).toFixed(2)}x` : '-';
    const ratioCpu = bestCpu ? `${(r.imagesPerCpuSecond / bestCpu.imagesPerCpuSecond).toFixed(2)}x` : '-';
    console.log(`| ${ARCH_NAME[arch]} | ${r.engine} | ${r.imagesPerSecond.toFixed(0)} | ${r.imagesPerCpuSecond.toFixed(0)} | ${ratio} | ${ratioCpu} | ${r.load.toFixed(1)} |`);
  }
  results[arch] = rows;
  results[`${arch}:runs`] = runs.flat().filter((r): r is Rate => r !== undefined);
}
console.log(`\nload average at end ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
writeFileSync(join(ROOT, 'bench', 'results_train_ort.json'), `${JSON.stringify({ started, batches: BATCHES, batch: BATCH, repeat: REPEAT, loadStart, loadEnd: loadavg(), results }, null, 1)}\n`);
