/**
 * How raw pixels become the model's input: x' = (x / scale - mean[c]) / std[c], fed in the
 * model's input layout. Recorded with every written model (ONNX metadata_props, Keras/tfjs
 * metadata) under PREPROCESSING_KEY as JSON, and read back, so a repaired model is
 * evaluated the way it was designed.
 */
import { GoodnetError } from '../errors.js';

export type InputLayout = 'nhwc' | 'nchw';

export interface Preprocessing {
  /** Raw pixels are divided by this first (255 maps 0..255 to 0..1; 1 keeps raw pixels). */
  scale: number;
  /** Subtracted after scaling: one value, or one per channel. */
  mean?: number[];
  /** Divided by after the mean: one value, or one per channel. */
  std?: number[];
  /** Layout of the model's own input tensor (ONNX from PyTorch: nchw; Keras/tfjs: nhwc). */
  layout?: InputLayout;
}

/** The metadata key under which every format stores the preprocessing (JSON text). */
export const PREPROCESSING_KEY = 'goodnet.preprocessing';

export const IDENTITY_PREPROCESSING: Preprocessing = { scale: 1 };

/** Check values (finite, std != 0, lengths 1 or `channels`); throws GoodnetError naming `source`. */
export function checkPreprocessing(p: Preprocessing, channels?: number, source?: string): Preprocessing {
  if (!(typeof p.scale === 'number' && Number.isFinite(p.scale) && p.scale > 0)) {
    throw new GoodnetError(`preprocessing scale must be a positive number, got ${String(p.scale)}`, source);
  }
  for (const [name, v] of [['mean', p.mean], ['std', p.std]] as const) {
    if (v === undefined) continue;
    if (!Array.isArray(v) || v.length === 0 || v.some((x) => typeof x !== 'number' || !Number.isFinite(x))) {
      throw new GoodnetError(`preprocessing ${name} must be one or more finite numbers`, source);
    }
    if (channels !== undefined && v.length !== 1 && v.length !== channels) {
      throw new GoodnetError(`preprocessing ${name} has ${v.length} values; the model input has ${channels} channels (give 1 or ${channels})`, source);
    }
    if (name === 'std' && v.some((x) => x === 0)) throw new GoodnetError('preprocessing std must not be zero', source);
  }
  if (p.layout !== undefined && p.layout !== 'nhwc' && p.layout !== 'nchw') {
    throw new GoodnetError(`preprocessing layout must be nhwc or nchw, got ${String(p.layout)}`, source);
  }
  return p;
}

/** JSON text for metadata. */
export function preprocessingToJson(p: Preprocessing): string {
  return JSON.stringify({ scale: p.scale, ...(p.mean ? { mean: p.mean } : {}), ...(p.std ? { std: p.std } : {}), ...(p.layout ? { layout: p.layout } : {}) });
}

/** Parse metadata text written by preprocessingToJson; a malformed value is a GoodnetError naming `source`. */
export function preprocessingFromJson(text: string, source?: string): Preprocessing {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new GoodnetError(`metadata '${PREPROCESSING_KEY}' is not JSON`, source);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new GoodnetError(`metadata '${PREPROCESSING_KEY}' is not an object`, source);
  const o = v as Record<string, unknown>;
  return checkPreprocessing({
    scale: o.scale as number,
    ...(o.mean !== undefined ? { mean: o.mean as number[] } : {}),
    ...(o.std !== undefined ? { std: o.std as number[] } : {}),
    ...(o.layout !== undefined ? { layout: o.layout as InputLayout } : {}),
  }, undefined, source);
}

/** Preprocessing given explicitly (command-line flags or library options); undefined = not given. */
export interface PreprocessingFlags {
  scale?: number;
  mean?: number[];
  std?: number[];
  layout?: InputLayout;
}

export interface ResolvedPreprocessing {
  /** What to apply (and record with written models). */
  preprocessing: Preprocessing;
  /** Where it came from: the model file, explicit flags (on their own or over the file's), or the default (scale 1). */
  from: 'file' | 'flags' | 'default';
  /** The file's own preprocessing, when it carries one. */
  file?: Preprocessing;
  /** True when the file carries preprocessing and explicit flags changed it. */
  overridden: boolean;
}

function samePreprocessing(a: Preprocessing, b: Preprocessing): boolean {
  return preprocessingToJson(a) === preprocessingToJson(b);
}

/**
 * The one precedence rule for every command: the model file's recorded preprocessing is
 * used when no flag is given; each given flag replaces that field (the rest stay the
 * file's); without file metadata, unset fields take the default (scale 1, no mean/std).
 * Checked against the model's channel count (`inputShape[2]`); errors name the model file.
 */
export function resolvePreprocessing(
  model: { preprocessing?: Preprocessing; inputShape?: readonly number[]; source?: string },
  flags: PreprocessingFlags = {},
): ResolvedPreprocessing {
  const given: Partial<Preprocessing> = {};
  if (flags.scale !== undefined) given.scale = flags.scale;
  if (flags.mean !== undefined) given.mean = flags.mean;
  if (flags.std !== undefined) given.std = flags.std;
  if (flags.layout !== undefined) given.layout = flags.layout;
  const anyGiven = Object.keys(given).length > 0;
  // Flags on their own first (zero std, NaN), so such errors do not name the model file.
  if (anyGiven) checkPreprocessing({ scale: 1, ...given });
  const file = model.preprocessing;
  const base = file ?? IDENTITY_PREPROCESSING;
  const merged: Preprocessing = { ...base, ...given };
  const channels = model.inputShape?.[2];
  checkPreprocessing(merged, channels, model.source);
  const p: Preprocessing = {
    scale: merged.scale,
    ...(merged.mean ? { mean: [...merged.mean] } : {}),
    ...(merged.std ? { std: [...merged.std] } : {}),
    ...(merged.layout ? { layout: merged.layout } : {}),
  };
  return {
    preprocessing: p,
    from: anyGiven ? 'flags' : file ? 'file' : 'default',
    ...(file ? { file } : {}),
    overridden: file !== undefined && anyGiven && !samePreprocessing(file, p),
  };
}

/** "scale 255, mean 0.485,0.456,0.406, std 0.229,0.224,0.225, input layout nchw" */
export function preprocessingText(p: Preprocessing): string {
  return [
    `scale ${p.scale}`,
    ...(p.mean ? [`mean ${p.mean.join(',')}`] : []),
    ...(p.std ? [`std ${p.std.join(',')}`] : []),
    ...(p.layout ? [`input layout ${p.layout}`] : []),
  ].join(', ');
}

/** Per-channel mean/std as arrays of length `channels` (undefined when neither is set). */
function perChannel(p: { mean?: number[]; std?: number[] }, channels: number): { mean: Float64Array; std: Float64Array } | undefined {
  if (!p.mean && !p.std) return undefined;
  const mean = new Float64Array(channels);
  const std = new Float64Array(channels).fill(1);
  for (let c = 0; c < channels; c++) {
    if (p.mean) mean[c] = p.mean.length === 1 ? p.mean[0]! : p.mean[c]!;
    if (p.std) std[c] = p.std.length === 1 ? p.std[0]! : p.std[c]!;
  }
  return { mean, std };
}

/**
 * Apply x' = (x - mean[c]) / std[c] in place to channels-last (NHWC) values that are already
 * divided by the scale. No-op without mean and std. Lengths must be 1 or `channels`.
 */
export function normalizeInPlace(x: Float32Array, channels: number, p: { mean?: number[]; std?: number[] }, from = 0, to = x.length): void {
  const pc = perChannel(p, channels);
  if (!pc) return;
  const { mean, std } = pc;
  for (let i = from, c = from % channels; i < to; i++) {
    x[i] = (x[i]! - mean[c]!) / std[c]!;
    if (++c === channels) c = 0;
  }
}

/** Pixel options of library functions that read data for a model (input layout is not among them). */
export interface PixelOptions {
  /** Divide raw pixels by this; default: the model file's preprocessing, else 1. */
  scale?: number;
  /** Per-channel mean subtracted after scaling; default: the model file's. */
  mean?: number[];
  /** Per-channel std divided by after the mean; default: the model file's. */
  std?: number[];
}

/**
 * The data transform for `model` given a library call's pixel options: resolvePreprocessing
 * on just scale/mean/std, returned as openDataset options.
 */
export function pixelOptionsFor(
  model: { preprocessing?: Preprocessing; inputShape?: readonly number[]; source?: string },
  o: PixelOptions,
): { scale: number; mean?: number[]; std?: number[] } {
  const p = resolvePreprocessing(model, { scale: o.scale, mean: o.mean, std: o.std }).preprocessing;
  return { scale: p.scale, ...(p.mean ? { mean: p.mean } : {}), ...(p.std ? { std: p.std } : {}) };
}

/** The preprocessing to record with a model written by a library call with pixel options `o`. */
export function preprocessingFor(
  model: { preprocessing?: Preprocessing; inputShape?: readonly number[]; source?: string },
  o: PixelOptions,
): Preprocessing {
  return resolvePreprocessing(model, { scale: o.scale, mean: o.mean, std: o.std }).preprocessing;
}
