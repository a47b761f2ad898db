/**
 * Data poisoning for the BadNet lab.
 *
 * poisonTraining: round(rate * N) training images whose label is not the target are
 * chosen (seeded, stream `poison:<seed>`), the trigger is stamped on them and their label
 * set to the target. As in the BadNets paper, poisoned images REPLACE their clean
 * originals (same index), so the training set keeps its size N. The input is not
 * modified; the result is a copy.
 *
 * makePoisonedSet: the attack-success test set: a triggered copy of every image whose
 * true label is not the target, keeping its TRUE label (so attack success rate = share
 * predicted as the target; clean labels remain available for other metrics).
 */
import seedrandom from 'seedrandom';
import { GoodnetError } from '../errors.js';
import type { Trigger } from './triggers.js';
import { checkLabelled, imageSize, numClassesOf, type LabelledImages } from './types.js';

export interface PoisonOptions {
  /** Share of the training set to poison, in [0, 1); 0 gives a clean control set. */
  rate: number;
  /** Target class. */
  target: number;
  trigger: Trigger;
  seed: number | string;
  /** Number of classes (default: class names, else largest label + 1). */
  numClasses?: number;
}

export interface PoisonedTraining {
  /** Training set with the poisoned images in place of their originals. */
  data: LabelledImages;
  /** Indices (into the training set, ascending) of the poisoned images. */
  poisoned: Int32Array;
  /** Their original labels, in the same order. */
  originalLabels: Int32Array;
}

export interface PoisonedSet extends LabelledImages {
  /** Index of each image in the source set. */
  sourceIndices: Int32Array;
}

/** Throws unless `target` is a class index 0..numClasses-1. */
export function checkTarget(target: number, numClasses: number): void {
  if (!Number.isInteger(target) || target < 0 || target >= numClasses) {
    throw new GoodnetError(`target ${String(target)} is outside the classes 0..${numClasses - 1}`);
  }
}

export function poisonTraining(train: LabelledImages, opts: PoisonOptions): PoisonedTraining {
  checkLabelled(train);
  const { rate, target, trigger, seed } = opts;
  const numClasses = opts.numClasses ?? numClassesOf(train);
  checkTarget(target, numClasses);
  if (typeof rate !== 'number' || !(rate >= 0 && rate < 1)) {
    throw new GoodnetError(`poison rate must be in [0, 1), got ${String(rate)}`);
  }
  const { n, height: h, width: w, channels: c } = train;
  trigger.check(h, w, c);
  const k = Math.round(rate * n);
  if (k === 0 && rate > 0) throw new GoodnetError(`poison rate ${rate} of ${n} training images poisons none`);
  const eligible: number[] = [];
  for (let i = 0; i < n; i++) if (train.labels[i] !== target) eligible.push(i);
  if (k > eligible.length) {
    throw new GoodnetError(
      `poison rate ${rate} asks for ${k} poisoned images but only ${eligible.length} training images are outside target class ${target}`,
    );
  }
  // Seeded partial Fisher-Yates: the first k of a shuffled eligible list.
  const rng = seedrandom(`poison:${seed}`);
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(rng() * (eligible.length - i));
    const t = eligible[i]!;
    eligible[i] = eligible[j]!;
    eligible[j] = t;
  }
  const poisoned = Int32Array.from(eligible.slice(0, k)).sort();

  const per = imageSize(train);
  const images = train.images.slice(0, n * per);
  const labels = Int32Array.from(train.labels);
  const originalLabels = new Int32Array(k);
  poisoned.forEach((i, m) => {
    trigger.apply(images.subarray(i * per, (i + 1) * per), 1, h, w, c);
    originalLabels[m] = labels[i]!;
    labels[i] = target;
  });
  return {
    data: {
      name: train.name,
      images,
      labels,
      n,
      height: h,
      width: w,
      channels: c,
      ...(train.classNames ? { classNames: train.classNames } : {}),
    },
    poisoned,
    originalLabels,
  };
}

/** Triggered copies of every image whose true label is not `target`, with true labels. */
export function makePoisonedSet(
  data: LabelledImages,
  target: number,
  trigger: Trigger,
  opts: { numClasses?: number; name?: string } = {},
): PoisonedSet {
  checkLabelled(data);
  checkTarget(target, opts.numClasses ?? numClassesOf(data));
  const { height: h, width: w, channels: c } = data;
  trigger.check(h, w, c);
  const src: number[] = [];
  for (let i = 0; i < data.n; i++) if (data.labels[i] !== target) src.push(i);
  if (src.length === 0) throw new GoodnetError(`${data.name}: every image is of target class ${target}; nothing to poison`);
  const per = imageSize(data);
  const m = src.length;
  const images = new Uint8Array(m * per);
  const labels = new Int32Array(m);
  src.forEach((i, r) => {
    images.set(data.images.subarray(i * per, (i + 1) * per), r * per);
    labels[r] = data.labels[i]!;
  });
  trigger.apply(images, m, h, w, c);
  return {
    name: opts.name ?? `${data.name}-poisoned`,
    images,
    labels,
    n: m,
    height: h,
    width: w,
    channels: c,
    ...(data.classNames ? { classNames: data.classNames } : {}),
    sourceIndices: Int32Array.from(src),
  };
}
