/** Clean accuracy and attack success rate, from predictions and true labels. */
import { GoodnetError } from '../errors.js';

/** Share of images whose prediction equals the true label (unlabelled images, -1, are skipped). */
export function accuracy(predicted: ArrayLike<number>, truth: ArrayLike<number>): { value: number; correct: number; count: number } {
  let correct = 0;
  let count = 0;
  for (let i = 0; i < truth.length; i++) {
    if (truth[i]! < 0) continue;
    count++;
    if (predicted[i] === truth[i]) correct++;
  }
  return { value: count === 0 ? NaN : correct / count, correct, count };
}

export interface AsrResult {
  value: number;
  hits: number;
  count: number;
  /** True when every label was the target (files that store the attacker's label, not the true one). */
  labelsAreTarget: boolean;
}

/**
 * Attack success rate: share of poisoned images sent to `target`, counting only images
 * whose true label is not the target (those would be "successes" without any attack).
 * Files that label every poisoned image with the target itself are counted whole.
 */
export function attackSuccessRate(predicted: ArrayLike<number>, truth: ArrayLike<number>, target: number): AsrResult {
  let hits = 0;
  let count = 0;
  for (let i = 0; i < predicted.length; i++) {
    if (truth[i] === target) continue;
    count++;
    if (predicted[i] === target) hits++;
  }
  const labelsAreTarget = count === 0 && predicted.length > 0;
  if (labelsAreTarget) {
    count = predicted.length;
    for (let i = 0; i < predicted.length; i++) if (predicted[i] === target) hits++;
  }
  return { value: count === 0 ? NaN : hits / count, hits, count, labelsAreTarget };
}

/**
 * What the step metrics below divide by: for accuracy the images with a label (truth >= 0);
 * for ASR the images whose true label is not the target, or all of them (`all`) when every
 * label is the target, as `attackSuccessRate` counts such files.
 */
export function stepDenominator(truth: Int32Array, target: number | 'accuracy'): { count: number; all: boolean } {
  let count = 0;
  if (target === 'accuracy') {
    for (let i = 0; i < truth.length; i++) if (truth[i]! >= 0) count++;
    return { count, all: false };
  }
  for (let i = 0; i < truth.length; i++) if (truth[i] !== target) count++;
  return count === 0 ? { count: truth.length, all: true } : { count, all: false };
}

/**
 * `accuracy(...).value` of every step at once: `labels` holds `steps` predictions of the same
 * images (step-major, labels[k * n + i], n = truth.length). One monomorphic pass (a sweep's
 * many steps, where the generic function above runs cold).
 */
export function stepAccuracies(labels: Int32Array, truth: Int32Array, steps: number): number[] {
  const n = truth.length;
  const { count } = stepDenominator(truth, 'accuracy');
  const out: number[] = [];
  for (let k = 0; k < steps; k++) {
    let correct = 0;
    const o = k * n;
    for (let i = 0; i < n; i++) if (labels[o + i] === truth[i] && truth[i]! >= 0) correct++;
    out.push(count === 0 ? NaN : correct / count);
  }
  return out;
}

/** `attackSuccessRate(...).value` of every step at once (layout as stepAccuracies). */
export function stepAttackSuccessRates(labels: Int32Array, truth: Int32Array, steps: number, target: number): number[] {
  const n = truth.length;
  const { count, all } = stepDenominator(truth, target);
  const out: number[] = [];
  for (let k = 0; k < steps; k++) {
    let hits = 0;
    const o = k * n;
    for (let i = 0; i < n; i++) if (labels[o + i] === target && (all || truth[i] !== target)) hits++;
    out.push(count === 0 ? NaN : hits / count);
  }
  return out;
}

export function checkTarget(target: number, numClasses: number): void {
  if (!Number.isInteger(target) || target < 0 || target >= numClasses) {
    throw new GoodnetError(`target label ${target} is out of range for a model with ${numClasses} classes (0..${numClasses - 1})`);
  }
}
