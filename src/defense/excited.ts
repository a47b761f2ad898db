/**
 * Pruning what reversed triggers still excite (Neural Cleanse's "neuron pruning" mitigation,
 * Wang et al. 2019, sec. 6), from clean data only:
 *
 *  1. At the prune point (graph.ts's cut), each channel's mean activation on held-out clean
 *     images stamped with a reversed trigger, minus its mean on the same images unstamped;
 *     a channel's score is the largest such difference over the triggers. The activations
 *     are read from `rankNet` (the model the triggers were reversed on, or the repaired one).
 *  2. Channels with a positive score, highest first (at most `maxShare` of them), are pruned
 *     one more at a time while the held-out clean accuracy of `net` with them zeroed stays
 *     within `maxDrop` points of `net`'s own: the first step that falls below stops it
 *     (`stop: 'first'`), or every step is tried and the largest within the budget is kept
 *     (`'largest'`).
 *     The held-out accuracy of the stamped images (against their true labels) is recorded at
 *     every step; it decides nothing.
 *  3. The result is a copy of `net` with those channels zeroed (mask.ts, as `goodnet prune`
 *     saves them), so the saved model computes exactly what the held-out images measured.
 *
 * Nothing poisoned is read: the triggers come from clean data (nc.ts's reversal).
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { GoodnetError } from '../errors.js';
import type { TrainingSet } from '../models/train.js';
import { tailLabels, type CutActivations } from './activations.js';
import { findCutPoint, headModel, tailModel, type CutPoint } from './graph.js';
import { keepVector, maskedCopy } from './mask.js';
import { stampWith } from './nc.js';

export interface Trigger { mask: Float32Array; pattern: Float32Array }

export interface ExcitedPruneOptions {
  /** Held-out clean accuracy may fall at most this many points below the unpruned model's. */
  maxDrop: number;
  /** Prune at most this share of the prune point's channels. */
  maxShare: number;
  /**
   * 'first': stop at the first step below the budget; 'largest': try every step (up to
   * `maxShare`) and keep the most channels whose held-out accuracy is within the budget.
   */
  stop: 'first' | 'largest';
}

export const EXCITED_PRUNE_DEFAULTS: ExcitedPruneOptions = { maxDrop: 1, maxShare: 0.5, stop: 'first' };

export interface ExcitedPruneStep { pruned: number; channel: number; cleanAccuracy: number; stampedAccuracy: number }

export interface ExcitedPruneRecord {
  /** The prune point (layer whose output channels are zeroed) and its channel count. */
  layer: string;
  channels: number;
  /** Channels with a positive score, in pruning order, with their scores. */
  order: number[];
  scores: number[];
  /** Held-out accuracies before pruning (step 0) and after each channel tried. */
  steps: ExcitedPruneStep[];
  /** Pruned channels (a prefix of `order`). */
  pruned: number[];
  baseline: number;
  /** Wall-clock seconds of the whole step (ranking, the held-out steps, the pruned copy). */
  seconds: number;
  settings: ExcitedPruneOptions;
}

/** Activations of `head` at the cut for a set of images (model-input pixels), in batches. */
function activationsOf(head: tfl.LayersModel, set: TrainingSet, batch = 256): CutActivations {
  const per = set.shape[0] * set.shape[1] * set.shape[2];
  const parts: tf.Tensor[] = [];
  try {
    for (let s = 0; s < set.n; s += batch) {
      const n = Math.min(batch, set.n - s);
      parts.push(tf.tidy(() => head.predict(tf.tensor4d(set.images.subarray(s * per, (s + n) * per), [n, ...set.shape]), { batchSize: n }) as tf.Tensor));
    }
    const values = (parts.length === 1 ? parts[0]!.clone() : tf.concat(parts, 0)) as tf.Tensor4D | tf.Tensor2D;
    return { values, labels: Int32Array.from(set.labels), source: 'held-out' };
  } finally {
    tf.dispose(parts);
  }
}

/** Mean activation per channel (over images and positions). */
function meansOf(a: CutActivations): Float32Array {
  return tf.tidy(() => tf.mean(a.values, a.values.shape.slice(0, -1).map((_, i) => i)).dataSync() as Float32Array);
}

function accuracyOf(pred: Int32Array, labels: ArrayLike<number>): number {
  let c = 0;
  for (let i = 0; i < pred.length; i++) if (pred[i] === labels[i]) c++;
  return pred.length === 0 ? 0 : c / pred.length;
}

/** Per-channel scores: max over triggers of (mean stamped activation - mean clean activation), read from `net`. */
export function excitationScores(net: tfl.LayersModel, cut: CutPoint, held: TrainingSet, triggers: Trigger[]): Float32Array {
  const head = headModel(net, cut);
  const clean = activationsOf(head, held);
  const base = meansOf(clean);
  clean.values.dispose();
  const scores = new Float32Array(base.length).fill(-Infinity);
  triggers.forEach((t, i) => {
    const a = activationsOf(head, stampWith(held, [t], 1, `excited:${i}`).set);
    const m = meansOf(a);
    a.values.dispose();
    for (let c = 0; c < m.length; c++) scores[c] = Math.max(scores[c]!, m[c]! - base[c]!);
  });
  return scores;
}

/**
 * Prune `net`'s channels that the triggers excite, within the held-out clean budget (module
 * comment). Returns a new model (the caller disposes it; `net` is not changed) and the record.
 */
export async function pruneExcited(
  net: tfl.LayersModel, held: TrainingSet, triggers: Trigger[], options: Partial<ExcitedPruneOptions> = {}, rankNet: tfl.LayersModel = net,
): Promise<{ net: tfl.LayersModel; record: ExcitedPruneRecord }> {
  const o: ExcitedPruneOptions = { ...EXCITED_PRUNE_DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) };
  if (!(o.maxDrop >= 0)) throw new GoodnetError(`excited-channel pruning max drop must be >= 0 points, got ${o.maxDrop}`);
  if (!(o.maxShare > 0 && o.maxShare <= 1)) throw new GoodnetError(`excited-channel pruning share must be in (0, 1], got ${o.maxShare}`);
  if (o.stop !== 'first' && o.stop !== 'largest') throw new GoodnetError(`excited-channel pruning stop must be 'first' or 'largest', got '${String(o.stop)}'`);
  if (triggers.length === 0) throw new GoodnetError('no triggers to rank channels by');
  const t0 = performance.now();
  const cut = findCutPoint(net);
  const scores = excitationScores(rankNet, cut, held, triggers);
  const order = [...scores.keys()].filter((c) => scores[c]! > 0).sort((a, b) => scores[b]! - scores[a]! || a - b)
    .slice(0, Math.floor(o.maxShare * cut.channels));
  const head = headModel(net, cut);
  const tail = await tailModel(net, cut);
  const clean = activationsOf(head, held);
  const stampedSet = stampWith(held, triggers, 1, 'held-out').set;
  const stamped = activationsOf(head, stampedSet);
  try {
    const evalAt = async (k: number) => {
      const keep = keepVector(cut.channels, order.slice(0, k));
      return {
        clean: accuracyOf(await tailLabels(tail, clean, keep), held.labels),
        stamped: accuracyOf(await tailLabels(tail, stamped, keep), stampedSet.labels),
      };
    };
    const e0 = await evalAt(0);
    const steps: ExcitedPruneStep[] = [{ pruned: 0, channel: -1, cleanAccuracy: e0.clean, stampedAccuracy: e0.stamped }];
    let k = 0;
    for (let j = 1; j <= order.length; j++) {
      const e = await evalAt(j);
      steps.push({ pruned: j, channel: order[j - 1]!, cleanAccuracy: e.clean, stampedAccuracy: e.stamped });
      if (e.clean < e0.clean - o.maxDrop / 100 - 1e-9) {
        if (o.stop === 'first') break;
      } else {
        k = j;
      }
    }
    const pruned = order.slice(0, k);
    const out = await maskedCopy(net, cut, pruned);
    return {
      net: out,
      record: { layer: cut.conv, channels: cut.channels, order, scores: order.map((c) => scores[c]!), steps, pruned, baseline: e0.clean, seconds: (performance.now() - t0) / 1000, settings: o },
    };
  } finally {
    clean.values.dispose();
    stamped.values.dispose();
    tail.dispose();
  }
}
