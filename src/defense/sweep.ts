/**
 * The pruning sweep: prune the conv layer's channels one at a time in order of mean
 * activation and record clean accuracy and ASR after each step, evaluating only the
 * network's tail on the cached, masked activations (see activations.ts).
 */
import type * as tfl from '@tensorflow/tfjs-layers';
import { GoodnetError } from '../errors.js';
import { yieldToEventLoop } from '../io/atomic.js';
import { accuracy, attackSuccessRate } from '../eval/metrics.js';
import { stepMetrics } from './lazy_wasm.js';
import { tailLabels, tailLabelsMaskedFrom, type CutActivations } from './activations.js';
import type { FastSweepOptions } from './fastsweep.js';
import { matchTail } from './tailkinds.js';
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
  /**
   * Incremental path for the tail kinds of tailkinds.ts, on by default; false forces
   * the general tail-mask path. Labels equal the general path's (ambiguous images are
   * recomputed with it).
   */
  fast?: boolean | FastSweepOptions;
}

export interface SweepStats {
  path: 'incremental' | 'tail-mask';
  /** The incremental path's tail kind (tailkinds.ts): 'deepid' or 'linear'. */
  kind?: string;
  /** What ran the kind's kernel: 'tfjs', 'ort' (onnxruntime-node), or for the linear kind's pooled cut into the output layer 'wasm' (float64 in WebAssembly) or 'js' (the same in JS). */
  engine?: 'tfjs' | 'ort' | 'js' | 'wasm';
  /** Image-steps recomputed with the reference tail because their margin was too small. */
  recomputed: number;
  /** Incremental path: image-steps that ran the output layer (the others provably kept their label). */
  outputRuns?: number;
  /** Seconds in the incremental pass (workers) and in the exact recomputes. */
  seconds?: { incremental: number; recompute: number };
}

/** Mask with the first `k` channels of `order` zeroed. */
export function maskFor(channels: number, order: number[], k: number): Float32Array {
  const mask = new Float32Array(channels).fill(1);
  for (let i = 0; i < k; i++) mask[order[i]!] = 0;
  return mask;
}

/**
 * Start what the sweep of `tail` will need (its tail kind's engine: onnxruntime's session for
 * the linear kind), so that it loads while the head runs over the data; never throws, and the
 * sweep works the same without it.
 */
export function prepareSweep(tail: tfl.LayersModel, channels: number, fast?: boolean | FastSweepOptions): void {
  if (fast === false) return;
  const m = matchTail(tail, channels);
  m?.kind.prepare?.(m.t, typeof fast === 'object' ? fast : {});
}

export async function sweep(
  tail: tfl.LayersModel,
  clean: CutActivations,
  poisoned: CutActivations,
  means: number[],
  options: SweepOptions,
): Promise<{ channelOrder: number[]; steps: SweepStep[]; stats: SweepStats }> {
  const channels = means.length;
  const order = channelOrder(means, options.order);
  const last = Math.min(channels, options.stopAt ?? channels);
  const steps: SweepStep[] = [];
  const record = (k: number, acc: number, asr: number) => {
    const step: SweepStep = { step: k, channel: k === 0 ? null : order[k - 1]!, fractionPruned: k / channels, accuracy: acc, asr };
    steps.push(step);
    options.onStep?.(step, last);
  };
  const fast = options.fast === false ? null : matchTail(tail, channels);
  if (fast) {
    const t0 = performance.now();
    // The cut values read from the backend at most once per set, when the kernel or the
    // recomputes need them.
    const reads: Promise<Float32Array>[] = [];
    const host = (s: number) => (reads[s] ??= ([clean, poisoned][s]!.values.data() as Promise<Float32Array>));
    const { sets: shares, computed, engine } = await fast.kind.run(fast.t, [clean, poisoned], order, last, typeof options.fast === 'object' ? options.fast : {}, host);
    const t1 = performance.now();
    // Ambiguous images of every step and both sets, recomputed exactly in a few batched calls.
    const sets = [clean, poisoned];
    const labels = shares.map((r) => r.labels);
    const at: number[] = [];
    const idx: number[] = [];
    const from: number[] = [];
    shares.forEach((r, s) => {
      const n = sets[s]!.labels.length;
      const amb = r.ambiguous.subarray(0, (last + 1) * n);
      for (let q = amb.indexOf(1); q >= 0; q = amb.indexOf(1, q + 1)) {
        at.push(q);
        idx.push(q % n);
        from.push(s);
      }
    });
    const recomputed = at.length;
    if (recomputed > 0) {
      const masks = new Float32Array(recomputed * channels);
      const stepMasks = new Map<number, Float32Array>();
      at.forEach((q, j) => {
        const k = Math.floor(q / sets[from[j]!]!.labels.length);
        if (!stepMasks.has(k)) stepMasks.set(k, maskFor(channels, order, k));
        masks.set(stepMasks.get(k)!, j * channels);
      });
      const shape = clean.values.shape.slice(1);
      const batch = Math.max(256, Math.min(4096, Math.floor(2 ** 22 / shape.reduce((p, q) => p * q, 1))));
      const hosts = await Promise.all([0, 1].map((s) => (from.includes(s) ? host(s) : new Float32Array(0))));
      const exact = await tailLabelsMaskedFrom(tail, shape, hosts, Uint8Array.from(from), idx, masks, batch);
      at.forEach((q, j) => { labels[from[j]!]![q] = exact[j]!; });
    }
    const accs = stepMetrics(labels[0]!, clean.labels, last + 1, 'accuracy');
    const asrs = stepMetrics(labels[1]!, poisoned.labels, last + 1, options.target);
    let yielded = -Infinity;
    for (let k = 0; k <= last; k++) {
      // Ctrl-C between steps: the event loop turns at least every 20 ms.
      if (performance.now() - yielded > 20) {
        await yieldToEventLoop();
        yielded = performance.now();
      }
      record(k, accs[k]!, asrs[k]!);
    }
    const seconds = { incremental: (t1 - t0) / 1000, recompute: (performance.now() - t1) / 1000 };
    return { channelOrder: order, steps, stats: { path: 'incremental', kind: fast.kind.name, engine: engine ?? 'tfjs', recomputed, outputRuns: computed, seconds } };
  }
  for (let k = 0; k <= last; k++) {
    await yieldToEventLoop(); // Ctrl-C between steps
    const mask = maskFor(channels, order, k);
    record(k, accuracy(await tailLabels(tail, clean, mask), clean.labels).value, attackSuccessRate(await tailLabels(tail, poisoned, mask), poisoned.labels, options.target).value);
  }
  return { channelOrder: order, steps, stats: { path: 'tail-mask', recomputed: 0 } };
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
