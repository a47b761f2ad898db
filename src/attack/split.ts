/**
 * Deterministic stratified split of a labelled set into train / clean validation / clean
 * test, driven by a seed (seedrandom, stream `split:<seed>`).
 *
 * Default sizes: validation and test each 15% of the images, at most 10,000; training
 * gets the rest. Fashion-MNIST (70,000) -> 50,000 / 10,000 / 10,000; MNIST (10,000) ->
 * 7,000 / 1,500 / 1,500. Sizes given by the caller win; when only validation/test are
 * given, training gets the rest; the three may add up to less than N (the rest is unused).
 *
 * Stratification: each split's per-class count is the split size times the class's
 * share of the whole set, rounded by largest remainder (ties broken by a seeded class
 * order), never taking more of a class than is left; so every split's count of every
 * class is within 1 of its exact share whenever the data allow. Within a class, images
 * are taken from a seeded shuffle; each split's index list is then shuffled (seeded), so
 * written files mix the classes.
 */
import seedrandom from 'seedrandom';
import { GoodnetError } from '../errors.js';
import { imageSize, type LabelledImages } from './types.js';

export interface SplitSizes {
  train: number;
  valid: number;
  test: number;
}

export interface Split {
  /** Indices into the data set, disjoint, each list in seeded random order. */
  train: Int32Array;
  valid: Int32Array;
  test: Int32Array;
  sizes: SplitSizes;
  seed: number | string;
}

export interface SplitOptions extends Partial<SplitSizes> {
  seed: number | string;
}

/** Default sizes for n images: valid = test = min(10000, round(0.15 n)), train = the rest. */
export function defaultSplitSizes(n: number): SplitSizes {
  const held = Math.min(10000, Math.round(0.15 * n));
  return { train: n - 2 * held, valid: held, test: held };
}

/** Images per class (index = class). */
export function classCounts(labels: ArrayLike<number>, indices?: ArrayLike<number>): number[] {
  const counts: number[] = [];
  const m = indices ? indices.length : labels.length;
  for (let i = 0; i < m; i++) {
    const l = labels[indices ? indices[i]! : i]!;
    while (counts.length <= l) counts.push(0);
    counts[l]!++;
  }
  return counts;
}

function checkSize(name: string, v: number, min: number): void {
  if (!Number.isInteger(v) || v < min) {
    throw new GoodnetError(`${name} size must be an integer >= ${min}, got ${String(v)}`);
  }
}

/** Seeded Fisher-Yates shuffle in place. */
export function shuffleInPlace(a: Int32Array | number[], rng: () => number): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const t = a[i]!;
    a[i] = a[j]!;
    a[j] = t;
  }
}

/** Split `labels` (class indices >= 0) into disjoint, stratified train/valid/test index lists. */
export function stratifiedSplit(labels: ArrayLike<number>, opts: SplitOptions): Split {
  const n = labels.length;
  if (n === 0) throw new GoodnetError('data set is empty');
  for (let i = 0; i < n; i++) {
    const l = labels[i]!;
    if (!Number.isInteger(l) || l < 0) throw new GoodnetError(`label ${l} at row ${i} is not a class index >= 0`);
  }
  const seed = opts.seed;
  if (!((typeof seed === 'number' && Number.isFinite(seed)) || (typeof seed === 'string' && seed !== ''))) {
    throw new GoodnetError(`seed must be a number or a non-empty string, got ${String(seed)}`);
  }
  const counts = classCounts(labels);
  const present = counts.filter((c) => c > 0).length;
  if (present < 2) throw new GoodnetError('data set has only one class; a backdoor needs at least two');

  const def = defaultSplitSizes(n);
  const valid = opts.valid ?? def.valid;
  const test = opts.test ?? def.test;
  checkSize('validation', valid, 0);
  checkSize('test', test, 0);
  const train = opts.train ?? (opts.valid === undefined && opts.test === undefined ? def.train : n - valid - test);
  checkSize('training', train, 1);
  if (train + valid + test > n) {
    throw new GoodnetError(
      `split sizes ${train} + ${valid} + ${test} = ${train + valid + test} exceed the ${n} images of the data set`,
    );
  }

  const rng = seedrandom(`split:${seed}`);
  // Per-class seeded shuffles of the image indices.
  const byClass: Int32Array[] = counts.map((c) => new Int32Array(c));
  const fill = counts.map(() => 0);
  for (let i = 0; i < n; i++) {
    const l = labels[i]!;
    byClass[l]![fill[l]!++] = i;
  }
  for (const idx of byClass) shuffleInPlace(idx, rng);
  // Seeded class order for tie-breaking.
  const order = counts.map((_, k) => k);
  shuffleInPlace(order, rng);

  const left = [...counts];
  const taken = counts.map(() => 0);
  const out: Record<keyof SplitSizes, Int32Array> = {
    train: new Int32Array(0),
    valid: new Int32Array(0),
    test: new Int32Array(0),
  };
  // Smaller held-out splits first, so their proportions are the most exact.
  for (const key of ['test', 'valid', 'train'] as const) {
    const size = { train, valid, test }[key];
    const alloc = apportion(size, counts, n, left, order);
    const idx = new Int32Array(size);
    let at = 0;
    alloc.forEach((a, k) => {
      idx.set(byClass[k]!.subarray(taken[k]!, taken[k]! + a), at);
      taken[k]! += a;
      left[k]! -= a;
      at += a;
    });
    shuffleInPlace(idx, rng);
    out[key] = idx;
  }
  return { ...out, sizes: { train, valid, test }, seed };
}

/**
 * Largest-remainder apportionment of `size` among classes by share counts[k]/n, capped by
 * `left[k]`; ties by `order`. Requires size <= sum(left).
 */
function apportion(size: number, counts: number[], n: number, left: number[], order: number[]): number[] {
  const quota = counts.map((c) => (size * c) / n);
  const alloc = quota.map((q, k) => Math.min(Math.floor(q), left[k]!));
  let rest = size - alloc.reduce((a, b) => a + b, 0);
  const rank = new Map(order.map((k, i) => [k, i]));
  while (rest > 0) {
    // Classes with room, largest unmet quota first.
    const cands = counts
      .map((_, k) => k)
      .filter((k) => alloc[k]! < left[k]!)
      .sort((a, b) => quota[b]! - alloc[b]! - (quota[a]! - alloc[a]!) || rank.get(a)! - rank.get(b)!);
    if (cands.length === 0) throw new Error('apportion: not enough images left'); // cannot happen
    for (const k of cands) {
      if (rest === 0) break;
      alloc[k]!++;
      rest--;
    }
  }
  return alloc;
}

/** A copy of the images and labels at `indices` (in that order). */
export function subset(d: LabelledImages, indices: ArrayLike<number>, name = d.name): LabelledImages {
  const per = imageSize(d);
  const m = indices.length;
  const images = new Uint8Array(m * per);
  const labels = new Int32Array(m);
  for (let i = 0; i < m; i++) {
    const j = indices[i]!;
    if (!(j >= 0 && j < d.n)) throw new RangeError(`index ${j} out of range 0..${d.n - 1}`);
    images.set(d.images.subarray(j * per, (j + 1) * per), i * per);
    labels[i] = d.labels[j]!;
  }
  return {
    name,
    images,
    labels,
    n: m,
    height: d.height,
    width: d.width,
    channels: d.channels,
    ...(d.classNames ? { classNames: d.classNames } : {}),
  };
}
