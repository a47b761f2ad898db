/**
 * The pruning sweep: prune the conv layer's channels one at a time in order of mean
 * activation and record clean accuracy and ASR after each step, evaluating only the
 * network's tail on the cached, masked activations (see activations.ts).
 */
import type * as tfl from '@tensorflow/tfjs-layers';
import { GoodnetError } from '../errors.js';
import { yieldToEventLoop } from '../io/atomic.js';
import { accuracy, attackSuccessRate } from '../eval/metrics.js';
import { tailLabels, type CutActivations } from './activations.js';
import type { PruneOrder, SweepStep, ThresholdPick, ThresholdRule } from './types.js';

/** Channels in pruning order: ascending mean activation (the paper's defense) or descending; ties by index. */
export function channelOrder(means: number[], order: PruneOrder): number[] {
  const idx = means.map((_, i) => i);
  return idx.sort((a, b) => (order === 'asc' ? means[a]! - means[b]! : means[b]! - means[a]!) || a - b);
}

export interface SweepOptions {
  order: PruneOrder;
  target: number;
  /** Prune at most this many channels (default: the whole layer). */
  stopAt?: number;
  onStep?: (step: SweepStep, lastStep: number) => void;
}

/** Mask with the first `k` channels of `order` zeroed. */
export function maskFor(channels: number, order: number[], k: number): Float32Array {
  const mask = new Float32Array(channels).fill(1);
  for (let i = 0; i < k; i++) mask[order[i]!] = 0;
  return mask;
}

export async function sweep(
  tail: tfl.LayersModel,
  clean: CutActivations,
  poisoned: CutActivations,
  means: number[],
  options: SweepOptions,
): Promise<{ channelOrder: number[]; steps: SweepStep[] }> {
  const channels = means.length;
  const order = channelOrder(means, options.order);
  const last = Math.min(channels, options.stopAt ?? channels);
  const steps: SweepStep[] = [];
  for (let k = 0; k <= last; k++) {
    await yieldToEventLoop(); // Ctrl-C between steps
    const mask = maskFor(channels, order, k);
    const acc = accuracy(await tailLabels(tail, clean, mask), clean.labels);
    const asr = attackSuccessRate(await tailLabels(tail, poisoned, mask), poisoned.labels, options.target);
    const step: SweepStep = { step: k, channel: k === 0 ? null : order[k - 1]!, fractionPruned: k / channels, accuracy: acc.value, asr: asr.value };
    steps.push(step);
    options.onStep?.(step, last);
  }
  return { channelOrder: order, steps };
}

/**
 * For each threshold X (percentage points), the first step whose clean accuracy is at least
 * X points below the unpruned model's ('first-drop'), or the step before it ('last-within').
 * Drops are compared on counts of correct images, so 2.00 points is exactly 2.
 */
export function pickThresholds(
  steps: SweepStep[],
  channelOrderList: number[],
  thresholds: number[],
  rule: ThresholdRule,
  images: number,
): ThresholdPick[] {
  if (steps.length === 0) throw new GoodnetError('empty sweep');
  const correct = (s: SweepStep) => Math.round(s.accuracy * images);
  const c0 = correct(steps[0]!);
  return thresholds.map((threshold) => {
    const k = steps.findIndex((s) => s.step > 0 && (c0 - correct(s)) * 100 >= threshold * images - 1e-9);
    const chosen = k < 0 ? null : rule === 'first-drop' ? k : k - 1;
    const s = chosen === null ? undefined : steps[chosen]!;
    return {
      threshold,
      rule,
      step: s ? s.step : null,
      pruned: s ? channelOrderList.slice(0, s.step) : [],
      fractionPruned: s ? s.fractionPruned : NaN,
      validAccuracy: s ? s.accuracy : NaN,
      validAsr: s ? s.asr : NaN,
    };
  });
}
