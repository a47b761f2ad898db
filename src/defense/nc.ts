/**
 * Neural Cleanse (Wang et al., IEEE S&P 2019): for every label, reverse-engineer the
 * smallest trigger (mask m in [0,1] through tanh, pattern p) that sends clean images to it:
 *
 *   x' = (1 - m) * x + m * p,   loss = CE(f(x'), label) + cost * |m|_1
 *
 * with Adam and the original's adaptive cost (x1.5 after `patience` epochs at or above the
 * attack success threshold, /1.5^1.5 after `patience` epochs below) and early stopping (no
 * new best norm for 2 x patience epochs once the cost has moved both ways). A label whose
 * best mask norm lies below the median with anomaly index |v - median(v)| / (1.4826 MAD(v))
 * above 2 is flagged as a backdoor target, v = ln(norm) by default (`anomalyScale: 'log'`)
 * or the norm itself as in the original (`'norm'`). Why the log: the index of a norm n below
 * the median can never exceed median / (1.4826 MAD) (n >= 0), and where the labels' minimal
 * triggers spread widely that bound is itself near 2 (the lab's 10-class Fashion-MNIST
 * BadNets: 2.00 and 1.62), so the original cannot flag even a trigger of norm 0. Mask norms
 * are a scale quantity (a label twice as easy to reach), and on the log scale the spread
 * is measured in ratios: the target's 3-5x smaller mask stands out, a clean model's labels
 * within 2.4x of each other do not.
 *
 * All labels are optimised together: one batch of clean images is stamped with every
 * active label's trigger and run as one big batch; each label has its own variables,
 * cost schedule and stopping, and a stopped label leaves the batch. Adam's moments are per
 * variable, so this is the per-label optimisation run side by side (the step counter of
 * the bias correction is shared, and all labels start together).
 *
 * Against the original code (github.com/bolunwang/backdoor, visualizer.py and
 * gtsrb_visualize_example.py): same tanh/(2 - eps) + 0.5 squashing of mask and pattern, one
 * mask shared by the colour channels, L1 = sum of the mask, random uniform start, Adam lr 0.1
 * betas (0.5, 0.9), batch 32, attack success 0.99 averaged over the epoch's batches, best
 * mask = the smallest mean L1 among epochs at >= 0.99, patience 5. Different here: 8 steps
 * per epoch (the original: 1000 samples / 32 = 31), at most 100 epochs (the original: 1000),
 * early stop after 2 x patience = 10 epochs (the example: 5 x patience = 25), cost x1.5 /
 * 1.5^1.5 (the Visualizer's default; the example script uses 2 / 2^1.5), cross-entropy from
 * the logits (same value), the pattern in the clean data's
 * pixel range (the original: 0..255 raw pixels). The original's budget is about 4x the steps
 * per cost change and many more epochs; on the 28x28 lab models that is hours per model on
 * this project's machine. The cost starts at 0 as in the original (`costFromZero`): started at
 * `initCost` instead, label 0 of the lab's DeepID BadNet got a mask of norm 17.0 with only 1.0
 * of it on the 4x4 trigger; started at 0, norm 12.0 with 11.0 on the trigger.
 *
 * Mitigation: unlearning, i.e. fine-tuning on the clean data with the reversed trigger of
 * each flagged label stamped on a share of it, true labels kept; the epoch is chosen by
 * accuracy on a held-out part of that (clean + stamped) data. Then, in rounds, the flagged
 * labels are reversed again on the unlearned model (from the last trigger); while one still
 * reaches the attack success threshold with an anomaly index above the threshold (against
 * the first scan's median and MAD), its new trigger joins the stamped ones and another round
 * runs. Never any poisoned data.
 */
import * as tf from '@tensorflow/tfjs-core';
import seedrandom from 'seedrandom';
import { GoodnetError } from '../errors.js';
import { yieldToEventLoop } from '../io/atomic.js';
import { permutation, type TrainingSet } from '../models/train.js';
import { forwardLogits } from './channels.js';
import { fineTune } from './fineprune.js';
import { cloneNet } from './graph.js';
import {
  loadCleanData, registerDefense, repairRow, type Defense, type DefenseInput, type DefenseRun, type ReportSection, repairedSentence,
} from './interface.js';
import { percent as pct } from '../io/table.js';
import type * as tfl from '@tensorflow/tfjs-layers';

/** The values of a tensor made in a tidy scope, the tensor itself disposed (tidy keeps what it returns). */
function readOnce(make: () => tf.Tensor): Float32Array {
  const t = tf.tidy(make);
  try {
    return t.dataSync() as Float32Array;
  } finally {
    t.dispose();
  }
}

export interface NcOptions {
  /** Labels to analyse (default: all). */
  labels?: number[];
  /** Clean images per label per step. */
  batchSize: number;
  /** Steps per epoch (the cost schedule and early stopping act per epoch). */
  stepsPerEpoch: number;
  maxEpochs: number;
  learningRate: number;
  initCost: number;
  /**
   * The original's RESET_COST_TO_ZERO (default): start every label at cost 0 and set it to
   * `initCost` once the trigger has reached the attack success threshold for `patience` epochs.
   */
  costFromZero: boolean;
  costUp: number;
  costDown: number;
  patience: number;
  /** Attack success rate a reversed trigger must reach to count. */
  attackSuccess: number;
  /** Anomaly index above which a below-median label is flagged. */
  anomalyThreshold: number;
  /** Scale of the anomaly index: 'log' (ln of the norms, default) or 'norm' (the original's). */
  anomalyScale: AnomalyScale;
  /** Unlearning: share of the clean images stamped with a reversed trigger (true labels kept). */
  unlearnShare: number;
  unlearnEpochs: number;
  unlearnLearningRate: number;
  /**
   * Unlearning rounds: after each, the flagged labels' triggers are reversed again on the
   * unlearned model (starting from the last ones); while one still reaches the attack success
   * threshold with an anomaly index above the threshold (against the first scan's median and
   * MAD), it is added to the stamped triggers and another round runs. 1: the original's single
   * fine-tuning.
   */
  unlearnRounds: number;
  /** Share held out to choose the unlearning epoch. */
  holdOut: number;
  /** false: detection only (no unlearning, no repaired model). */
  unlearn: boolean;
}

export const NC_DEFAULTS: NcOptions = {
  batchSize: 32, stepsPerEpoch: 8, maxEpochs: 100, learningRate: 0.1, initCost: 1e-3, costUp: 1.5, costDown: 1.5 ** 1.5,
  patience: 5, attackSuccess: 0.99, anomalyThreshold: 2, anomalyScale: 'log', unlearnShare: 0.2, unlearnEpochs: 5, unlearnLearningRate: 1e-3,
  holdOut: 0.2, unlearn: true, unlearnRounds: 3, costFromZero: true,
};

/** One label's reversed trigger. */
export interface NcLabel {
  label: number;
  /** L1 norm of the best mask (the last mask when the attack success threshold was never reached). */
  norm: number;
  /** Anomaly index on the run's scale (`anomalyScale`). */
  anomalyIndex: number;
  /** Anomaly index on the norms themselves (the original's), whatever the scale. */
  anomalyIndexNorm: number;
  /** Whether a mask reached the attack success threshold. */
  reached: boolean;
  /** Attack success of the kept mask on the last epoch it was measured. */
  attackSuccess: number;
  epochs: number;
  finalCost: number;
}

export interface NcDetails {
  labels: NcLabel[];
  flagged: number[];
  /** Median mask norm (log scale: exp of the median of the logs). */
  median: number;
  /** 1.4826 x MAD on the run's scale (log scale: in natural-log units). */
  mad: number;
  anomalyScale: AnomalyScale;
  /** Seconds of the reverse engineering, and per analysed label (all labels ran together). */
  reverseSeconds: number;
  secondsPerLabel: number;
  unlearning?: {
    stamped: number; bestEpoch: number; heldOutAccuracy: number[]; seconds: number;
    /** Every round: kept epoch, held-out accuracies, and the flagged labels' norms reversed again after it. */
    rounds: { round: number; stamped: number; triggers: number; bestEpoch: number; heldOutAccuracy: number[]; seconds: number; again?: { label: number; norm: number; reached: boolean; anomalyIndex: number }[] }[];
  };
  settings: NcOptions;
  pixelRange: [number, number];
}

/** The reversed masks (H*W) and patterns (H*W*C), by label; not part of the JSON. */
export interface NcTriggers {
  shape: [number, number, number];
  masks: Map<number, Float32Array>;
  patterns: Map<number, Float32Array>;
  pixelRange: [number, number];
}

export interface NcRun extends DefenseRun<NcDetails> {
  triggers: NcTriggers;
}

/** Median of a list. */
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

export type AnomalyScale = 'log' | 'norm';
export const ANOMALY_SCALES: readonly AnomalyScale[] = ['log', 'norm'];

/**
 * Anomaly index of each norm: |v - median(v)| / (1.4826 x median absolute deviation of v),
 * v = the norms (`'norm'`, the original's, and the default here) or their natural logs
 * (`'log'`). `median` is a norm on either scale (log: exp of the median log); `mad` is on the
 * scale's units.
 */
export function anomalyIndices(norms: number[], scale: AnomalyScale = 'norm'): { index: number[]; median: number; mad: number } {
  const v = scale === 'log' ? norms.map((x) => Math.log(x)) : norms;
  const m = median(v);
  const mad = 1.4826 * median(v.map((x) => Math.abs(x - m)));
  const index = v.map((x) => (mad > 0 ? Math.abs(x - m) / mad : x === m ? 0 : Infinity));
  return { index, median: scale === 'log' ? Math.exp(m) : m, mad };
}

/** How far `norm` lies below a first scan's median, in that scan's MAD units (negative above it). */
export function indexBelow(norm: number, ref: { median: number; mad: number }, scale: AnomalyScale): number {
  if (!(ref.mad > 0)) return 0;
  return scale === 'log' ? (Math.log(ref.median) - Math.log(norm)) / ref.mad : (ref.median - norm) / ref.mad;
}

/** Labels below the median whose anomaly index exceeds `threshold` (scale as runNeuralCleanse's default: log). */
export function flaggedLabels(labels: number[], norms: number[], threshold = 2, scale: AnomalyScale = 'log'): number[] {
  const { index, median: m } = anomalyIndices(norms, scale);
  return labels.filter((_, i) => norms[i]! < m && index[i]! > threshold);
}

const EPS = 1e-7;
/** tanh space -> [0, 1], as the original (never exactly 0 or 1). */
function squash(v: tf.Tensor): tf.Tensor {
  return tf.add(tf.div(tf.tanh(v), 2 - EPS), 0.5);
}
function unsquash(x: number): number {
  return Math.atanh((x - 0.5) * (2 - EPS));
}

interface LabelState {
  label: number;
  mask: tf.Variable;
  pattern: tf.Variable;
  cost: number;
  setCounter: number;
  upCounter: number;
  downCounter: number;
  upFlag: boolean;
  downFlag: boolean;
  bestReg: number;
  bestMask?: Float32Array;
  bestPattern?: Float32Array;
  earlyBest: number;
  earlyCounter: number;
  epochs: number;
  lastAcc: number;
  done: boolean;
}

/** Stamp x (NHWC) with mask (H,W,1 in [0,1]) and pattern (H,W,C in pixels). */
export function stamp(x: tf.Tensor, mask: tf.Tensor, pattern: tf.Tensor): tf.Tensor {
  return tf.add(tf.mul(tf.sub(1, mask), x), tf.mul(mask, pattern));
}

/**
 * Reverse-engineer a trigger for each label (all labels in one batched optimisation).
 * `clean` holds pixels as the model takes them.
 */
export async function reverseTriggers(
  net: tfl.LayersModel, clean: TrainingSet, numClasses: number, opts: Partial<NcOptions> = {},
  hooks: {
    seed?: number; onEpoch?: (epoch: number, max: number, active: number) => void;
    /** Start these labels from earlier triggers (re-reversing after unlearning); allows fewer than 3 labels. */
    init?: NcTriggers;
  } = {},
): Promise<{ labels: NcLabel[]; triggers: NcTriggers; seconds: number }> {
  const o = { ...NC_DEFAULTS, ...defined(opts) };
  const labels = o.labels ?? Array.from({ length: numClasses }, (_, i) => i);
  for (const l of labels) if (!(Number.isInteger(l) && l >= 0 && l < numClasses)) throw new GoodnetError(`label ${l} is not a class of the model (0..${numClasses - 1})`);
  if (labels.length < 3 && !hooks.init) throw new GoodnetError('Neural Cleanse needs at least 3 labels to compare');
  const t0 = performance.now();
  const [h, w, c] = clean.shape;
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < clean.images.length; i++) {
    const v = clean.images[i]!;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (!(hi > lo)) throw new GoodnetError('the clean images are all one value; cannot reverse triggers');
  const rng = seedrandom(`nc:${hooks.seed ?? 0}`);
  const clip = (v: number) => Math.min(1 - 1e-4, Math.max(1e-4, v));
  const initMask = (label: number) => {
    const m = hooks.init?.masks.get(label);
    return m ? Float32Array.from(m, (v) => unsquash(clip(v))) : Float32Array.from({ length: h * w }, () => unsquash(rng()));
  };
  const initPattern = (label: number) => {
    const p = hooks.init?.patterns.get(label);
    return p ? Float32Array.from(p, (v) => unsquash(clip((v - lo) / (hi - lo)))) : Float32Array.from({ length: h * w * c }, () => unsquash(rng()));
  };
  const states: LabelState[] = labels.map((label) => ({
    label,
    mask: tf.variable(tf.tensor3d(initMask(label), [h, w, 1])),
    pattern: tf.variable(tf.tensor3d(initPattern(label), [h, w, c])),
    cost: o.costFromZero ? 0 : o.initCost, setCounter: 0, upCounter: 0, downCounter: 0, upFlag: false, downFlag: false, bestReg: Infinity,
    earlyBest: Infinity, earlyCounter: 0, epochs: 0, lastAcc: 0, done: false,
  }));
  const optimizer = tf.train.adam(o.learningRate, 0.5, 0.9);
  const per = h * w * c;
  const bs = Math.min(o.batchSize, clean.n);
  const order = permutation(clean.n, rng);
  let cursor = 0;
  const nextBatch = (): tf.Tensor4D => {
    const x = new Float32Array(bs * per);
    for (let b = 0; b < bs; b++) {
      if (cursor >= clean.n) cursor = 0;
      const i = order[cursor++]!;
      x.set(clean.images.subarray(i * per, (i + 1) * per), b * per);
    }
    return tf.tensor4d(x, [bs, h, w, c]);
  };
  const pixels = (v: tf.Tensor) => tf.add(lo, tf.mul(hi - lo, squash(v)));
  try {
    for (let epoch = 1; epoch <= o.maxEpochs; epoch++) {
      const active = states.filter((s) => !s.done);
      if (active.length === 0) break;
      hooks.onEpoch?.(epoch, o.maxEpochs, active.length);
      const sums = active.map(() => ({ ce: 0, reg: 0, acc: 0 }));
      for (let step = 0; step < o.stepsPerEpoch; step++) {
        const x = nextBatch();
        const costs = tf.tensor1d(active.map((s) => s.cost));
        const targets = tf.tensor1d(active.flatMap((s) => Array<number>(bs).fill(s.label)), 'int32');
        let stats: tf.Tensor[] = [];
        const { grads, value } = tf.variableGrads(() => {
          const stamped = tf.concat(active.map((s) => stamp(x, squash(s.mask), pixels(s.pattern))), 0) as tf.Tensor4D;
          const y = forwardLogits(net, stamped) as tf.Tensor2D;
          const oneHot = tf.oneHot(targets, numClasses);
          const logp = tf.logSoftmax(y);
          const ce = tf.mean(tf.reshape(tf.neg(tf.sum(tf.mul(oneHot, logp), -1)), [active.length, bs]), 1);
          const reg = tf.stack(active.map((s) => tf.sum(squash(s.mask))));
          const acc = tf.mean(tf.reshape(tf.cast(tf.equal(tf.argMax(y, 1), targets), 'float32'), [active.length, bs]), 1);
          stats = [tf.keep(ce), tf.keep(reg), tf.keep(acc)];
          return tf.sum(tf.add(ce, tf.mul(costs, reg))) as tf.Scalar;
        }, active.flatMap((s) => [s.mask, s.pattern]));
        optimizer.applyGradients(grads as tf.NamedTensorMap as never);
        const [ce, reg, acc] = await Promise.all(stats.map((t) => t.data()));
        tf.dispose([x, costs, targets, value, ...Object.values(grads), ...stats]);
        active.forEach((_, i) => {
          sums[i]!.ce += ce![i]!;
          sums[i]!.reg += reg![i]!;
          sums[i]!.acc += acc![i]!;
        });
        await yieldToEventLoop();
      }
      for (let i = 0; i < active.length; i++) {
        const s = active[i]!;
        const acc = sums[i]!.acc / o.stepsPerEpoch;
        const reg = sums[i]!.reg / o.stepsPerEpoch;
        s.epochs = epoch;
        s.lastAcc = acc;
        if (acc >= o.attackSuccess && reg < s.bestReg) {
          s.bestReg = reg;
          s.bestMask = readOnce(() => squash(s.mask));
          s.bestPattern = readOnce(() => pixels(s.pattern));
        }
        // Early stop: no new best norm (by the original's threshold 1.0) for 2 x patience epochs
        // once the cost has moved both ways.
        if (s.bestReg < Infinity) {
          s.earlyCounter = s.bestReg >= s.earlyBest ? s.earlyCounter + 1 : 0;
        }
        s.earlyBest = Math.min(s.bestReg, s.earlyBest);
        if (s.upFlag && s.downFlag && s.earlyCounter >= 2 * o.patience) s.done = true;
        if (s.cost === 0 && acc >= o.attackSuccess) {
          if (++s.setCounter >= o.patience) {
            Object.assign(s, { cost: o.initCost, upCounter: 0, downCounter: 0, upFlag: false, downFlag: false });
          }
        } else {
          s.setCounter = 0;
        }
        if (acc >= o.attackSuccess) {
          s.upCounter++;
          s.downCounter = 0;
        } else {
          s.upCounter = 0;
          s.downCounter++;
        }
        if (s.upCounter >= o.patience) {
          s.upCounter = 0;
          s.cost *= o.costUp;
          s.upFlag = true;
        } else if (s.downCounter >= o.patience) {
          s.downCounter = 0;
          s.cost /= o.costDown;
          s.downFlag = true;
        }
      }
    }
    const out: NcLabel[] = [];
    const masks = new Map<number, Float32Array>();
    const patterns = new Map<number, Float32Array>();
    for (const s of states) {
      const mask = s.bestMask ?? readOnce(() => squash(s.mask));
      const pattern = s.bestPattern ?? readOnce(() => pixels(s.pattern));
      masks.set(s.label, mask);
      patterns.set(s.label, pattern);
      let norm = 0;
      for (const v of mask) norm += v;
      out.push({ label: s.label, norm, anomalyIndex: NaN, anomalyIndexNorm: NaN, reached: s.bestMask !== undefined, attackSuccess: s.lastAcc, epochs: s.epochs, finalCost: s.cost });
    }
    const norms = out.map((l) => l.norm);
    const { index } = anomalyIndices(norms, o.anomalyScale ?? 'log');
    const { index: raw } = anomalyIndices(norms, 'norm');
    out.forEach((l, i) => { l.anomalyIndex = index[i]!; l.anomalyIndexNorm = raw[i]!; });
    return { labels: out, triggers: { shape: [h, w, c], masks, patterns, pixelRange: [lo, hi] }, seconds: (performance.now() - t0) / 1000 };
  } finally {
    for (const s of states) tf.dispose([s.mask, s.pattern]);
    optimizer.dispose();
  }
}

function defined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** A copy of `clean` with `share` of its images (seeded) stamped with the flagged labels' triggers in turn. */
export function stampShare(clean: TrainingSet, t: NcTriggers, flagged: number[], share: number, seed: number): { set: TrainingSet; stamped: number } {
  return stampWith(clean, flagged.map((l) => ({ mask: t.masks.get(l)!, pattern: t.patterns.get(l)! })), share, seed);
}

/** A copy of `clean` with `share` of its images (seeded) stamped with the given triggers in turn. */
export function stampWith(
  clean: TrainingSet, triggers: { mask: Float32Array; pattern: Float32Array }[], share: number, seed: number | string,
): { set: TrainingSet; stamped: number } {
  const [h, w, c] = clean.shape;
  const images = Float32Array.from(clean.images);
  const order = permutation(clean.n, seedrandom(`nc-unlearn:${seed}`));
  const k = Math.round(share * clean.n);
  for (let r = 0; r < k; r++) {
    const i = order[r]!;
    const { mask: m, pattern: p } = triggers[r % triggers.length]!;
    const base = i * h * w * c;
    for (let px = 0; px < h * w; px++) {
      const mv = m[px]!;
      for (let ch = 0; ch < c; ch++) {
        const j = base + px * c + ch;
        images[j] = (1 - mv) * images[j]! + mv * p[px * c + ch]!;
      }
    }
  }
  return { set: { ...clean, images }, stamped: k };
}

/** Neural Cleanse on a model and clean data: verdict, per-label norms, and the unlearned model. */
export async function runNeuralCleanse(input: DefenseInput, options: Partial<NcOptions> = {}): Promise<NcRun> {
  const o = { ...NC_DEFAULTS, ...defined(options) };
  if (!(o.unlearnShare > 0 && o.unlearnShare < 1)) throw new GoodnetError(`unlearning share must be in (0, 1), got ${o.unlearnShare}`);
  for (const [k, v] of Object.entries({ batchSize: o.batchSize, stepsPerEpoch: o.stepsPerEpoch, maxEpochs: o.maxEpochs, patience: o.patience })) {
    if (!(Number.isInteger(v) && v >= 1)) throw new GoodnetError(`Neural Cleanse ${k} must be an integer >= 1, got ${v}`);
  }
  const t0 = performance.now();
  const clean = await loadCleanData(input);
  const { model } = input;
  const nLabels = (o.labels ?? []).length || model.numClasses;
  input.log?.(`Neural Cleanse: reversing triggers for ${nLabels} labels on ${clean.n} clean images (batched, up to ${o.maxEpochs} epochs of ${o.stepsPerEpoch} steps)`);
  const rev = await reverseTriggers(model.net, clean, model.numClasses, o, {
    seed: input.seed, onEpoch: (e, max, active) => input.onProgress?.('reverse', e, max, `${active} labels active`),
  });
  input.onProgress?.('reverse', o.maxEpochs, o.maxEpochs);
  if (!ANOMALY_SCALES.includes(o.anomalyScale)) throw new GoodnetError(`anomaly scale must be ${ANOMALY_SCALES.join(' or ')}, got ${String(o.anomalyScale)}`);
  const first = anomalyIndices(rev.labels.map((l) => l.norm), o.anomalyScale);
  const { median: med, mad } = first;
  const flagged = rev.labels.filter((l) => l.norm < med && l.anomalyIndex > o.anomalyThreshold).map((l) => l.label);
  input.log?.(`Neural Cleanse: ${rev.seconds.toFixed(0)} s (${(rev.seconds / rev.labels.length).toFixed(1)} s per label); flagged: ${flagged.length ? flagged.join(', ') : 'none'}`);
  const details: NcDetails = {
    labels: rev.labels, flagged, median: med, mad, anomalyScale: o.anomalyScale, reverseSeconds: rev.seconds, secondsPerLabel: rev.seconds / rev.labels.length,
    settings: o, pixelRange: rev.triggers.pixelRange,
  };
  let repaired: tfl.LayersModel | undefined;
  if (o.unlearn) {
    repaired = await cloneNet(model.net);
    if (flagged.length > 0) {
      try {
        const seed = input.seed ?? 0;
        const stampList = flagged.map((l) => ({ mask: rev.triggers.masks.get(l)!, pattern: rev.triggers.patterns.get(l)! }));
        let current = rev.triggers;
        const rounds: NonNullable<NcDetails['unlearning']>['rounds'] = [];
        for (let round = 1; round <= o.unlearnRounds; round++) {
          const { set, stamped } = stampWith(clean, stampList, o.unlearnShare, round === 1 ? seed : `${seed}:${round}`);
          input.log?.(`unlearning round ${round}: ${o.unlearnEpochs} epochs on ${clean.n} clean images, ${stamped} of them stamped with ${stampList.length} reversed trigger(s) (true labels)`);
          const r = await fineTune(repaired, '', [], set, {
            epochs: o.unlearnEpochs, learningRate: o.unlearnLearningRate, holdOut: o.holdOut, seed, trainEngine: input.trainEngine,
            onBatch: (e, d, t) => input.onProgress?.(`unlearn ${round} epoch ${e}`, d, t),
          });
          const entry: (typeof rounds)[number] = {
            round, stamped, triggers: stampList.length, bestEpoch: r.bestEpoch, heldOutAccuracy: r.history.map((x) => x.heldOutAccuracy), seconds: r.seconds,
          };
          rounds.push(entry);
          if (round === o.unlearnRounds) break;
          const t1 = performance.now();
          const again = await reverseTriggers(repaired, clean, model.numClasses, { ...o, labels: flagged }, {
            seed, init: current, onEpoch: (e, max) => input.onProgress?.(`re-reverse after round ${round}`, e, max),
          });
          entry.again = again.labels.map((l) => ({ label: l.label, norm: l.norm, reached: l.reached, anomalyIndex: indexBelow(l.norm, first, o.anomalyScale) }));
          entry.seconds += (performance.now() - t1) / 1000;
          const still = entry.again.filter((l) => l.reached && l.anomalyIndex > o.anomalyThreshold);
          input.log?.(`  reversed again: ${entry.again.map((l) => `label ${l.label} norm ${l.norm.toFixed(1)}${l.reached ? '' : ' (never reached)'} index ${l.anomalyIndex.toFixed(2)}`).join('; ')}`);
          if (still.length === 0) break;
          for (const l of still) stampList.push({ mask: again.triggers.masks.get(l.label)!, pattern: again.triggers.patterns.get(l.label)! });
          current = again.triggers;
        }
        const last = rounds[rounds.length - 1]!;
        details.unlearning = {
          stamped: last.stamped, bestEpoch: last.bestEpoch, heldOutAccuracy: last.heldOutAccuracy,
          seconds: rounds.reduce((a, x) => a + x.seconds, 0), rounds,
        };
      } catch (err) {
        repaired.dispose();
        throw err;
      }
    }
  }
  return {
    defense: 'nc', repaired, verdict: { backdoored: flagged.length > 0, flagged }, cleanImages: clean.n,
    seconds: (performance.now() - t0) / 1000, details, triggers: rev.triggers,
  };
}

export const neuralCleanse: Defense<NcOptions, NcDetails> = registerDefense<NcOptions, NcDetails>({
  name: 'nc',
  title: 'Neural Cleanse',
  summary: 'reverse-engineers a minimal trigger per label, flags outlier labels (MAD anomaly index of the log norms > 2), unlearns the reversed trigger',
  kind: 'repair',
  defaults: NC_DEFAULTS,
  run: runNeuralCleanse,
  rows: (run, m) => repairRow(
    `Neural Cleanse (unlearning; flagged ${run.details.flagged.length ? run.details.flagged.join(', ') : 'none'})`, run, m,
    run.details.flagged.length === 0 ? 'nothing flagged: model unchanged' : undefined),
  section: (run, m): ReportSection => {
    const d = run.details;
    const [h, w, c] = (run as NcRun).triggers?.shape ?? [0, 0, 0];
    const t = (run as NcRun).triggers;
    return {
      title: 'Neural Cleanse',
      text: [
        `Reversed a trigger for each of ${d.labels.length} labels on ${run.cleanImages} clean images in ${d.reverseSeconds.toFixed(0)} s ` +
          `(${d.secondsPerLabel.toFixed(1)} s per label, all labels in one batched optimisation). Median mask L1 norm ${d.median.toFixed(1)}, ` +
          (d.anomalyScale === 'norm' ? `MAD x 1.4826 = ${d.mad.toFixed(1)}` : `MAD of the log norms x 1.4826 = ${d.mad.toFixed(2)} (a factor of ${Math.exp(d.mad).toFixed(2)})`) +
          `. Flagged (below the median, anomaly index > ${d.settings.anomalyThreshold}): ` +
          `${d.flagged.length ? d.flagged.join(', ') : 'none'}.`,
        ...(d.unlearning ? [`Unlearning: ${d.unlearning.rounds.length} round(s); in the last, ${d.unlearning.stamped} clean images stamped with ${d.unlearning.rounds[d.unlearning.rounds.length - 1]!.triggers} reversed trigger(s) (true labels), kept epoch ${d.unlearning.bestEpoch} by held-out accuracy.`] : []),
        ...repairedSentence(m),
      ],
      tables: [{
        headers: ['label', 'mask L1 norm', d.anomalyScale === 'norm' ? 'anomaly index' : 'anomaly index (log norms)', 'index on the norms (original)', 'reached', 'flagged'],
        rows: d.labels.map((l) => [l.label, l.norm.toFixed(1), l.anomalyIndex.toFixed(2), (l.anomalyIndexNorm ?? l.anomalyIndex).toFixed(2), l.reached ? 'yes' : 'no', d.flagged.includes(l.label) ? 'yes' : '']),
      }],
      images: t ? d.labels.map((l) => {
        const mask = t.masks.get(l.label)!;
        const pat = t.patterns.get(l.label)!;
        const [lo, hi] = t.pixelRange;
        const pixels = new Float32Array(h * w * c);
        for (let i = 0; i < h * w; i++) for (let ch = 0; ch < c; ch++) pixels[i * c + ch] = mask[i]! * (pat[i * c + ch]! - lo) / (hi - lo);
        return { caption: `label ${l.label}: norm ${l.norm.toFixed(1)}`, width: w, height: h, channels: c, pixels };
      }) : [],
    };
  },
});
