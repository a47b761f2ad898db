/**
 * `npm run bench` part 2: the pruning sweep on non-DeepID models, side by side with a
 * PyTorch peer doing the same cached masked-tail sweep on one thread.
 *
 *   mnist   Keras-2 MNIST-style Conv-AvgPool-Conv-AvgPool-Flatten-Dense-Dense, 28x28x1,
 *           32 channels at the cut (33 steps), --n images per set (default 9,500)
 *   resnet  a small ResNet (stem, two residual blocks with BN, GAP -> Dense), 32x32x3, 32
 *           channels at the cut (the GAP output, 33 steps)
 *
 * Rows: goodnet prune's sweep (runPrune, asc, as the CLI runs it; its CPU time from the same
 * sweep called again directly), goodnet's general
 * tail-mask path, and bench/peer_torch.py --cut-file (the cached cut activations goodnet
 * computed, masked per step, through the same tail: Dense layers in torch, 1 thread, OpenBLAS
 * included; wall and CPU time of its loop).
 * Random weights and pixels: accuracies are meaningless, times are not. Checks that the
 * sweep equals the tail-mask path at every step. Options: --n N, --skip-torch, --skip-ref (no
 * tail-mask row and no equality check), --only mnist|resnet.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import seedrandom from 'seedrandom';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from '../src/engine/backend.js';
import { loadModel, saveModel } from '../src/io/model.js';
import '../src/models/index.js'; // registers the architectures for weights-only Keras files
import { writeCsawData } from '../src/attack/csaw_layout.js';
import { runPrune } from '../src/defense/prune.js';
import { openDataset } from '../src/io/dataset.js';
import { cutActivations } from '../src/defense/activations.js';
import { findCutPoint, headModel, tailModel } from '../src/defense/graph.js';
import { sweep } from '../src/defense/sweep.js';
import { benchNets } from './nets.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const N = arg('n', 9500);
const SKIP_TORCH = process.argv.includes('--skip-torch');
const SKIP_REF = process.argv.includes('--skip-ref');
const log = (s: string) => console.log(s);
const now = () => performance.now() / 1000;
async function bench(name: string, net: tfl.LayersModel, dir: string): Promise<Record<string, unknown>> {
  const [h, w, c] = net.inputs[0]!.shape.slice(1) as number[];
  const path = join(dir, `${name}.h5`);
  await saveModel(net, path);
  const model = await loadModel(path);
  const files = { clean: join(dir, `${name}-clean.h5`), poisoned: join(dir, `${name}-poisoned.h5`) };
  const rng = seedrandom(name);
  for (const k of ['clean', 'poisoned'] as const) {
    const x = new Uint8Array(N * h! * w! * c!);
    for (let i = 0; i < x.length; i++) x[i] = Math.floor(rng() * 256);
    await writeCsawData(files[k], x, Int32Array.from({ length: N }, () => Math.floor(rng() * 10)), N, h!, w!, c!);
  }
  const summary = await runPrune({ model, cleanValid: files.clean, poisonedValid: files.poisoned, target: 0, out: join(dir, `${name}-prune`), orders: ['asc'], saveModels: false });
  const s = summary.sweeps[0]!;
  const cut = findCutPoint(model.net);
  const head = headModel(model.net, cut);
  const tail = await tailModel(model.net, cut);
  const acts = [];
  for (const p of [files.clean, files.poisoned]) {
    const ds = await openDataset(p, { expect: model.inputShape });
    acts.push(await cutActivations(head, ds));
    ds.close();
  }
  // The same sweep again, called directly, for its CPU time (on a loaded machine wall time
  // mostly measures the neighbours).
  const c0 = process.cpuUsage();
  const w0 = now();
  const again = await sweep(tail, acts[0]!, acts[1]!, summary.profile.mean, { order: 'asc', target: 0 });
  const againWall = now() - w0;
  const cu = process.cpuUsage(c0);
  const sweepCpu = (cu.user + cu.system) / 1e6;
  const sameAgain = again.steps.every((st, k) => st.accuracy === s.steps[k]!.accuracy && st.asr === s.steps[k]!.asr);
  const t0 = now();
  const ref = SKIP_REF ? null : await sweep(tail, acts[0]!, acts[1]!, summary.profile.mean, { order: 'asc', target: 0, fast: false });
  const tailMask = ref ? now() - t0 : undefined;
  const equal = ref ? ref.steps.every((st, k) => st.accuracy === s.steps[k]!.accuracy && st.asr === s.steps[k]!.asr) : undefined;
  let torch: Record<string, unknown> | undefined;
  if (!SKIP_TORCH) {
    // The cut activations and the tail's Dense layers, for the peer.
    const cutFile = join(dir, `${name}-cut`);
    mkdirSync(cutFile);
    const meta: Record<string, number[]> = {};
    const put = (file: string, data: Float32Array | Int32Array, shape: number[]) => {
      writeFileSync(join(cutFile, file), Buffer.from(data.buffer, data.byteOffset, data.byteLength));
      meta[file] = shape;
    };
    const denses = tail.layers.filter((l) => l.getClassName() === 'Dense');
    for (const [k, a] of [['clean', acts[0]!], ['poisoned', acts[1]!]] as const) {
      put(k, a.values.dataSync() as Float32Array, a.values.shape);
      put(`${k}_y`, a.labels, [a.labels.length]);
    }
    denses.forEach((l, i) => {
      const [kk, bb] = l.getWeights();
      put(`dense_${i}_kernel`, kk!.dataSync() as Float32Array, kk!.shape);
      put(`dense_${i}_bias`, bb!.dataSync() as Float32Array, bb!.shape);
    });
    writeFileSync(join(cutFile, 'meta.json'), JSON.stringify(meta));
    const acts2 = denses.map((l) => (l.getConfig() as { activation: string }).activation).join(',');
    // One thread: torch.set_num_threads(1) limits OpenMP, not the pool of Debian's OpenBLAS
    // (pthreads build), which otherwise runs the matmuls on a second thread.
    const oneThread = { OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1', MKL_NUM_THREADS: '1' };
    const out = execFileSync('/usr/bin/python3', [join(ROOT, 'bench/peer_torch.py'), '--cut-file', cutFile, '--activations', acts2, '--order', s.channelOrder.join(','), '--threads', '1'], { encoding: 'utf8', env: { ...process.env, ...oneThread } });
    torch = JSON.parse(out.trim().split('\n').at(-1)!) as Record<string, unknown>;
    const tacc = torch.acc as number[][];
    if (!sameAgain) log(`${name}: the direct sweep differs from runPrune's`);
    if (!tacc.every((r, k) => Math.abs(r[0]! - s.steps[k]!.accuracy) < 0.002)) log(`${name}: PyTorch accuracies differ from goodnet's by more than 0.2 points (float32 rounding near ties)`);
  }
  tf.dispose(acts.map((a) => a.values));
  tail.dispose();
  return {
    name, images: N, channels: cut.channels, steps: s.steps.length, cut: cut.pool, prunePoint: cut.conv,
    goodnetSweep: s.seconds, goodnetSweepAgain: againWall, goodnetSweepCpu: sweepCpu, torchCpu: torch?.sweep_cpu_s, sweepParts: s.stats?.seconds, kind: s.stats?.kind ?? s.stats?.path, engine: s.stats?.engine, recomputed: s.stats?.recomputed, outputRuns: s.stats?.outputRuns, tailMask, torch: torch?.sweep_s, torchThreads: torch?.threads, torchOsThreads: torch?.os_threads, equal,
  };
}

async function main(): Promise<void> {
  await initBackend('wasm');
  const dir = mkdtempSync(join(tmpdir(), 'goodnet-bench-any-'));
  try {
    const load0 = loadavg();
    const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : undefined;
    const rows = [];
    // Both nets are built (same seeds whatever runs); --only NAME times one.
    const nets = benchNets();
    for (const [name, net] of [['mnist', nets.mnist], ['resnet', nets.resnet]] as const) if (!only || only === name) rows.push(await bench(name, net, dir));
    const load1 = loadavg();
    const fmt = (x: unknown) => (typeof x === 'number' ? x.toFixed(2) : '-');
    log('');
    log(`Sweep on non-DeepID models: ${N} clean + ${N} poisoned images per model, asc order, head excluded; load average ${load0.map((x) => x.toFixed(2)).join(' ')} before, ${load1.map((x) => x.toFixed(2)).join(' ')} after`);
    log('');
    log('| model | cut (prune point) | steps | goodnet sweep s | path | tail-mask s | PyTorch 1 thread s | goodnet / PyTorch | CPU s: goodnet / PyTorch | equal to tail-mask |');
    log('|---|---|---:|---:|---|---:|---:|---:|---:|---|');
    const ratio = (a: unknown, b: unknown) => (typeof a === 'number' && typeof b === 'number' ? `${(a / b).toFixed(2)}x` : '-');
    for (const r of rows) {
      log(`| ${r.name} | ${r.cut} (${r.prunePoint}) | ${r.steps} | ${fmt(r.goodnetSweep)} | ${r.kind}${r.engine ? `, ${r.engine}` : ''} (${r.recomputed} recomputed) | ${fmt(r.tailMask)} | ${fmt(r.torch)} | ${ratio(r.goodnetSweep, r.torch)} | ` +
        `${fmt(r.goodnetSweepCpu)} / ${fmt(r.torchCpu)} = ${ratio(r.goodnetSweepCpu, r.torchCpu)} | ${r.equal === undefined ? '-' : r.equal ? 'yes' : 'NO'} |`);
    }
    writeFileSync(join(ROOT, 'bench/results_any.json'), `${JSON.stringify({ date: new Date().toISOString(), loadavg: { before: load0, after: load1 }, rows }, null, 2)}\n`);
    if (!rows.every((r) => r.equal !== false)) process.exitCode = 1;
    for (const r of rows) log(`${r.name}: ${JSON.stringify({ parts: r.sweepParts, outputRuns: r.outputRuns, directSweepWall: r.goodnetSweepAgain })}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
