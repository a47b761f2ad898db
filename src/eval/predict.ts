/**
 * The one evaluation loop: stream a data set through a model in batches and keep only
 * what is small (argmax, top-k). Every command that needs predictions goes through here.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { yieldToEventLoop } from '../io/atomic.js';
import type { ImageDataset } from '../io/dataset.js';
import type { LoadedModel } from '../io/model.js';
import { GoodnetError } from '../errors.js';
import type { EngineName, OrtEngine } from '../engine/ort.js';
import { forwardEngineFor } from './ort_model.js';

export interface Predictions {
  /** Predicted class per image. */
  labels: Int32Array;
  /** Probability of the predicted class. */
  top: Float32Array;
  /** With topK > 1: n*k classes and probabilities, best first. */
  topkLabels?: Int32Array;
  topkProbs?: Float32Array;
  k: number;
  /** The engine that ran the forward passes. */
  engine: 'tfjs' | 'ort';
}

export interface PredictOptions {
  batchSize?: number;
  /** Keep the k best classes per image (default 1). */
  topK?: number;
  /** Called after each batch with images done so far. */
  onProgress?: (done: number, total: number) => void;
  /**
   * Forward engine: 'auto' (default: onnxruntime-node when the model has an ONNX form and the
   * backend is not cpu, else tfjs), 'tfjs' (tfjs-layers on the current backend) or 'ort'
   * (onnxruntime-node on the model's ONNX form, an error when it has none).
   */
  engine?: EngineName;
  /** onnxruntime intra-op threads with engine 'ort' (default 0: the core count). */
  ortThreads?: number;
  /**
   * An ort engine the caller built for this model (forwardEngineFor) and disposes, so that
   * several passes share one ONNX export and session; it overrides `engine`.
   */
  ortEngine?: OrtEngine;
}

export const DEFAULT_BATCH = 256;

/** Most input values one automatically sized batch holds (4 M values, 16 MiB of float32). */
export const AUTO_BATCH_VALUES = 1 << 22;

/**
 * The batch size picked from the image size when none is given: at most `max` images and
 * AUTO_BATCH_VALUES input values (256 images of 55x47x3, 1 image of 2048x2048), so memory
 * is bounded by the work, not by a constant batch.
 */
export function autoBatchSize(imageShape: readonly number[], max = DEFAULT_BATCH): number {
  const per = imageShape.reduce((a, b) => a * b, 1);
  return Math.max(1, Math.min(max, Math.floor(AUTO_BATCH_VALUES / Math.max(1, per))));
}

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
  const batchSize = options.batchSize ?? autoBatchSize(model.inputShape);
  const k = Math.min(options.topK ?? 1, model.numClasses);
  const n = ds.length;
  const labels = new Int32Array(n);
  const top = new Float32Array(n);
  const topkLabels = k > 1 ? new Int32Array(n * k) : undefined;
  const topkProbs = k > 1 ? new Float32Array(n * k) : undefined;
  const net = netOf(model);
  const [h, w, c] = model.inputShape;
  // Built before the first batch, so a model without an ONNX form fails before any work.
  const ort: OrtEngine | undefined = options.ortEngine ?? await forwardEngineFor(model, options.engine, { threads: options.ortThreads });
  try {
    for await (const batch of ds.batches(batchSize)) {
      let ib: ArrayLike<number>, vb: ArrayLike<number>, pb: Float32Array;
      if (ort) {
        const r = await ort.predictBatch(batch.x, batch.n);
        if (r.classes !== model.numClasses) throw new GoodnetError(`the ONNX graph gives ${r.classes} class scores, the model ${model.numClasses}; use --engine tfjs`, model.source);
        pb = r.scores;
        ({ idx: ib, val: vb } = topkRows(pb, batch.n, r.classes, k));
      } else {
        // Only small tensors leave tidy; their data is read outside it.
        const { idx, val, probs } = tf.tidy(() => {
          const x = tf.tensor4d(batch.x, [batch.n, h, w, c]);
          const probs = net.predict(x, { batchSize }) as tf.Tensor2D;
          const t = tf.topk(probs, k);
          return { idx: t.indices, val: t.values, probs };
        });
        [ib, vb, pb] = await Promise.all([idx.data(), val.data(), probs.data() as Promise<Float32Array>]);
        tf.dispose([idx, val, probs]);
      }
      const bad = firstNonFinite(pb);
      if (bad >= 0) {
        const row = Math.floor(bad / model.numClasses);
        const x = tf.tensor4d(batch.x.subarray(row * h * w * c, (row + 1) * h * w * c), [1, h, w, c]);
        const layer = firstNonFiniteLayer(net, x);
        x.dispose();
        throw new GoodnetError(`the model's output holds NaN or Inf for image ${batch.start + row} of ${ds.source}` +
          `${layer ? `; non-finite values first appear at layer '${layer}'` : ''} (weights too large?); no result is reported`, model.source);
      }
      for (let i = 0; i < batch.n; i++) {
        labels[batch.start + i] = ib[i * k]!;
        top[batch.start + i] = vb[i * k]!;
      }
      if (topkLabels && topkProbs) {
        topkLabels.set(ib, batch.start * k);
        topkProbs.set(vb, batch.start * k);
      }
      options.onProgress?.(batch.start + batch.n, n);
      await yieldToEventLoop(); // SIGINT/SIGTERM handled once per batch
    }
  } finally {
    if (!options.ortEngine) await ort?.dispose();
  }
  return { labels, top, topkLabels, topkProbs, k, engine: ort ? 'ort' : 'tfjs' };
}

/**
 * The k best classes of each of n rows of `scores` (n x K), best first; ties keep the lower
 * class first (as tf.topk does).
 */
export function topkRows(scores: Float32Array, n: number, classes: number, k: number): { idx: Int32Array; val: Float32Array } {
  const idx = new Int32Array(n * k);
  const val = new Float32Array(n * k);
  for (let i = 0; i < n; i++) {
    const row = i * classes, o = i * k;
    let filled = 0;
    for (let j = 0; j < classes; j++) {
      const v = scores[row + j]!;
      if (filled === k && !(v > val[o + k - 1]!)) continue;
      let p = filled < k ? filled++ : k - 1;
      while (p > 0 && v > val[o + p - 1]!) { val[o + p] = val[o + p - 1]!; idx[o + p] = idx[o + p - 1]!; p--; }
      val[o + p] = v; idx[o + p] = j;
    }
  }
  return { idx, val };
}

/** Index of the first NaN or +-Inf in `v`, or -1. */
export function firstNonFinite(v: ArrayLike<number>): number {
  for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i]!)) return i;
  return -1;
}

/**
 * The first layer (in the model's topological order) whose output on `x` holds NaN or
 * Inf, or undefined when none does. Runs the model once with every layer's output kept.
 */
export function firstNonFiniteLayer(net: tfl.LayersModel, x: tf.Tensor): string | undefined {
  const layers = net.layers.filter((l) => l.getClassName() !== 'InputLayer' && !Array.isArray(l.output));
  if (layers.length === 0) return undefined;
  return tf.tidy(() => {
    const probe = tfl.model({ inputs: net.inputs, outputs: layers.map((l) => l.output as tfl.SymbolicTensor) });
    const ys = probe.predict(x) as tf.Tensor | tf.Tensor[];
    const list = Array.isArray(ys) ? ys : [ys];
    for (let i = 0; i < list.length; i++) if (firstNonFinite(list[i]!.dataSync()) >= 0) return layers[i]!.name;
    return undefined;
  });
}

/**
 * Run the model on the first `n` images of `ds` and throw (naming the first layer whose
 * output is not finite) when an output holds NaN or Inf. For passes that do not go through
 * predictDataset (the pruning sweep's cached activations), before their long work.
 */
export async function checkFiniteOutputs(model: LoadedModel, ds: ImageDataset, n = 64): Promise<void> {
  checkFits(model, ds);
  const [h, w, c] = model.inputShape;
  for await (const batch of ds.batches(Math.min(n, autoBatchSize(model.inputShape)))) {
    const x = tf.tensor4d(batch.x, [batch.n, h, w, c]);
    try {
      const y = model.net.predict(x) as tf.Tensor;
      const bad = firstNonFinite(await y.data());
      y.dispose();
      if (bad >= 0) {
        const row = Math.floor(bad / model.numClasses);
        const one = tf.slice(x, [row, 0, 0, 0], [1, h, w, c]);
        const layer = firstNonFiniteLayer(model.net, one);
        one.dispose();
        throw new GoodnetError(`the model's output holds NaN or Inf for image ${batch.start + row} of ${ds.source}` +
          `${layer ? `; non-finite values first appear at layer '${layer}'` : ''} (weights too large?); no result is reported`, model.source);
      }
    } finally {
      x.dispose();
    }
    return; // the first batch only
  }
}
