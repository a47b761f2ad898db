/**
 * The seed's pruning and fine-pruning on the defense contract (clean data only), so
 * `goodnet compare` lists them beside Neural Cleanse, ANP and CLP:
 *
 *  - pruning: the conv before the last pooling layer, channels in ascending order of mean
 *    activation on the clean data; keeps the most pruned model whose clean accuracy (on
 *    that clean data) is within `maxDrop` points (the paper's B'_X with the last-within rule);
 *  - fine-pruning: that model fine-tuned on the clean data (pruned channels held at zero),
 *    the epoch chosen on a held-out part.
 *
 * `goodnet prune` / `goodnet fineprune` keep their own commands and outputs; these adapters
 * only reuse their pieces (graph.ts, sweep.ts, activations.ts, fineprune.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import { channelMeans, tailLabels, type CutActivations } from './activations.js';
import { fineTune, FINE_TUNE_DEFAULTS } from './fineprune.js';
import { findCutPoint, headModel, tailModel } from './graph.js';
import { pruneChannels } from './mask.js';
import { loadCleanData, registerDefense, repairRow, type DefenseInput, type DefenseRun, type ReportSection } from './interface.js';
import { channelOrder, maskFor } from './sweep.js';

export interface PruningOptions {
  /** Clean accuracy budget in percentage points. */
  maxDrop: number;
  layer?: string;
  /** Fine-pruning only. */
  epochs: number;
  learningRate: number;
}

export const PRUNING_DEFAULTS: PruningOptions = { maxDrop: 2, epochs: FINE_TUNE_DEFAULTS.epochs, learningRate: FINE_TUNE_DEFAULTS.learningRate };

export interface PruningDetails {
  conv: string;
  channels: number;
  pruned: number[];
  /** Clean accuracy after pruning k channels, k = 0.. (on the defense's clean data). */
  curve: number[];
  fineTune?: { bestEpoch: number; heldOutAccuracy: number[]; engine?: 'ort' };
  settings: PruningOptions;
}

async function prunedOnClean(input: DefenseInput, o: PruningOptions) {
  const clean = await loadCleanData(input);
  const net = input.model.net;
  const cut = findCutPoint(net, o.layer, input.model.source);
  const head = headModel(net, cut);
  const tail = await tailModel(net, cut);
  // (N, h, w, C) at a pooling cut, (N, C) after a global pooling (a ResNet's cut).
  const values = tf.tidy(() => head.predict(tf.tensor4d(clean.images, [clean.n, ...clean.shape]), { batchSize: input.batchSize ?? 256 }) as tf.Tensor4D | tf.Tensor2D);
  try {
    const a: CutActivations = { values, labels: Int32Array.from(clean.labels), source: input.cleanValid };
    const means = await channelMeans(a);
    const order = channelOrder(means, 'asc');
    const acc = async (k: number) => {
      const p = await tailLabels(tail, a, maskFor(cut.channels, order, k));
      let c = 0;
      for (let i = 0; i < clean.n; i++) if (p[i] === clean.labels[i]) c++;
      return c / clean.n;
    };
    const curve = [await acc(0)];
    let k = 0;
    while (k < cut.channels) {
      const next = await acc(k + 1);
      curve.push(next);
      input.onProgress?.('pruning sweep', k + 1, cut.channels);
      if ((curve[0]! - next) * 100 > o.maxDrop) break;
      k++;
    }
    input.onProgress?.('pruning sweep', cut.channels, cut.channels);
    const pruned = order.slice(0, k);
    return { clean, cut, pruned, curve, repaired: await pruneChannels(net, cut, pruned) };
  } finally {
    values.dispose();
    tail.dispose();
  }
}

function section(title: string, run: DefenseRun<PruningDetails>): ReportSection {
  const d = run.details;
  return {
    title,
    text: [`${d.conv}: pruned ${d.pruned.length} of ${d.channels} channels in ascending order of mean activation on ${run.cleanImages} clean images, ` +
      `the most whose clean accuracy stays within ${d.settings.maxDrop} points (${(d.curve[0]! * 100).toFixed(2)}% -> ${(d.curve[d.pruned.length]! * 100).toFixed(2)}%).` +
      (d.fineTune ? ` Fine-tuned: kept epoch ${d.fineTune.bestEpoch}.` : '')],
  };
}

type Pruned = Awaited<ReturnType<typeof prunedOnClean>>;

/** Prune on the clean data within the budget, then `after` (fine-tuning, or nothing) on the pruned model. */
async function pruneRun(
  defense: string, input: DefenseInput, options: Partial<PruningOptions>,
  after: (r: Pruned, o: PruningOptions) => Promise<PruningDetails['fineTune']>,
): Promise<DefenseRun<PruningDetails>> {
  const o: PruningOptions = { ...PRUNING_DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) };
  const t0 = performance.now();
  const r = await prunedOnClean(input, o);
  const fineTune = await after(r, o);
  return {
    defense, repaired: r.repaired, cleanImages: r.clean.n, seconds: (performance.now() - t0) / 1000,
    details: { conv: r.cut.conv, channels: r.cut.channels, pruned: r.pruned, curve: r.curve, settings: o, ...(fineTune ? { fineTune } : {}) },
  };
}

export const pruning = registerDefense<PruningOptions, PruningDetails>({
  name: 'pruning',
  title: 'Pruning (Liu et al. / CSAW lab)',
  summary: 'prunes the last conv layer in ascending order of mean clean activation, within a clean accuracy budget',
  kind: 'repair',
  defaults: PRUNING_DEFAULTS,
  run: (input, options = {}) => pruneRun('pruning', input, options, async () => undefined),
  rows: (run, m) => repairRow(`pruning (${run.details.pruned.length}/${run.details.channels} of ${run.details.conv}, within ${run.details.settings.maxDrop} pts)`, run, m),
  section: (run) => section('Pruning', run),
});

export const finePruning = registerDefense<PruningOptions, PruningDetails>({
  name: 'fine-pruning',
  title: 'Fine-pruning (Liu, Dolan-Gavitt, Garg 2018)',
  summary: 'pruning within a clean accuracy budget, then fine-tuning on the clean data with the pruned channels held at zero',
  kind: 'repair',
  defaults: PRUNING_DEFAULTS,
  run: (input, options = {}) => pruneRun('fine-pruning', input, options, async (r, o) => {
    const ft = await fineTune(r.repaired, r.cut, r.pruned, r.clean, {
      epochs: o.epochs, learningRate: o.learningRate, seed: input.seed ?? 0, trainEngine: input.trainEngine, onBatch: (e, d, t) => input.onProgress?.(`fine-tune epoch ${e}`, d, t),
    });
    return { bestEpoch: ft.bestEpoch, heldOutAccuracy: ft.history.map((h) => h.heldOutAccuracy), ...(ft.engine === 'ort' ? { engine: ft.engine } : {}) };
  }),
  rows: (run, m) => repairRow(`fine-pruning (${run.details.pruned.length}/${run.details.channels} of ${run.details.conv}, lr ${run.details.settings.learningRate})`, run, m),
  section: (run) => section('Fine-pruning', run),
});
