/**
 * The one evaluation loop: stream a data set through a model in batches and keep only
 * what is small (argmax, top-k). Every command that needs predictions goes through here.
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import type { ImageDataset } from '../io/dataset.js';
import type { LoadedModel } from '../io/model.js';
import { GoodnetError } from '../errors.js';

export interface Predictions {
  /** Predicted class per image. */
  labels: Int32Array;
  /** Probability of the predicted class. */
  top: Float32Array;
  /** With topK > 1: n*k classes and probabilities, best first. */
  topkLabels?: Int32Array;
  topkProbs?: Float32Array;
  k: number;
}

export interface PredictOptions {
  batchSize?: number;
  /** Keep the k best classes per image (default 1). */
  topK?: number;
  /** Called after each batch with images done so far. */
  onProgress?: (done: number, total: number) => void;
}

export const DEFAULT_BATCH = 256;

/** Check that the data set's images fit the model's input, or throw naming the data file. */
export function checkFits(model: LoadedModel, ds: ImageDataset): void {
  const [h, w, c] = model.inputShape;
  const [dh, dw, dc] = ds.imageShape;
  if (h !== dh || w !== dw || c !== dc) {
    throw new GoodnetError(`images are ${dh}x${dw}x${dc}, the model expects ${h}x${w}x${c}`, ds.source);
  }
}

function netOf(model: LoadedModel | tfl.LayersModel): tfl.LayersModel {
  return 'net' in model ? model.net : model;
}

/** Predict every image of `ds`, batch by batch. */
export async function predictDataset(
  model: LoadedModel,
  ds: ImageDataset,
  options: PredictOptions = {},
): Promise<Predictions> {
  checkFits(model, ds);
  const batchSize = options.batchSize ?? DEFAULT_BATCH;
  const k = Math.min(options.topK ?? 1, model.numClasses);
  const n = ds.length;
  const labels = new Int32Array(n);
  const top = new Float32Array(n);
  const topkLabels = k > 1 ? new Int32Array(n * k) : undefined;
  const topkProbs = k > 1 ? new Float32Array(n * k) : undefined;
  const net = netOf(model);
  const [h, w, c] = model.inputShape;
  for await (const batch of ds.batches(batchSize)) {
    // Only small tensors leave tidy; their data is read outside it.
    const { idx, val } = tf.tidy(() => {
      const x = tf.tensor4d(batch.x, [batch.n, h, w, c]);
      const probs = net.predict(x, { batchSize }) as tf.Tensor2D;
      const t = tf.topk(probs, k);
      return { idx: t.indices, val: t.values };
    });
    const [ib, vb] = await Promise.all([idx.data(), val.data()]);
    tf.dispose([idx, val]);
    for (let i = 0; i < batch.n; i++) {
      labels[batch.start + i] = ib[i * k]!;
      top[batch.start + i] = vb[i * k]!;
    }
    if (topkLabels && topkProbs) {
      topkLabels.set(ib as Int32Array, batch.start * k);
      topkProbs.set(vb as Float32Array, batch.start * k);
    }
    options.onProgress?.(batch.start + batch.n, n);
  }
  return { labels, top, topkLabels, topkProbs, k };
}
