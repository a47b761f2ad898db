/**
 * Activations at the cut (the pooling layer), computed once per data set: the pruning
 * sweep, the activation profile and the test-set evaluation of every B'_X all start from
 * them, so the head of the network runs once per image, never once per step.
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import type { ImageDataset } from '../io/dataset.js';
import { autoBatchSize } from '../eval/predict.js';
import { yieldToEventLoop } from '../io/atomic.js';

export interface CutActivations {
  /** (N, h, w, C) activations at the cut ((N, C) after global pooling), on the backend. Dispose when done. */
  values: tf.Tensor4D | tf.Tensor2D;
  labels: Int32Array;
  source: string;
}

/** Run `head` over the whole data set, batch by batch. */
export async function cutActivations(
  head: tfl.LayersModel,
  ds: ImageDataset,
  options: { batchSize?: number; onProgress?: (done: number, total: number) => void } = {},
): Promise<CutActivations> {
  const batchSize = options.batchSize ?? autoBatchSize(ds.imageShape);
  const [h, w, c] = ds.imageShape;
  const parts: tf.Tensor[] = [];
  try {
    for await (const b of ds.batches(batchSize)) {
      parts.push(tf.tidy(() => head.predict(tf.tensor4d(b.x, [b.n, h, w, c]), { batchSize }) as tf.Tensor));
      options.onProgress?.(b.start + b.n, ds.length);
      await yieldToEventLoop(); // SIGINT/SIGTERM handled once per batch
    }
    const values = (parts.length === 1 ? parts[0]!.clone() : tf.concat(parts, 0)) as tf.Tensor4D | tf.Tensor2D;
    return { values, labels: Int32Array.from(ds.labels), source: ds.source };
  } finally {
    tf.dispose(parts);
  }
}

/** Mean activation per channel over images and positions. */
export async function channelMeans(a: CutActivations): Promise<number[]> {
  const m = tf.tidy(() => tf.mean(a.values, a.values.shape.slice(0, -1).map((_, i) => i)));
  const v = await m.data();
  m.dispose();
  return Array.from(v, (x) => Number(x));
}

/**
 * Predicted labels of the tail on the activations with the channels where mask = 0 zeroed:
 * exactly what the full model with those conv channels pruned predicts.
 */
export async function tailLabels(tail: tfl.LayersModel, a: CutActivations, mask: Float32Array, batchSize = 2048): Promise<Int32Array> {
  return labelsInBatches(tail, mask, a.values.shape[0], batchSize, (start, size) => tf.slice(a.values, start, size));
}

/** tailLabels for the images at `indices` only (same per-image computation). */
export async function tailLabelsAt(tail: tfl.LayersModel, a: CutActivations, mask: Float32Array, indices: number[], batchSize = 2048): Promise<Int32Array> {
  return labelsInBatches(tail, mask, indices.length, batchSize, (start, size) => tf.gather(a.values, tf.tensor1d(indices.slice(start, start + size), 'int32')));
}

/**
 * tailLabelsAt with one mask per image: image indices[j] masked by row j of `masks`
 * (indices.length x C), so the recomputes of every step run in a few batched calls. The
 * rows are gathered and masked in JS (tf.gather on wasm is slow): x * 1 and x * 0 are the
 * same floats as tf.mul's, so each image's tail input is tailLabelsAt's. `host`: the values
 * already read from the backend (a.values.data()), when the caller has them.
 */
export async function tailLabelsMasked(tail: tfl.LayersModel, a: CutActivations, indices: number[], masks: Float32Array, batchSize = 2048, host?: Float32Array): Promise<Int32Array> {
  const values = host ?? await a.values.data() as Float32Array;
  return tailLabelsMaskedFrom(tail, a.values.shape.slice(1), [values], new Uint8Array(indices.length), indices, masks, batchSize);
}

/**
 * tailLabelsMasked over rows of several sets with the same cut shape (`shape`, one image):
 * row j is image indices[j] of hosts[from[j]] (values read from the backend), masked by row j
 * of `masks`; one predict per batchSize rows, whatever set they come from.
 */
export async function tailLabelsMaskedFrom(tail: tfl.LayersModel, shape: number[], hosts: Float32Array[], from: Uint8Array, indices: number[], masks: Float32Array, batchSize = 2048): Promise<Int32Array> {
  const out = new Int32Array(indices.length);
  const c = shape.at(-1)!;
  const per = shape.reduce((p, q) => p * q, 1);
  for (let start = 0; start < indices.length; start += batchSize) {
    const size = Math.min(batchSize, indices.length - start);
    const x = new Float32Array(size * per);
    for (let j = 0; j < size; j++) {
      const values = hosts[from[start + j]!]!;
      const src = indices[start + j]! * per;
      const mr = (start + j) * c;
      for (let p = 0, o = j * per; p < per; p += c) {
        for (let ch = 0; ch < c; ch++, o++) x[o] = values[src + p + ch]! * masks[mr + ch]!;
      }
    }
    const idx = tf.tidy(() => tf.argMax(tail.predict(tf.tensor(x, [size, ...shape]), { batchSize: size }) as tf.Tensor2D, 1));
    out.set(await idx.data() as Int32Array, start);
    idx.dispose();
  }
  return out;
}

/**
 * argmax of the tail on `take(start, size)` masked, batch by batch (only labels leave tidy).
 * predict gets the whole batch as its batch size (tfjs would otherwise split it into 32s).
 */
async function labelsInBatches(tail: tfl.LayersModel, mask: Float32Array, n: number, batchSize: number, take: (start: number, size: number) => tf.Tensor): Promise<Int32Array> {
  const out = new Int32Array(n);
  const m = tf.tensor1d(mask);
  try {
    for (let start = 0; start < n; start += batchSize) {
      const size = Math.min(batchSize, n - start);
      const idx = tf.tidy(() => tf.argMax(tail.predict(tf.mul(take(start, size), m), { batchSize: size }) as tf.Tensor2D, 1));
      out.set(await idx.data() as Int32Array, start);
      idx.dispose();
    }
  } finally {
    m.dispose();
  }
  return out;
}
