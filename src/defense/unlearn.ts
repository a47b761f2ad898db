/**
 * Trigger unlearning: Neural Cleanse's reversal for *every* label, then fine-tuning on the
 * clean data with reversed triggers stamped on a share of it (true labels kept), in rounds,
 * then pruning what those triggers excite. By default (`labels: 'flagged'`, since session 20)
 * Neural Cleanse's anomaly index on the round-1 norms decides which triggers are stamped, and
 * a model where it flags nothing is returned unchanged: on the lab BadNets this met ASR <= 2%
 * within 2 points on more models than stamping every trigger below the median
 * (`'below-median'`, the earlier default, which needs no detection and also unlearns a clean
 * model's natural "triggers", at a cost to its accuracy), and it leaves a clean model alone.
 * (BTI-DBF's unlearning and Neural Cleanse's mitigation work with one, detected, trigger.)
 *
 *  1. The clean data are split once: `holdOut` (20%) is held out and never trained on or
 *     reversed on; the rest reverses triggers and trains.
 *  2. Round 1: reverse a trigger for every label (`reverseTriggers`, the Neural Cleanse
 *     optimisation, `reverseEpochs` 30 by default); take the triggers that reached the attack
 *     success threshold with a norm below the median (`labels: 'below-median'`: large
 *     "triggers" are the labels' own shapes, and unlearning them costs clean accuracy), all of
 *     them (`'all'`), or those flagged (`'flagged'`, the default, below). Add stamped copies of `share` of the training images (the
 *     triggers in turn, true labels kept) to the training images, which all stay. The default
 *     `share` 1 (since session 21; 0.5 before) pairs every training image with a stamped copy
 *     of itself under the same label, so each step sees the trigger make no difference.
 *  3. Fine-tune (Adam, lr 1e-4, `epochs` epochs); after each epoch measure, on the held-out
 *     images, clean accuracy and "stamped accuracy": the held-out images stamped with the
 *     round's triggers in turn, scored against their *true* labels. Keep the epoch with the
 *     highest stamped accuracy whose clean accuracy is within `maxDrop` (2) points of the
 *     original model's (epoch 0, no change, always qualifies).
 *  4. Round r > 1: reverse every label again on the unlearned model, starting from the last
 *     triggers. A label whose new trigger still reaches the threshold with a norm below the
 *     first round's median norm "still works"; those triggers join the stamped ones and the
 *     round's fine-tuning runs. When none still works, or after `rounds` rounds, stop.
 *  With `labels: 'flagged'` (detection-gated unlearning) round 1 stamps only the labels that
 *  Neural Cleanse's anomaly index flags (nc.ts's log-scale MAD index of round 1's norms, as
 *  `goodnet nc`); nothing flagged: the model is returned unchanged. Later rounds re-reverse
 *  only the flagged labels and go on while one still reaches the threshold below the first
 *  round's median norm; the pruning's gate is "some label flagged".
 *
 *  5. Prune what the stamped triggers excite (excited.ts, Neural Cleanse's own neuron
 *     pruning), when some round-1 trigger's norm is below `pruneNorm` (0.5) x the first round's
 *     median (else nothing is pruned): the prune point's channels ranked by how much the triggers raise their mean
 *     activation on the held-out images (read from the original model, `pruneRank`), pruned
 *     most excited first while the held-out clean accuracy stays within `pruneDrop` points of
 *     the unlearned model's. The reversed masks miss part of the real trigger, so unlearning
 *     alone leaves a few percent of it working; the channels it excited are what carry it.
 *
 * Only clean data and triggers reversed from clean data choose anything; nothing poisoned.
 */
import { firstKernelLayer, scaleKernel } from './fineprune.js';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { GoodnetError } from '../errors.js';
import seedrandom from 'seedrandom';
import { datasetAccuracy, permutation, train, type TrainingSet } from '../models/train.js';
import { cloneNet } from './graph.js';
import {
  loadCleanData, registerDefense, repairRow, repairedSentence, splitSet, type Defense, type DefenseInput, type DefenseRun, type ReportSection,
} from './interface.js';
import { NC_DEFAULTS, anomalyIndices, flaggedLabels, reverseTriggers, stampWith, type NcOptions, type NcTriggers } from './nc.js';
import { percent as pct } from '../io/table.js';
import { pruneExcited, type ExcitedPruneRecord, type Trigger } from './excited.js';

export type UnlearnLabels = 'all' | 'below-median' | 'flagged';
export const UNLEARN_LABELS: readonly UnlearnLabels[] = ['all', 'below-median', 'flagged'];

export interface UnlearnOptions {
  /**
   * Round 1 stamps the triggers of every label that reached the threshold ('all'), only those below the median norm
   * ('below-median'), or only the labels Neural Cleanse's anomaly index flags ('flagged': nc.ts's log-scale MAD index
   * of round 1's norms above `anomalyThreshold`, below the median); with 'flagged' and nothing flagged,
   * the model is returned unchanged, later rounds re-reverse only the flagged labels, and the pruning's gate is
   * "some label flagged" instead of `pruneNorm`.
   */
  labels: UnlearnLabels;
  /** `labels: 'flagged'`: a label below the median whose anomaly index (log norms) exceeds this is flagged (nc.ts's default, 2). */
  anomalyThreshold: number;
  /**
   * `labels: 'flagged'`: each flagged label's trigger is reversed this many times in round 1 (the scan's, then
   * `starts - 1` more from fresh random starts with other seeds, on the same clean images); each of those that
   * reaches the threshold with a norm below the scan's median is stamped too (more of a diffuse trigger covered).
   */
  starts: number;
  /** At most this many reversal + unlearning rounds. */
  rounds: number;
  /** Share of the training images stamped with a reversed trigger (true labels kept). */
  share: number;
  /** Fine-tuning epochs per round (the best by the held-out criterion is kept). */
  epochs: number;
  learningRate: number;
  batchSize: number;
  /** Share of the clean images held out to choose the epoch (never trained or reversed on). */
  holdOut: number;
  /** Held-out clean accuracy may fall at most this many points below the original model's. */
  maxDrop: number;
  /** Trigger reversal (Neural Cleanse's optimisation): epochs per label and the other settings. */
  reverseEpochs: number;
  reverseStepsPerEpoch: number;
  reverseBatchSize: number;
  attackSuccess: number;
  /**
   * After the rounds, prune the prune point's channels that the stamped triggers excite
   * (excited.ts), ranked on the original model's activations or the unlearned one's; 'none': no pruning.
   */
  pruneRank: 'none' | 'original' | 'unlearned';
  /**
   * Prune only when some trigger reversed in round 1 has a mask norm below this share of that
   * round's median norm (an outlier: a backdoor's trigger is far smaller than a label's own
   * shape); when there is none, nothing is pruned. (The channels are ranked by every stamped trigger.)
   */
  pruneNorm: number;
  /**
   * The pruning's held-out clean budget: points below the unlearned model's held-out accuracy,
   * and never below `maxDrop` points under the original's (the budget the epochs obey too).
   */
  pruneDrop: number;
}

export const UNLEARN_DEFAULTS: UnlearnOptions = {
  labels: 'flagged', anomalyThreshold: NC_DEFAULTS.anomalyThreshold, starts: 1, rounds: 3, share: 1, epochs: 10, learningRate: 1e-4, batchSize: 64, holdOut: 0.2, maxDrop: 2,
  reverseEpochs: 30, reverseStepsPerEpoch: NC_DEFAULTS.stepsPerEpoch, reverseBatchSize: NC_DEFAULTS.batchSize, attackSuccess: NC_DEFAULTS.attackSuccess,
  pruneRank: 'original', pruneDrop: 1, pruneNorm: 0.5,
};

export interface UnlearnEpoch { epoch: number; loss: number; cleanAccuracy: number; stampedAccuracy: number }

export interface UnlearnRound {
  round: number;
  /** Every label's reversed trigger in this round: mask L1 norm, whether it reached the threshold, whether it was stamped. */
  labels: { label: number; norm: number; reached: boolean; stamped: boolean }[];
  /** Triggers stamped in this round (this round's plus the earlier rounds'). */
  triggers: number;
  stampedImages: number;
  epochs: UnlearnEpoch[];
  bestEpoch: number;
  reverseSeconds: number;
  seconds: number;
  /** Round 1 with `starts` > 1: the flagged labels' further reversals (start 2, 3, ...). */
  starts?: { label: number; start: number; norm: number; reached: boolean; stamped: boolean }[];
}

export interface UnlearnDetails {
  /** Held-out clean accuracy of the original model. */
  baseline: number;
  heldOut: number;
  /** The first round's median mask norm ("still works" below it in later rounds). */
  median: number;
  rounds: UnlearnRound[];
  /** Why the rounds stopped ('nothing flagged': `labels: 'flagged'` and no label flagged, model unchanged). */
  stopped: 'rounds' | 'no trigger works' | 'none reached' | 'nothing flagged';
  /**
   * `labels: 'flagged'` only: the labels flagged in round 1 and every label's anomaly index there
   * (log-scale MAD of the round-1 norms, nc.ts's; by label).
   */
  flagged?: number[];
  anomalyIndex?: number[];
  /** The reversal that found no trigger to stamp (when that stopped the rounds). */
  lastReversal?: UnlearnRound['labels'];
  /** The excited-channel pruning after the rounds (absent when off or when no trigger was small enough). */
  pruning?: ExcitedPruneRecord;
  /** Labels whose round-1 trigger is below pruneNorm x the first round's median norm (the pruning's gate). */
  pruneLabels?: number[];
  settings: UnlearnOptions;
}

/** For experiments (bench/unlearn_labs.ts): called with the unlearned model before the pruning step. */
export interface UnlearnHooks {
  onUnlearned?: (net: tfl.LayersModel, held: TrainingSet, triggers: Trigger[]) => Promise<void>;
}

/**
 * What the fine-tuning trains on: every training image as it is, plus stamped copies of
 * `share` of them (seeded; the triggers in turn), each with its image's true label. The
 * clean images all stay, so the clean signal is not thinned by the stamping.
 */
export function unlearningSet(train: TrainingSet, triggers: { mask: Float32Array; pattern: Float32Array }[], share: number, seed: string): { set: TrainingSet; stamped: number } {
  const { set: stampedAll, stamped } = stampWith(train, triggers, share, seed);
  const per = train.shape[0] * train.shape[1] * train.shape[2];
  const order = permutation(train.n, seedrandom(`nc-unlearn:${seed}`)).subarray(0, stamped);
  const n = train.n + stamped;
  const images = new Float32Array(n * per);
  const labels = new Int32Array(n);
  images.set(train.images);
  for (let i = 0; i < train.n; i++) labels[i] = train.labels[i]!;
  order.forEach((i, r) => {
    images.set(stampedAll.images.subarray(i * per, (i + 1) * per), (train.n + r) * per);
    labels[train.n + r] = train.labels[i]!;
  });
  return { set: { images, labels, n, shape: train.shape }, stamped };
}

/** Held-out images stamped with the triggers in turn, scored against their true labels. */
function stampedAccuracy(net: tfl.LayersModel, held: TrainingSet, triggers: { mask: Float32Array; pattern: Float32Array }[], scale: number): number {
  return datasetAccuracy(net, stampWith(held, triggers, 1, 'held-out').set, scale);
}

function checkOptions(o: UnlearnOptions): void {
  const ints = { starts: o.starts, rounds: o.rounds, epochs: o.epochs, batchSize: o.batchSize, reverseEpochs: o.reverseEpochs, reverseStepsPerEpoch: o.reverseStepsPerEpoch, reverseBatchSize: o.reverseBatchSize };
  for (const [k, v] of Object.entries(ints)) if (!(Number.isInteger(v) && v >= 1)) throw new GoodnetError(`unlearning ${k} must be an integer >= 1, got ${v}`);
  if (!(o.share > 0 && o.share <= 1)) throw new GoodnetError(`unlearning share must be in (0, 1], got ${o.share}`);
  if (!(o.holdOut > 0 && o.holdOut < 1)) throw new GoodnetError(`unlearning hold-out must be in (0, 1), got ${o.holdOut}`);
  if (!(o.learningRate > 0)) throw new GoodnetError(`unlearning learning rate must be > 0, got ${o.learningRate}`);
  if (!(o.maxDrop >= 0)) throw new GoodnetError(`unlearning max drop must be >= 0 points, got ${o.maxDrop}`);
  if (!(o.attackSuccess > 0 && o.attackSuccess <= 1)) throw new GoodnetError(`attack success threshold must be in (0, 1], got ${o.attackSuccess}`);
  if (!['none', 'original', 'unlearned'].includes(o.pruneRank)) throw new GoodnetError(`unlearning prune rank must be 'none', 'original' or 'unlearned', got '${String(o.pruneRank)}'`);
  if (!(o.anomalyThreshold >= 0)) throw new GoodnetError(`unlearning anomaly threshold must be >= 0, got ${o.anomalyThreshold}`);
  if (!(o.pruneNorm > 0)) throw new GoodnetError(`unlearning prune norm must be > 0, got ${o.pruneNorm}`);
  if (!(o.pruneDrop >= 0)) throw new GoodnetError(`unlearning prune drop must be >= 0 points, got ${o.pruneDrop}`);
  if (!UNLEARN_LABELS.includes(o.labels)) throw new GoodnetError(`unlearning labels must be ${UNLEARN_LABELS.map((x) => `'${x}'`).join(', ')}, got '${String(o.labels)}'`);
}

/** Trigger unlearning on a model and clean data: the repaired model and every round's record. */
export async function runTriggerUnlearning(input: DefenseInput, options: Partial<UnlearnOptions> = {}, hooks: UnlearnHooks = {}): Promise<DefenseRun<UnlearnDetails>> {
  const o: UnlearnOptions = { ...UNLEARN_DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) };
  checkOptions(o);
  const t0 = performance.now();
  const clean = await loadCleanData(input);
  if (clean.n < 10) throw new GoodnetError(`${clean.n} clean images are too few to reverse triggers and hold some out`, input.cleanValid);
  const { model } = input;
  const seed = input.seed ?? 0;
  const [held, rest] = splitSet(clean, o.holdOut, `unlearn-holdout:${seed}`);
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of clean.images) { if (v < lo) lo = v; if (v > hi) hi = v; }
  const k = hi > 16 ? 255 : 1;
  let net = await cloneNet(model.net);
  const first = firstKernelLayer(net);
  const scale = first ? k : 1;
  const ncOptions: Partial<NcOptions> = {
    maxEpochs: o.reverseEpochs, stepsPerEpoch: o.reverseStepsPerEpoch, batchSize: o.reverseBatchSize, attackSuccess: o.attackSuccess,
  };
  try {
    const baseline = datasetAccuracy(net, held, 1);
    input.log?.(`trigger unlearning: ${rest.n} clean images to reverse and train on, ${held.n} held out (original model: ${pct(baseline)} on them)`);
    const rounds: UnlearnRound[] = [];
    const stampList: { mask: Float32Array; pattern: Float32Array }[] = [];
    const small: { label: number; trigger: Trigger }[] = [];
    let last: NcTriggers | undefined;
    let median = NaN;
    let stopped: UnlearnDetails['stopped'] = 'rounds';
    let unstamped: UnlearnRound['labels'] | undefined;
    let flagged: number[] | undefined;
    let anomaly: number[] | undefined;
    for (let round = 1; round <= o.rounds; round++) {
      // With 'flagged', later rounds re-reverse only the flagged labels (from their last triggers).
      const roundNc = round > 1 && flagged ? { ...ncOptions, labels: flagged } : ncOptions;
      const rev = await reverseTriggers(net, rest, model.numClasses, roundNc, {
        seed: seed + round - 1, init: last, onEpoch: (e, max, active) => input.onProgress?.(`round ${round}: reversing`, e, max, `${active} labels active`),
      });
      input.onProgress?.(`round ${round}: reversing`, o.reverseEpochs, o.reverseEpochs);
      last = rev.triggers;
      const norms = rev.labels.map((l) => l.norm);
      if (round === 1) {
        median = anomalyIndices(norms).median;
        if (o.labels === 'flagged') {
          // Neural Cleanse's detection on round 1's norms (nc.ts: log-scale MAD index, below the median).
          anomaly = anomalyIndices(norms, 'log').index;
          flagged = flaggedLabels(rev.labels.map((l) => l.label), norms, o.anomalyThreshold, 'log');
        }
      }
      const chosen = rev.labels.filter((l) => l.reached && (flagged ? flagged.includes(l.label) && (round === 1 || l.norm < median)
        : round === 1 ? o.labels === 'all' || l.norm < median : l.norm < median));
      const entryLabels = rev.labels.map((l) => ({ label: l.label, norm: l.norm, reached: l.reached, stamped: chosen.includes(l) }));
      input.log?.(`round ${round}: reversed in ${rev.seconds.toFixed(0)} s; ${entryLabels.map((l) => `${l.label}: ${l.norm.toFixed(1)}${l.reached ? '' : ' (not reached)'}`).join(', ')}` +
        (round === 1 && flagged ? `; anomaly index (log norms) ${anomaly!.map((x, i) => `${rev.labels[i]!.label}: ${x.toFixed(2)}`).join(', ')}; flagged: ${flagged.length ? flagged.join(', ') : 'none'}` : ''));
      if (chosen.length === 0) {
        unstamped = entryLabels;
        stopped = round === 1 ? (flagged?.length === 0 ? 'nothing flagged' : 'none reached') : 'no trigger works';
        input.log?.(round === 1
          ? (stopped === 'nothing flagged' ? 'no label flagged by the anomaly index: model unchanged' : 'no reversed trigger reached the attack success threshold: model unchanged')
          : `no ${flagged ? 'flagged ' : ''}label's trigger reaches the threshold below the first round's median norm ${median.toFixed(1)} any more: stop`);
        break;
      }
      for (const l of chosen) stampList.push({ mask: rev.triggers.masks.get(l.label)!, pattern: rev.triggers.patterns.get(l.label)! });
      let extraStarts: UnlearnRound['starts'];
      let extraSeconds = 0;
      if (round === 1 && flagged && o.starts > 1) {
        // More reversals of the flagged labels from fresh random starts (an empty `init`: no earlier trigger, any number of labels).
        extraStarts = [];
        for (let start = 2; start <= o.starts; start++) {
          const again = await reverseTriggers(net, rest, model.numClasses, { ...ncOptions, labels: flagged }, {
            seed: seed + 1000 * (start - 1), init: { ...rev.triggers, masks: new Map(), patterns: new Map() },
            onEpoch: (e, max) => input.onProgress?.(`round 1: reversing the flagged labels, start ${start}`, e, max),
          });
          extraSeconds += again.seconds;
          for (const l of again.labels) {
            const ok = l.reached && l.norm < median;
            extraStarts.push({ label: l.label, start, norm: l.norm, reached: l.reached, stamped: ok });
            if (ok) stampList.push({ mask: again.triggers.masks.get(l.label)!, pattern: again.triggers.patterns.get(l.label)! });
          }
        }
        input.log?.(`round 1: the flagged labels reversed from ${o.starts - 1} more start(s) in ${extraSeconds.toFixed(0)} s: ` +
          `${extraStarts.map((l) => `${l.label} (start ${l.start}): ${l.norm.toFixed(1)}${l.reached ? '' : ' (not reached)'}${l.stamped ? '*' : ''}`).join(', ')}`);
      }
      if (round === 1) {
        for (const l of rev.labels) {
          // The pruning's gate: a flagged label ('flagged'), else a trigger far below the median norm.
          if (l.reached && (flagged ? flagged.includes(l.label) : l.norm < o.pruneNorm * median)) small.push({ label: l.label, trigger: { mask: rev.triggers.masks.get(l.label)!, pattern: rev.triggers.patterns.get(l.label)! } });
        }
      }
      const { set, stamped } = unlearningSet(rest, stampList, o.share, `${seed}:${round}`);
      input.log?.(`round ${round}: fine-tuning ${o.epochs} epochs on ${rest.n} clean images and stamped copies of ${stamped} of them, with ${stampList.length} reversed trigger(s) (true labels)`);
      const t1 = performance.now();
      if (scale !== 1) scaleKernel(first!, scale);
      let best: { epoch: number; stamped: number; clean: number; weights: tf.Tensor[] };
      const epochs: UnlearnEpoch[] = [];
      try {
        const e0 = { epoch: 0, loss: NaN, cleanAccuracy: datasetAccuracy(net, held, scale), stampedAccuracy: stampedAccuracy(net, held, stampList, scale) };
        epochs.push(e0);
        best = { epoch: 0, stamped: e0.stampedAccuracy, clean: e0.cleanAccuracy, weights: net.getWeights().map((w) => w.clone()) };
        const optimizer = tf.train.adam(o.learningRate);
        try {
          for (let epoch = 1; epoch <= o.epochs; epoch++) {
            const [stats] = await train(net, set, {
              epochs: 1, batchSize: o.batchSize, seed: seed * 1000 + round * 100 + epoch, scale, optimizer, engine: input.trainEngine,
              onBatch: (_e, d, t) => input.onProgress?.(`round ${round}: unlearning epoch ${epoch}/${o.epochs}`, d, t),
            });
            const e = { epoch, loss: stats!.loss, cleanAccuracy: datasetAccuracy(net, held, scale), stampedAccuracy: stampedAccuracy(net, held, stampList, scale) };
            epochs.push(e);
            const ok = e.cleanAccuracy >= baseline - o.maxDrop / 100 - 1e-9;
            if (ok && (e.stampedAccuracy > best.stamped || (e.stampedAccuracy === best.stamped && e.cleanAccuracy > best.clean))) {
              tf.dispose(best.weights);
              best = { epoch, stamped: e.stampedAccuracy, clean: e.cleanAccuracy, weights: net.getWeights().map((w) => w.clone()) };
            }
          }
        } finally {
          optimizer.dispose();
        }
        net.setWeights(best.weights);
        tf.dispose(best.weights);
      } finally {
        if (scale !== 1) scaleKernel(first!, 1 / scale);
      }
      const seconds = (performance.now() - t1) / 1000;
      input.log?.(`round ${round}: kept epoch ${best.epoch} (held out: clean ${pct(best.clean)}, stamped ${pct(best.stamped)}); ` +
        `per epoch clean/stamped ${epochs.map((e) => `${(100 * e.cleanAccuracy).toFixed(1)}/${(100 * e.stampedAccuracy).toFixed(1)}`).join(' ')}`);
      rounds.push({
        round, labels: entryLabels, triggers: stampList.length, stampedImages: stamped, epochs, bestEpoch: best.epoch, reverseSeconds: rev.seconds + extraSeconds,
        seconds: rev.seconds + extraSeconds + seconds, ...(extraStarts ? { starts: extraStarts } : {}),
      });
    }
    await hooks.onUnlearned?.(net, held, stampList);
    let pruning: ExcitedPruneRecord | undefined;
    if (o.pruneRank !== 'none' && small.length === 0) {
      input.log?.(flagged ? 'pruning: no label flagged: nothing pruned' : `pruning: no round-1 trigger below ${o.pruneNorm} x the median norm ${median.toFixed(1)}: nothing pruned`);
    }
    if (o.pruneRank !== 'none' && small.length > 0) {
      // Within pruneDrop of the unlearned model, and the whole defense within maxDrop of the original (as the epochs).
      const unlearned = datasetAccuracy(net, held, 1);
      const budget = Math.max(0, Math.min(o.pruneDrop, 100 * (unlearned - baseline) + o.maxDrop));
      const p = await pruneExcited(net, held, stampList, { maxDrop: budget }, o.pruneRank === 'original' ? model.net : net);
      net.dispose();
      net = p.net;
      pruning = p.record;
      const s = pruning.steps;
      input.log?.(`pruning at '${pruning.layer}' (round-1 trigger(s) of label(s) ${small.map((x) => x.label).join(', ')} ${flagged ? 'flagged' : `below ${o.pruneNorm} x the median norm ${median.toFixed(1)}`}): ` +
        `${pruning.order.length} of ${pruning.channels} channels excited by the ${stampList.length} stamped trigger(s) (ranked on the ${o.pruneRank} model); ` +
        `pruned ${pruning.pruned.length} within ${budget.toFixed(1)} point(s) of its held-out clean accuracy: clean ${pct(s[0]!.cleanAccuracy)} -> ${pct(s[pruning.pruned.length]!.cleanAccuracy)}, ` +
        `stamped ${pct(s[0]!.stampedAccuracy)} -> ${pct(s[pruning.pruned.length]!.stampedAccuracy)} (${pruning.seconds.toFixed(1)} s)`);
    }
    const details: UnlearnDetails = {
      baseline, heldOut: held.n, median, rounds, stopped, ...(flagged ? { flagged, anomalyIndex: anomaly! } : {}), ...(unstamped ? { lastReversal: unstamped } : {}), ...(pruning ? { pruning, pruneLabels: small.map((x) => x.label) } : {}), settings: o,
    };
    return { defense: 'unlearn', repaired: net, cleanImages: clean.n, seconds: (performance.now() - t0) / 1000, details };
  } catch (err) {
    net.dispose();
    throw err;
  }
}

function excitedSentence(p: ExcitedPruneRecord, rank: string, labels: number[], flagged: boolean): string {
  const k = p.pruned.length;
  return `Then (round-1 trigger(s) of label(s) ${labels.join(', ')} ${flagged ? 'flagged' : 'below the norm gate'}) pruned ${k} of the ${p.order.length} channels of '${p.layer}' (${p.channels} channels) that the stamped triggers excite ` +
    `(ranked on the ${rank} model), within ${p.settings.maxDrop} point(s) of the unlearned model's held-out clean accuracy: ` +
    `held-out clean ${pct(p.steps[0]!.cleanAccuracy)} -> ${pct(p.steps[k]!.cleanAccuracy)}, stamped ${pct(p.steps[0]!.stampedAccuracy)} -> ${pct(p.steps[k]!.stampedAccuracy)}.`;
}

export const triggerUnlearning: Defense<UnlearnOptions, UnlearnDetails> = registerDefense<UnlearnOptions, UnlearnDetails>({
  name: 'unlearn',
  title: 'Trigger unlearning (reversed triggers)',
  summary: 'reverses a trigger for every label, unlearns the ones Neural Cleanse flags on clean data (in rounds), prunes what they excite; nothing flagged: model unchanged',
  kind: 'repair',
  defaults: UNLEARN_DEFAULTS,
  run: runTriggerUnlearning,
  rows: (run, m) => repairRow(`trigger unlearning (${run.details.rounds.length} round(s), ${run.details.rounds.at(-1)?.triggers ?? 0} triggers` +
    `${run.details.pruning ? `, ${run.details.pruning.pruned.length} channels pruned` : ''})`, run, m,
    run.details.rounds.length === 0 ? (run.details.stopped === 'nothing flagged' ? 'nothing flagged: model unchanged' : 'no trigger reached: model unchanged') : undefined),
  section: (run, m): ReportSection => {
    const d = run.details;
    return {
      title: 'Trigger unlearning',
      text: [
        `Reversed a trigger for every label with Neural Cleanse's optimisation (${d.settings.reverseEpochs} epochs) on ${run.cleanImages - d.heldOut} clean images, ` +
          `${d.flagged ? 'stamped only the flagged labels\' (below)' : 'no detection'}, and fine-tuned with them stamped on ${Math.round(100 * d.settings.share)}% of those images (true labels kept); ${d.heldOut} clean images held out ` +
          `choose the epoch (highest stamped accuracy with clean accuracy within ${d.settings.maxDrop} points of the original's ${pct(d.baseline)}). ` +
          `${d.rounds.length} round(s); stopped: ${d.stopped}. First round's median mask norm ${d.median.toFixed(1)}.` +
          (d.flagged ? ` Stamped only the labels flagged by Neural Cleanse's anomaly index (log norms, > ${d.settings.anomalyThreshold}) in round 1: ${d.flagged.length ? d.flagged.join(', ') : 'none, model unchanged'}.` : ''),
        ...(d.pruning ? [excitedSentence(d.pruning, d.settings.pruneRank, d.pruneLabels ?? [], d.flagged !== undefined)] : []),
        ...repairedSentence(m),
      ],
      tables: [{
        headers: ['round', 'norms (label: norm, * stamped)', 'triggers', 'kept epoch', 'held-out clean', 'held-out stamped', 'time'],
        rows: d.rounds.map((r) => {
          const e = r.epochs[r.bestEpoch]!;
          return [r.round, r.labels.map((l) => `${l.label}: ${l.norm.toFixed(1)}${l.stamped ? '*' : ''}`).join(', '), r.triggers, r.bestEpoch, pct(e.cleanAccuracy), pct(e.stampedAccuracy), `${r.seconds.toFixed(0)} s`];
        }),
      }],
    };
  },
});
