/**
 * `npm run bench`: the pruning sweep on YouTube-Face-sized work (the real lab3 DeepID weights,
 * 11,547 clean + 11,547 poisoned generated 55x47x3 images, 60 conv_3 channels), side by side:
 *
 *   goodnet prune's sweep (runPrune, asc only, exactly as `goodnet prune` runs it)
 *   the general tail-mask path (the pre-incremental implementation), first steps, extrapolated
 *   the naive method (zero the channel in the full model, re-run everything), first steps, extrapolated
 *   bench/peer_torch.py: the same cached tail-mask sweep in PyTorch (+ OpenBLAS), all steps
 *
 * Pixels are seeded random; accuracies are meaningless, times are not. Checks that the
 * sweep's accuracy/ASR equal the naive method's and the tail-mask path's on shared steps.
 * Writes bench/results.json. Options: --n N (images per set), --naive-steps K, --skip-torch.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import seedrandom from 'seedrandom';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/engine/backend.js';
import { loadModel, describeModel } from '../src/io/model.js';
import '../src/models/index.js'; // registers the architectures for weights-only Keras files
import { writeCsawData } from '../src/attack/csaw_layout.js';
import { runPrune } from '../src/defense/prune.js';
import { evaluate } from '../src/eval/evaluate.js';
import { openDataset } from '../src/io/dataset.js';
import { cutActivations } from '../src/defense/activations.js';
import { findCutPoint, headModel, tailModel } from '../src/defense/graph.js';
import { pruneChannels } from '../src/defense/mask.js';
import { sweep } from '../src/defense/sweep.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const WEIGHTS = join(ROOT, '../shared/csaw/lab3_sunglasses_bd_weights.h5');
const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const N = arg('n', 11547);
const NAIVE_STEPS = arg('naive-steps', 3);
const SKIP_TORCH = process.argv.includes('--skip-torch');
const [H, W, C] = [55, 47, 3];
const CLASSES = 1283;
const CHANNELS = 60;
const EVALS = CHANNELS + 1; // steps 0..60
const IMAGE_STEPS = 2 * N * EVALS;
// Tail FLOPs per image per step (multiply-add = 2). pool_3 is 5x4x60, conv_4 output 4x3x80.
const FLOP = {
  conv4: 2 * (4 * 3 * 80) * (2 * 2 * 60),
  fc1: 2 * 1200 * 160,
  fc2: 2 * 960 * 160,
  out: 2 * 160 * CLASSES,
  // incremental: one channel's 20 pooled values times its dense rows of fc_1 (20x160) and conv_4 (20x960)
  incr: 2 * 20 * 160 + 2 * 20 * 960,
};
const FULL_TAIL = FLOP.conv4 + FLOP.fc1 + FLOP.fc2 + FLOP.out;
const INCR_TAIL = FLOP.fc2 + FLOP.out + FLOP.incr;

const log = (s: string) => console.log(s);
const now = () => performance.now() / 1000;

function makeSet(seed: string): { x: Uint8Array; y: Int32Array } {
  const rng = seedrandom(seed);
  const x = new Uint8Array(N * H * W * C);
  for (let i = 0; i < x.length; i++) x[i] = Math.floor(rng() * 256);
  const y = Int32Array.from({ length: N }, () => Math.floor(rng() * CLASSES));
  return { x, y };
}

/** Single-thread tfjs-wasm float32 matmul GFLOP/s (1024^3). */
async function wasmMatmulGflops(): Promise<number> {
  const a = tf.randomNormal([1024, 1024]);
  const warm = tf.matMul(a, a);
  await warm.data();
  warm.dispose();
  const reps = 10;
  const t0 = now();
  for (let i = 0; i < reps; i++) {
    const r = tf.matMul(a, a);
    await r.data();
    r.dispose();
  }
  const s = now() - t0;
  a.dispose();
  return (2 * 1024 ** 3 * reps) / s / 1e9;
}

interface Row { method: string; seconds: number; measuredSteps: string; flopPerImageStep: number }

async function main(): Promise<void> {
  await initBackend('wasm');
  const dir = mkdtempSync(join(tmpdir(), 'goodnet-bench-'));
  const rows: Row[] = [];
  const checks: string[] = [];
  try {
    log(`goodnet prune sweep bench: ${N} clean + ${N} poisoned generated ${H}x${W}x${C} images, lab3 DeepID weights, ${CHANNELS} conv_3 channels, ${availableParallelism()} cores`);
    const model = await loadModel(WEIGHTS);
    const files = { clean: join(dir, 'clean.h5'), poisoned: join(dir, 'poisoned.h5') };
    for (const [k, seed] of [['clean', 'bench-clean'], ['poisoned', 'bench-poisoned']] as const) {
      const d = makeSet(seed);
      await writeCsawData(files[k], d.x, d.y, N, H, W, C);
    }
    const wasmPeak = await wasmMatmulGflops();
    log(`tfjs-wasm matmul (1 thread): ${wasmPeak.toFixed(1)} GFLOP/s`);

    // 1. goodnet prune, exactly as the CLI runs it (asc only, no models saved).
    const rss0 = process.resourceUsage().maxRSS;
    const summary = await runPrune({
      model, cleanValid: files.clean, poisonedValid: files.poisoned, target: 0, out: join(dir, 'prune'), orders: ['asc'], saveModels: false,
    });
    const rssPrune = process.resourceUsage().maxRSS;
    const s = summary.sweeps[0]!;
    log(`goodnet prune: head ${summary.timings.validationActivations!.toFixed(1)} s, sweep ${s.seconds.toFixed(2)} s (${s.stats?.path}, ${s.stats?.recomputed} image-steps recomputed exactly, output layer run on ${s.stats?.outputRuns} of ${IMAGE_STEPS} image-steps; incremental ${s.stats?.seconds?.incremental.toFixed(2)} s, recompute ${s.stats?.seconds?.recompute.toFixed(2)} s), peak RSS ${(rssPrune / 1024).toFixed(0)} MiB`);
    // The output layer runs only where an image's label could have changed (stats.outputRuns).
    const sweepFlop = s.stats?.outputRuns === undefined ? INCR_TAIL : INCR_TAIL - FLOP.out + (FLOP.out * s.stats.outputRuns) / IMAGE_STEPS;
    rows.push({ method: `goodnet prune sweep (${s.stats?.path}, ${availableParallelism()} workers)`, seconds: s.seconds, measuredSteps: 'all 61', flopPerImageStep: sweepFlop });

    // 2. The general tail-mask path (the implementation before the incremental one), first steps.
    const cut = findCutPoint(model.net);
    const head = headModel(model.net, cut);
    const tail = await tailModel(model.net, cut);
    const acts = [];
    for (const p of [files.clean, files.poisoned]) {
      const ds = await openDataset(p, { expect: model.inputShape });
      acts.push(await cutActivations(head, ds));
      ds.close();
    }
    let t0 = now();
    const tm = await sweep(tail, acts[0]!, acts[1]!, summary.profile.mean, { order: 'asc', target: 0, stopAt: NAIVE_STEPS, fast: false });
    const tmSeconds = ((now() - t0) / (NAIVE_STEPS + 1)) * EVALS;
    rows.push({ method: 'tail-mask path (previous goodnet)', seconds: tmSeconds, measuredSteps: `0..${NAIVE_STEPS}, x${EVALS}/${NAIVE_STEPS + 1}`, flopPerImageStep: FULL_TAIL });
    tf.dispose(acts.map((a) => a.values));
    tail.dispose();

    // 3. Naive: prune the full model, re-run everything on both sets, first steps.
    t0 = now();
    for (let k = 0; k <= NAIVE_STEPS; k++) {
      const net = await pruneChannels(model.net, cut.conv, s.channelOrder.slice(0, k));
      const r = await evaluate(describeModel(net, 'pruned', 'tfjs'), { clean: files.clean, poisoned: files.poisoned, target: 0 });
      net.dispose();
      const fast = s.steps[k]!;
      const ok = r.clean!.accuracy === fast.accuracy && r.poisoned!.asr === fast.asr
        && tm.steps[k]!.accuracy === fast.accuracy && tm.steps[k]!.asr === fast.asr;
      checks.push(`step ${k}: sweep acc ${fast.accuracy} asr ${fast.asr}; naive acc ${r.clean!.accuracy} asr ${r.poisoned!.asr}; tail-mask acc ${tm.steps[k]!.accuracy} asr ${tm.steps[k]!.asr}: ${ok ? 'equal' : 'DIFFERENT'}`);
    }
    const naiveSeconds = ((now() - t0) / (NAIVE_STEPS + 1)) * EVALS;
    rows.push({ method: 'naive (prune full model, re-run all)', seconds: naiveSeconds, measuredSteps: `0..${NAIVE_STEPS}, x${EVALS}/${NAIVE_STEPS + 1}`, flopPerImageStep: FULL_TAIL });

    // 4. PyTorch peer.
    let torch: Record<string, unknown> | undefined;
    if (!SKIP_TORCH) {
      const out = execFileSync('/usr/bin/python3', [join(ROOT, 'bench/peer_torch.py'), '--weights', WEIGHTS, '--n', String(N), '--steps', String(CHANNELS)], { encoding: 'utf8' });
      torch = JSON.parse(out.trim().split('\n').at(-1)!) as Record<string, unknown>;
      rows.push({ method: `PyTorch ${torch.torch} peer (tail-mask, ${torch.threads} threads)`, seconds: torch.sweep_s as number, measuredSteps: 'all 61', flopPerImageStep: FULL_TAIL });
    }
    const peak = (torch?.matmul_gflops as number | undefined) ?? wasmPeak * availableParallelism();
    const peerSeconds = torch ? (torch.sweep_s as number) : NaN;
    const table = rows.map((r) => ({
      method: r.method,
      seconds: r.seconds,
      imageStepsPerSecond: IMAGE_STEPS / r.seconds,
      ratioToPeer: r.seconds / peerSeconds,
      gflopDone: (IMAGE_STEPS * r.flopPerImageStep) / 1e9,
      gflops: (IMAGE_STEPS * r.flopPerImageStep) / r.seconds / 1e9,
      fractionOfPeak: (IMAGE_STEPS * r.flopPerImageStep) / r.seconds / 1e9 / peak,
      measured: r.measuredSteps,
    }));
    const fmt = (x: number, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : '-');
    log('');
    log(`Sweep of ${EVALS} evaluations (steps 0..${CHANNELS}) x ${2 * N} images = ${IMAGE_STEPS} image-steps; head (conv_1..pool_3) excluded everywhere.`);
    log(`Tail work per image-step: full tail ${(FULL_TAIL / 1e6).toFixed(3)} MFLOP; incremental ${(INCR_TAIL / 1e6).toFixed(3)} MFLOP with the output layer every step, ${(sweepFlop / 1e6).toFixed(3)} MFLOP as run (output layer on ${(100 * (s.stats?.outputRuns ?? IMAGE_STEPS) / IMAGE_STEPS).toFixed(1)}% of image-steps).`);
    log(`Peak: OpenBLAS matmul ${fmt(torch?.matmul_gflops as number ?? NaN, 1)} GFLOP/s (${torch?.threads ?? '-'} threads, ${torch?.blas ?? '-'}); tfjs-wasm matmul ${fmt(wasmPeak, 1)} GFLOP/s per thread. Fraction of peak uses ${fmt(peak, 1)}.`);
    log('');
    log('| method | seconds | image-steps/s | vs PyTorch | GFLOP done | GFLOP/s | of peak | measured steps |');
    log('|---|---:|---:|---:|---:|---:|---:|---|');
    for (const r of table) {
      log(`| ${r.method} | ${fmt(r.seconds)} | ${r.imageStepsPerSecond.toFixed(0)} | ${fmt(r.ratioToPeer)}x | ${fmt(r.gflopDone, 0)} | ${fmt(r.gflops, 1)} | ${fmt(100 * r.fractionOfPeak, 0)}% | ${r.measured} |`);
    }
    log('');
    log(`Naive and tail-mask rows ran steps 0..${NAIVE_STEPS} only and are extrapolated to ${EVALS} evaluations.`);
    log(`goodnet sweep vs naive: ${fmt(naiveSeconds / s.seconds, 1)}x faster; vs PyTorch: ${fmt(s.seconds / peerSeconds)}x the time.`);
    log(`Peak RSS after goodnet prune: ${(rssPrune / 1024).toFixed(0)} MiB (before it: ${(rss0 / 1024).toFixed(0)} MiB; includes the generated data and workers).`);
    log('Exactness (accuracy/ASR on steps both ran):');
    for (const c of checks) log(`  ${c}`);
    const allEqual = checks.every((c) => c.endsWith('equal'));
    const resultsFile = join(ROOT, 'bench/results.json');
    const goals = existsSync(resultsFile) ? (JSON.parse(readFileSync(resultsFile, 'utf8')) as { goals?: unknown }).goals : undefined;
    writeFileSync(resultsFile, `${JSON.stringify({
      goals, // bench/goals.ts's numbers, kept
      date: new Date().toISOString(), images: N, channels: CHANNELS, cores: availableParallelism(), table, torch, wasmMatmulGflopsPerThread: wasmPeak,
      flopPerImageStep: { fullTail: FULL_TAIL, incremental: INCR_TAIL }, peakRssMiB: rssPrune / 1024, recomputed: s.stats?.recomputed, outputRuns: s.stats?.outputRuns, sweepSeconds: s.stats?.seconds,
      headSeconds: { goodnet: summary.timings.validationActivations, torch: torch?.head_s }, checks, allEqual,
    }, null, 2)}\n`);
    if (!allEqual) {
      log('MISMATCH between the sweep and the reference');
      process.exitCode = 1;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
