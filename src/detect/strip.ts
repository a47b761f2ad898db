/**
 * STRIP (Gao et al., "STRIP: A Defence Against Trojan Attacks on Deep Neural Networks",
 * ACSAC 2019): an input-level trojan detector that needs only the model and some clean
 * images.
 *
 * For an input x, STRIP superimposes x on N clean images drawn at random (the
 * "backgrounds"), classifies the N blends and averages the Shannon entropy of the N
 * softmax outputs: H(x) = (1/N) sum_n -sum_k p_nk log2 p_nk (bits, as the reference code:
 * `-np.nansum(p * np.log2(p)) / n_sample`). A clean input is drowned out by the
 * backgrounds, so the blends get all sorts of answers (high entropy); an input carrying
 * the trigger keeps sending every blend to the target (low entropy). Inputs whose H is
 * below a threshold are flagged as trojaned.
 *
 * Superimposition, in the data's raw pixel scale (as stored: 0..255 for the lab's files),
 * then divided by `scale` for the model:
 *   - 'clip' (default): x' = min(max(x + b, 0), pixelMax) / scale, pixelMax = 255 by
 *     default: image addition saturating at white, what `cv2.addWeighted(x, 1, b, 1, 0)`
 *     does on uint8 images.
 *   - 'add': x' = (x + b) / scale, unclipped: what the reference code actually computes,
 *     since it calls cv2.addWeighted on float32 images in [0, 1] (no saturation for
 *     floats), so its blends reach 2.0.
 * Per-channel mean/std (as for every other command) are applied after the division:
 * x'' = (x' - mean[c]) / std[c]; the blend itself is always in raw pixels.
 *
 * Backgrounds: for input number i of a stream (calibration, clean-test, poisoned-test,
 * inputs:<k>), N background indices are drawn uniformly with replacement from the pool
 * (like the reference code's np.random.randint) by seedrandom(`strip:<seed>:<stream>:<i>`),
 * i being the row in its file. So an input's entropy depends only on the seed, the stream,
 * its row and the pool; not on batching, on --limit or on the other inputs.
 *
 * Calibration: the clean validation set is split by a seeded shuffle
 * (seedrandom(`strip-split:<seed>`)): round(heldOut * n) images (default half) are the
 * calibration set, the rest is the background pool; no image is both. The threshold is
 * set on the calibration entropies for a target false rejection rate (FRR):
 *   - 'quantile' (default): with the m calibration entropies sorted ascending
 *     h_1 <= ... <= h_m and k = floor(frr * m), the threshold is h_{k+1}. Flagging H < h_{k+1}
 *     flags exactly k calibration images when the entropies are distinct (fewer on ties),
 *     so the calibration FRR is floor(frr*m)/m, never more than asked: frr 0.05 on 150
 *     images flags 7 (4.67%).
 *   - 'normal' (the paper): fit a normal distribution to the calibration entropies (mean
 *     and population standard deviation, as scipy.stats.norm.fit) and take its frr-quantile,
 *     mean + std * Phi^-1(frr).
 *
 * FAR (false acceptance rate): share of trojaned inputs accepted (H >= threshold), trojaned
 * meaning poisoned images whose true label is not the target (as the attack success rate
 * counts them; when every image is labelled with the target, all count). FRR: share of
 * clean inputs flagged (H < threshold).
 */
import seedrandom from 'seedrandom';
import * as tf from '@tensorflow/tfjs-core';
import { GoodnetError } from '../errors.js';
import { checkLabels, openDataset, type ImageDataset, type OpenDatasetOptions } from '../io/dataset.js';
import type { LoadedModel } from '../io/model.js';
import { normalizeInPlace, pixelOptionsFor } from '../io/preprocess.js';
import { autoBatchSize, checkFits } from '../eval/predict.js';
import { yieldToEventLoop } from '../io/atomic.js';
import { checkTarget } from '../eval/metrics.js';
import type { EngineName } from '../engine/ort.js';
import { forwardEngineFor } from '../eval/ort_model.js';

export type StripMethod = 'quantile' | 'normal';
export type SuperimposeMode = 'clip' | 'add';

export const STRIP_DEFAULTS = {
  n: 100,
  frr: 0.01,
  seed: 0,
  method: 'quantile' as StripMethod,
  heldOut: 0.5,
  superimpose: 'clip' as SuperimposeMode,
  pixelMax: 255,
  /** Images per forward pass: whole groups of one input's N blends (plus the input itself). */
  batchSize: 1000,
  /** Rows read from a data file at a time. */
  readBatch: 256,
};

/** Settings shared by calibration and scoring. */
export interface StripSettings {
  /** Backgrounds superimposed per input (default 100, as the paper). */
  n?: number;
  seed?: number;
  superimpose?: SuperimposeMode;
  /** Largest raw pixel value, for 'clip' (default 255). */
  pixelMax?: number;
  /** Divide the raw blends by this before the model (default: the model file's preprocessing, else 1). */
  scale?: number;
  /** Then subtract this per channel (default: the model file's, else none). */
  mean?: number[];
  /** Then divide by this per channel (default: the model file's, else none). */
  std?: number[];
  layout?: OpenDatasetOptions['layout'];
  /** Images per forward pass (default 1000). */
  batchSize?: number;
}

/** Which engine runs STRIP's forward passes (not a detector setting: the entropies are the same up to float rounding). */
export interface StripForward {
  /** 'auto' (default: ort when the model has an ONNX form, else tfjs), 'tfjs' or 'ort' (onnxruntime-node on the model's ONNX form). */
  engine?: EngineName;
  /** onnxruntime intra-op threads with engine 'ort'. */
  ortThreads?: number;
}

export interface CalibrateOptions extends StripSettings, StripForward {
  /** Target false rejection rate in (0, 1) (default 0.01). */
  frr?: number;
  method?: StripMethod;
  /** Share of the clean validation set used for calibration, in (0, 1) (default 0.5); the rest are backgrounds. */
  heldOut?: number;
  onProgress?: (done: number, total: number) => void;
}

/** A calibrated detector: backgrounds, settings and threshold. */
export interface StripDetector {
  model: string;
  n: number;
  seed: number;
  superimpose: SuperimposeMode;
  pixelMax: number;
  scale: number;
  mean?: number[];
  std?: number[];
  layout: NonNullable<OpenDatasetOptions['layout']>;
  batchSize: number;
  method: StripMethod;
  frr: number;
  heldOut: number;
  threshold: number;
  backgrounds: {
    source: string;
    count: number;
    /** Rows of the clean validation file used as backgrounds, ascending. */
    rows: Int32Array;
    /** count x H x W x C raw pixels. */
    pixels: Float32Array;
    imageShape: [number, number, number];
  };
  calibration: EntropySummary & {
    source: string;
    /** Rows of the clean validation file used for calibration, ascending. */
    rows: Int32Array;
    entropies: Float64Array;
    flagged: number;
    /** Share of calibration images flagged by the threshold. */
    frr: number;
  };
  /** Images run through the model during calibration (N blends + the input, per image). */
  forwardPasses: number;
  seconds: number;
}

export interface EntropySummary {
  images: number;
  mean: number;
  std: number;
  min: number;
  max: number;
}

/** Entropies of a set of rows of one data set. */
export interface StripScores {
  source: string;
  /** Rows scored, ascending. */
  rows: Int32Array;
  names: string[];
  truth: Int32Array;
  /** The model's label for the unperturbed input. */
  predicted: Int32Array;
  entropies: Float64Array;
  seconds: number;
  forwardPasses: number;
}

// ---------------------------------------------------------------------------------------
// Pieces

/** Shannon entropy of a probability vector in bits (base 2, as the paper); 0 log 0 = 0. */
export function entropy(p: ArrayLike<number>, base = 2): number {
  let h = 0;
  for (let i = 0; i < p.length; i++) {
    const v = p[i]!;
    if (v > 0) h -= v * Math.log(v);
  }
  return h / Math.log(base) + 0; // + 0 turns -0 into 0
}

export interface SuperimposeOptions {
  mode?: SuperimposeMode;
  pixelMax?: number;
  scale?: number;
}

/**
 * Superimpose raw image `x` on raw background `b`: clip mode min(max(x + b, 0), pixelMax) / scale,
 * add mode (x + b) / scale. Returns float32 model-scale pixels (into `out` when given).
 */
export function superimpose(x: ArrayLike<number>, b: ArrayLike<number>, options: SuperimposeOptions = {}, out?: Float32Array): Float32Array {
  if (x.length !== b.length) throw new GoodnetError(`superimpose: images have ${x.length} and ${b.length} values`);
  const o = out ?? new Float32Array(x.length);
  blendInto(o, 0, x, 0, b, 0, x.length, options.mode ?? 'clip', options.pixelMax ?? STRIP_DEFAULTS.pixelMax, options.scale ?? 1);
  return o;
}

function blendInto(
  out: Float32Array, at: number, x: ArrayLike<number>, xAt: number, b: ArrayLike<number>, bAt: number, len: number,
  mode: SuperimposeMode, pixelMax: number, scale: number,
): void {
  if (mode === 'clip') {
    for (let i = 0; i < len; i++) {
      const v = x[xAt + i]! + b[bAt + i]!;
      out[at + i] = (v < 0 ? 0 : v > pixelMax ? pixelMax : v) / scale;
    }
  } else {
    for (let i = 0; i < len; i++) out[at + i] = (x[xAt + i]! + b[bAt + i]!) / scale;
  }
}

/** Inverse of the standard normal CDF (Wichura's AS 241, PPND16; relative error ~1e-16). */
export function normalQuantile(p: number): number {
  if (!(p > 0 && p < 1)) {
    if (p === 0) return -Infinity;
    if (p === 1) return Infinity;
    return NaN;
  }
  const q = p - 0.5;
  if (Math.abs(q) <= 0.425) {
    const r = 0.180625 - q * q;
    return (q * (((((((2509.0809287301226727 * r + 33430.575583588128105) * r + 67265.770927008700853) * r +
      45921.953931549871457) * r + 13731.693765509461125) * r + 1971.5909503065514427) * r + 133.14166789178437745) * r +
      3.387132872796366608)) /
      (((((((5226.495278852545925 * r + 28729.085735721942674) * r + 39307.89580009271061) * r + 21213.794301586595867) * r +
        5394.1960214247511077) * r + 687.1870074920579083) * r + 42.313330701600911252) * r + 1);
  }
  let r = q < 0 ? p : 1 - p;
  r = Math.sqrt(-Math.log(r));
  let z: number;
  if (r <= 5) {
    r -= 1.6;
    z = (((((((7.7454501427834140764e-4 * r + 0.0227238449892691845833) * r + 0.24178072517745061177) * r +
      1.27045825245236838258) * r + 3.64784832476320460504) * r + 5.7694972214606914055) * r + 4.6303378461565452959) * r +
      1.42343711074968357734) /
      (((((((1.05075007164441684324e-9 * r + 5.475938084995344946e-4) * r + 0.0151986665636164571966) * r +
        0.14810397642748007459) * r + 0.68976733498510000455) * r + 1.6763848301838038494) * r + 2.05319162663775882187) * r + 1);
  } else {
    r -= 5;
    z = (((((((2.01033439929228813265e-7 * r + 2.71155556874348757815e-5) * r + 0.0012426609473880784386) * r +
      0.026532189526576123093) * r + 0.29656057182850489123) * r + 1.7848265399172913358) * r + 5.4637849111641143699) * r +
      6.6579046435011037772) /
      (((((((2.04426310338993978564e-15 * r + 1.4215117583164458887e-7) * r + 1.8463183175100546818e-5) * r +
        7.868691311456132591e-4) * r + 0.0148753612908506148525) * r + 0.13692988092273580531) * r + 0.59983220655588793769) * r + 1);
  }
  return q < 0 ? -z : z;
}

/** Mean, population standard deviation, min and max. */
export function summarize(xs: ArrayLike<number>): EntropySummary {
  const m = xs.length;
  if (m === 0) return { images: 0, mean: NaN, std: NaN, min: NaN, max: NaN };
  let sum = 0;
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < m; i++) {
    const v = xs[i]!;
    sum += v;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const mean = sum / m;
  let ss = 0;
  for (let i = 0; i < m; i++) ss += (xs[i]! - mean) ** 2;
  return { images: m, mean, std: Math.sqrt(ss / m), min, max };
}

/**
 * The threshold for a target FRR on clean entropies (inputs with H below it are flagged).
 * 'quantile': the (floor(frr*m)+1)-th smallest entropy; 'normal': the frr-quantile of the
 * fitted normal distribution. See the module comment.
 */
export function stripThreshold(entropies: ArrayLike<number>, frr: number, method: StripMethod = 'quantile'): number {
  checkFrr(frr);
  const m = entropies.length;
  if (m === 0) throw new GoodnetError('STRIP calibration: no clean entropies to set the threshold on');
  for (let i = 0; i < m; i++) {
    if (!Number.isFinite(entropies[i]!)) throw new GoodnetError(`STRIP calibration: entropy ${entropies[i]} at ${i} is not finite`);
  }
  if (method === 'normal') {
    const s = summarize(entropies);
    return s.mean + s.std * normalQuantile(frr);
  }
  if (method !== 'quantile') throw new GoodnetError(`STRIP threshold method must be quantile or normal, got ${String(method)}`);
  const sorted = Float64Array.from(entropies).sort();
  // 1e-9 absorbs float error in frr * m (0.29 * 100 = 28.999999999999996).
  const k = Math.min(m - 1, Math.floor(frr * m + 1e-9));
  return sorted[k]!;
}

/** Flags: 1 where H < threshold (trojaned), else 0. */
export function stripFlags(entropies: ArrayLike<number>, threshold: number): Uint8Array {
  const f = new Uint8Array(entropies.length);
  for (let i = 0; i < entropies.length; i++) f[i] = entropies[i]! < threshold ? 1 : 0;
  return f;
}

function countBelow(xs: ArrayLike<number>, t: number): number {
  let c = 0;
  for (let i = 0; i < xs.length; i++) if (xs[i]! < t) c++;
  return c;
}

// ---------------------------------------------------------------------------------------
// Checks

function checkFrr(frr: number): void {
  if (typeof frr !== 'number' || !(frr > 0 && frr < 1)) {
    throw new GoodnetError(`frr (false rejection rate) must be in (0, 1), e.g. 0.01 for 1%, got ${String(frr)}`);
  }
}

interface Resolved {
  n: number; seed: number; superimpose: SuperimposeMode; pixelMax: number; scale: number;
  mean?: number[]; std?: number[];
  layout: NonNullable<OpenDatasetOptions['layout']>; batchSize: number;
}

function resolveSettings(o: StripSettings, model?: LoadedModel): Resolved {
  const n = o.n ?? STRIP_DEFAULTS.n;
  if (!Number.isSafeInteger(n) || n < 1) throw new GoodnetError(`n (backgrounds per input) must be an integer >= 1, got ${String(n)}`);
  const seed = o.seed ?? STRIP_DEFAULTS.seed;
  if (typeof seed !== 'number' || !Number.isFinite(seed)) throw new GoodnetError(`seed must be a number, got ${String(seed)}`);
  const mode = o.superimpose ?? STRIP_DEFAULTS.superimpose;
  if (mode !== 'clip' && mode !== 'add') throw new GoodnetError(`superimpose must be clip or add, got ${String(mode)}`);
  const pixelMax = o.pixelMax ?? STRIP_DEFAULTS.pixelMax;
  if (typeof pixelMax !== 'number' || !(pixelMax > 0) || !Number.isFinite(pixelMax)) {
    throw new GoodnetError(`pixel max must be a positive number, got ${String(pixelMax)}`);
  }
  if (o.scale !== undefined && (typeof o.scale !== 'number' || !(o.scale > 0) || !Number.isFinite(o.scale))) {
    throw new GoodnetError(`scale must be a positive number, got ${String(o.scale)}`);
  }
  // The blends are raw pixels; then x' = (blend / scale - mean[c]) / std[c], as the model file records unless given.
  const { scale, mean, std } = model ? pixelOptionsFor(model, o) : { scale: o.scale ?? 1, mean: o.mean, std: o.std };
  const batchSize = o.batchSize ?? STRIP_DEFAULTS.batchSize;
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new GoodnetError(`batch size must be a positive integer, got ${String(batchSize)}`);
  return { n, seed, superimpose: mode, pixelMax, scale, ...(mean ? { mean } : {}), ...(std ? { std } : {}), layout: o.layout ?? 'auto', batchSize };
}

function checkShare(v: number, what: string): void {
  if (typeof v !== 'number' || !(v > 0 && v < 1)) throw new GoodnetError(`${what} must be in (0, 1), got ${String(v)}`);
}

/** Error unless every raw pixel of the batch is in [0, pixelMax] (clip mode only). */
function checkRange(x: Float32Array, per: number, start: number, s: Resolved, source: string): void {
  if (s.superimpose !== 'clip') return;
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    if (v < 0 || v > s.pixelMax) {
      throw new GoodnetError(
        `raw pixel value ${v} at row ${start + Math.floor(i / per)} is outside 0..${s.pixelMax}; ` +
          `STRIP blends raw pixels (set --pixel-max to the data's white level, or use --superimpose add)`,
        source,
      );
    }
  }
}

// ---------------------------------------------------------------------------------------
// Scoring

type Owned = { ds: ImageDataset; owned: boolean };

async function open(model: LoadedModel, d: string | ImageDataset, s: Resolved): Promise<Owned> {
  if (typeof d !== 'string') {
    checkFits(model, d);
    return { ds: d, owned: false };
  }
  // Raw pixels: the blend happens in the data's own scale, `scale` is applied after it.
  return { ds: await openDataset(d, { scale: 1, layout: s.layout, expect: model.inputShape }), owned: true };
}

function rngFor(s: Resolved, stream: string, row: number): () => number {
  return seedrandom(`strip:${s.seed}:${stream}:${row}`);
}

interface Pool {
  pixels: Float32Array;
  count: number;
}

/**
 * Entropy of each of `rows` (ascending; default all) of `ds`: N blends per input with
 * backgrounds from `pool`, forward passes of whole groups of blends.
 */
async function scoreRows(
  model: LoadedModel, s: Resolved, pool: Pool, ds: ImageDataset, stream: string,
  rows: Int32Array | undefined, onProgress?: (done: number, total: number) => void, fwd: StripForward = {},
): Promise<StripScores> {
  const ort = await forwardEngineFor(model, fwd.engine, { threads: fwd.ortThreads });
  if (!ort) {
    const net = model.net;
    return scoreRowsWith(model, s, pool, ds, stream, rows, onProgress, async (x, count) => {
      const [H, W, C] = model.inputShape;
      const probs = tf.tidy(() => net.predict(tf.tensor4d(x.subarray(0, count * H * W * C), [count, H, W, C]), { batchSize: count }) as tf.Tensor);
      const pr = (await probs.data()) as Float32Array;
      probs.dispose();
      return pr;
    });
  }
  try {
    return await scoreRowsWith(model, s, pool, ds, stream, rows, onProgress, async (x, count) => {
      const r = await ort.predictBatch(x, count);
      if (r.classes !== model.numClasses) throw new GoodnetError(`the ONNX graph gives ${r.classes} class scores, the model ${model.numClasses}; use --engine tfjs`, model.source);
      return r.scores;
    });
  } finally {
    await ort.dispose();
  }
}

async function scoreRowsWith(
  model: LoadedModel, s: Resolved, pool: Pool, ds: ImageDataset, stream: string,
  rows: Int32Array | undefined, onProgress: ((done: number, total: number) => void) | undefined,
  forward: (x: Float32Array, count: number) => Promise<Float32Array>,
): Promise<StripScores> {
  const t0 = performance.now();
  const [H, W, C] = model.inputShape;
  const per = H * W * C;
  const N = s.n;
  const K = model.numClasses;
  const total = rows ? rows.length : ds.length;
  // At most AUTO_BATCH_VALUES input values per forward pass, whatever the batch size: memory follows the image size.
  const group = Math.max(1, Math.floor(Math.min(s.batchSize, autoBatchSize(model.inputShape, s.batchSize)) / (N + 1)));
  const buf = new Float32Array(group * (N + 1) * per);
  const out: StripScores = {
    source: ds.source, rows: new Int32Array(total), names: new Array<string>(total), truth: new Int32Array(total),
    predicted: new Int32Array(total), entropies: new Float64Array(total), seconds: 0, forwardPasses: 0,
  };
  if (total === 0) return out;
  const pending: { row: number; at: number; x: Float32Array; xAt: number }[] = [];
  let done = 0;
  const flush = async () => {
    const m = pending.length;
    if (m === 0) return;
    const count = m * (N + 1);
    pending.forEach((p, j) => {
      const rng = rngFor(s, stream, p.row);
      for (let c = 0; c < N; c++) {
        const b = Math.floor(rng() * pool.count);
        blendInto(buf, (j * N + c) * per, p.x, p.xAt, pool.pixels, b * per, per, s.superimpose, s.pixelMax, s.scale);
      }
      // The unperturbed input, for the model's own label.
      const o = (m * N + j) * per;
      for (let i = 0; i < per; i++) buf[o + i] = p.x[p.xAt + i]! / s.scale;
    });
    normalizeInPlace(buf, C, s, 0, count * per);
    const pr = await forward(buf, count);
    await yieldToEventLoop(); // SIGINT/SIGTERM are handled here, once per forward pass
    pending.forEach((p, j) => {
      let sum = 0;
      for (let c = 0; c < N; c++) {
        const r = (j * N + c) * K;
        sum += entropy(pr.subarray(r, r + K));
      }
      const h = sum / N;
      if (!Number.isFinite(h)) throw new GoodnetError(`model output is not a probability vector (entropy ${h}) at row ${p.row}`, ds.source);
      out.entropies[p.at] = h;
      const r = (m * N + j) * K;
      let best = 0;
      for (let k = 1; k < K; k++) if (pr[r + k]! > pr[r + best]!) best = k;
      out.predicted[p.at] = best;
    });
    out.forwardPasses += count;
    done += m;
    pending.length = 0;
    onProgress?.(done, total);
  };

  let next = 0; // position in `rows`
  let at = 0;
  for await (const batch of ds.batches(STRIP_DEFAULTS.readBatch)) {
    checkRange(batch.x, per, batch.start, s, ds.source);
    for (let i = 0; i < batch.n; i++) {
      const row = batch.start + i;
      if (rows) {
        if (next >= rows.length || rows[next] !== row) continue;
        next++;
      }
      out.rows[at] = row;
      out.names[at] = ds.name(row);
      out.truth[at] = ds.labels[row]!;
      pending.push({ row, at, x: batch.x, xAt: i * per });
      at++;
      if (pending.length === group) await flush();
    }
    if (rows && next >= rows.length) break;
  }
  await flush();
  if (at !== total) throw new GoodnetError(`STRIP: read ${at} of ${total} rows`, ds.source);
  out.seconds = (performance.now() - t0) / 1000;
  return out;
}

function checkRows(rows: ArrayLike<number>, n: number, source: string): Int32Array {
  const r = Int32Array.from(rows).sort();
  for (let i = 0; i < r.length; i++) {
    if (r[i]! < 0 || r[i]! >= n) throw new GoodnetError(`row ${r[i]} is out of range 0..${n - 1}`, source);
    if (i > 0 && r[i] === r[i - 1]) throw new GoodnetError(`row ${r[i]} given twice`, source);
  }
  return r;
}

// ---------------------------------------------------------------------------------------
// Calibration

/**
 * Split the clean validation set (seeded) into backgrounds and calibration images, compute
 * the calibration entropies and set the threshold for the target FRR.
 */
export async function calibrateStrip(model: LoadedModel, cleanValid: string | ImageDataset, options: CalibrateOptions = {}): Promise<StripDetector> {
  const t0 = performance.now();
  const s = resolveSettings(options, model);
  const frr = options.frr ?? STRIP_DEFAULTS.frr;
  checkFrr(frr);
  const method = options.method ?? STRIP_DEFAULTS.method;
  if (method !== 'quantile' && method !== 'normal') throw new GoodnetError(`STRIP threshold method must be quantile or normal, got ${String(method)}`);
  const heldOut = options.heldOut ?? STRIP_DEFAULTS.heldOut;
  checkShare(heldOut, 'held-out share (calibration part of the clean validation set)');

  const { ds, owned } = await open(model, cleanValid, s);
  try {
    const n = ds.length;
    if (n < 2) throw new GoodnetError(`STRIP needs at least 2 clean validation images (backgrounds and calibration), got ${n}`, ds.source);
    const perm = Int32Array.from({ length: n }, (_, i) => i);
    const rng = seedrandom(`strip-split:${s.seed}`);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(rng() * (i + 1));
      const t = perm[i]!;
      perm[i] = perm[j]!;
      perm[j] = t;
    }
    const m = Math.min(n - 1, Math.max(1, Math.round(heldOut * n)));
    const calRows = perm.slice(0, m).sort();
    const bgRows = perm.slice(m).sort();

    // Pass 1: the background pool, raw pixels.
    const [H, W, C] = model.inputShape;
    const per = H * W * C;
    const pixels = new Float32Array(bgRows.length * per);
    let k = 0;
    for await (const batch of ds.batches(STRIP_DEFAULTS.readBatch)) {
      for (let i = 0; i < batch.n && k < bgRows.length; i++) {
        if (batch.start + i !== bgRows[k]) continue;
        pixels.set(batch.x.subarray(i * per, (i + 1) * per), k * per);
        k++;
      }
      checkRange(batch.x, per, batch.start, s, ds.source);
      if (k >= bgRows.length) break;
    }
    const pool = { pixels, count: bgRows.length };

    // Pass 2: calibration entropies.
    const scores = await scoreRows(model, s, pool, ds, 'calibration', calRows, options.onProgress, options);
    const threshold = stripThreshold(scores.entropies, frr, method);
    const flagged = countBelow(scores.entropies, threshold);
    return {
      model: model.source, ...s, method, frr, heldOut, threshold,
      backgrounds: { source: ds.source, count: pool.count, rows: bgRows, pixels, imageShape: [H, W, C] },
      calibration: {
        source: ds.source, rows: calRows, entropies: scores.entropies, ...summarize(scores.entropies),
        flagged, frr: flagged / scores.entropies.length,
      },
      forwardPasses: scores.forwardPasses,
      seconds: (performance.now() - t0) / 1000,
    };
  } finally {
    if (owned) ds.close();
  }
}

export interface ScoreOptions extends StripForward {
  /** Names the RNG stream of the backgrounds (default 'inputs'); see the module comment. */
  stream?: string;
  /** Rows to score (default all). */
  rows?: ArrayLike<number>;
  onProgress?: (done: number, total: number) => void;
}

/** Entropies of the images of `data` (a path or an open data set delivering raw pixels) under a calibrated detector. */
export async function stripEntropies(model: LoadedModel, detector: StripDetector, data: string | ImageDataset, options: ScoreOptions = {}): Promise<StripScores> {
  const s = resolveSettings(detector, model);
  const { ds, owned } = await open(model, data, s);
  try {
    if (detector.backgrounds.imageShape.join('x') !== model.inputShape.join('x')) {
      throw new GoodnetError(`the detector was calibrated for ${detector.backgrounds.imageShape.join('x')} inputs, the model takes ${model.inputShape.join('x')}`);
    }
    const rows = options.rows === undefined ? undefined : checkRows(options.rows, ds.length, ds.source);
    const pool = { pixels: detector.backgrounds.pixels, count: detector.backgrounds.count };
    return await scoreRows(model, s, pool, ds, options.stream ?? 'inputs', rows, options.onProgress, options);
  } finally {
    if (owned) ds.close();
  }
}

// ---------------------------------------------------------------------------------------
// The whole measurement

export interface RunStripOptions extends CalibrateOptions {
  cleanValid: string | ImageDataset;
  cleanTest?: string | ImageDataset;
  poisonedTest?: string | ImageDataset;
  /** The attack target: poisoned images labelled with it are not counted as trojaned. */
  target?: number;
  /** Files, folders or HDF5 files whose images are each flagged or not. */
  inputs?: string[];
  /** At most this many images from each test set (a seeded random subset), to bound the run time. */
  limit?: number;
  onStage?: (stage: StripStage, done: number, total: number) => void;
}

export type StripStage = 'calibration' | 'clean-test' | 'poisoned-test' | 'inputs';

export interface StripInputVerdict {
  input: string;
  /** The source file or folder it came from. */
  source: string;
  truth: number;
  /** The model's label for the unperturbed input. */
  label: number;
  entropy: number;
  flagged: boolean;
}

export interface StripResult {
  model: string;
  settings: {
    n: number; frr: number; method: StripMethod; seed: number; heldOut: number; superimpose: SuperimposeMode;
    pixelMax: number; scale: number; mean?: number[]; std?: number[]; batchSize: number; limit?: number; entropyUnit: 'bits';
  };
  threshold: number;
  calibration: EntropySummary & { source: string; backgrounds: number; flagged: number; frr: number; entropies: number[] };
  /** `rows`: the rows scored (all, or the --limit subset), `entropies` in the same order. */
  cleanTest?: EntropySummary & { source: string; total: number; flagged: number; frr: number; rows: number[]; entropies: number[] };
  poisonedTest?: EntropySummary & {
    source: string; total: number; target?: number; labelsAreTarget: boolean; accepted: number; far: number; rows: number[]; entropies: number[];
  };
  inputs?: StripInputVerdict[];
  timings: { calibration: number; cleanTest?: number; poisonedTest?: number; inputs?: number; total: number };
  forwardPasses: number;
  imagesPerSecond: number;
}

/** A seeded random subset of `eligible` of at most `limit` rows, ascending. */
export function limitRows(eligible: Int32Array, limit: number | undefined, seed: number, stream: string): Int32Array {
  if (limit === undefined || eligible.length <= limit) return eligible;
  const a = Int32Array.from(eligible);
  const rng = seedrandom(`strip-limit:${seed}:${stream}`);
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const t = a[i]!;
    a[i] = a[j]!;
    a[j] = t;
  }
  return a.slice(0, limit).sort();
}

/**
 * Calibrate on clean validation data, then score clean and poisoned test sets (FRR, FAR)
 * and/or flag each image of `inputs`.
 */
export async function runStrip(model: LoadedModel, options: RunStripOptions): Promise<StripResult> {
  const t0 = performance.now();
  const s = resolveSettings(options, model);
  const haveTests = options.cleanTest !== undefined || options.poisonedTest !== undefined;
  if (!haveTests && !(options.inputs && options.inputs.length)) {
    throw new GoodnetError('nothing to check: give inputs and/or clean/poisoned test data');
  }
  if (options.target !== undefined) checkTarget(options.target, model.numClasses);
  const limit = options.limit;
  if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 1)) throw new GoodnetError(`limit must be an integer >= 1, got ${String(limit)}`);
  // Check the cheap things before the long calibration.
  checkFrr(options.frr ?? STRIP_DEFAULTS.frr);
  checkShare(options.heldOut ?? STRIP_DEFAULTS.heldOut, 'held-out share (calibration part of the clean validation set)');

  const stage = (st: StripStage) => (d: number, t: number) => options.onStage?.(st, d, t);
  const det = await calibrateStrip(model, options.cleanValid, { ...options, onProgress: stage('calibration') });
  let passes = det.forwardPasses;
  const result: StripResult = {
    model: model.source,
    settings: {
      n: det.n, frr: det.frr, method: det.method, seed: det.seed, heldOut: det.heldOut, superimpose: det.superimpose,
      pixelMax: det.pixelMax, scale: det.scale, ...(det.mean ? { mean: det.mean } : {}), ...(det.std ? { std: det.std } : {}), batchSize: det.batchSize, ...(limit !== undefined ? { limit } : {}), entropyUnit: 'bits',
    },
    threshold: det.threshold,
    calibration: {
      source: det.calibration.source, backgrounds: det.backgrounds.count, ...summarize(det.calibration.entropies),
      flagged: det.calibration.flagged, frr: det.calibration.frr, entropies: Array.from(det.calibration.entropies),
    },
    timings: { calibration: det.seconds, total: 0 },
    forwardPasses: 0,
    imagesPerSecond: 0,
  };

  if (options.cleanTest !== undefined) {
    const { ds, owned } = await open(model, options.cleanTest, s);
    try {
      const all = Int32Array.from({ length: ds.length }, (_, i) => i);
      const rows = limitRows(all, limit, s.seed, 'clean-test');
      const sc = await stripEntropies(model, det, ds, { stream: 'clean-test', rows, onProgress: stage('clean-test'), engine: options.engine, ortThreads: options.ortThreads });
      const flagged = countBelow(sc.entropies, det.threshold);
      result.cleanTest = {
        source: ds.source, total: ds.length, ...summarize(sc.entropies), flagged, frr: flagged / sc.entropies.length,
        rows: Array.from(sc.rows), entropies: Array.from(sc.entropies),
      };
      result.timings.cleanTest = sc.seconds;
      passes += sc.forwardPasses;
    } finally {
      if (owned) ds.close();
    }
  }

  if (options.poisonedTest !== undefined) {
    const { ds, owned } = await open(model, options.poisonedTest, s);
    try {
      checkLabels(ds, model.numClasses);
      const t = options.target;
      const trojaned: number[] = [];
      for (let i = 0; i < ds.length; i++) if (t === undefined || ds.labels[i] !== t) trojaned.push(i);
      const labelsAreTarget = trojaned.length === 0;
      const eligible = labelsAreTarget ? Int32Array.from({ length: ds.length }, (_, i) => i) : Int32Array.from(trojaned);
      const rows = limitRows(eligible, limit, s.seed, 'poisoned-test');
      const sc = await stripEntropies(model, det, ds, { stream: 'poisoned-test', rows, onProgress: stage('poisoned-test'), engine: options.engine, ortThreads: options.ortThreads });
      const accepted = sc.entropies.length - countBelow(sc.entropies, det.threshold);
      result.poisonedTest = {
        source: ds.source, total: ds.length, ...(t !== undefined ? { target: t } : {}), labelsAreTarget,
        ...summarize(sc.entropies), accepted, far: accepted / sc.entropies.length, rows: Array.from(sc.rows), entropies: Array.from(sc.entropies),
      };
      result.timings.poisonedTest = sc.seconds;
      passes += sc.forwardPasses;
    } finally {
      if (owned) ds.close();
    }
  }

  if (options.inputs && options.inputs.length) {
    const t1 = performance.now();
    const verdicts: StripInputVerdict[] = [];
    for (const [k, path] of options.inputs.entries()) {
      const sc = await stripEntropies(model, det, path, { stream: `inputs:${k}`, onProgress: stage('inputs'), engine: options.engine, ortThreads: options.ortThreads });
      for (let i = 0; i < sc.entropies.length; i++) {
        const h = sc.entropies[i]!;
        verdicts.push({ input: sc.names[i]!, source: path, truth: sc.truth[i]!, label: sc.predicted[i]!, entropy: h, flagged: h < det.threshold });
      }
      passes += sc.forwardPasses;
    }
    result.inputs = verdicts;
    result.timings.inputs = (performance.now() - t1) / 1000;
  }

  result.timings.total = (performance.now() - t0) / 1000;
  result.forwardPasses = passes;
  result.imagesPerSecond = passes / result.timings.total;
  return result;
}
