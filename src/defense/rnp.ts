/**
 * RNP, reconstructive neuron pruning (Li et al., ICML 2023), as the original code
 * (bboylyg/RNP main.py, models/mask_batchnorm.py), from clean data only:
 *
 *  1. Unlearning: a copy of the model takes SGD steps (lr 0.01, momentum 0.9, weight decay
 *     5e-4, gradient norm clipped to 20) that *maximise* the cross-entropy on the clean data,
 *     until its training accuracy falls to `cleanThreshold` (0.2; checked every
 *     `checkImages` = 500 images, the original's epoch of 1% of CIFAR-10) or `unlearnEpochs`
 *     (20) epochs pass. The kernels of the layers that read the input step
 *     as if the input were standardised (RMS 1, as the original's CIFAR inputs): goodnet's
 *     lab models read raw 0..255 pixels with 1/255 folded into the first conv, and plain
 *     SGD there would wreck that layer in one step. Clean features are erased fast; the backdoor's
 *     few channels, which clean data never exercise, are left alone.
 *  2. Recovering: on the unlearned copy, a mask in [0,1] per conv channel (on the BN
 *     weight, bias kept; without BN on the conv's weight part) takes SGD steps (lr 0.2,
 *     momentum 0.9) on alpha x cross-entropy (alpha 0.2), `recoverEpochs` (20) epochs,
 *     clipped to [0,1]. Clean behaviour comes back through the clean channels; the backdoor
 *     channels, useless to clean data, keep falling.
 *  3. Pruning the *original* model by those masks as ANP does (BN weight 0, bias kept):
 *     mask below `threshold` (0.2), the `count` smallest, or as many of the smallest as keep
 *     clean accuracy on a held-out share within `maxDrop` points.
 *
 * Both stages run BN with the batch's own statistics, as the original's model.train().
 * Every choice reads clean data only.
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import seedrandom from 'seedrandom';
import { GoodnetError } from '../errors.js';
import { yieldToEventLoop } from '../io/atomic.js';
import { permutation, type TrainingSet } from '../models/train.js';
import { maskPruningSentence, maskRuleLabel, pruneByMasks, type AnpChannel } from './anp.js';
import { channelUnits, crossEntropyLogits, forwardLogits, type ChannelScale, type ChannelUnit } from './channels.js';
import { cloneNet } from './graph.js';
import {
  loadCleanData, registerDefense, repairRow, splitSet, type Defense, type DefenseInput, type DefenseRun, type ReportSection, repairedSentence,
} from './interface.js';
import { percent as pct } from '../io/table.js';

export interface RnpOptions {
  /** Unlearning: SGD learning rate (momentum 0.9, weight decay 5e-4). */
  unlearnLr: number;
  unlearnEpochs: number;
  /** Unlearning stops as soon as its training accuracy over the last `checkImages` images is at most this. */
  cleanThreshold: number;
  /** How often (in images) the unlearning accuracy is checked: the original's epoch, 500 images. */
  checkImages: number;
  /** Recovering: mask SGD learning rate (momentum 0.9). */
  recoverLr: number;
  recoverEpochs: number;
  /** Loss weight of the recovering step (the original's alpha). */
  alpha: number;
  batchSize: number;
  /** Prune channels whose mask is below this. */
  threshold: number;
  /** Or prune exactly this many channels (smallest masks). */
  count?: number;
  /** Or prune the smallest masks while clean accuracy on the held-out share stays within this many points. */
  maxDrop?: number;
  /** With maxDrop: the share of the clean data held out from unlearning and recovering to measure the drop. */
  holdOut: number;
}

/** The original's settings (bboylyg/RNP main.py defaults). */
export const RNP_DEFAULTS: RnpOptions = {
  unlearnLr: 0.01, unlearnEpochs: 20, cleanThreshold: 0.2, checkImages: 500, recoverLr: 0.2, recoverEpochs: 20, alpha: 0.2, batchSize: 128, threshold: 0.2, holdOut: 0.2,
};

export interface RnpDetails {
  units: ChannelUnit[];
  masks: AnpChannel[];
  pruned: AnpChannel[];
  rule: 'threshold' | 'count' | 'max-drop';
  /** Training accuracy of each unlearning epoch (the last: of the check window where it stopped). */
  unlearnAccuracy: number[];
  /** Training accuracy of each recovering epoch. */
  recoverAccuracy: number[];
  baseValidAccuracy: number;
  validAccuracy: number;
  accuracyImages: number;
  heldOut: boolean;
  curve?: number[];
  unlearnSeconds: number;
  recoverSeconds: number;
  settings: RnpOptions;
}

function defined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function batchOf(set: TrainingSet, idx: ArrayLike<number>): { x: tf.Tensor4D; y: tf.Tensor1D } {
  const [h, w, c] = set.shape;
  const per = h * w * c;
  const x = new Float32Array(idx.length * per);
  const y = new Int32Array(idx.length);
  for (let b = 0; b < idx.length; b++) {
    const i = idx[b]!;
    x.set(set.images.subarray(i * per, (i + 1) * per), b * per);
    y[b] = set.labels[i]!;
  }
  return { x: tf.tensor4d(x, [idx.length, h, w, c]), y: tf.tensor1d(y, 'int32') };
}

/** Kernels of the first layers with weights on every path from the input (through padding, reshaping and the like). */
export function inputKernels(net: tfl.LayersModel): tfl.LayerVariable[] {
  const out: tfl.LayerVariable[] = [];
  const seen = new Set<tfl.layers.Layer>();
  let frontier = net.layers.filter((l) => l.getClassName() === 'InputLayer');
  while (frontier.length > 0) {
    const next: tfl.layers.Layer[] = [];
    for (const l of net.layers) {
      if (seen.has(l) || !l.inboundNodes.some((nd) => nd.inboundLayers.some((il) => frontier.includes(il as tfl.layers.Layer)))) continue;
      seen.add(l);
      if (l.trainableWeights.length > 0) out.push(l.trainableWeights[0]!);
      else next.push(l);
    }
    frontier = next;
  }
  return out;
}

/** Root mean square of the pixels (as the model takes them) of up to 1,000 images. */
export function inputRms(set: TrainingSet): number {
  const per = set.shape[0] * set.shape[1] * set.shape[2];
  const n = Math.min(set.n, 1000) * per;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += set.images[i]! ** 2;
  return Math.sqrt(sum / Math.max(1, n));
}

function correct(logits: tf.Tensor, y: tf.Tensor1D): number {
  return tf.tidy(() => tf.sum(tf.cast(tf.equal(tf.argMax(logits, 1), y), 'int32')).dataSync()[0]!);
}

/**
 * Step 1: a copy of `net` unlearned by gradient ascent on the clean cross-entropy (see the
 * file comment). Returns the copy and each epoch's training accuracy.
 */
export async function unlearn(
  net: tfl.LayersModel, clean: TrainingSet, numClasses: number, opts: Partial<RnpOptions> = {},
  hooks: { seed?: number; onEpoch?: (epoch: number, total: number, accuracy: number) => void } = {},
): Promise<{ net: tfl.LayersModel; accuracy: number[] }> {
  const o = { ...RNP_DEFAULTS, ...defined(opts) };
  const copy = await cloneNet(net);
  const vars = copy.trainableWeights.map((w) => w.read() as unknown as tf.Variable);
  // Input scale: the original's models read standardised inputs (RMS about 1); goodnet's lab
  // models read raw 0..255 pixels with the 1/255 folded into the first conv. SGD on weights is
  // not invariant to that, so the kernels of the layers reading the input take their steps in
  // the coordinates of a model whose input has RMS 1 (W' = W x s): gradient / s, step / s.
  const s = inputRms(clean);
  const firstKernels = new Set(inputKernels(copy).map((w) => w.read().id));
  const factor = vars.map((v) => (firstKernels.has(v.id) && s > 0 ? s : 1));
  const velocity: tf.Tensor[] = vars.map((v) => tf.zerosLike(v as tf.Tensor));
  const rng = seedrandom(`rnp-unlearn:${hooks.seed ?? 0}`);
  const accuracy: number[] = [];
  const window: [number, number][] = [];
  let stopped: number | undefined;
  try {
    for (let epoch = 1; epoch <= o.unlearnEpochs; epoch++) {
      const order = permutation(clean.n, rng);
      let right = 0;
      let seen = 0;
      for (let s = 0; s < clean.n; s += o.batchSize) {
        const { x, y } = batchOf(clean, order.subarray(s, Math.min(s + o.batchSize, clean.n)));
        let hits = 0;
        const { grads } = tf.variableGrads(() => {
          const logits = forwardLogits(copy, x, new Map(), { batchStats: true });
          hits = correct(logits, y);
          return tf.neg(crossEntropyLogits(logits, y, numClasses)) as tf.Scalar; // ascent on the loss
        }, vars);
        right += hits;
        seen += x.shape[0];
        window.push([hits, x.shape[0]]);
        tf.tidy(() => {
          const gs = vars.map((v, i) => tf.div(grads[v.name]!, factor[i]!));
          // clip_grad_norm_(max_norm=20), then torch SGD: g + wd * w; v = 0.9 v + g; w -= lr v
          const norm = Math.sqrt(gs.reduce((a, g) => a + tf.sum(tf.square(g)).dataSync()[0]!, 0));
          const k = norm > 20 ? 20 / (norm + 1e-6) : 1;
          vars.forEach((v, i) => {
            const g = tf.add(tf.mul(gs[i]!, k), tf.mul(v, 5e-4 * factor[i]!));
            const nv = tf.add(tf.mul(velocity[i]!, 0.9), g);
            velocity[i]!.dispose();
            velocity[i] = tf.keep(nv);
            v.assign(tf.sub(v, tf.mul(nv, o.unlearnLr / factor[i]!)));
          });
        });
        tf.dispose([x, y, ...Object.values(grads)]);
        await yieldToEventLoop();
        // The original checks its training accuracy once per epoch of its 500 clean images
        // (4 batches); here every `checkImages` images, so a larger clean set does not
        // unlearn for many more steps than the original before the check.
        const w = window.reduce((a, [, n]) => a + n, 0);
        if (w >= o.checkImages) {
          const acc = window.reduce((a, [h]) => a + h, 0) / w;
          window.length = 0;
          if (acc <= o.cleanThreshold) {
            stopped = acc;
            break;
          }
        }
      }
      const acc = right / seen;
      accuracy.push(stopped ?? acc);
      hooks.onEpoch?.(epoch, o.unlearnEpochs, stopped ?? acc);
      if (stopped !== undefined || acc <= o.cleanThreshold) break;
    }
    return { net: copy, accuracy };
  } catch (err) {
    copy.dispose();
    throw err;
  } finally {
    tf.dispose(velocity);
  }
}

/** Step 2: masks that restore the unlearned copy's clean accuracy (see the file comment). */
export async function recoverMasks(
  unlearned: tfl.LayersModel, clean: TrainingSet, numClasses: number, opts: Partial<RnpOptions> = {},
  hooks: { seed?: number; onEpoch?: (epoch: number, total: number, accuracy: number) => void } = {},
): Promise<{ units: ChannelUnit[]; masks: Float32Array[]; accuracy: number[] }> {
  const o = { ...RNP_DEFAULTS, ...defined(opts) };
  const units = channelUnits(unlearned);
  if (units.length === 0) throw new GoodnetError('the model has no Conv2D layer; RNP masks conv channels');
  const masks = units.map((u) => tf.variable(tf.ones([u.channels]), true, undefined, 'float32') as tf.Variable<tf.Rank.R1>);
  const velocity = units.map((u) => new Float32Array(u.channels));
  const rng = seedrandom(`rnp-recover:${hooks.seed ?? 0}`);
  const accuracy: number[] = [];
  try {
    for (let epoch = 1; epoch <= o.recoverEpochs; epoch++) {
      const order = permutation(clean.n, rng);
      let right = 0;
      for (let s = 0; s < clean.n; s += o.batchSize) {
        const { x, y } = batchOf(clean, order.subarray(s, Math.min(s + o.batchSize, clean.n)));
        let hits = 0;
        const { grads } = tf.variableGrads(() => {
          const scales = new Map<string, ChannelScale>(units.map((u, k) => [u.layer, { w: masks[k]! }]));
          const logits = forwardLogits(unlearned, x, scales, { batchStats: true });
          hits = correct(logits, y);
          return tf.mul(o.alpha, crossEntropyLogits(logits, y, numClasses)) as tf.Scalar;
        }, masks);
        right += hits;
        for (let k = 0; k < units.length; k++) {
          const g = grads[masks[k]!.name];
          if (!g) continue;
          const gv = await g.data();
          const v = velocity[k]!;
          const m = masks[k]!.dataSync();
          const next = new Float32Array(m.length);
          for (let j = 0; j < m.length; j++) {
            v[j] = 0.9 * v[j]! + gv[j]!;
            next[j] = Math.min(1, Math.max(0, m[j]! - o.recoverLr * v[j]!));
          }
          const t = tf.tensor1d(next);
          masks[k]!.assign(t);
          t.dispose();
        }
        tf.dispose([x, y, ...Object.values(grads)]);
        await yieldToEventLoop();
      }
      accuracy.push(right / clean.n);
      hooks.onEpoch?.(epoch, o.recoverEpochs, right / clean.n);
    }
    return { units, masks: masks.map((m) => m.dataSync() as Float32Array), accuracy };
  } finally {
    tf.dispose(masks);
  }
}

/** RNP on a model and clean data: unlearn, recover masks, prune the original. */
export async function runRnp(input: DefenseInput, options: Partial<RnpOptions> = {}): Promise<DefenseRun<RnpDetails>> {
  const o = { ...RNP_DEFAULTS, ...defined(options) };
  for (const [k, v] of [['--unlearn-lr', o.unlearnLr], ['--recover-lr', o.recoverLr], ['--alpha', o.alpha]] as const) {
    if (!(v > 0 && Number.isFinite(v))) throw new GoodnetError(`${k} must be > 0, got ${v}`);
  }
  for (const [k, v] of [['--unlearn-epochs', o.unlearnEpochs], ['--recover-epochs', o.recoverEpochs], ['--rnp-batch-size', o.batchSize]] as const) {
    if (!(Number.isInteger(v) && v >= 1)) throw new GoodnetError(`${k} must be an integer >= 1, got ${v}`);
  }
  if (!(o.cleanThreshold >= 0 && o.cleanThreshold <= 1)) throw new GoodnetError(`--clean-threshold must be in [0, 1], got ${o.cleanThreshold}`);
  if (o.count !== undefined && !(Number.isInteger(o.count) && o.count >= 0)) throw new GoodnetError(`--count must be an integer >= 0, got ${o.count}`);
  if (o.maxDrop !== undefined && !(o.maxDrop >= 0 && o.maxDrop < 100)) throw new GoodnetError(`--max-drop must be in [0, 100) points, got ${o.maxDrop}`);
  if (!(o.holdOut > 0 && o.holdOut < 1)) throw new GoodnetError(`--hold-out must be in (0, 1), got ${o.holdOut}`);
  const t0 = performance.now();
  const clean = await loadCleanData(input);
  const { model } = input;
  const [heldOut, trainOn] = o.maxDrop !== undefined ? splitSet(clean, o.holdOut, `rnp-holdout:${input.seed ?? 0}`) : [clean, clean];
  input.log?.(`RNP: unlearning on ${trainOn.n} clean images (lr ${o.unlearnLr}, until training accuracy <= ${o.cleanThreshold} or ${o.unlearnEpochs} epochs)`);
  const u = await unlearn(model.net, trainOn, model.numClasses, o, { seed: input.seed, onEpoch: (e, t, a) => input.onProgress?.('RNP unlearning', e, t, `accuracy ${(a * 100).toFixed(1)}%`) });
  input.onProgress?.('RNP unlearning', o.unlearnEpochs, o.unlearnEpochs);
  const unlearnSeconds = (performance.now() - t0) / 1000;
  input.log?.(`RNP: unlearned in ${u.accuracy.length} epochs (training accuracy ${u.accuracy.map((a) => (a * 100).toFixed(1)).join(', ')}%); recovering masks, ${o.recoverEpochs} epochs`);
  let r: Awaited<ReturnType<typeof recoverMasks>>;
  try {
    r = await recoverMasks(u.net, trainOn, model.numClasses, o, { seed: input.seed, onEpoch: (e, t, a) => input.onProgress?.('RNP recovering', e, t, `accuracy ${(a * 100).toFixed(1)}%`) });
  } finally {
    u.net.dispose();
  }
  const recoverSeconds = (performance.now() - t0) / 1000 - unlearnSeconds;
  const { all, pruned, rule, curve, base, repaired, validAccuracy } = await pruneByMasks(
    model.net, r.units, r.masks, heldOut, o, input.batchSize, (i, t) => input.onProgress?.('RNP pruning', i, t));
  input.log?.(`RNP: pruned ${pruned.length} of ${all.length} channels (${rule}); clean accuracy ${(base * 100).toFixed(2)}% -> ${(validAccuracy * 100).toFixed(2)}% on ${heldOut === clean ? 'the' : 'the held-out'} ${heldOut.n} clean images`);
  return {
    defense: 'rnp', repaired, cleanImages: clean.n, seconds: (performance.now() - t0) / 1000,
    details: {
      units: r.units, masks: all, pruned, rule, unlearnAccuracy: u.accuracy, recoverAccuracy: r.accuracy, baseValidAccuracy: base, validAccuracy,
      accuracyImages: heldOut.n, heldOut: heldOut !== clean, ...(curve ? { curve } : {}), unlearnSeconds, recoverSeconds, settings: o,
    },
  };
}

export const rnp: Defense<RnpOptions, RnpDetails> = registerDefense<RnpOptions, RnpDetails>({
  name: 'rnp',
  title: 'RNP (reconstructive neuron pruning)',
  summary: 'unlearns a copy on clean data, learns channel masks that recover it, and prunes the original\'s channels whose masks stay low',
  kind: 'repair',
  defaults: RNP_DEFAULTS,
  run: runRnp,
  rows: (run, m) => {
    const d = run.details;
    const how = maskRuleLabel(d.rule, d.settings);
    return repairRow(`RNP (${how}; ${d.pruned.length} channels)`, run, m);
  },
  section: (run, m): ReportSection => {
    const d = run.details;
    return {
      title: 'RNP (reconstructive neuron pruning)',
      text: [
        `Unlearning: ${d.unlearnAccuracy.length} epochs of gradient ascent on ${run.cleanImages} clean images (lr ${d.settings.unlearnLr}), training accuracy ` +
          `${d.unlearnAccuracy.map((a) => pct(a)).join(', ')}, ${d.unlearnSeconds.toFixed(0)} s. Recovering: ${d.settings.recoverEpochs} epochs of channel masks ` +
          `(lr ${d.settings.recoverLr}), training accuracy ${pct(d.recoverAccuracy[0] ?? 0)} -> ${pct(d.recoverAccuracy.at(-1) ?? 0)}, ${d.recoverSeconds.toFixed(0)} s.`,
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
