/**
 * ANP, adversarial neuron pruning (Wu and Wang, NeurIPS 2021). Every conv output channel
 * gets a mask m in [0,1] and multiplicative noise (d on the weight part, d_b on the bias
 * part, both in [-eps, eps]) on the layer that carries it: the following BatchNormalization
 * when there is one (as the original), else the conv itself (its pre-activation output):
 *
 *   natural:   out_k = m_k * W_k x + b_k
 *   perturbed: out_k = (m_k + d_k) * W_k x + (1 + d_b,k) * b_k
 *
 * Per batch of clean images: the noise starts uniform in [-eps, eps] and takes one signed
 * gradient ascent step on the perturbed loss (clipped to [-eps, eps]); then the masks take
 * one SGD step (momentum 0.9) on alpha * CE(natural) + (1 - alpha) * CE(perturbed) and are
 * clipped to [0,1]. Channels whose backdoor role makes the network fragile under the noise
 * lose their mask. Pruning: channels with mask below `threshold` (default 0.2, the
 * original's), or the `count` smallest, or as many of the smallest as keep clean accuracy on
 * the clean data within `maxDrop` points. Every choice reads clean data only.
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import seedrandom from 'seedrandom';
import { GoodnetError } from '../errors.js';
import { yieldToEventLoop } from '../io/atomic.js';
import { permutation, type TrainingSet } from '../models/train.js';
import { channelUnits, forwardLogits, crossEntropyLogits, zeroUnitChannels, type ChannelScale, type ChannelUnit } from './channels.js';
import { cloneNet } from './graph.js';
import {
  loadCleanData, registerDefense, repairRow, type Defense, type DefenseInput, type DefenseRun, type ReportSection,
} from './interface.js';
import { accuracyOf } from './measure_clean.js';

export interface AnpOptions {
  /** Noise bound. */
  eps: number;
  /** Weight of the natural loss (1 - alpha on the perturbed one). */
  alpha: number;
  /** Mask learning rate (SGD, momentum 0.9). */
  learningRate: number;
  iterations: number;
  batchSize: number;
  /** Prune channels whose mask is below this. */
  threshold: number;
  /** Or prune exactly this many channels (smallest masks). */
  count?: number;
  /** Or prune the smallest masks while clean accuracy stays within this many points. */
  maxDrop?: number;
  /** Conv layers to perturb (default: all). */
  layers?: string[];
}

export const ANP_DEFAULTS: AnpOptions = { eps: 0.4, alpha: 0.2, learningRate: 0.2, iterations: 300, batchSize: 128, threshold: 0.2 };

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
  baseValidAccuracy: number;
  validAccuracy: number;
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
  hooks: { seed?: number; onIteration?: (i: number, total: number) => void } = {},
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
  let order = permutation(clean.n, rng);
  let cursor = 0;
  const noiseInit = (n: number) => tf.tensor1d(Float32Array.from({ length: n }, () => (2 * rng() - 1) * o.eps));
  try {
    for (let it = 0; it < o.iterations; it++) {
      const x = new Float32Array(bs * per);
      const y = new Int32Array(bs);
      for (let b = 0; b < bs; b++) {
        if (cursor >= clean.n) {
          cursor = 0;
          order = permutation(clean.n, rng);
        }
        const i = order[cursor++]!;
        x.set(clean.images.subarray(i * per, (i + 1) * per), b * per);
        y[b] = clean.labels[i]!;
      }
      const xt = tf.tensor4d(x, [bs, h, w, c]);
      const yt = tf.tensor1d(y, 'int32');
      // 1. One signed gradient ascent step on the noise, from a random start.
      let noiseW = units.map((u) => noiseInit(u.channels));
      let noiseB = units.map((u) => noiseInit(u.channels));
      if (o.eps > 0) {
        const grads = tf.grads((...ns: tf.Tensor[]) => {
          const scales = new Map<string, ChannelScale>(units.map((u, k) => [u.layer, { w: tf.add(masks[k]!, ns[k]!) as tf.Tensor1D, b: tf.add(1, ns[units.length + k]!) as tf.Tensor1D }]));
          return crossEntropyLogits(forwardLogits(net, xt, scales), yt, numClasses);
        })([...noiseW, ...noiseB]);
        const stepped = tf.tidy(() => grads.map((g, k) => tf.clipByValue(tf.add(k < units.length ? noiseW[k]! : noiseB[k - units.length]!, tf.mul(tf.sign(g), o.eps)), -o.eps, o.eps)));
        tf.dispose([...grads, ...noiseW, ...noiseB]);
        noiseW = stepped.slice(0, units.length) as tf.Tensor1D[];
        noiseB = stepped.slice(units.length) as tf.Tensor1D[];
      }
      // 2. One SGD step on the masks: alpha * natural + (1 - alpha) * perturbed.
      const { grads } = tf.variableGrads(() => {
        const nat = new Map<string, ChannelScale>(units.map((u, k) => [u.layer, { w: masks[k]! }]));
        const pert = new Map<string, ChannelScale>(units.map((u, k) => [u.layer, { w: tf.add(masks[k]!, noiseW[k]!) as tf.Tensor1D, b: tf.add(1, noiseB[k]!) as tf.Tensor1D }]));
        const lossNat = crossEntropyLogits(forwardLogits(net, xt, nat), yt, numClasses);
        const lossRob = o.alpha < 1 ? crossEntropyLogits(forwardLogits(net, xt, pert), yt, numClasses) : tf.scalar(0);
        return tf.add(tf.mul(o.alpha, lossNat), tf.mul(1 - o.alpha, lossRob)) as tf.Scalar;
      }, masks);
      for (let k = 0; k < units.length; k++) {
        const g = grads[masks[k]!.name];
        if (!g) continue;
        const gv = await g.data();
        const v = velocity[k]!;
        const m = masks[k]!.dataSync();
        const next = new Float32Array(m.length);
        for (let j = 0; j < m.length; j++) {
          v[j] = 0.9 * v[j]! + gv[j]!;
          next[j] = Math.min(1, Math.max(0, m[j]! - o.learningRate * v[j]!));
        }
        const t = tf.tensor1d(next);
        masks[k]!.assign(t);
        t.dispose();
      }
      tf.dispose([xt, yt, ...noiseW, ...noiseB, ...Object.values(grads)]);
      hooks.onIteration?.(it + 1, o.iterations);
      await yieldToEventLoop();
    }
    return { units, masks: masks.map((m) => m.dataSync() as Float32Array) };
  } finally {
    tf.dispose(masks);
  }
}

function pruneCopy(net: tfl.LayersModel, units: ChannelUnit[], chosen: AnpChannel[]): Promise<tfl.LayersModel> {
  return cloneNet(net).then((copy) => {
    for (const u of units) zeroUnitChannels(copy, u, chosen.filter((c) => c.layer === u.layer).map((c) => c.channel));
    return copy;
  });
}

/** ANP on a model and clean data: masks, pruned channels, repaired model. */
export async function runAnp(input: DefenseInput, options: Partial<AnpOptions> = {}): Promise<DefenseRun<AnpDetails>> {
  const o = { ...ANP_DEFAULTS, ...defined(options) };
  if (!(o.eps >= 0 && o.eps < 1)) throw new GoodnetError(`--eps must be in [0, 1), got ${o.eps}`);
  if (!(o.alpha >= 0 && o.alpha <= 1)) throw new GoodnetError(`--alpha must be in [0, 1], got ${o.alpha}`);
  if (!(Number.isInteger(o.iterations) && o.iterations >= 1)) throw new GoodnetError(`--iterations must be an integer >= 1, got ${o.iterations}`);
  if (o.count !== undefined && !(Number.isInteger(o.count) && o.count >= 0)) throw new GoodnetError(`--count must be an integer >= 0, got ${o.count}`);
  if (o.maxDrop !== undefined && !(o.maxDrop >= 0 && o.maxDrop < 100)) throw new GoodnetError(`--max-drop must be in [0, 100) points, got ${o.maxDrop}`);
  const t0 = performance.now();
  const clean = await loadCleanData(input);
  const { model } = input;
  input.log?.(`ANP: ${o.iterations} iterations of ${Math.min(o.batchSize, clean.n)} clean images (eps ${o.eps}, alpha ${o.alpha})`);
  const r = await anpMasks(model.net, clean, model.numClasses, o, { seed: input.seed, onIteration: (i, t) => input.onProgress?.('ANP masks', i, t) });
  const optimiseSeconds = (performance.now() - t0) / 1000;
  const all: AnpChannel[] = r.units.flatMap((u, k) => Array.from(r.masks[k]!, (mask, channel) => ({ conv: u.conv, layer: u.layer, channel, mask })));
  const sorted = [...all].sort((a, b) => a.mask - b.mask);
  const base = await accuracyOf(model.net, clean, input.batchSize);
  let pruned: AnpChannel[];
  let rule: AnpDetails['rule'];
  let curve: number[] | undefined;
  if (o.count !== undefined) {
    rule = 'count';
    pruned = sorted.slice(0, o.count);
  } else if (o.maxDrop !== undefined) {
    rule = 'max-drop';
    curve = [base];
    let k = 0;
    // Prune in ascending mask order while clean accuracy stays within the budget.
    while (k < sorted.length && sorted[k]!.mask < 1) {
      const net = await pruneCopy(model.net, r.units, sorted.slice(0, k + 1));
      const acc = await accuracyOf(net, clean, input.batchSize);
      net.dispose();
      curve.push(acc);
      input.onProgress?.('ANP pruning', k + 1, sorted.length);
      if ((base - acc) * 100 > o.maxDrop) break;
      k++;
    }
    pruned = sorted.slice(0, k);
  } else {
    rule = 'threshold';
    pruned = sorted.filter((c) => c.mask < o.threshold);
  }
  const repaired = await pruneCopy(model.net, r.units, pruned);
  const validAccuracy = await accuracyOf(repaired, clean, input.batchSize);
  input.log?.(`ANP: pruned ${pruned.length} of ${all.length} channels (${rule}); clean accuracy ${(base * 100).toFixed(2)}% -> ${(validAccuracy * 100).toFixed(2)}% on the ${clean.n} clean images`);
  return {
    defense: 'anp', repaired, cleanImages: clean.n, seconds: (performance.now() - t0) / 1000,
    details: { units: r.units, masks: all, pruned, rule, baseValidAccuracy: base, validAccuracy, ...(curve ? { curve } : {}), optimiseSeconds, settings: o },
  };
}

const pct = (x: number) => `${(x * 100).toFixed(2)}%`;

export const anp: Defense<AnpOptions, AnpDetails> = registerDefense<AnpOptions, AnpDetails>({
  name: 'anp',
  title: 'ANP (adversarial neuron pruning)',
  summary: 'learns per-channel masks under adversarial multiplicative noise on clean data and prunes the channels whose masks collapse',
  kind: 'repair',
  defaults: ANP_DEFAULTS,
  run: runAnp,
  rows: (run, m) => {
    const d = run.details;
    const how = d.rule === 'threshold' ? `mask < ${d.settings.threshold}` : d.rule === 'count' ? `${d.settings.count} smallest` : `max drop ${d.settings.maxDrop} pts`;
    return repairRow(`ANP (${how}; ${d.pruned.length} channels)`, run, m);
  },
  section: (run, m): ReportSection => {
    const d = run.details;
    return {
      title: 'ANP (adversarial neuron pruning)',
      text: [
        `${d.settings.iterations} iterations on ${run.cleanImages} clean images (eps ${d.settings.eps}, alpha ${d.settings.alpha}, mask learning rate ${d.settings.learningRate}), ` +
          `${d.optimiseSeconds.toFixed(0)} s. Noise on ${d.units.map((u) => (u.kind === 'bn' ? `${u.layer} (BN of ${u.conv})` : `${u.conv} (no BN: the conv channels)`)).join(', ')}.`,
        `Pruned ${d.pruned.length} channels (${d.rule}); clean accuracy on the clean data ${pct(d.baseValidAccuracy)} -> ${pct(d.validAccuracy)}.`,
        ...(m.after ? [`Repaired model on the test sets: clean accuracy ${pct(m.after.accuracy)}, ASR ${pct(m.after.asr)}.`] : []),
      ],
      tables: [{
        caption: 'smallest masks', headers: ['layer', 'channel', 'mask', 'pruned'],
        rows: [...d.masks].sort((a, b) => a.mask - b.mask).slice(0, Math.max(10, d.pruned.length)).map((c) => [c.conv, c.channel, c.mask.toFixed(3), d.pruned.some((p) => p.layer === c.layer && p.channel === c.channel) ? 'yes' : '']),
      }],
    };
  },
});
