/**
 * Limits on what a model file may make goodnet allocate. A model_config or a tfjs
 * manifest only declares sizes; these checks refuse absurd ones before any memory is
 * allocated for them.
 */
import * as tfl from '@tensorflow/tfjs-layers';
import { GoodnetError } from '../errors.js';

/** Most weight values one model may have (400 MB as float32). */
export const MAX_MODEL_WEIGHTS = 100_000_000;

/** Number of values of a declared shape, or undefined when it is not a list of non-negative integers. */
export function shapeSize(shape: unknown): number | undefined {
  if (!Array.isArray(shape)) return undefined;
  let n = 1;
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) return undefined;
    n *= d;
  }
  return n;
}

let budget: { left: number; file: string } | undefined;
let patched = false;

/**
 * Build a model (tfjs-layers creates its weights while building) with a cap on the total
 * number of weight values: a layer that would pass the cap is refused before its weights
 * are allocated.
 */
export async function withWeightBudget<T>(file: string, build: () => Promise<T> | T): Promise<T> {
  if (!patched) {
    patched = true;
    const proto = tfl.layers.Layer.prototype as unknown as { addWeight: (...args: unknown[]) => unknown };
    const addWeight = proto.addWeight;
    proto.addWeight = function (this: { name: string }, ...args: unknown[]) {
      if (budget) {
        const n = shapeSize(args[1]);
        if (n === undefined) {
          throw new GoodnetError(`layer '${this.name}' declares a weight of invalid shape ${JSON.stringify(args[1])}`, budget.file);
        }
        if (n > budget.left) {
          throw new GoodnetError(
            `layer '${this.name}' declares a weight of shape (${(args[1] as number[]).join(',')}); the model would exceed ${MAX_MODEL_WEIGHTS} weights`,
            budget.file);
        }
        budget.left -= n;
      }
      return addWeight.apply(this, args);
    };
  }
  const outer = budget;
  budget = { left: MAX_MODEL_WEIGHTS, file };
  try {
    return await build();
  } finally {
    budget = outer;
  }
}
