/**
 * Fine-pruning (Liu, Dolan-Gavitt, Garg, RAID 2018): fine-tune a pruned model on clean
 * data, keeping the pruned channels at zero. Part of the clean validation set is held out
 * to choose the epoch (by clean accuracy only: the defender does not know the trigger).
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import seedrandom from 'seedrandom';
import { GoodnetError } from '../errors.js';
import { evaluate } from '../eval/evaluate.js';
import { checkWritable } from '../io/atomic.js';
import { checkLabels, openDataset, type ImageDataset } from '../io/dataset.js';
import { saveModel, type LoadedModel } from '../io/model.js';
import { pixelOptionsFor, preprocessingFor, type PixelOptions } from '../io/preprocess.js';
import { inspectModel } from '../models/inspect.js';
import { permutation, subsetOf, train, trainEngineFor, type TrainingSet } from '../models/train.js';
import { dataParallelObstacle } from '../models/parallel.js';
import { channelMeans, cutActivations } from './activations.js';
import { cloneNet, findCutPoint, headModel, maskLayerOf, type CutPoint } from './graph.js';
import { applyMaskInPlace, maskedCopy, prunedChannels } from './mask.js';
import { channelOrder } from './sweep.js';
import { DEFAULT_TRAIN_ENGINE, type TrainEngineChoice, type TrainEngineName } from '../models/ort_train.js';

export interface FineTuneOptions {
  epochs?: number;
  learningRate?: number;
  batchSize?: number;
  /** Share of the clean data held out to choose the epoch (default 0.2). */
  holdOut?: number;
  seed?: number;
  /** Data-parallel training threads (TrainOptions.threads; default 1, 0: the core count). */
  threads?: number;
  /**
   * Training engine (TrainOptions.engine; fineTune's default 'tfjs', runFinePrune's and
   * `goodnet fineprune`'s 'auto': onnxruntime where it can train the net).
   */
  trainEngine?: TrainEngineChoice;
  /** The engine that trains (and why not ort, when 'auto' could not use it). */
  onEngine?: (engine: TrainEngineName, why?: string) => void;
  onBatch?: (epoch: number, done: number, total: number, loss: number, accuracy: number) => void;
  onEpoch?: (e: FineTuneEpoch) => void;
}

export const FINE_TUNE_DEFAULTS = { epochs: 5, learningRate: 1e-4, batchSize: 64, holdOut: 0.2, seed: 0 } as const;

export interface FineTuneEpoch {
  epoch: number;
  loss: number;
  trainAccuracy: number;
  heldOutAccuracy: number;
  seconds: number;
}

export interface FineTuneResult {
  /** Epoch whose weights were kept (0 = the pruned model unchanged). */
  bestEpoch: number;
  history: FineTuneEpoch[];
  seconds: number;
  /** The engine that trained (the last epoch's), and why not ort when 'auto' could not use it. */
  engine: TrainEngineName;
  engineNote?: string;
}

/**
 * A clean data set read whole into memory (NHWC, pixels as the model takes them: divided by
 * `pixels` when a number, else scaled and normalized as `pixels` says), for fine-tuning.
 */
export async function readAll(
  path: string, expect: [number, number, number], pixels: number | PixelOptions = 1, layout?: 'auto' | 'nchw' | 'nhwc', numClasses?: number,
): Promise<TrainingSet> {
  const px = typeof pixels === 'number' ? { scale: pixels } : pixels;
  const ds: ImageDataset = await openDataset(path, { expect, scale: px.scale, mean: px.mean, std: px.std, layout });
  try {
    if (numClasses !== undefined) checkLabels(ds, numClasses);
    if (ds.length === 0) throw new GoodnetError('data set is empty', path);
    if (ds.labels.some((l) => l < 0)) throw new GoodnetError('training needs labelled images', path);
    const [h, w, c] = ds.imageShape;
    const per = h * w * c;
    const images = new Float32Array(ds.length * per);
    for await (const b of ds.batches(1024)) images.set(b.x, b.start * per);
    return { images, labels: Int32Array.from(ds.labels), n: ds.length, shape: [h, w, c] };
  } finally {
    ds.close();
  }
}

async function accuracyOn(net: tfl.LayersModel, set: TrainingSet, inputScale: number): Promise<number> {
  let correct = 0;
  const per = set.shape[0] * set.shape[1] * set.shape[2];
  for (let s = 0; s < set.n; s += 512) {
    const n = Math.min(512, set.n - s);
    const idx = tf.tidy(() => tf.argMax(net.predict(tf.div(tf.tensor4d(set.images.subarray(s * per, (s + n) * per), [n, ...set.shape]), inputScale)) as tf.Tensor2D, 1));
    const p = await idx.data();
    idx.dispose();
    for (let i = 0; i < n; i++) if (p[i] === set.labels[s + i]) correct++;
  }
  return correct / set.n;
}

/**
 * The first weighted layer, when only scale-free layers (input, zero padding) precede it:
 * there, training on x/k with kernel*k is the same function, better conditioned for a model
 * that takes raw 0..255 pixels.
 */
export function firstKernelLayer(net: tfl.LayersModel): tfl.layers.Layer | undefined {
  for (const l of net.layers) {
    const cls = l.getClassName();
    if (cls === 'InputLayer' || cls === 'ZeroPadding2D') continue;
    return cls === 'Conv2D' || cls === 'Dense' ? l : undefined;
  }
  return undefined;
}

export function scaleKernel(layer: tfl.layers.Layer, k: number): void {
  const [kernel, ...rest] = layer.getWeights();
  const scaled = tf.mul(kernel!, k);
  layer.setWeights([scaled, ...rest]);
  scaled.dispose();
}

/**
 * Fine-tune `net` (a pruned copy, mask.ts) in place on clean data (pixels as the model takes
 * them); the `pruned` channels of the prune point (`cut`, or a layer name) are masked again
 * after every optimizer step, through the same mechanism as the saved model. Keeps the best
 * epoch's weights.
 */
export async function fineTune(net: tfl.LayersModel, cut: CutPoint | string, pruned: number[], clean: TrainingSet, options: FineTuneOptions = {}): Promise<FineTuneResult> {
  // Nothing pruned (e.g. Neural Cleanse's unlearning): no prune point to hold at zero.
  const at = pruned.length === 0 ? undefined : typeof cut === 'string' ? findCutPoint(net, cut) : cut;
  const o = { ...FINE_TUNE_DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) } as Required<FineTuneOptions>;
  if (!(o.holdOut > 0 && o.holdOut < 1)) throw new GoodnetError(`--hold-out must be in (0, 1), got ${o.holdOut}`);
  if (!(Number.isInteger(o.epochs) && o.epochs >= 1)) throw new GoodnetError(`epochs must be an integer >= 1, got ${o.epochs}`);
  checkTrainable(net, o.threads, undefined, o.trainEngine);
  const t0 = performance.now();
  const order = permutation(clean.n, seedrandom(`holdout:${o.seed}`));
  const nHeld = Math.max(1, Math.round(o.holdOut * clean.n));
  if (clean.n - nHeld < 1) throw new GoodnetError(`${clean.n} clean images are too few to fine-tune with a held-out part`);
  const held = subsetOf(clean, order.subarray(0, nHeld));
  const trainSet = subsetOf(clean, order.subarray(nHeld));

  let max = 0;
  for (let i = 0; i < clean.images.length; i++) if (clean.images[i]! > max) max = clean.images[i]!;
  const first = firstKernelLayer(net);
  // Raw 0..255 pixels (max well above what mean/std-normalized inputs reach, ~3).
  const k = first && max > 16 ? 255 : 1;
  if (k !== 1) scaleKernel(first!, k);
  try {
    const history: FineTuneEpoch[] = [{ epoch: 0, loss: NaN, trainAccuracy: NaN, heldOutAccuracy: await accuracyOn(net, held, k), seconds: 0 }];
    let best = { epoch: 0, acc: history[0]!.heldOutAccuracy, weights: net.getWeights().map((w) => w.clone()) };
    o.onEpoch?.(history[0]!);
    let trained: { engine: TrainEngineName; why?: string } | undefined;
    for (let epoch = 1; epoch <= o.epochs; epoch++) {
      const [stats] = await train(net, trainSet, {
        epochs: 1, batchSize: o.batchSize, learningRate: o.learningRate, seed: o.seed * 1000 + epoch, scale: k, threads: o.threads, engine: o.trainEngine,
        onEngine: (engine, why) => {
          if (trained?.engine !== engine || trained.why !== why) o.onEngine?.(engine, why);
          trained = { engine, why };
        },
        onBatch: (_e, d, t, l, a) => o.onBatch?.(epoch, d, t, l, a),
        afterStep: at ? () => applyMaskInPlace(net, at, pruned) : undefined,
        optimizer: optimizerFor(net, o.learningRate),
      });
      const e: FineTuneEpoch = { epoch, loss: stats!.loss, trainAccuracy: stats!.accuracy, heldOutAccuracy: await accuracyOn(net, held, k), seconds: stats!.seconds };
      history.push(e);
      o.onEpoch?.(e);
      if (e.heldOutAccuracy > best.acc) {
        tf.dispose(best.weights);
        best = { epoch, acc: e.heldOutAccuracy, weights: net.getWeights().map((w) => w.clone()) };
      }
    }
    net.setWeights(best.weights);
    tf.dispose(best.weights);
    return { bestEpoch: best.epoch, history, seconds: (performance.now() - t0) / 1000, engine: trained?.engine ?? 'tfjs', ...(trained?.why ? { engineNote: trained.why } : {}) };
  } finally {
    if (k !== 1) scaleKernel(first!, 1 / k);
  }
}

/** One Adam optimizer per model, kept across epochs (its moments must survive epoch boundaries). */
const optimizers = new WeakMap<tfl.LayersModel, tf.Optimizer>();
function optimizerFor(net: tfl.LayersModel, lr: number): tf.Optimizer {
  let opt = optimizers.get(net);
  if (!opt) {
    opt = tf.train.adam(lr);
    optimizers.set(net, opt);
  }
  return opt;
}

/** Pixel options default to the model file's recorded preprocessing; FP records what was used. */
export interface FinePruneCommandOptions extends FineTuneOptions, PixelOptions {
  /** B'_X (pruned channels are its all-zero channels of `layer`), or B with `pruneFraction`. */
  model: LoadedModel;
  cleanValid: string;
  /** Conv (or pooling) layer; default: the last pooling layer's conv. */
  layer?: string;
  /** Prune this share of the layer's channels first, in ascending order of mean activation on cleanValid. */
  pruneFraction?: number;
  cleanTest?: string;
  poisonedTest?: string;
  target?: number;
  /** Layout of HDF5 `data` (as for eval). */
  layout?: 'auto' | 'nchw' | 'nhwc';
  /** Where to save FP (Keras .h5 or tfjs folder). */
  out?: string;
  overwrite?: boolean;
}

export interface FinePruneCommandResult {
  conv: string;
  pruned: number[];
  fineTune: FineTuneResult;
  before?: { accuracy: number; asr: number };
  after?: { accuracy: number; asr: number };
}

/** Before any work: a net the chosen engine can train, and on tfjs a valid thread count and a net a shard can reproduce. */
function checkTrainable(net: tfl.LayersModel, threads: number | undefined, source?: string, choice?: TrainEngineChoice): void {
  if (trainEngineFor(net, choice, 'fine-tune', source).engine === 'ort') return; // any net the ort engine takes trains in shards
  if (threads === undefined || threads === 1) return;
  if (!Number.isInteger(threads) || threads < 0) throw new GoodnetError(`threads must be an integer >= 0, got ${threads}`, source);
  const why = dataParallelObstacle(net);
  if (why) throw new GoodnetError(`cannot fine-tune in ${threads} threads: ${why}; use 1 thread`, source);
}

/** `goodnet fineprune` as a function. */
export async function runFinePrune(options: FinePruneCommandOptions): Promise<FinePruneCommandResult> {
  const o = { ...options, trainEngine: options.trainEngine ?? DEFAULT_TRAIN_ENGINE };
  checkTrainable(o.model.net, o.threads, o.model.source, o.trainEngine);
  // A pruned model with a mask layer (mask.ts) is pruned at that layer.
  const maskLayer = o.layer === undefined && o.pruneFraction === undefined ? maskLayerOf(o.model.net) : undefined;
  const cut = findCutPoint(o.model.net, o.layer ?? maskLayer?.name, o.model.source);
  if (o.out) checkWritable(o.out, { overwrite: o.overwrite, inputs: [o.model.source, o.cleanValid, o.cleanTest, o.poisonedTest] });
  if ((o.cleanTest === undefined) !== (o.poisonedTest === undefined) || (o.poisonedTest !== undefined && o.target === undefined)) {
    throw new GoodnetError('give --clean-test, --poisoned-test and --target together, or none of them');
  }
  const model: LoadedModel = { ...o.model, preprocessing: preprocessingFor(o.model, o) };
  const px = pixelOptionsFor(model, o);
  const clean = await readAll(o.cleanValid, o.model.inputShape, px, o.layout);
  let pruned: number[];
  let net: tfl.LayersModel;
  if (o.pruneFraction !== undefined) {
    if (!(o.pruneFraction > 0 && o.pruneFraction < 1)) throw new GoodnetError(`--prune-fraction must be in (0, 1), got ${o.pruneFraction}`);
    const head = headModel(o.model.net, cut);
    const ds = await openDataset(o.cleanValid, { expect: o.model.inputShape, ...px, layout: o.layout });
    const a = await cutActivations(head, ds);
    ds.close();
    const means = await channelMeans(a);
    a.values.dispose();
    pruned = channelOrder(means, 'asc').slice(0, Math.round(o.pruneFraction * cut.channels));
    net = await maskedCopy(o.model.net, cut, pruned);
  } else {
    pruned = prunedChannels(o.model.net, cut);
    if (pruned.length === 0) {
      throw new GoodnetError(`no channel of ${cut.conv} is zero: give a pruned model (from goodnet prune) or --prune-fraction`, o.model.source);
    }
    net = await cloneNet(o.model.net);
  }
  const test = async (m: LoadedModel) => {
    const r = await evaluate(m, { clean: o.cleanTest!, poisoned: o.poisonedTest!, target: o.target!, ...px, layout: o.layout });
    return { accuracy: r.clean!.accuracy, asr: r.poisoned!.asr };
  };
  try {
    const fineTuneResult = await fineTune(net, cut, pruned, clean, o);
    // Test data only now that FP is fixed.
    let before: FinePruneCommandResult['before'];
    let after: FinePruneCommandResult['after'];
    if (o.cleanTest !== undefined) {
      const b = o.pruneFraction !== undefined ? await maskedCopy(o.model.net, cut, pruned) : o.model.net;
      before = await test({ ...model, net: b });
      if (b !== o.model.net) b.dispose();
      after = await test({ ...model, net });
    }
    if (o.out) await saveModel({ ...model, net, ...(net.layers.length !== o.model.net.layers.length ? { kerasConfig: undefined, onnx: undefined } : {}) }, o.out, { overwrite: o.overwrite });
    return { conv: cut.conv, pruned, fineTune: fineTuneResult, before, after };
  } finally {
    net.dispose();
  }
}
