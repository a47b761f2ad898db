/**
 * The one training loop (BadNet lab training, later fine-tuning): seeded shuffling and
 * trainOnBatch, so the same seed on the same backend gives the same weights. tfjs's
 * model.fit shuffles with Math.random, which would break that.
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import seedrandom from 'seedrandom';
import { GoodnetError } from '../errors.js';
import { yieldToEventLoop } from '../io/atomic.js';
import { DataParallel } from './parallel.js';
import { OrtTrainer, OrtWeights, ortTrainObstacle, resolveTrainEngine, type TrainEngineChoice, type TrainEngineName } from './ort_train.js';

/** Images as stored: NHWC, raw values (uint8 or float), labels as integers. */
export interface TrainingSet {
  images: Uint8Array | Float32Array;
  labels: ArrayLike<number>;
  n: number;
  /** [H, W, C] */
  shape: [number, number, number];
}

export interface EpochStats {
  epoch: number;
  loss: number;
  accuracy: number;
  seconds: number;
  imagesPerSecond: number;
  /** Accuracy on `validation` after this epoch (only when a validation set is given). */
  validAccuracy?: number;
}

export interface TrainOptions {
  epochs: number;
  batchSize?: number;
  learningRate?: number;
  seed?: number;
  /** Divide pixels by this before feeding the model; inference must use the same --scale. */
  scale?: number;
  /** After each batch: images done in this epoch, running loss and accuracy. */
  onBatch?: (epoch: number, done: number, total: number, loss: number, accuracy: number) => void;
  onEpoch?: (stats: EpochStats) => void;
  /** Called after every optimizer step (e.g. to re-apply a pruning mask). */
  afterStep?: () => void;
  optimizer?: tf.Optimizer;
  /**
   * Held-out clean images (never test data), scored after every epoch (EpochStats.validAccuracy).
   * Scoring does not touch the shuffling, so the weights are those of a run without it.
   */
  validation?: TrainingSet;
  /**
   * Early stopping (needs `validation`): stop after `patience` epochs without a better
   * validation accuracy and restore the weights of the best epoch. Default: off.
   */
  patience?: number;
  /**
   * Data-parallel threads (default 1: one engine in this thread). With N > 1 each batch is
   * split into N contiguous shards, one per engine (this thread and N - 1 worker_threads;
   * tfjs-wasm engines, models/parallel.ts, or onnxruntime sessions, models/ort_train.ts), and
   * the gradients summed in shard order: the same seed and thread count give the same
   * weights, which differ from 1 thread's by float summation order (and, with
   * BatchNormalization, by per-shard batch statistics). 0: the core count.
   */
  threads?: number;
  /**
   * Training engine (default 'tfjs'). 'ort': forward + backward as one onnxruntime-node
   * session run per shard (models/ort_train.ts), the same optimizer (Adam in the graph or in
   * WebAssembly by default). Refused (GoodnetError) for layers it does not support. 'auto':
   * ort where it can train the net, else tfjs (resolveTrainEngine); also tfjs when onnxruntime
   * fails before the first step (nothing has changed then: the run starts again on tfjs).
   */
  engine?: TrainEngineChoice;
  /** The engine that trains, once it is known (and again if 'auto' falls back): why it is not ort, when it could have been. */
  onEngine?: (engine: TrainEngineName, why?: string) => void;
  /**
   * Change each batch in place after it is gathered and scaled (NHWC, `n` images of `shape`),
   * before the step: data augmentation (e.g. random shifts). Does not touch the shuffling.
   */
  augment?: (x: Float32Array, n: number, shape: [number, number, number]) => void;
  /**
   * Change each batch's one-hot targets `y` in place (after `augment`), e.g. to a teacher's soft
   * labels. Like `augment`, it may run for the next batch while this one's step runs (the ort
   * engine with the default Adam), so it must not read the weights being trained.
   */
  targets?: (x: Float32Array, y: Float32Array, n: number, shape: [number, number, number]) => void;
  /**
   * Called with each final batch just before its step (e.g. SAM's ascent to the worst nearby
   * weights, undone in `afterStep`: the optimizer's update is additive, so it lands on the
   * weights as they were).
   */
  beforeStep?: (x: Float32Array, y: Float32Array, n: number, shape: [number, number, number]) => void;
}

/** Share of `set` that `net` labels correctly (pixels divided by `scale`, batches of 256). */
export function datasetAccuracy(net: tfl.LayersModel, set: TrainingSet, scale = 1): number {
  const numClasses = net.outputs[0]!.shape[1]!;
  let correct = 0;
  for (let start = 0; start < set.n; start += 256) {
    const idx = new Int32Array(Math.min(256, set.n - start)).map((_, i) => start + i);
    const { x } = gather(set, idx, numClasses, scale);
    const pred = tf.tidy(() => tf.argMax(net.predict(tf.tensor4d(x, [idx.length, ...set.shape])) as tf.Tensor, -1).dataSync());
    for (let i = 0; i < idx.length; i++) if (pred[i] === set.labels[start + i]) correct++;
  }
  return set.n === 0 ? 0 : correct / set.n;
}

/** The images at `idx` (copied). */
export function subsetOf(set: TrainingSet, idx: ArrayLike<number>): TrainingSet {
  const per = set.shape[0] * set.shape[1] * set.shape[2];
  const images = new Float32Array(idx.length * per);
  const labels = new Int32Array(idx.length);
  for (let r = 0; r < idx.length; r++) {
    const i = idx[r]!;
    images.set(set.images.subarray(i * per, (i + 1) * per), r * per);
    labels[r] = set.labels[i]!;
  }
  return { images, labels, n: idx.length, shape: set.shape };
}

/** Fisher-Yates with a seeded generator. */
export function permutation(n: number, rng: () => number): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const t = p[i]!;
    p[i] = p[j]!;
    p[j] = t;
  }
  return p;
}

/** Copy the images at `idx` into one float32 batch (scaled), with one-hot labels. */
function gather(set: TrainingSet, idx: Int32Array, numClasses: number, scale: number): { x: Float32Array; y: Float32Array } {
  const per = set.shape[0] * set.shape[1] * set.shape[2];
  const x = new Float32Array(idx.length * per);
  const y = new Float32Array(idx.length * numClasses);
  const inv = 1 / scale;
  for (let b = 0; b < idx.length; b++) {
    const i = idx[b]!;
    const src = set.images.subarray(i * per, (i + 1) * per);
    const dst = b * per;
    if (scale === 1) x.set(src, dst);
    else for (let j = 0; j < per; j++) x[dst + j] = src[j]! * inv;
    y[b * numClasses + set.labels[i]!] = 1;
  }
  return { x, y };
}

/**
 * Why tfjs cannot train `net`, or undefined: tfjs has no gradient for dilated convolutions
 * ("not yet supported in gradients"), which any trainable layer before one needs.
 */
export function tfjsTrainObstacle(net: tfl.LayersModel): string | undefined {
  for (const l of net.layers) {
    const d = (l.getConfig() as { dilationRate?: number | number[] }).dilationRate;
    if (d !== undefined && (Array.isArray(d) ? d : [d]).some((v) => v !== 1)) {
      return `layer '${l.name}' (${l.getClassName()}) is a dilated convolution, which tfjs has no gradient for`;
    }
  }
  return undefined;
}

/** A GoodnetError (naming `source`) when tfjs cannot `what` the net; `ortWhy`: why onnxruntime cannot either. */
function checkTfjsTrains(net: tfl.LayersModel, what: string, ortWhy?: string, source?: string): void {
  const obstacle = tfjsTrainObstacle(net);
  if (obstacle) throw new GoodnetError(`cannot ${what} on tfjs-wasm: ${obstacle}${ortWhy ? `; nor on onnxruntime: ${ortWhy}` : ''}`, source);
}

/**
 * The engine that trains `net` for `choice` (resolveTrainEngine), checked before any work: a
 * GoodnetError naming `source` when 'ort' is asked for a net onnxruntime cannot train, or when
 * the engine is tfjs and tfjs cannot train it. `what` names the work in the message.
 */
export function trainEngineFor(net: tfl.LayersModel, choice: TrainEngineChoice = 'tfjs', what = 'train', source?: string): { engine: TrainEngineName; why?: string } {
  if (choice === 'ort') {
    const obstacle = ortTrainObstacle(net);
    if (obstacle) throw new GoodnetError(`cannot ${what} with --train-engine ort: ${obstacle}; use --train-engine tfjs`, source);
  }
  const resolved = resolveTrainEngine(net, choice);
  if (resolved.engine === 'tfjs') checkTfjsTrains(net, what, resolved.why, source);
  return resolved;
}

/** Train `net` (softmax output) with Adam and categorical cross-entropy. */
export async function train(net: tfl.LayersModel, set: TrainingSet, options: TrainOptions): Promise<EpochStats[]> {
  const batchSize = options.batchSize ?? 64;
  const numClasses = net.outputs[0]!.shape[1]!;
  const optimizer = options.optimizer ?? tf.train.adam(options.learningRate ?? 1e-3);
  net.compile({
    optimizer,
    loss: 'categoricalCrossentropy',
    metrics: ['accuracy'],
  });
  const patience = options.patience;
  if (patience !== undefined && (!Number.isInteger(patience) || patience < 1)) {
    throw new GoodnetError(`patience must be an integer >= 1, got ${patience}`);
  }
  if (patience !== undefined && !options.validation) throw new GoodnetError('early stopping (patience) needs a validation set');
  const threads = options.threads ?? 1;
  if (!Number.isInteger(threads) || threads < 0) throw new GoodnetError(`threads must be an integer >= 0, got ${threads}`);
  const choice = options.engine ?? 'tfjs';
  const resolved = trainEngineFor(net, choice);
  /** Steps taken (trainLoop counts them): 'auto' falls back to tfjs only before the first. */
  const progress = { steps: 0 };
  const run = async (engine: TrainEngineName): Promise<EpochStats[]> => {
    if (engine === 'tfjs') checkTfjsTrains(net, 'train', resolved.why); // 'auto' falling back
    const ort = engine === 'ort' ? await OrtTrainer.create(net, { threads, seed: options.seed ?? 0 }) : undefined;
    try {
      const dp = threads === 1 || ort ? undefined : await DataParallel.create(net, threads);
      try {
        // The ort engine with the default Adam and nothing to re-apply between steps keeps the
        // weights and Adam's moments in Float32Arrays (OrtWeights), written to the net after each epoch.
        const held = ort && !options.optimizer && !options.afterStep && !options.beforeStep && net.trainableWeights.length > 0 ? new OrtWeights(net, options.learningRate ?? 1e-3, 0.9, 0.999, 1e-7, { slots: ort.threads }) : undefined;
        return await trainLoop(net, set, options, batchSize, numClasses, seedrandom(String(options.seed ?? 0)), optimizer, patience, dp ?? ort, held, progress);
      } finally {
        await dp?.close();
      }
    } finally {
      await ort?.dispose();
    }
  };
  options.onEngine?.(resolved.engine, resolved.why);
  if (resolved.engine === 'ort' && choice === 'auto' && !options.beforeStep) {
    try {
      return await run('ort');
    } catch (e) {
      if (progress.steps > 0) throw e;
      // onnxruntime did not start (no binary for this platform, a graph it refuses): no weight,
      // statistic or callback has been touched, so the same run on tfjs is the run 'auto' means.
      options.onEngine?.('tfjs', `onnxruntime could not train it: ${(e as Error).message.split('\n')[0]}`);
      return await run('tfjs');
    }
  }
  return await run(resolved.engine);
}

async function trainLoop(net: tfl.LayersModel, set: TrainingSet, options: TrainOptions, batchSize: number, numClasses: number,
  rng: () => number, optimizer: tf.Optimizer, patience: number | undefined, dp: DataParallel | OrtTrainer | undefined,
  held: OrtWeights | undefined, progress: { steps: number }): Promise<EpochStats[]> {
  const history: EpochStats[] = [];
  let best: { accuracy: number; epoch: number; weights: tf.Tensor[] } | undefined;
  for (let epoch = 1; epoch <= options.epochs; epoch++) {
    const t0 = performance.now();
    const order = permutation(set.n, rng);
    let lossSum = 0;
    let accSum = 0;
    let seen = 0;
    /** Batch `start` gathered, scaled, augmented and targeted: nothing in it reads the weights. */
    const prepare = (start: number) => {
      const idx = order.subarray(start, Math.min(start + batchSize, set.n));
      const { x, y } = gather(set, idx, numClasses, options.scale ?? 1);
      options.augment?.(x, idx.length, set.shape);
      options.targets?.(x, y, idx.length, set.shape);
      return { idx, x, y };
    };
    let next: ReturnType<typeof prepare> | undefined;
    for (let start = 0; start < set.n; start += batchSize) {
      const { idx, x, y } = next ?? prepare(start);
      next = undefined;
      options.beforeStep?.(x, y, idx.length, set.shape);
      if (held && dp instanceof OrtTrainer) {
        const step = dp.stepAdam(x, y, idx.length, held); // Adam inside the session run, or after the shards'
        // The next batch is made while the step's worker threads run (the steps' order of
        // calls to augment/targets is unchanged).
        if (start + batchSize < set.n) next = prepare(start + batchSize);
        const r = await step;
        lossSum += r.lossSum;
        accSum += r.correct;
      } else if (dp) {
        const vars = net.trainableWeights;
        const r = dp instanceof OrtTrainer ? await dp.step(x, y, idx.length) : await dp.step(x, y, idx.length, set.shape);
        const grads = r.grads.map((g, i) => (g instanceof Float32Array ? tf.tensor(g, vars[i]!.shape as number[]) : g));
        optimizer.applyGradients(Object.fromEntries(vars.map((w, i) => [(w.read() as tf.Variable).name, grads[i]!])));
        tf.dispose(grads);
        lossSum += r.lossSum;
        accSum += r.correct;
      } else {
        const xt = tf.tensor4d(x, [idx.length, ...set.shape]);
        const yt = tf.tensor2d(y, [idx.length, numClasses]);
        const out = (await net.trainOnBatch(xt, yt)) as number[];
        tf.dispose([xt, yt]);
        lossSum += out[0]! * idx.length;
        accSum += out[1]! * idx.length;
      }
      progress.steps++;
      await yieldToEventLoop(); // Ctrl-C between batches
      options.afterStep?.();
      seen += idx.length;
      options.onBatch?.(epoch, seen, set.n, lossSum / seen, accSum / seen);
    }
    held?.sync();
    const seconds = (performance.now() - t0) / 1000;
    const stats: EpochStats = { epoch, loss: lossSum / seen, accuracy: accSum / seen, seconds, imagesPerSecond: seen / seconds };
    if (options.validation) stats.validAccuracy = datasetAccuracy(net, options.validation, options.scale ?? 1);
    history.push(stats);
    options.onEpoch?.(stats);
    if (patience !== undefined) {
      if (best === undefined || stats.validAccuracy! > best.accuracy) {
        if (best) tf.dispose(best.weights);
        best = { accuracy: stats.validAccuracy!, epoch, weights: net.getWeights().map((w) => w.clone()) };
      } else if (epoch - best.epoch >= patience) {
        break;
      }
    }
  }
  if (best) {
    if (best.epoch !== history.length) net.setWeights(best.weights);
    tf.dispose(best.weights);
  }
  return history;
}
