/**
 * SAU, shared adversarial unlearning (Wei, Zhang, Zha and Wu, NeurIPS 2023; the authors'
 * BackdoorBench defense/sau.py and its CIFAR-10 config), from clean data only.
 *
 * Per batch of clean images:
 *  1. Shared PGD: a per-image perturbation, L_inf-bounded by `eps` (0.2 of the pixel range),
 *     starts at +eps ("max") and takes `steps` (5) signed steps of `stepSize` (0.2) that
 *     minimise beta1 x L_adv + beta2 x L_share (beta1 0.01, beta2 1): L_adv is minus the
 *     cross-entropy of the images the model (resp. the frozen original) does not yet
 *     misclassify, averaged over both models; L_share is the Jensen-Shannon divergence of
 *     the two models' outputs on the images that are not yet a *shared* adversarial example
 *     (both misclassify, to the same label). Stops early once all are shared.
 *  2. Unlearning step (Adam): lmd1 x CE(clean) + lmd2 x CE(perturbed) + lmd3 x L_sar, where
 *     L_sar, on the images the original model misclassifies under the perturbation (away
 *     from its clean answer), pushes the model's probability of the original's adversarial
 *     label down: -(log(1 - p_adv) + log(1 - p_adv)) / 2 with the original's clamps (lmd1 1,
 *     lmd2 0, lmd3 1, as the original).
 * BN runs on its stored statistics throughout (the original's default, `train_mode` off).
 *
 * Different here: the bound is in the clean data's pixel range (0.2 x (max - min); the
 * original: 0.2 in [0,1] pixels, i.e. the same for [0,1] or 0..255 inputs); the epoch is
 * chosen on held-out clean images (`holdOut`): the lowest rate of shared adversarial
 * examples among the epochs whose clean accuracy stays within `maxDrop` points of the
 * original's (the original keeps the last epoch); for models reading raw 0..255 pixels the
 * first layer's kernel is trained as if the input were scaled to 0..1 (same function).
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import seedrandom from 'seedrandom';
import { GoodnetError } from '../errors.js';
import { yieldToEventLoop } from '../io/atomic.js';
import { datasetAccuracy, permutation, type TrainingSet } from '../models/train.js';
import { forwardLogits } from './channels.js';
import { cloneNet } from './graph.js';
import {
  loadCleanData, registerDefense, repairRow, repairedSentence, splitSet, type Defense, type DefenseInput, type DefenseRun, type ReportSection,
} from './interface.js';
import { firstKernelLayer, scaleKernel } from './fineprune.js';
import { percent as pct } from '../io/table.js';

export interface SauOptions {
  /** L_inf bound of the perturbation, as a share of the clean data's pixel range. */
  eps: number;
  /** PGD step (same unit as eps) and steps per batch. */
  stepSize: number;
  steps: number;
  beta1: number;
  beta2: number;
  lmd1: number;
  lmd2: number;
  lmd3: number;
  epochs: number;
  batchSize: number;
  learningRate: number;
  holdOut: number;
  maxDrop: number;
}

export const SAU_DEFAULTS: SauOptions = {
  eps: 0.2, stepSize: 0.2, steps: 5, beta1: 0.01, beta2: 1, lmd1: 1, lmd2: 0, lmd3: 1,
  epochs: 10, batchSize: 128, learningRate: 1e-4, holdOut: 0.2, maxDrop: 2,
};

export interface SauEpoch { epoch: number; loss: number; cleanAccuracy: number; sharedRate: number; seconds: number }

export interface SauDetails {
  baseline: number;
  heldOut: number;
  /** eps and step in the model's pixel units. */
  epsPixels: number;
  epochs: SauEpoch[];
  bestEpoch: number;
  settings: SauOptions;
}

interface Batch { x: tf.Tensor4D; y: tf.Tensor1D }

function batches(set: TrainingSet, size: number, scale: number, rng?: () => number): Batch[] {
  const per = set.shape[0] * set.shape[1] * set.shape[2];
  const order = rng ? permutation(set.n, rng) : Int32Array.from({ length: set.n }, (_, i) => i);
  const out: Batch[] = [];
  for (let s = 0; s < set.n; s += size) {
    const idx = order.subarray(s, Math.min(s + size, set.n));
    const x = new Float32Array(idx.length * per);
    const y = new Int32Array(idx.length);
    idx.forEach((i, b) => {
      const src = set.images.subarray(i * per, (i + 1) * per);
      for (let j = 0; j < per; j++) x[b * per + j] = src[j]! / scale;
      y[b] = set.labels[i]!;
    });
    out.push({ x: tf.tensor4d(x, [idx.length, ...set.shape]), y: tf.tensor1d(y, 'int32') });
  }
  return out;
}

/** Argmax labels of a tensor made by `f` (everything made is disposed). */
function labelsOf(f: () => tf.Tensor): Int32Array {
  const t = tf.tidy(() => tf.argMax(f(), 1));
  try {
    return t.dataSync() as Int32Array;
  } finally {
    t.dispose();
  }
}

/**
 * Shared PGD on one batch: the perturbation (same shape as x) within [-eps, eps], and how many
 * of the batch are shared adversarial examples at the end. `model` and `ref` are both frozen here.
 */
export function sharedPgd(model: tfl.LayersModel, ref: tfl.LayersModel, x: tf.Tensor4D, y: tf.Tensor1D, numClasses: number,
  o: { eps: number; stepSize: number; steps: number; beta1: number; beta2: number }): { pert: tf.Tensor4D; shared: number } {
  const n = x.shape[0];
  const ori = labelsOf(() => forwardLogits(model, x));
  const oriRef = labelsOf(() => forwardLogits(ref, x));
  let pert = tf.fill(x.shape, o.eps) as tf.Tensor4D;
  let shared = 0;
  const yOne = tf.oneHot(y, numClasses);
  try {
    for (let s = 0; s < o.steps; s++) {
      let sharedNow = 0;
      const g = tf.grad((p: tf.Tensor) => {
        const xp = tf.add(x, p) as tf.Tensor4D;
        const l = forwardLogits(model, xp);
        const lr = forwardLogits(ref, xp);
        // Labels only (not on the differentiated path; the grad scope disposes them).
        const pl = tf.argMax(l, 1).dataSync();
        const plr = tf.argMax(lr, 1).dataSync();
        const notSucc = new Float32Array(n);
        const notSuccRef = new Float32Array(n);
        const notShared = new Float32Array(n);
        for (let i = 0; i < n; i++) {
          const a = pl[i] !== ori[i];
          const b = plr[i] !== oriRef[i];
          notSucc[i] = a ? 0 : 1;
          notSuccRef[i] = b ? 0 : 1;
          const sh = a && b && pl[i] === plr[i];
          notShared[i] = sh ? 0 : 1;
          if (sh) sharedNow++;
        }
        const ce = (z: tf.Tensor) => tf.neg(tf.sum(tf.mul(yOne, tf.logSoftmax(z)), -1));
        const lossAdv = tf.div(tf.neg(tf.add(tf.sum(tf.mul(ce(l), tf.tensor1d(notSucc))), tf.sum(tf.mul(ce(lr), tf.tensor1d(notSuccRef))))), 2 * n);
        const p1 = tf.clipByValue(tf.softmax(l), 1e-8, 1);
        const p2 = tf.clipByValue(tf.softmax(lr), 1e-8, 1);
        const mix = tf.mul(0.5, tf.add(p1, p2));
        const js = tf.sub(tf.mul(0.5, tf.add(tf.mul(p1, tf.log(p1)), tf.mul(p2, tf.log(p2)))), tf.mul(0.5, tf.add(tf.mul(p1, tf.log(mix)), tf.mul(p2, tf.log(mix)))));
        const lossShare = tf.div(tf.sum(tf.mul(tf.sum(js, -1), tf.tensor1d(notShared))), n);
        return tf.add(tf.mul(o.beta1, lossAdv), tf.mul(o.beta2, lossShare)) as tf.Scalar;
      });
      const grad = tf.tidy(() => g(pert));
      const next = tf.tidy(() => tf.clipByValue(tf.sub(pert, tf.mul(o.stepSize, tf.sign(grad))), -o.eps, o.eps)) as tf.Tensor4D;
      tf.dispose([grad, pert]);
      pert = next;
      shared = sharedNow;
      if (sharedNow === n) break;
    }
    return { pert, shared };
  } finally {
    yOne.dispose();
  }
}

/** Share of `set` that are shared adversarial examples of `model` and `ref` after shared PGD (clean-data criterion). */
function sharedRate(model: tfl.LayersModel, ref: tfl.LayersModel, set: TrainingSet, scale: number, numClasses: number, o: SauOptions, eps: number, step: number): number {
  let shared = 0;
  for (const b of batches(set, 256, scale)) {
    const r = sharedPgd(model, ref, b.x, b.y, numClasses, { ...o, eps, stepSize: step });
    // Count at the end of the attack (as the original's early stop criterion).
    const xp = tf.add(b.x, r.pert) as tf.Tensor4D;
    const [pl, plr, ori, oriRef] = [labelsOf(() => forwardLogits(model, xp)), labelsOf(() => forwardLogits(ref, xp)), labelsOf(() => forwardLogits(model, b.x)), labelsOf(() => forwardLogits(ref, b.x))];
    xp.dispose();
    for (let i = 0; i < pl!.length; i++) if (pl![i] !== ori![i] && plr![i] !== oriRef![i] && pl![i] === plr![i]) shared++;
    tf.dispose([r.pert, b.x, b.y]);
  }
  return shared / set.n;
}

function checkOptions(o: SauOptions): void {
  for (const [k, v] of Object.entries({ steps: o.steps, epochs: o.epochs, batchSize: o.batchSize })) {
    if (!(Number.isInteger(v) && v >= 1)) throw new GoodnetError(`SAU ${k} must be an integer >= 1, got ${v}`);
  }
  for (const [k, v] of Object.entries({ eps: o.eps, stepSize: o.stepSize, learningRate: o.learningRate })) {
    if (!(v > 0 && Number.isFinite(v))) throw new GoodnetError(`SAU ${k} must be > 0, got ${v}`);
  }
  for (const [k, v] of Object.entries({ beta1: o.beta1, beta2: o.beta2, lmd1: o.lmd1, lmd2: o.lmd2, lmd3: o.lmd3, maxDrop: o.maxDrop })) {
    if (!(v >= 0 && Number.isFinite(v))) throw new GoodnetError(`SAU ${k} must be >= 0, got ${v}`);
  }
  if (!(o.holdOut > 0 && o.holdOut < 1)) throw new GoodnetError(`SAU hold-out must be in (0, 1), got ${o.holdOut}`);
}

/** SAU on a model and clean data: the unlearned model and every epoch's held-out record. */
export async function runSau(input: DefenseInput, options: Partial<SauOptions> = {}): Promise<DefenseRun<SauDetails>> {
  const o: SauOptions = { ...SAU_DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) };
  checkOptions(o);
  const t0 = performance.now();
  const clean = await loadCleanData(input);
  if (clean.n < 4) throw new GoodnetError(`${clean.n} clean images are too few to hold some out`, input.cleanValid);
  const { model } = input;
  const seed = input.seed ?? 0;
  const [held, rest] = splitSet(clean, o.holdOut, `sau-holdout:${seed}`);
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of clean.images) { if (v < lo) lo = v; if (v > hi) hi = v; }
  if (!(hi > lo)) throw new GoodnetError('the clean images are all one value', input.cleanValid);
  const first = firstKernelLayer(model.net);
  const scale = first && hi > 16 ? 255 : 1;
  const eps = (o.eps * (hi - lo)) / scale;
  const step = (o.stepSize * (hi - lo)) / scale;
  const net = await cloneNet(model.net);
  const ref = await cloneNet(model.net);
  const nc = model.numClasses;
  try {
    if (scale !== 1) { scaleKernel(firstKernelLayer(net)!, scale); scaleKernel(firstKernelLayer(ref)!, scale); }
    const baseline = datasetAccuracy(net, held, scale);
    const e0: SauEpoch = { epoch: 0, loss: NaN, cleanAccuracy: baseline, sharedRate: sharedRate(net, ref, held, scale, nc, o, eps, step), seconds: 0 };
    input.log?.(`SAU: ${rest.n} clean images to unlearn on, ${held.n} held out (original: clean ${pct(baseline)}, shared adversarial ${pct(e0.sharedRate)}); L_inf bound ${(eps * scale).toPrecision(3)} pixels`);
    const epochs: SauEpoch[] = [e0];
    let best = { epoch: 0, rate: e0.sharedRate, clean: baseline, weights: net.getWeights().map((w) => w.clone()) };
    const vars = net.trainableWeights.map((w) => w.read() as tf.Variable);
    const optimizer = tf.train.adam(o.learningRate);
    const rng = seedrandom(`sau:${seed}`);
    try {
      for (let epoch = 1; epoch <= o.epochs; epoch++) {
        const t1 = performance.now();
        let lossSum = 0;
        let seen = 0;
        const bs = batches(rest, o.batchSize, scale, rng);
        for (const [bi, b] of bs.entries()) {
          const n = b.x.shape[0];
          const { pert } = sharedPgd(net, ref, b.x, b.y, nc, { ...o, eps, stepSize: step });
          const xp = tf.add(b.x, pert) as tf.Tensor4D;
          const oriRef = labelsOf(() => forwardLogits(ref, b.x));
          const advRef = labelsOf(() => forwardLogits(ref, xp));
          const labels = b.y.dataSync();
          const potential = new Float32Array(n);
          for (let i = 0; i < n; i++) potential[i] = advRef[i] !== labels[i] && advRef[i] !== oriRef[i] ? 1 : 0;
          const pot = tf.tensor1d(potential);
          const advOne = tf.tidy(() => tf.oneHot(tf.tensor1d(advRef, 'int32'), nc));
          const yOne = tf.oneHot(b.y, nc);
          const { value, grads } = tf.variableGrads(() => {
            const logits = forwardLogits(net, tf.concat([b.x, xp], 0) as tf.Tensor4D);
            const [lc, lp] = tf.split(logits, 2, 0);
            const ce = (z: tf.Tensor) => tf.mean(tf.neg(tf.sum(tf.mul(yOne, tf.logSoftmax(z)), -1)));
            const p = tf.softmax(lp!);
            const posP = tf.sum(tf.mul(p, advOne), -1);
            const negP = tf.sum(tf.mul(p, tf.sub(1, advOne)), -1);
            const shared = tf.div(tf.add(
              tf.neg(tf.sum(tf.mul(tf.log(tf.add(1e-6, tf.minimum(negP, 0.999))), pot))),
              tf.neg(tf.sum(tf.mul(tf.log(tf.sub(1 + 1e-6, tf.maximum(posP, 0.001))), pot))),
            ), 2 * n);
            let loss = tf.mul(o.lmd1, ce(lc!));
            if (o.lmd2 > 0) loss = tf.add(loss, tf.mul(o.lmd2, ce(lp!)));
            return tf.add(loss, tf.mul(o.lmd3, shared)) as tf.Scalar;
          }, vars);
          optimizer.applyGradients(grads as never);
          lossSum += (await value.data())[0]! * n;
          seen += n;
          tf.dispose([value, ...Object.values(grads), pert, xp, pot, advOne, yOne, b.x, b.y]);
          input.onProgress?.(`SAU epoch ${epoch}/${o.epochs}`, bi + 1, bs.length);
          await yieldToEventLoop();
        }
        const e: SauEpoch = {
          epoch, loss: lossSum / seen, cleanAccuracy: datasetAccuracy(net, held, scale), sharedRate: sharedRate(net, ref, held, scale, nc, o, eps, step),
          seconds: (performance.now() - t1) / 1000,
        };
        epochs.push(e);
        input.log?.(`SAU epoch ${epoch}: loss ${e.loss.toFixed(3)}, held out: clean ${pct(e.cleanAccuracy)}, shared adversarial ${pct(e.sharedRate)} (${e.seconds.toFixed(0)} s)`);
        if (e.cleanAccuracy >= baseline - o.maxDrop / 100 - 1e-9 && (e.sharedRate < best.rate || (e.sharedRate === best.rate && e.cleanAccuracy > best.clean))) {
          tf.dispose(best.weights);
          best = { epoch, rate: e.sharedRate, clean: e.cleanAccuracy, weights: net.getWeights().map((w) => w.clone()) };
        }
      }
    } finally {
      optimizer.dispose();
    }
    net.setWeights(best.weights);
    tf.dispose(best.weights);
    if (scale !== 1) scaleKernel(firstKernelLayer(net)!, 1 / scale);
    input.log?.(`SAU: kept epoch ${best.epoch} (held out: clean ${pct(best.clean)}, shared adversarial ${pct(best.rate)})`);
    return {
      defense: 'sau', repaired: net, cleanImages: clean.n, seconds: (performance.now() - t0) / 1000,
      details: { baseline, heldOut: held.n, epsPixels: eps * scale, epochs, bestEpoch: best.epoch, settings: o },
    };
  } catch (err) {
    net.dispose();
    throw err;
  } finally {
    ref.dispose();
  }
}

export const sau: Defense<SauOptions, SauDetails> = registerDefense<SauOptions, SauDetails>({
  name: 'sau',
  title: 'SAU (shared adversarial unlearning)',
  summary: 'unlearns shared adversarial examples of the model and its frozen original (L_inf PGD on clean data), epoch chosen on held-out clean data',
  kind: 'repair',
  defaults: SAU_DEFAULTS,
  run: runSau,
  rows: (run, m) => repairRow(`SAU (eps ${run.details.settings.eps}, epoch ${run.details.bestEpoch}/${run.details.settings.epochs})`, run, m,
    run.details.bestEpoch === 0 ? 'no epoch kept clean accuracy: model unchanged' : undefined),
  section: (run, m): ReportSection => {
    const d = run.details;
    return {
      title: 'SAU',
      text: [
        `Shared adversarial unlearning on ${run.cleanImages - d.heldOut} clean images (L_inf bound ${d.epsPixels.toPrecision(3)} pixels, ${d.settings.steps} PGD steps per batch), ` +
          `${d.settings.epochs} epochs; ${d.heldOut} held-out clean images chose epoch ${d.bestEpoch}: the fewest shared adversarial examples with clean accuracy within ` +
          `${d.settings.maxDrop} points of the original's ${pct(d.baseline)}.`,
        ...repairedSentence(m),
      ],
      tables: [{
        headers: ['epoch', 'loss', 'held-out clean', 'held-out shared adversarial', 'time'],
        rows: d.epochs.map((e) => [e.epoch, Number.isNaN(e.loss) ? '-' : e.loss.toFixed(3), pct(e.cleanAccuracy), pct(e.sharedRate), `${e.seconds.toFixed(0)} s`]),
      }],
    };
  },
});
