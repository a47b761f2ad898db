/**
 * ANP, adversarial neuron pruning (Wu and Wang, NeurIPS 2021), as the original code
 * (csdongxian/ANP_backdoor: optimize_mask_cifar.py, models/anp_batchnorm.py,
 * prune_neuron_cifar.py). Every conv output channel gets a mask m in [0,1] and
 * multiplicative noise (d on the weight part, d_b on the bias part) on the layer that
 * carries it: the following BatchNormalization when there is one (the original's
 * NoisyBatchNorm2d), else the conv itself (its pre-activation output):
 *
 *   natural:   out_k = m_k * W_k x + b_k
 *   perturbed: out_k = (m_k + d_k) * W_k x + (1 + d_b,k) * b_k
 *
 * Per batch of clean images (drawn with replacement, as the original's RandomSampler):
 * the noise starts uniform in [-eps, eps] and takes `noiseSteps` steps of SGD with
 * learning rate eps / noiseSteps on the sign of the gradient of the perturbed loss (ascent;
 * like the original, the noise is not clipped after its step); then the masks take one SGD
 * step (momentum 0.9) on alpha * CE(natural) + (1 - alpha) * CE(perturbed) and are clipped
 * to [0,1]. Like the original (model.train()), every BatchNormalization normalises with the
 * batch's own statistics during the optimisation (`bnStats: 'batch'`; 'running' uses the
 * stored ones). Channels whose backdoor role makes the network fragile under the noise
 * lose their mask.
 *
 * Pruning as the original's prune_neuron_cifar.py: a pruned channel's BN weight (gamma) is
 * set to 0 and its bias (beta) kept, which is the natural forward with mask 0 (without BN:
 * the kernel slice, bias kept). Which channels: mask below `threshold` (default 0.2), the
 * `count` smallest, or as many of the smallest as keep clean accuracy within `maxDrop`
 * points on a held-out share of the clean data that the masks never saw. Every choice
 * reads clean data only.
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import seedrandom from 'seedrandom';
import { GoodnetError } from '../errors.js';
import { yieldToEventLoop } from '../io/atomic.js';
import type { TrainingSet } from '../models/train.js';
import { channelUnits, forwardLogits, crossEntropyLogits, zeroUnitChannels, type ChannelScale, type ChannelUnit } from './channels.js';
import { cloneNet } from './graph.js';
import {
  loadCleanData, registerDefense, repairRow, splitSet, type Defense, type DefenseInput, type DefenseRun, type ReportSection, repairedSentence,
} from './interface.js';
import { percent as pct } from '../io/table.js';
import { accuracyOf } from './measure_clean.js';

export interface AnpOptions {
  /** Noise bound of the random start; the noise step's size. */
  eps: number;
  /** Signed-gradient steps on the noise per batch (learning rate eps / noiseSteps). */
  noiseSteps: number;
  /** Weight of the natural loss (1 - alpha on the perturbed one). */
  alpha: number;
  /** Mask learning rate (SGD, momentum 0.9). */
  learningRate: number;
  iterations: number;
  batchSize: number;
  /** BN statistics during the optimisation: the batch's own (the original's train mode) or the stored running ones. */
  bnStats: 'batch' | 'running';
  /** Prune channels whose mask is below this. */
  threshold: number;
  /** Or prune exactly this many channels (smallest masks). */
  count?: number;
  /** Or prune the smallest masks while clean accuracy on the held-out share stays within this many points. */
  maxDrop?: number;
  /** With maxDrop: the share of the clean data held out from the mask optimisation to measure the accuracy drop. */
  holdOut: number;
  /** Conv layers to perturb (default: all). */
  layers?: string[];
}

/** The original's settings (optimize_mask_cifar.py defaults). */
export const ANP_DEFAULTS: AnpOptions = {
  eps: 0.4, noiseSteps: 1, alpha: 0.2, learningRate: 0.2, iterations: 2000, batchSize: 128, bnStats: 'batch', threshold: 0.2, holdOut: 0.2,
};

export interface AnpChannel {
  conv: string;
  layer: string;
  channel: number;
  mask: number;
}

export interface AnpDetails {
  units: ChannelUnit[];
  /** Every channel's final mask. */
  masks: AnpChannel[];
  /** Pruned channels (smallest masks first). */
  pruned: AnpChannel[];
  rule: 'threshold' | 'count' | 'max-drop';
  /** Clean accuracy before and after pruning, on `accuracyImages` images (the held-out share with max-drop, else all the clean data). */
  baseValidAccuracy: number;
  validAccuracy: number;
  accuracyImages: number;
  heldOut: boolean;
  /** With max-drop: clean accuracy after pruning the k smallest, k = 0.. (stops one past the budget). */
  curve?: number[];
  optimiseSeconds: number;
  settings: AnpOptions;
}

function defined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Optimise ANP's masks on clean data; returns each unit's mask values. */
export async function anpMasks(
  net: tfl.LayersModel, clean: TrainingSet, numClasses: number, opts: Partial<AnpOptions> = {},
  hooks: { seed?: number; onIteration?: (i: number, total: number) => void; onNoise?: (weight: Float32Array[], bias: Float32Array[]) => void } = {},
): Promise<{ units: ChannelUnit[]; masks: Float32Array[] }> {
  const o = { ...ANP_DEFAULTS, ...defined(opts) };
  let units = channelUnits(net);
  if (o.layers) {
    const want = new Set(o.layers);
    for (const l of want) if (!units.some((u) => u.conv === l)) throw new GoodnetError(`no Conv2D layer named '${l}'`);
    units = units.filter((u) => want.has(u.conv));
  }
  if (units.length === 0) throw new GoodnetError('the model has no Conv2D layer; ANP masks conv channels');
  const rng = seedrandom(`anp:${hooks.seed ?? 0}`);
  const masks = units.map((u) => tf.variable(tf.ones([u.channels]), true, undefined, 'float32') as tf.Variable<tf.Rank.R1>);
  const velocity = units.map((u) => new Float32Array(u.channels));
  const [h, w, c] = clean.shape;
  const per = h * w * c;
  const bs = Math.min(o.batchSize, clean.n);
  const batchStats = o.bnStats === 'batch';
  const n = units.length;
  const noiseInit = (k: number) => tf.tensor1d(Float32Array.from({ length: k }, () => (2 * rng() - 1) * o.eps));
  const perturbed = (ns: tf.Tensor[]) => new Map<string, ChannelScale>(units.map((u, k) => [u.layer, { w: tf.add(masks[k]!, ns[k]!) as tf.Tensor1D, b: tf.add(1, ns[n + k]!) as tf.Tensor1D }]));
  try {
    for (let it = 0; it < o.iterations; it++) {
      const x = new Float32Array(bs * per);
      const y = new Int32Array(bs);
      for (let b = 0; b < bs; b++) {
        const i = Math.floor(rng() * clean.n); // with replacement, as the original's RandomSampler
        x.set(clean.images.subarray(i * per, (i + 1) * per), b * per);
        y[b] = clean.labels[i]!;
      }
      const xt = tf.tensor4d(x, [bs, h, w, c]);
      const yt = tf.tensor1d(y, 'int32');
      // 1. The noise: a random start in [-eps, eps], then signed gradient ascent steps on the
      // perturbed loss (SGD, learning rate eps / steps; not clipped, as the original).
      let noise: tf.Tensor[] = [...units.map((u) => noiseInit(u.channels)), ...units.map((u) => noiseInit(u.channels))];
      if (o.eps > 0) {
        for (let step = 0; step < o.noiseSteps; step++) {
          const grads = tf.grads((...ns: tf.Tensor[]) => crossEntropyLogits(forwardLogits(net, xt, perturbed(ns), { batchStats }), yt, numClasses))(noise);
          const stepped = tf.tidy(() => grads.map((g, k) => tf.add(noise[k]!, tf.mul(tf.sign(g), o.eps / o.noiseSteps))));
          tf.dispose([...grads, ...noise]);
          noise = stepped;
        }
      }
      if (hooks.onNoise) hooks.onNoise(noise.slice(0, n).map((t) => t.dataSync() as Float32Array), noise.slice(n).map((t) => t.dataSync() as Float32Array));
      // 2. One SGD step on the masks: alpha * natural (no noise) + (1 - alpha) * perturbed.
      const { grads } = tf.variableGrads(() => {
        const nat = new Map<string, ChannelScale>(units.map((u, k) => [u.layer, { w: masks[k]! }]));
        const lossNat = crossEntropyLogits(forwardLogits(net, xt, nat, { batchStats }), yt, numClasses);
        const lossRob = o.alpha < 1 && o.eps > 0 ? crossEntropyLogits(forwardLogits(net, xt, perturbed(noise), { batchStats }), yt, numClasses) : tf.scalar(0);
        return tf.add(tf.mul(o.alpha, lossNat), tf.mul(1 - o.alpha, lossRob)) as tf.Scalar;
      }, masks);
      for (let k = 0; k < n; k++) {
        const g = grads[masks[k]!.name];
        if (!g) continue;
        const gv = await g.data();
        const v = velocity[k]!;
        const m = masks[k]!.dataSync();
        const next = new Float32Array(m.length);
        for (let j = 0; j < m.length; j++) {
          v[j] = 0.9 * v[j]! + gv[j]!; // torch SGD momentum (dampening 0)
          next[j] = Math.min(1, Math.max(0, m[j]! - o.learningRate * v[j]!));
        }
        const t = tf.tensor1d(next);
        masks[k]!.assign(t);
        t.dispose();
      }
      tf.dispose([xt, yt, ...noise, ...Object.values(grads)]);
      hooks.onIteration?.(it + 1, o.iterations);
      await yieldToEventLoop();
    }
    return { units, masks: masks.map((m) => m.dataSync() as Float32Array) };
  } finally {
    tf.dispose(masks);
  }
}

/** A copy of `net` with `chosen` pruned as ANP prunes (BN weight 0, bias kept). */
export function anpPrune(net: tfl.LayersModel, units: ChannelUnit[], chosen: AnpChannel[]): Promise<tfl.LayersModel> {
  return cloneNet(net).then((copy) => {
    for (const u of units) zeroUnitChannels(copy, u, chosen.filter((c) => c.layer === u.layer).map((c) => c.channel), { weightOnly: true });
    return copy;
  });
}

/** What pruning by masks chose: every channel's mask, the pruned ones, the rule, and the held-out accuracies. */
export interface MaskPruning {
  all: AnpChannel[];
  pruned: AnpChannel[];
  rule: 'threshold' | 'count' | 'max-drop';
  curve?: number[];
  base: number;
  repaired: tfl.LayersModel;
  validAccuracy: number;
}

/**
 * Prune by masks in [0,1] (ANP's and RNP's last step): the `count` smallest, or with `maxDrop`
 * the most smallest-mask channels whose clean accuracy on `heldOut` stays within that many
 * points, else every channel below `threshold`. Only clean data choose.
 */
export async function pruneByMasks(
  net: tfl.LayersModel, units: ChannelUnit[], masks: Float32Array[], heldOut: TrainingSet,
  o: { count?: number; maxDrop?: number; threshold: number }, batchSize: number | undefined,
  onProgress?: (done: number, total: number) => void,
): Promise<MaskPruning> {
  const all: AnpChannel[] = units.flatMap((u, k) => Array.from(masks[k]!, (mask, channel) => ({ conv: u.conv, layer: u.layer, channel, mask })));
  const sorted = [...all].sort((a, b) => a.mask - b.mask);
  const base = await accuracyOf(net, heldOut, batchSize);
  let pruned: AnpChannel[];
  let rule: MaskPruning['rule'];
  let curve: number[] | undefined;
  if (o.count !== undefined) {
    rule = 'count';
    pruned = sorted.slice(0, o.count);
  } else if (o.maxDrop !== undefined) {
    rule = 'max-drop';
    curve = [base];
    let k = 0;
    // Prune in ascending mask order while held-out clean accuracy stays within the budget.
    while (k < sorted.length && sorted[k]!.mask < 1) {
      const candidate = await anpPrune(net, units, sorted.slice(0, k + 1));
      const acc = await accuracyOf(candidate, heldOut, batchSize);
      candidate.dispose();
      curve.push(acc);
      onProgress?.(k + 1, sorted.length);
      if ((base - acc) * 100 > o.maxDrop) break;
      k++;
    }
    pruned = sorted.slice(0, k);
  } else {
    rule = 'threshold';
    pruned = sorted.filter((c) => c.mask < o.threshold);
  }
  const repaired = await anpPrune(net, units, pruned);
  const validAccuracy = await accuracyOf(repaired, heldOut, batchSize);
  return { all, pruned, rule, ...(curve ? { curve } : {}), base, repaired, validAccuracy };
}

/** ANP on a model and clean data: masks, pruned channels, repaired model. */
export async function runAnp(input: DefenseInput, options: Partial<AnpOptions> = {}): Promise<DefenseRun<AnpDetails>> {
  const o = { ...ANP_DEFAULTS, ...defined(options) };
  if (!(o.eps >= 0 && o.eps < 1)) throw new GoodnetError(`--eps must be in [0, 1), got ${o.eps}`);
  if (!(o.alpha >= 0 && o.alpha <= 1)) throw new GoodnetError(`--alpha must be in [0, 1], got ${o.alpha}`);
  if (!(Number.isInteger(o.iterations) && o.iterations >= 1)) throw new GoodnetError(`--iterations must be an integer >= 1, got ${o.iterations}`);
  if (!(Number.isInteger(o.noiseSteps) && o.noiseSteps >= 1)) throw new GoodnetError(`--noise-steps must be an integer >= 1, got ${o.noiseSteps}`);
  if (o.bnStats !== 'batch' && o.bnStats !== 'running') throw new GoodnetError(`--bn-stats must be batch or running, got ${String(o.bnStats)}`);
  if (o.count !== undefined && !(Number.isInteger(o.count) && o.count >= 0)) throw new GoodnetError(`--count must be an integer >= 0, got ${o.count}`);
  if (o.maxDrop !== undefined && !(o.maxDrop >= 0 && o.maxDrop < 100)) throw new GoodnetError(`--max-drop must be in [0, 100) points, got ${o.maxDrop}`);
  if (!(o.holdOut > 0 && o.holdOut < 1)) throw new GoodnetError(`--hold-out must be in (0, 1), got ${o.holdOut}`);
  const t0 = performance.now();
  const clean = await loadCleanData(input);
  const { model } = input;
  // With max-drop, a held-out share the masks never see measures the accuracy drop.
  const [heldOut, optimiseOn] = o.maxDrop !== undefined ? splitSet(clean, o.holdOut, `anp-holdout:${input.seed ?? 0}`) : [clean, clean];
  input.log?.(`ANP: ${o.iterations} iterations of ${Math.min(o.batchSize, optimiseOn.n)} of ${optimiseOn.n} clean images (eps ${o.eps}, alpha ${o.alpha}, BN ${o.bnStats} statistics)` +
    (o.maxDrop !== undefined ? `; ${heldOut.n} held out to measure the accuracy drop` : ''));
  const r = await anpMasks(model.net, optimiseOn, model.numClasses, o, { seed: input.seed, onIteration: (i, t) => input.onProgress?.('ANP masks', i, t) });
  const optimiseSeconds = (performance.now() - t0) / 1000;
  const { all, pruned, rule, curve, base, repaired, validAccuracy } = await pruneByMasks(
    model.net, r.units, r.masks, heldOut, o, input.batchSize, (i, t) => input.onProgress?.('ANP pruning', i, t));
  input.log?.(`ANP: pruned ${pruned.length} of ${all.length} channels (${rule}); clean accuracy ${(base * 100).toFixed(2)}% -> ${(validAccuracy * 100).toFixed(2)}% on ${heldOut === clean ? 'the' : 'the held-out'} ${heldOut.n} clean images`);
  return {
    defense: 'anp', repaired, cleanImages: clean.n, seconds: (performance.now() - t0) / 1000,
    details: {
      units: r.units, masks: all, pruned, rule, baseValidAccuracy: base, validAccuracy, accuracyImages: heldOut.n, heldOut: heldOut !== clean,
      ...(curve ? { curve } : {}), optimiseSeconds, settings: o,
    },
  };
}

/** What pruning by masks did, for ANP's and RNP's report sections. */
export function maskPruningSentence(d: { pruned: unknown[]; rule: MaskPruning['rule']; heldOut: boolean; accuracyImages: number; baseValidAccuracy: number; validAccuracy: number }): string {
  return `Pruned ${d.pruned.length} channels (${d.rule}; BN weight set to 0, bias kept, as the original); clean accuracy on ` +
    `${d.heldOut ? `the ${d.accuracyImages} held-out clean images` : 'the clean data'} ${pct(d.baseValidAccuracy)} -> ${pct(d.validAccuracy)}.`;
}

/** How pruneByMasks chose, in words for a table row. */
export function maskRuleLabel(rule: MaskPruning['rule'], s: { threshold: number; count?: number; maxDrop?: number }): string {
  return rule === 'threshold' ? `mask < ${s.threshold}` : rule === 'count' ? `${s.count} smallest` : `max drop ${s.maxDrop} pts`;
}

export const anp: Defense<AnpOptions, AnpDetails> = registerDefense<AnpOptions, AnpDetails>({
  name: 'anp',
  title: 'ANP (adversarial neuron pruning)',
  summary: 'learns per-channel masks under adversarial multiplicative noise on clean data and prunes the channels whose masks collapse',
  kind: 'repair',
  defaults: ANP_DEFAULTS,
  run: runAnp,
  rows: (run, m) => {
    const d = run.details;
    const how = maskRuleLabel(d.rule, d.settings);
    return repairRow(`ANP (${how}; ${d.pruned.length} channels)`, run, m);
  },
  section: (run, m): ReportSection => {
    const d = run.details;
    return {
      title: 'ANP (adversarial neuron pruning)',
      text: [
        `${d.settings.iterations} iterations of ${d.settings.batchSize} clean images (eps ${d.settings.eps}, alpha ${d.settings.alpha}, mask learning rate ${d.settings.learningRate}, BN ${d.settings.bnStats} statistics), ` +
          `${d.optimiseSeconds.toFixed(0)} s. Noise on ${d.units.map((u) => (u.kind === 'bn' ? `${u.layer} (BN of ${u.conv})` : `${u.conv} (no BN: the conv channels)`)).join(', ')}.`,
        maskPruningSentence(d),
        ...repairedSentence(m),
      ],
      tables: [{
        caption: 'smallest masks', headers: ['layer', 'channel', 'mask', 'pruned'],
        rows: [...d.masks].sort((a, b) => a.mask - b.mask).slice(0, Math.max(10, d.pruned.length)).map((c) => [c.conv, c.channel, c.mask.toFixed(3), d.pruned.some((p) => p.layer === c.layer && p.channel === c.channel) ? 'yes' : '']),
      }],
    };
  },
});
