/** Accuracy of a network on an in-memory labelled set (pixels as the model takes them). */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { yieldToEventLoop } from '../io/atomic.js';
import type { TrainingSet } from '../models/train.js';

/** Predicted labels of `net` on every image of `set`. */
export async function labelsOf(net: tfl.LayersModel, set: TrainingSet, batchSize = 256): Promise<Int32Array> {
  const per = set.shape[0] * set.shape[1] * set.shape[2];
  const out = new Int32Array(set.n);
  for (let s = 0; s < set.n; s += batchSize) {
    const n = Math.min(batchSize, set.n - s);
    const idx = tf.tidy(() => tf.argMax(net.predict(tf.tensor4d(set.images.subarray(s * per, (s + n) * per), [n, ...set.shape])) as tf.Tensor2D, 1));
    out.set(await idx.data() as Int32Array, s);
    idx.dispose();
    await yieldToEventLoop();
  }
  return out;
}

export async function accuracyOf(net: tfl.LayersModel, set: TrainingSet, batchSize = 256): Promise<number> {
  const p = await labelsOf(net, set, batchSize);
  let correct = 0;
  for (let i = 0; i < set.n; i++) if (p[i] === set.labels[i]) correct++;
  return correct / set.n;
}
