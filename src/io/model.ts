/**
 * One entry point for models on disk: Keras HDF5 (full or weights-only), ONNX and tfjs
 * folders in, Keras HDF5 full models, ONNX and tfjs folders out.
 */
import { closeSync, existsSync, mkdirSync, openSync, readSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as tfl from '@tensorflow/tfjs-layers';
import { GoodnetError } from '../errors.js';
import { writeAtomically, type AtomicOptions } from './atomic.js';
import { looksLikeHdf5 } from './hdf5.js';
import { checkRegularFile } from './safe_open.js';
import { readKerasH5, writeKerasH5, type KerasLoadOptions } from './keras.js';
import { looksLikeZip, readKerasZip, writeKerasZip } from './keras3.js';
import type { JsonObject } from './keras_config.js';
import { checkPreprocessing, type Preprocessing } from './preprocess.js';
import { MODEL_JSON, readTfjsFolder, readTfjsPreprocessing, writeTfjsFolder } from './tfjs_format.js';
import type { OnnxSource } from './onnx.js';
import './onnx_layers.js'; // registers the ONNX layer classes, so tfjs folders holding them load
import { looksLikeOnnx } from './onnx_sniff.js';

export type ModelFormat = 'keras-full' | 'keras-weights' | 'tfjs' | 'keras3' | 'onnx';

/** A classifier loaded from disk, with what goodnet needs to know about it. */
export interface LoadedModel {
  net: tfl.LayersModel;
  source: string;
  format: ModelFormat;
  /** Input shape of one image, channels-last [H, W, C]. */
  inputShape: [number, number, number];
  numClasses: number;
  /** Original Keras model_config, kept so a re-saved file keeps the author's config verbatim. */
  kerasConfig?: JsonObject;
  /** Preprocessing found in the file's metadata (goodnet writes it with every model), if any. */
  preprocessing?: Preprocessing;
  /** For models read from ONNX: the original graph and where each weight came from (saved back into it). */
  onnx?: OnnxSource;
}

export type LoadModelOptions = KerasLoadOptions;

/** Wrap a tfjs-layers image classifier, checking it has one (H, W, C) input and one softmax-like output. */
export function describeModel(net: tfl.LayersModel, source: string, format: ModelFormat, kerasConfig?: JsonObject): LoadedModel {
  if (net.inputs.length !== 1 || net.outputs.length !== 1) {
    throw new GoodnetError(`model has ${net.inputs.length} inputs and ${net.outputs.length} outputs; need exactly one of each`, source);
  }
  const inShape = net.inputs[0]!.shape;
  const outShape = net.outputs[0]!.shape;
  if (inShape.length !== 4 || inShape.slice(1).some((d) => d === null)) {
    throw new GoodnetError(`model input shape (${inShape.join(',')}) is not an image batch (N,H,W,C)`, source);
  }
  if (outShape.length !== 2 || outShape[1] === null || outShape[1]! < 2) {
    throw new GoodnetError(`model output shape (${outShape.join(',')}) is not a class vector (N,K)`, source);
  }
  return {
    net,
    source,
    format,
    inputShape: inShape.slice(1) as [number, number, number],
    numClasses: outShape[1]!,
    kerasConfig,
  };
}

/** Load a model from a Keras .h5 file, an ONNX file (recognized by content) or a tfjs folder (or its model.json). */
export async function loadModel(path: string, options: LoadModelOptions = {}): Promise<LoadedModel> {
  if (!existsSync(path)) throw new GoodnetError('file not found', path);
  const st = statSync(path);
  if (!st.isDirectory()) checkRegularFile(path);
  if (st.isDirectory() || path.endsWith(MODEL_JSON)) {
    const dir = st.isDirectory() ? path : join(path, '..');
    const m = describeModel(await readTfjsFolder(dir), path, 'tfjs');
    const preprocessing = readTfjsPreprocessing(dir);
    return preprocessing ? { ...m, preprocessing: checkPreprocessing(preprocessing, m.inputShape[2], path) } : m;
  }
  if (isZipFile(path)) {
    const k = await readKerasZip(path);
    return { ...describeModel(k.net, path, 'keras3', k.kerasConfig), ...(k.preprocessing ? { preprocessing: k.preprocessing } : {}) };
  }
  if (looksLikeOnnx(path)) {
    const { readOnnx } = await import('./onnx.js'); // protobufjs is loaded only when needed
    const o = await readOnnx(path);
    return { ...describeModel(o.net, path, 'onnx'), onnx: o.onnx, preprocessing: o.preprocessing };
  }
  if (!looksLikeHdf5(path)) {
    throw new GoodnetError('not a model file: expected Keras (.keras or .h5), ONNX (.onnx) or a tfjs folder with model.json', path);
  }
  const k = await readKerasH5(path, options);
  const m = describeModel(k.net, path, k.kind, k.kerasConfig);
  return k.preprocessing ? { ...m, preprocessing: checkPreprocessing(k.preprocessing, m.inputShape[2], path) } : m;
}

function isZipFile(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(4);
    return looksLikeZip(head.subarray(0, readSync(fd, head, 0, 4, 0)));
  } finally {
    closeSync(fd);
  }
}

export type SaveFormat = 'keras' | 'keras3' | 'tfjs' | 'onnx';

/** Format from the destination: `*.keras` -> Keras 3 zip, `*.h5`/`*.hdf5` -> Keras HDF5, `*.onnx` -> ONNX, anything else -> tfjs folder. */
export function saveFormatFor(path: string): SaveFormat {
  if (/\.onnx$/i.test(path)) return 'onnx';
  if (/\.keras$/i.test(path)) return 'keras3';
  return /\.(h5|hdf5)$/i.test(path) ? 'keras' : 'tfjs';
}

/**
 * Save atomically as a Keras HDF5 full model or a tfjs folder (chosen by `path`), with the
 * model's `preprocessing` (or `options.preprocessing`, when set) recorded in the file's metadata.
 */
export async function saveModel(
  model: LoadedModel | tfl.LayersModel,
  path: string,
  options: AtomicOptions & { format?: SaveFormat; preprocessing?: Preprocessing } = {},
): Promise<void> {
  const net = 'net' in model ? model.net : model;
  const kerasConfig = 'net' in model ? model.kerasConfig : undefined;
  const preprocessing = options.preprocessing ?? ('net' in model ? model.preprocessing : undefined);
  const format = options.format ?? saveFormatFor(path);
  // ONNX bytes are made first: a model that cannot be expressed fails before anything is written.
  const onnx = format === 'onnx' ? (await import('./onnx_write.js')).onnxBytes('net' in model ? { ...model, preprocessing } : { net, preprocessing }, path) : undefined;
  await writeAtomically(path, async (tmp) => {
    if (onnx) writeFileSync(tmp, onnx);
    else if (format === 'keras') await writeKerasH5(net, tmp, kerasConfig, preprocessing);
    else if (format === 'keras3') await writeKerasZip(net, tmp, kerasConfig, preprocessing);
    else {
      mkdirSync(tmp);
      await writeTfjsFolder(net, tmp, preprocessing);
    }
  }, options);
}
