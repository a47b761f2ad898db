/**
 * The in-memory form of a labelled image set used by the attack lab: raw 8-bit pixels,
 * channels-last, one flat array.
 */
import { GoodnetError } from '../errors.js';

export interface LabelledImages {
  /** Short name for messages and file names (e.g. `fashion-mnist`, `train.h5`). */
  name: string;
  /** n*height*width*channels raw pixels 0..255, NHWC order. */
  images: Uint8Array;
  /** n class indices (>= 0). */
  labels: Uint8Array | Int32Array;
  n: number;
  height: number;
  width: number;
  channels: number;
  /** Class names by index, when known (the built-in sets). */
  classNames?: string[];
}

/** Pixels per image. */
export function imageSize(d: Pick<LabelledImages, 'height' | 'width' | 'channels'>): number {
  return d.height * d.width * d.channels;
}

/** Throws when the arrays do not match the declared shape (a programming error, one line). */
export function checkLabelled(d: LabelledImages): void {
  const dims = [d.n, d.height, d.width, d.channels];
  if (!dims.every((v) => Number.isInteger(v) && v >= 0) || d.height < 1 || d.width < 1 || d.channels < 1) {
    throw new GoodnetError(`${d.name}: invalid image set shape ${dims.join('x')}`);
  }
  if (d.images.length !== d.n * imageSize(d)) {
    throw new GoodnetError(
      `${d.name}: ${d.images.length} pixel values do not match ${d.n} images of ${d.height}x${d.width}x${d.channels}`,
    );
  }
  if (d.labels.length !== d.n) throw new GoodnetError(`${d.name}: ${d.labels.length} labels for ${d.n} images`);
}

/** Number of classes: the class-name count when known, else the largest label + 1. */
export function numClassesOf(d: Pick<LabelledImages, 'labels' | 'classNames'>): number {
  if (d.classNames?.length) return d.classNames.length;
  let max = -1;
  for (let i = 0; i < d.labels.length; i++) if (d.labels[i]! > max) max = d.labels[i]!;
  return max + 1;
}
