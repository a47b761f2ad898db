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
