/**
 * `goodnet prune` as a function: the reference paper's defense end to end.
 *
 *   profile -> sweep (asc, desc) on validation -> pick B'_X per threshold -> save B'_X
 *   -> (only then) test sets: B'_X and GoodNet G_X metrics
 *
 * Outputs (written to a temp folder, renamed into place when complete):
 *   profile.json, summary.json, goodnet.{json,csv,md} (with test sets),
 *   <order>/sweep.csv, <order>/sweep.json, <order>/prune.json,
 *   <order>/models/repaired_<X>.h5 and <order>/models/repaired_<X>/ (tfjs)
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { GoodnetError } from '../errors.js';
import { checkTarget } from '../eval/metrics.js';
import { checkFiniteOutputs, checkFits } from '../eval/predict.js';
import { checkWritable, writeAtomically } from '../io/atomic.js';
import { checkAllLabelled, checkLabels, openDataset, type ImageDataset, type OpenDatasetOptions } from '../io/dataset.js';
import { sha256 } from '../io/hash.js';
import { saveModel, type LoadedModel } from '../io/model.js';
import { pixelOptionsFor, preprocessingFor, type PixelOptions, type Preprocessing } from '../io/preprocess.js';
import { goodnetCsv, markdownGoodNetTable } from './goodnet_tables.js';
import { channelMeans, cutActivations, tailLabels, type CutActivations } from './activations.js';
import { goodnetMetrics } from './goodnet.js';
import { findCutPoint, headModel, tailModel } from './graph.js';
import { maskedCopy } from './mask.js';
import { maskFor, pickThresholds, prepareSweep, sweep } from './sweep.js';
import type { SavedModelPaths, ActivationProfile, FinePruneRow, GoodNetRow, PruneOrder, SweepResult, SweepStep, ThresholdRule } from './types.js';
import { DEFAULT_TRAIN_ENGINE } from '../models/ort_train.js';
import { FINE_TUNE_DEFAULTS, fineTune, readAll, type FineTuneOptions } from './fineprune.js';
import { evaluate } from '../eval/evaluate.js';
import type * as tfl from '@tensorflow/tfjs-layers';

/** Pixel options default to the model file's recorded preprocessing; the B'_X models record what was used. */
export interface PruneOptions extends PixelOptions {
  model: LoadedModel;
  cleanValid: string;
  poisonedValid: string;
  cleanTest?: string;
  poisonedTest?: string;
  target: number;
  out: string;
  orders?: PruneOrder[];
  thresholds?: number[];
  rule?: ThresholdRule;
  /** Conv or pooling layer to prune at (default: the last pooling layer). */
  layer?: string;
  /** Prune at most this many channels. */
  stopAt?: number;
  /** Save B'_X models (default true). */
  saveModels?: boolean;
  overwrite?: boolean;
  layout?: OpenDatasetOptions['layout'];
  batchSize?: number;
  /** Recorded in summary.json, so a reader knows how the outputs were made. */
  command?: string;
  /** Fine-prune every B'_X of `orders` (default: asc): fine-tune on clean validation data, pruned channels held at zero. */
  fineTune?: FineTuneOptions & { orders?: PruneOrder[] };
  log?: (line: string) => void;
  onActivations?: (set: string, done: number, total: number) => void;
  onStep?: (order: PruneOrder, step: SweepStep, lastStep: number) => void;
  onFineTune?: (order: PruneOrder, threshold: number, epoch: number, done: number, total: number, loss: number, accuracy: number) => void;
}

export const PRUNE_DEFAULTS = { orders: ['asc', 'desc'] as PruneOrder[], thresholds: [2, 4, 10], rule: 'first-drop' as ThresholdRule };

export interface InputRecord {
  role: string;
  path: string;
  sha256: string;
  images?: number;
}

export interface PruneSummary {
  command?: string;
  model: { path: string; format: string; inputShape: number[]; numClasses: number };
  target: number;
  /** Pixel divisor (also in `preprocessing`; kept for readers of older summaries). */
  scale: number;
  /** How raw pixels became the model input in this run (recorded with every written model too). */
  preprocessing?: Preprocessing;
  inputs: InputRecord[];
  baseline: { validAccuracy: number; validAsr: number; testAccuracy?: number; testAsr?: number };
  profile: ActivationProfile;
  sweeps: SweepResult[];
  goodnet?: GoodNetRow[];
  finePrune?: FinePruneRow[];
  timings: Record<string, number>;
}

const REALISE_WORDS = {
  zero: 'zero the conv (and batch-norm) weights of pruned channels',
  fold: 'zero the weights that read pruned channels',
  mask: 'get a 1x1 depthwise mask layer after the prune point',
} as const;

function checkThresholds(xs: number[]): void {
  if (xs.length === 0) throw new GoodnetError('no thresholds given');
  for (const x of xs) {
    if (!(x > 0 && x < 100)) throw new GoodnetError(`threshold ${x} is outside (0, 100) percentage points`);
  }
  const dup = xs.find((x, i) => xs.indexOf(x) !== i);
  if (dup !== undefined) throw new GoodnetError(`threshold ${dup} is given twice`);
}

function sweepCsv(s: SweepResult): string {
  const rows = s.steps.map((r) => [r.step, r.channel ?? '', r.fractionPruned.toFixed(6), r.accuracy.toFixed(6), r.asr.toFixed(6)].join(','));
  return `step,channel,fraction_pruned,accuracy,asr\n${rows.join('\n')}\n`;
}

export const ORDER_TITLE: Record<PruneOrder, string> = {
  asc: 'Pruning in ascending order of mean activation (the defense), test sets',
  desc: 'Pruning in descending order of mean activation, test sets',
};

async function openChecked(path: string, model: LoadedModel, o: PruneComputeOptions): Promise<ImageDataset> {
  const ds = await openDataset(path, { ...pixelOptionsFor(model, o), layout: o.layout, expect: model.inputShape });
  checkFits(model, ds);
  checkLabels(ds, model.numClasses);
  checkAllLabelled(ds);
  return ds;
}

async function activationsOf(path: string, role: string, head: ReturnType<typeof headModel>, model: LoadedModel, o: PruneComputeOptions) {
  const ds = await openChecked(path, model, o);
  try {
    if (ds.length === 0) throw new GoodnetError('data set is empty', path);
    await checkFiniteOutputs(model, ds);
    const a = await cutActivations(head, ds, { batchSize: o.batchSize, onProgress: (d, t) => o.onActivations?.(role, d, t) });
    return { a, images: ds.length };
  } finally {
    ds.close();
  }
}

/**
 * Save one repaired model under `<od>/models/`: Keras HDF5 and tfjs always, plus the input's own
 * format when it was ONNX (the original graph with repaired weights, or a clean graph when a
 * mask layer was inserted) or Keras 3 (.keras).
 */
async function saveRepaired(m: LoadedModel, od: string, order: string, name: string): Promise<SavedModelPaths> {
  const rel = (f: string) => `${order}/models/${f}`;
  await saveModel(m, join(od, 'models', `${name}.h5`));
  await saveModel(m, join(od, 'models', name));
  const paths: SavedModelPaths = { keras: rel(`${name}.h5`), tfjs: rel(name) };
  if (m.format === 'onnx') {
    await saveModel(m, join(od, 'models', `${name}.onnx`));
    paths.onnx = rel(`${name}.onnx`);
  }
  if (m.format === 'keras3') {
    await saveModel(m, join(od, 'models', `${name}.keras`));
    paths.keras3 = rel(`${name}.keras`);
  }
  return paths;
}

/** What `computePrune` returns: the summary and what the writing step needs (models stay in memory). */
export interface PruneResult {
  summary: PruneSummary;
  /** The model as pruned (its `preprocessing` is the run's). */
  model: LoadedModel;
  cut: ReturnType<typeof findCutPoint>;
  orders: PruneOrder[];
  thresholds: number[];
  rule: ThresholdRule;
  /** Fine-pruned FP_X networks (owned by the result: `disposePrune` frees them). */
  finePruned: { row: FinePruneRow; net: tfl.LayersModel }[];
  /** performance.now() when the run started (for timings.total). */
  started: number;
}

/** Options of the computing part: everything but where to write. */
export type PruneComputeOptions = Omit<PruneOptions, 'out' | 'overwrite'>;

/** Run the defense; writes `out` and returns what it wrote to summary.json. */
export async function runPrune(o: PruneOptions): Promise<PruneSummary> {
  checkPruneInput(o); // in the order the checks always ran: settings first, then the output folder
  checkWritable(o.out, { overwrite: o.overwrite, folder: true, inputs: [o.model.source, o.cleanValid, o.poisonedValid, o.cleanTest, o.poisonedTest] });
  const r = await computePrune(o);
  try {
    await writePrune(r, o.out, { overwrite: o.overwrite, saveModels: o.saveModels });
    return r.summary;
  } finally {
    disposePrune(r);
  }
}

/** Free the networks a PruneResult holds. */
export function disposePrune(r: PruneResult): void {
  for (const fp of r.finePruned) fp.net.dispose();
  r.finePruned.length = 0;
}

/** Settings checked before any work (and, by runPrune, before the output folder). */
function checkPruneInput(o: PruneComputeOptions): void {
  checkThresholds(o.thresholds ?? PRUNE_DEFAULTS.thresholds);
  checkTarget(o.target, o.model.numClasses);
  if ((o.cleanTest === undefined) !== (o.poisonedTest === undefined)) {
    throw new GoodnetError('give both --clean-test and --poisoned-test, or neither');
  }
}

/**
 * The defense's computing part: profile, sweeps, picks, fine-pruning and test-set tables, all in
 * memory (nothing is written). `writePrune` writes the outputs; the web page uses this directly.
 */
export async function computePrune(o: PruneComputeOptions): Promise<PruneResult> {
  const t0 = performance.now();
  const orders = o.orders ?? PRUNE_DEFAULTS.orders;
  const thresholds = o.thresholds ?? PRUNE_DEFAULTS.thresholds;
  const rule = o.rule ?? PRUNE_DEFAULTS.rule;
  const log = o.log ?? (() => {});
  checkPruneInput(o);
  // Checked before any work; every written model records it.
  const pre = preprocessingFor(o.model, o);
  const model: LoadedModel = { ...o.model, preprocessing: pre };
  const cut = findCutPoint(model.net, o.layer, model.source);
  if (o.stopAt !== undefined && !(Number.isInteger(o.stopAt) && o.stopAt >= 1)) {
    throw new GoodnetError(`--stop-at must be at least one channel, got ${o.stopAt}`);
  }
  const head = headModel(model.net, cut);
  const tail = await tailModel(model.net, cut);
  prepareSweep(tail, cut.channels); // the sweep's engine loads while the head runs
  const timings: Record<string, number> = {};
  // Absolute paths, so `goodnet report` finds the inputs from anywhere.
  const inputs: InputRecord[] = [{ role: 'model', path: resolve(model.source), sha256: await sha256(model.source) }];

  const held: CutActivations[] = [];
  const finePruned: { row: FinePruneRow; net: tfl.LayersModel }[] = [];
  try {
    let t = performance.now();
    const cv = await activationsOf(o.cleanValid, 'clean validation', head, model, o);
    held.push(cv.a);
    const pv = await activationsOf(o.poisonedValid, 'poisoned validation', head, model, o);
    held.push(pv.a);
    timings.validationActivations = (performance.now() - t) / 1000;
    inputs.push({ role: 'clean validation', path: resolve(o.cleanValid), sha256: await sha256(o.cleanValid), images: cv.images });
    inputs.push({ role: 'poisoned validation', path: resolve(o.poisonedValid), sha256: await sha256(o.poisonedValid), images: pv.images });

    const profile: ActivationProfile = {
      poolLayer: cut.pool, convLayer: cut.conv, channels: cut.channels, mean: await channelMeans(cv.a), images: cv.images, source: o.cleanValid,
    };
    log(`pruning ${cut.conv} (${cut.channels} channels): ${cut.reason}; profile at ${cut.pool} over ${cv.images} clean validation images; saved models ${REALISE_WORDS[cut.realise.kind]}`);

    // 1. Sweeps and picks: validation data only.
    const sweeps: SweepResult[] = [];
    for (const order of orders) {
      t = performance.now();
      const s = await sweep(tail, cv.a, pv.a, profile.mean, { order, target: o.target, stopAt: o.stopAt, onStep: (st, last) => o.onStep?.(order, st, last) });
      const picks = pickThresholds(s.steps, s.channelOrder, thresholds, rule, cv.images);
      sweeps.push({ order, poolLayer: cut.pool, convLayer: cut.conv, channels: cut.channels, channelOrder: s.channelOrder, steps: s.steps, picks, seconds: (performance.now() - t) / 1000, stats: s.stats });
      timings[`sweep_${order}`] = (performance.now() - t) / 1000;
    }
    const baseline = { validAccuracy: sweeps[0]!.steps[0]!.accuracy, validAsr: sweeps[0]!.steps[0]!.asr } as PruneSummary['baseline'];

    // 1b. Fine-pruning (validation data only): FP_X from each B'_X.
    if (o.fineTune) {
      t = performance.now();
      const ft = { ...FINE_TUNE_DEFAULTS, trainEngine: DEFAULT_TRAIN_ENGINE, ...Object.fromEntries(Object.entries(o.fineTune).filter(([, v]) => v !== undefined)) } as
        Required<FineTuneOptions> & { orders?: PruneOrder[] };
      const clean = await readAll(o.cleanValid, model.inputShape, pixelOptionsFor(model, o));
      for (const s of sweeps.filter((w) => (ft.orders ?? ['asc']).includes(w.order))) {
        for (const p of s.picks) {
          if (p.step === null) continue;
          const net = await maskedCopy(model.net, cut, p.pruned);
          log(`fine-pruning B'_${p.threshold} (${s.order}): ${ft.epochs} epochs on ${clean.n} clean validation images`);
          const r = await fineTune(net, cut, p.pruned, clean, { ...ft, onBatch: (e, d, tot, l, a) => o.onFineTune?.(s.order, p.threshold, e, d, tot, l, a) });
          finePruned.push({ net, row: {
            order: s.order, threshold: p.threshold, fractionPruned: p.fractionPruned, epochs: ft.epochs, learningRate: ft.learningRate,
            bestEpoch: r.bestEpoch, heldOutAccuracy: r.history.map((h) => h.heldOutAccuracy), seconds: r.seconds,
          } });
        }
      }
      timings.finePrune = (performance.now() - t) / 1000;
    }

    // 2. The models are fixed; only now look at test data.
    let goodnet: GoodNetRow[] | undefined;
    if (o.cleanTest !== undefined && o.poisonedTest !== undefined) {
      t = performance.now();
      const ct = await activationsOf(o.cleanTest, 'clean test', head, model, o);
      held.push(ct.a);
      const pt = await activationsOf(o.poisonedTest, 'poisoned test', head, model, o);
      held.push(pt.a);
      inputs.push({ role: 'clean test', path: resolve(o.cleanTest), sha256: await sha256(o.cleanTest), images: ct.images });
      inputs.push({ role: 'poisoned test', path: resolve(o.poisonedTest), sha256: await sha256(o.poisonedTest), images: pt.images });
      const ones = maskFor(cut.channels, [], 0);
      const bad = { clean: await tailLabels(tail, ct.a, ones), poisoned: await tailLabels(tail, pt.a, ones) };
      const base = goodnetMetrics({
        numClasses: model.numClasses, target: o.target,
        clean: { labels: ct.a.labels, bad: bad.clean, repaired: bad.clean },
        poisoned: { labels: pt.a.labels, bad: bad.poisoned, repaired: bad.poisoned },
      });
      baseline.testAccuracy = base.repaired.accuracy;
      baseline.testAsr = base.repaired.asr;
      goodnet = [];
      for (const s of sweeps) {
        for (const p of s.picks) {
          if (p.step === null) continue;
          const mask = maskFor(cut.channels, s.channelOrder, p.step);
          const m = goodnetMetrics({
            numClasses: model.numClasses, target: o.target,
            clean: { labels: ct.a.labels, bad: bad.clean, repaired: await tailLabels(tail, ct.a, mask) },
            poisoned: { labels: pt.a.labels, bad: bad.poisoned, repaired: await tailLabels(tail, pt.a, mask) },
          });
          goodnet.push({ order: s.order, threshold: p.threshold, fractionPruned: p.fractionPruned, ...m });
        }
      }
      for (const fp of finePruned) {
        const g = goodnet.find((r) => r.order === fp.row.order && r.threshold === fp.row.threshold)!;
        const m = await evaluate({ ...model, net: fp.net }, { clean: o.cleanTest, poisoned: o.poisonedTest, target: o.target, ...pixelOptionsFor(model, o), layout: o.layout, batchSize: o.batchSize });
        fp.row.before = { accuracy: g.repaired.accuracy, asr: g.repaired.asr };
        fp.row.after = { accuracy: m.clean!.accuracy, asr: m.poisoned!.asr };
      }
      timings.test = (performance.now() - t) / 1000;
    }

    const summary: PruneSummary = {
      command: o.command,
      model: { path: model.source, format: model.format, inputShape: model.inputShape, numClasses: model.numClasses },
      target: o.target, scale: pre.scale, preprocessing: pre, inputs, baseline, profile, sweeps, goodnet,
      ...(finePruned.length ? { finePrune: finePruned.map((f) => f.row) } : {}), timings,
    };

    return { summary, model, cut, orders, thresholds, rule, finePruned: finePruned.splice(0), started: t0 };
  } finally {
    tf.dispose(held.map((a) => a.values));
    for (const fp of finePruned) fp.net.dispose();
    // `head` shares its layers with the caller's model: it must not be disposed.
    tail.dispose();
  }
}

/**
 * The defense's writing part: `out` gets profile.json, summary.json, goodnet.{json,csv,md} and per
 * order sweep.{csv,json}, prune.json and the B'_X (and FP_X) models, under a temp name renamed when
 * complete. Sets the picks' `model` paths and timings.write/total in `r.summary`.
 */
export async function writePrune(r: PruneResult, out: string, options: { overwrite?: boolean; saveModels?: boolean } = {}): Promise<void> {
  const { summary, model, cut, orders, thresholds, rule, finePruned } = r;
  const { sweeps, profile, goodnet, inputs, timings } = summary;
  const o = { saveModels: options.saveModels };
  let t: number;
  {
    // 3. Write everything under a temp name; rename when complete.
    // A model with an inserted mask layer no longer matches the author's Keras config.
    const keras = cut.realise.kind === 'mask' ? { kerasConfig: undefined, onnx: undefined } : {};
    await writeAtomically(out, async (dir) => {
      t = performance.now();
      for (const s of sweeps) {
        const od = join(dir, s.order);
        mkdirSync(join(od, 'models'), { recursive: true });
        for (const p of s.picks) {
          if (p.step === null || o.saveModels === false) continue;
          const name = `repaired_${p.threshold}`;
          const net = await maskedCopy(model.net, cut, p.pruned);
          try {
            p.model = await saveRepaired({ ...model, net, ...keras }, od, s.order, name);
          } finally {
            net.dispose();
          }
        }
        for (const fp of finePruned.filter((f) => f.row.order === s.order)) {
          if (o.saveModels === false) continue;
          const name = `fineprune_${fp.row.threshold}`;
          fp.row.model = await saveRepaired({ ...model, net: fp.net, ...keras }, od, s.order, name);
        }
        writeFileSync(join(od, 'sweep.csv'), sweepCsv(s));
        writeFileSync(join(od, 'sweep.json'), `${JSON.stringify(s.steps, null, 1)}\n`);
        writeFileSync(join(od, 'prune.json'), `${JSON.stringify({
          order: s.order, poolLayer: s.poolLayer, convLayer: s.convLayer, channels: s.channels, rule, thresholds,
          channelOrder: s.channelOrder, picks: s.picks, inputs, seconds: s.seconds,
        }, null, 2)}\n`);
      }
      writeFileSync(join(dir, 'profile.json'), `${JSON.stringify(profile, null, 2)}\n`);
      if (goodnet) {
        writeFileSync(join(dir, 'goodnet.json'), `${JSON.stringify(goodnet, null, 2)}\n`);
        writeFileSync(join(dir, 'goodnet.csv'), goodnetCsv(goodnet));
        writeFileSync(join(dir, 'goodnet.md'), `${orders.map((ord) => `${ORDER_TITLE[ord]}\n\n${markdownGoodNetTable(goodnet!, ord)}`).join('\n\n')}\n`);
      }
      timings.write = (performance.now() - t) / 1000;
      timings.total = (performance.now() - r.started) / 1000;
      writeFileSync(join(dir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
    }, { overwrite: options.overwrite, folder: true });
  }
}
