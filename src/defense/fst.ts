/**
 * FST, feature shift tuning (Min, Qin, Shen and Cheng, NeurIPS 2023, "Towards Stable
 * Backdoor Purification through Feature Shift Tuning"), from clean data only, with the
 * settings of the authors' code (AISafety-HKUST/stable_backdoor_purification, fine_tune/ft.py,
 * `--ft_mode fst`):
 *
 *  1. The classifier head (the last Dense layer) is re-initialised, weight and bias uniform
 *     in +-1/sqrt(fan-in) (torch's nn.Linear initialisation); its original weight W0 and
 *     that weight's Frobenius norm are kept.
 *  2. All weights are tuned on the clean data with SGD (momentum 0.9, no weight decay, batch
 *     128, learning rate 0.01 annealed by a cosine over the epochs, stepped per epoch, 10
 *     epochs) on cross-entropy + alpha x <W, W0> (alpha 0.2, the code's default): the
 *     inner product pushes the new head away from the old one, so the features must shift
 *     for the clean task to be learned again, and the backdoor features, which the clean
 *     data never exercise, lose their link to the target.
 *  3. After every step the head's weight is scaled back to the original norm ||W0||, so the
 *     inner-product term cannot be lowered by shrinking W.
 *
 * The training images are augmented as the original's training transform does for every
 * data set: a random crop with 4 pixels of zero padding (a random shift of up to 4 pixels
 * each way); its horizontal flip is CIFAR-10 only (here `augment: 'shift-flip'`).
 *
 * The training loop is goodnet's (models/train.ts: trainOnBatch, BN in training mode, seeded
 * shuffling, `threads`). The alpha term's gradient, alpha x W0, does not depend on the
 * weights, so its share of the momentum buffer after step t is alpha x W0 x (1 - m^t) / (1 - m)
 * and it is applied after each cross-entropy step, exactly as one SGD step on the sum would.
 * Models reading raw 0..255 pixels are tuned as if they read 0..1 (the first kernel is
 * scaled by 255 during tuning, as fine-pruning does), so the learning rate means what it means
 * for the original's normalised inputs.
 *
 * A share of the clean images (`holdOut`, 0.2) is held out; the epoch kept is the one with the
 * best held-out clean accuracy (the later on ties). Nothing reads poisoned data.
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import seedrandom from 'seedrandom';
import { GoodnetError } from '../errors.js';
import { percent as pct } from '../io/table.js';
import { datasetAccuracy, train } from '../models/train.js';
import { dataParallelObstacle } from '../models/parallel.js';
import { firstKernelLayer, scaleKernel } from './fineprune.js';
import { cloneNet } from './graph.js';
import {
  loadCleanData, registerDefense, repairedSentence, repairRow, splitSet, type Defense, type DefenseInput, type DefenseRun, type ReportSection,
} from './interface.js';

export type FstAugment = 'none' | 'shift' | 'shift-flip';

export interface FstOptions {
  epochs: number;
  /** Initial SGD learning rate (cosine-annealed to 0 over the epochs, or constant). */
  learningRate: number;
  momentum: number;
  /** Weight of the inner product <W, W0> between the new and the original head. */
  alpha: number;
  batchSize: number;
  schedule: 'cosine' | 'constant';
  /** Training augmentation: random shifts of up to `shift` pixels (zero fill), and horizontal flips. */
  augment: FstAugment;
  shift: number;
  /** Share of the clean images held out to choose the epoch (clean accuracy only). */
  holdOut: number;
  /**
   * Levels of Dense layers re-initialised (denseHead): 1, the head (FST); 2, also the Dense
   * layers feeding it; 0: none, plain fine-tuning (alpha must be 0).
   */
  reinitLayers: number;
  /** Data-parallel training threads (TrainOptions.threads; 1: this thread; 0: the core count). */
  threads: number;
  /**
   * BatchNormalization momentum while tuning, Keras's convention (share of the old moving
   * statistic kept per step): 0.9 is torch's default momentum 0.1, the original's. Keras's
   * default 0.99 lags ten times longer behind weights that move. Restored afterwards.
   */
  bnMomentum: number;
  /**
   * Not in FST: share of the BadNet's own softmax output on each (augmented) clean training
   * image in the target, the rest the one-hot label (0: FST as published). Knowledge
   * distillation from the model being repaired, on clean images only.
   */
  distill: number;
  /**
   * Not in FST: SAM (Foret et al. 2021), as FT-SAM (Zhu et al., ICCV 2023) fine-tunes: before
   * each step the weights move by rho x g / ||g|| (g: the batch's cross-entropy gradient, all
   * trainable weights, one global norm), the step's gradient is taken there, and the move is
   * undone before the update lands. 0: off.
   */
  sam: number;
}

/** The authors' settings (fine_tune/ft.py and its README's CIFAR-10 command), FST mode. */
export const FST_DEFAULTS: FstOptions = {
  epochs: 10, learningRate: 0.01, momentum: 0.9, alpha: 0.2, batchSize: 128, schedule: 'cosine', augment: 'shift', shift: 4, holdOut: 0.2, reinitLayers: 1, threads: 1, bnMomentum: 0.9, distill: 0, sam: 0,
};

export interface FstEpoch {
  epoch: number;
  learningRate: number;
  loss: number;
  trainAccuracy: number;
  heldOutAccuracy: number;
  /** Cosine similarity between the head's weight and the original's. */
  headCosine: number;
  seconds: number;
}

export interface FstDetails {
  head: string;
  /** The Dense layers re-initialised (head first). */
  reinitialised: string[];
  headNorm: number;
  /** Held-out clean accuracy of the BadNet itself (before any change). */
  baseHeldOutAccuracy: number;
  history: FstEpoch[];
  bestEpoch: number;
  trainImages: number;
  heldOutImages: number;
  settings: FstOptions;
}

function defined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function inboundOf(l: tfl.layers.Layer): tfl.layers.Layer[] {
  return l.inboundNodes.flatMap((n) => n.inboundLayers as tfl.layers.Layer[]);
}

/**
 * The Dense layers FST re-initialises, `levels` deep: level 1 is the classifier head (the
 * Dense layer the output comes from, through weightless layers such as a softmax
 * Activation); level 2 adds every Dense layer feeding the head through weightless layers
 * (activations, Add, Dropout: DeepID's fc_1 and fc_2), and so on. Head first.
 */
export function denseHead(net: tfl.LayersModel, levels = 1, source?: string): tfl.layers.Layer[] {
  if (net.outputLayers.length !== 1) throw new GoodnetError(`FST needs a model with one output, this one has ${net.outputLayers.length}`, source);
  const found: tfl.layers.Layer[] = [];
  const seen = new Set<tfl.layers.Layer>();
  // Dense layers reached from `from` through weightless layers (stopping at the features: Flatten, pooling, the input).
  const denseBehind = (from: tfl.layers.Layer[]): tfl.layers.Layer[] => {
    const out: tfl.layers.Layer[] = [];
    let frontier = from;
    while (frontier.length > 0) {
      const next: tfl.layers.Layer[] = [];
      for (const l of frontier) {
        if (seen.has(l)) continue;
        seen.add(l);
        const cls = l.getClassName();
        if (cls === 'Dense') out.push(l);
        else if (l.trainableWeights.length === 0 && !['InputLayer', 'Flatten', 'GlobalAveragePooling2D', 'GlobalMaxPooling2D', 'Reshape'].includes(cls)) next.push(...inboundOf(l));
        else if (found.length === 0) throw new GoodnetError(`FST needs a Dense classifier head; the output comes from a ${cls} layer ('${l.name}')`, source);
      }
      frontier = next;
    }
    return out;
  };
  let level = denseBehind([net.outputLayers[0]!]);
  if (level.length !== 1) throw new GoodnetError('FST needs one Dense classifier head before the output; none found', source);
  for (let d = 1; d <= levels && level.length > 0; d++) {
    found.push(...level);
    level = denseBehind(level.flatMap(inboundOf));
  }
  return found;
}

/** Re-initialise a Dense layer as torch's nn.Linear does: weight and bias uniform in +-1/sqrt(fan-in), seeded. */
export function reinitDense(layer: tfl.layers.Layer, seed: string): void {
  const rng = seedrandom(seed);
  const ws = layer.getWeights();
  const fanIn = ws[0]!.shape[0]!;
  const bound = 1 / Math.sqrt(fanIn);
  const fresh = ws.map((w) => {
    const v = new Float32Array(w.size);
    for (let i = 0; i < v.length; i++) v[i] = (2 * rng() - 1) * bound;
    return tf.tensor(v, w.shape);
  });
  layer.setWeights(fresh);
  tf.dispose(fresh);
}

/** Frobenius norm of a tensor. */
export function frobenius(t: tf.Tensor): number {
  return tf.tidy(() => tf.sqrt(tf.sum(tf.square(t))).dataSync()[0]!);
}

/**
 * The part of FST's step that is not cross-entropy, on the head's weight `kernel` after the
 * optimizer's step number `step` (1-based) at learning rate `lr`: the alpha term's SGD step
 * (its momentum share alpha x W0 x (1 - m^step) / (1 - m)), then the projection back to the
 * original norm `norm0`.
 */
export function fstHeadStep(kernel: tfl.LayerVariable, w0: tf.Tensor, o: { lr: number; alpha: number; momentum: number; step: number; norm0: number }): void {
  const share = o.momentum === 0 ? 1 : (1 - o.momentum ** o.step) / (1 - o.momentum);
  const next = tf.tidy(() => {
    const w = o.alpha === 0 ? kernel.read() : tf.sub(kernel.read(), tf.mul(w0, o.lr * o.alpha * share));
    const norm = tf.sqrt(tf.sum(tf.square(w)));
    return tf.mul(w, tf.div(o.norm0, tf.maximum(norm, 1e-12)));
  });
  kernel.write(next);
  next.dispose();
}

/** In place, a batch of NHWC images: a random shift of up to `pad` pixels each way (zero fill, a padded random crop), optionally a horizontal flip. */
export function augmentBatch(x: Float32Array, n: number, shape: [number, number, number], pad: number, flip: boolean, rng: () => number): void {
  const [h, w, c] = shape;
  const per = h * w * c;
  const src = new Float32Array(per);
  for (let b = 0; b < n; b++) {
    const dy = Math.floor(rng() * (2 * pad + 1)) - pad;
    const dx = Math.floor(rng() * (2 * pad + 1)) - pad;
    const mirror = flip && rng() < 0.5;
    if (dy === 0 && dx === 0 && !mirror) continue;
    const img = x.subarray(b * per, (b + 1) * per);
    src.set(img);
    for (let y = 0; y < h; y++) {
      const sy = y + dy;
      for (let xx = 0; xx < w; xx++) {
        const sx0 = mirror ? w - 1 - xx : xx;
        const sx = sx0 + dx;
        const o = (y * w + xx) * c;
        if (sy < 0 || sy >= h || sx < 0 || sx >= w) {
          for (let k = 0; k < c; k++) img[o + k] = 0;
        } else {
          const s = (sy * w + sx) * c;
          for (let k = 0; k < c; k++) img[o + k] = src[s + k]!;
        }
      }
    }
  }
}

function checkOptions(o: FstOptions): void {
  for (const [k, v] of [['--lr', o.learningRate]] as const) if (!(v > 0 && Number.isFinite(v))) throw new GoodnetError(`${k} must be > 0, got ${v}`);
  if (!(o.alpha >= 0 && Number.isFinite(o.alpha))) throw new GoodnetError(`--alpha must be >= 0, got ${o.alpha}`);
  if (!(o.momentum >= 0 && o.momentum < 1)) throw new GoodnetError(`--momentum must be in [0, 1), got ${o.momentum}`);
  for (const [k, v] of [['--epochs', o.epochs], ['--fst-batch-size', o.batchSize]] as const) {
    if (!(Number.isInteger(v) && v >= 1)) throw new GoodnetError(`${k} must be an integer >= 1, got ${v}`);
  }
  if (!(Number.isInteger(o.shift) && o.shift >= 0)) throw new GoodnetError(`--shift must be an integer >= 0, got ${o.shift}`);
  if (!(Number.isInteger(o.reinitLayers) && o.reinitLayers >= 0)) throw new GoodnetError(`--reinit-layers must be an integer >= 0, got ${o.reinitLayers}`);
  if (o.reinitLayers === 0 && o.alpha !== 0) throw new GoodnetError('--reinit-layers 0 (plain fine-tuning) needs --alpha 0: there is no new head to push away from the old one');
  if (!(o.holdOut > 0 && o.holdOut < 1)) throw new GoodnetError(`--hold-out must be in (0, 1), got ${o.holdOut}`);
  if (!['none', 'shift', 'shift-flip'].includes(o.augment)) throw new GoodnetError(`--augment must be none, shift or shift-flip, got '${o.augment}'`);
  if (!['cosine', 'constant'].includes(o.schedule)) throw new GoodnetError(`--schedule must be cosine or constant, got '${o.schedule}'`);
  if (!(o.sam >= 0 && Number.isFinite(o.sam))) throw new GoodnetError(`--sam must be >= 0, got ${o.sam}`);
  if (!(o.distill >= 0 && o.distill <= 1)) throw new GoodnetError(`--distill must be in [0, 1], got ${o.distill}`);
  if (!(o.bnMomentum >= 0 && o.bnMomentum < 1)) throw new GoodnetError(`--bn-momentum must be in [0, 1), got ${o.bnMomentum}`);
  if (!(Number.isInteger(o.threads) && o.threads >= 0)) throw new GoodnetError(`--threads must be an integer >= 0, got ${o.threads}`);
}

function shiftBy(vars: tf.Variable[], shifts: tf.Tensor[], sign: 1 | -1): void {
  vars.forEach((v, i) => {
    const t = sign === 1 ? tf.add(v, shifts[i]!) : tf.sub(v, shifts[i]!);
    v.assign(t);
    t.dispose();
  });
}

/**
 * SAM's ascent: add rho x g / ||g|| to every trainable weight (g: the gradient of the batch's
 * cross-entropy, BN on batch statistics) and return the shifts, for `samUndo`.
 */
export function samAscent(net: tfl.LayersModel, x: Float32Array, y: Float32Array, n: number, shape: [number, number, number], rho: number): tf.Tensor[] {
  const vars = net.trainableWeights.map((w) => w.read() as unknown as tf.Variable);
  const numClasses = y.length / n;
  const xt = tf.tensor4d(x, [n, ...shape]);
  const yt = tf.tensor2d(y, [n, numClasses]);
  try {
    const { grads } = tf.variableGrads(() => {
      const p = net.apply(xt, { training: true }) as tf.Tensor;
      return tf.neg(tf.mean(tf.sum(tf.mul(yt, tf.log(tf.clipByValue(p, 1e-7, 1))), 1))) as tf.Scalar;
    }, vars);
    const shifts = tf.tidy(() => {
      const g = vars.map((v) => grads[v.name]!);
      const norm = Math.sqrt(g.reduce((a, t) => a + tf.sum(tf.square(t)).dataSync()[0]!, 0));
      return g.map((t) => tf.mul(t, rho / Math.max(norm, 1e-12)));
    });
    tf.dispose(Object.values(grads));
    shiftBy(vars, shifts, 1);
    return shifts;
  } finally {
    tf.dispose([xt, yt]);
  }
}

/** Undo `samAscent` (after the optimizer's step) and free its shifts. */
export function samUndo(net: tfl.LayersModel, shifts: tf.Tensor[]): void {
  const vars = net.trainableWeights.map((w) => w.read() as unknown as tf.Variable);
  shiftBy(vars, shifts, -1);
  tf.dispose(shifts);
}

/** PyTorch's CosineAnnealingLR (eta_min 0) stepped once per epoch: the rate of epoch `e` (1-based) of `epochs`. */
export function cosineRate(lr: number, e: number, epochs: number): number {
  return (lr * (1 + Math.cos((Math.PI * (e - 1)) / epochs))) / 2;
}

/** FST on a model and clean data (see the file comment). */
export async function runFst(input: DefenseInput, options: Partial<FstOptions> = {}): Promise<DefenseRun<FstDetails>> {
  const o: FstOptions = { ...FST_DEFAULTS, ...defined(options) };
  checkOptions(o);
  const { model } = input;
  const heads = o.reinitLayers === 0 ? [] : denseHead(model.net, o.reinitLayers, model.source);
  if (o.threads !== 1) {
    const why = dataParallelObstacle(model.net);
    if (why) throw new GoodnetError(`cannot tune in ${o.threads} threads: ${why}; use 1 thread`, model.source);
  }
  const t0 = performance.now();
  const clean = await loadCleanData(input);
  const seed = input.seed ?? 0;
  const [held, trainSet] = splitSet(clean, o.holdOut, `fst-holdout:${seed}`);
  const net = await cloneNet(model.net);
  const bns = net.layers.filter((l) => l.getClassName() === 'BatchNormalization') as unknown as { momentum: number }[];
  const bnSaved = bns.map((l) => l.momentum);
  try {
    for (const l of bns) l.momentum = o.bnMomentum;
    let max = 0;
    for (let i = 0; i < clean.images.length; i++) if (clean.images[i]! > max) max = clean.images[i]!;
    const first = firstKernelLayer(net);
    const k = first && max > 16 ? 255 : 1;
    if (k !== 1) scaleKernel(first!, k);
    const baseHeldOutAccuracy = datasetAccuracy(net, held, k);
    const head = heads.length ? net.getLayer(heads[0]!.name) : undefined;
    const kernel = head?.trainableWeights[0];
    const w0 = kernel ? tf.keep(kernel.read().clone()) : undefined;
    const norm0 = w0 ? frobenius(w0) : 0;
    heads.forEach((h, i) => reinitDense(net.getLayer(h.name), `fst-reinit:${seed}:${i}`));
    const cosine = () => (w0 && kernel ? tf.tidy(() => tf.sum(tf.mul(kernel.read(), w0)).dataSync()[0]!) / (frobenius(kernel.read()) * norm0) : 1);
    if (kernel && w0) fstHeadStep(kernel, w0, { lr: 0, alpha: 0, momentum: o.momentum, step: 1, norm0 }); // the new head starts at the original norm, as after every step
    input.log?.(`FST: head ${heads.map((h) => h.name).join(', ') || '(none)'} re-initialised; tuning all weights on ${trainSet.n} clean images, ${held.n} held out ` +
      `(SGD lr ${o.learningRate} ${o.schedule}, alpha ${o.alpha}, ${o.epochs} epochs, augment ${o.augment})`);
    const optimizer = tf.train.momentum(o.learningRate, o.momentum);
    const augRng = seedrandom(`fst-augment:${seed}`);
    const history: FstEpoch[] = [];
    let best: { epoch: number; acc: number; weights: tf.Tensor[] } | undefined;
    let step = 0;
    let samShift: tf.Tensor[] | undefined;
    try {
      for (let epoch = 1; epoch <= o.epochs; epoch++) {
        const lr = o.schedule === 'cosine' ? cosineRate(o.learningRate, epoch, o.epochs) : o.learningRate;
        optimizer.setLearningRate(lr);
        const [stats] = await train(net, trainSet, {
          epochs: 1, batchSize: o.batchSize, seed: seed * 1000 + epoch, scale: k, threads: o.threads, optimizer, engine: input.trainEngine,
          augment: o.augment === 'none' ? undefined : (x, n, shape) => augmentBatch(x, n, shape, o.shift, o.augment === 'shift-flip', augRng),
          targets: o.distill === 0 ? undefined : (x, y, n, shape) => {
            const p = tf.tidy(() => (model.net.predict(tf.mul(tf.tensor4d(x, [n, ...shape]), k)) as tf.Tensor).dataSync());
            for (let i = 0; i < y.length; i++) y[i] = (1 - o.distill) * y[i]! + o.distill * p[i]!;
          },
          beforeStep: o.sam === 0 ? undefined : (x, y, n, shape) => { samShift = samAscent(net, x, y, n, shape, o.sam); },
          afterStep: () => {
            if (samShift) {
              samUndo(net, samShift);
              samShift = undefined;
            }
            step++;
            if (kernel && w0) fstHeadStep(kernel, w0, { lr, alpha: o.alpha, momentum: o.momentum, step, norm0 });
          },
          onBatch: (_e, done, total) => input.onProgress?.('FST tuning', (epoch - 1) * total + done, o.epochs * total),
        });
        const e: FstEpoch = {
          epoch, learningRate: lr, loss: stats!.loss, trainAccuracy: stats!.accuracy, heldOutAccuracy: datasetAccuracy(net, held, k), headCosine: cosine(), seconds: stats!.seconds,
        };
        history.push(e);
        input.log?.(`FST epoch ${epoch}: lr ${lr.toPrecision(3)}, training accuracy ${pct(e.trainAccuracy)}, held-out clean accuracy ${pct(e.heldOutAccuracy)}, ` +
          `head cosine to the original ${e.headCosine.toFixed(3)} (${e.seconds.toFixed(0)} s)`);
        if (!best || e.heldOutAccuracy >= best.acc) {
          if (best) tf.dispose(best.weights);
          best = { epoch, acc: e.heldOutAccuracy, weights: net.getWeights().map((w) => w.clone()) };
        }
      }
      net.setWeights(best!.weights);
    } finally {
      if (best) tf.dispose(best.weights);
      optimizer.dispose();
      w0?.dispose();
      if (k !== 1) scaleKernel(first!, 1 / k);
      bns.forEach((l, i) => { l.momentum = bnSaved[i]!; });
    }
    return {
      defense: 'fst', repaired: net, cleanImages: clean.n, seconds: (performance.now() - t0) / 1000,
      details: {
        head: heads[0]?.name ?? '', reinitialised: heads.map((h) => h.name), headNorm: norm0, baseHeldOutAccuracy, history, bestEpoch: best!.epoch,
        trainImages: trainSet.n, heldOutImages: held.n, settings: o,
      },
    };
  } catch (err) {
    net.dispose();
    throw err;
  }
}

function settingsLabel(s: FstOptions): string {
  const parts = [`alpha ${s.alpha}`, `lr ${s.learningRate}${s.schedule === 'cosine' ? ' cosine' : ''}`, `${s.epochs} epochs`];
  if (s.augment !== 'shift' || s.shift !== 4) parts.push(s.augment === 'none' ? 'no augmentation' : `${s.augment} ${s.shift}`);
  if (s.reinitLayers !== 1) parts.push(`${s.reinitLayers} layers re-initialised`);
  return parts.join(', ');
}

export const fst: Defense<FstOptions, FstDetails> = registerDefense<FstOptions, FstDetails>({
  name: 'fst',
  title: 'FST (feature shift tuning)',
  summary: 're-initialises the classifier head and tunes all weights on clean data while pushing the new head away from the old one (norm kept)',
  kind: 'repair',
  defaults: FST_DEFAULTS,
  run: runFst,
  rows: (run, m) => repairRow(`FST (${settingsLabel(run.details.settings)}; epoch ${run.details.bestEpoch} kept)`, run, m),
  section: (run, m): ReportSection => {
    const d = run.details;
    const s = d.settings;
    return {
      title: 'FST (feature shift tuning)',
      text: [
        `Head ${d.reinitialised.join(', ') || '(none)'} re-initialised (original weight norm ${d.headNorm.toFixed(3)}, kept after every step); all weights tuned on ` +
          `${d.trainImages} clean images with SGD (momentum ${s.momentum}, lr ${s.learningRate}, ${s.schedule}), alpha ${s.alpha}, ${s.epochs} epochs, augmentation ${s.augment}` +
          `${s.augment === 'none' ? '' : ` (up to ${s.shift} px)`}. ` +
          `Epoch ${d.bestEpoch} kept: the best clean accuracy on ${d.heldOutImages} held-out clean images (${pct(d.history[d.bestEpoch - 1]?.heldOutAccuracy ?? 0)}; ` +
          `the BadNet: ${pct(d.baseHeldOutAccuracy)}).`,
        ...repairedSentence(m),
      ],
      tables: [{
        caption: 'tuning epochs', headers: ['epoch', 'lr', 'loss', 'training accuracy', 'held-out clean accuracy', 'head cosine to original', 'seconds'],
        rows: d.history.map((e) => [e.epoch, e.learningRate.toPrecision(3), e.loss.toFixed(4), pct(e.trainAccuracy), pct(e.heldOutAccuracy), e.headCosine.toFixed(3), e.seconds.toFixed(1)]),
      }],
    };
  },
});
