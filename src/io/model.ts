/**
 * One entry point for models on disk: Keras HDF5 (full or weights-only) and tfjs folders
 * in, Keras HDF5 full models and tfjs folders out.
 */
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type * as tfl from '@tensorflow/tfjs-layers';
import { GoodnetError } from '../errors.js';
import { writeAtomically, type AtomicOptions } from './atomic.js';
import { looksLikeHdf5 } from './hdf5.js';
import { checkRegularFile } from './safe_open.js';
import { readKerasH5, writeKerasH5, type KerasLoadOptions } from './keras.js';
import type { JsonObject } from './keras_config.js';
import type { Preprocessing } from './preprocess.js';
import { MODEL_JSON, readTfjsFolder, writeTfjsFolder } from './tfjs_format.js';

export type ModelFormat = 'keras-full' | 'keras-weights' | 'tfjs';

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

/** Load a model from a Keras .h5 file or a tfjs folder (or its model.json). */
export async function loadModel(path: string, options: LoadModelOptions = {}): Promise<LoadedModel> {
  if (!existsSync(path)) throw new GoodnetError('file not found', path);
  const st = statSync(path);
  if (!st.isDirectory()) checkRegularFile(path);
  if (st.isDirectory() || path.endsWith(MODEL_JSON)) {
    const dir = st.isDirectory() ? path : join(path, '..');
    return describeModel(await readTfjsFolder(dir), path, 'tfjs');
  }
  if (!looksLikeHdf5(path)) {
    throw new GoodnetError('not a model file: expected Keras HDF5 (.h5) or a tfjs folder with model.json', path);
  }
  const k = await readKerasH5(path, options);
  return describeModel(k.net, path, k.kind, k.kerasConfig);
}

export type SaveFormat = 'keras' | 'tfjs';

/** Format from the destination: `*.h5`/`*.hdf5`/`*.keras` -> Keras HDF5, anything else -> tfjs folder. */
export function saveFormatFor(path: string): SaveFormat {
  return /\.(h5|hdf5|keras)$/i.test(path) ? 'keras' : 'tfjs';
}

/** Save atomically as a Keras HDF5 full model or a tfjs folder (chosen by `path`). */
export async function saveModel(
  model: LoadedModel | tfl.LayersModel,
  path: string,
  options: AtomicOptions & { format?: SaveFormat } = {},
): Promise<void> {
  const net = 'net' in model ? model.net : model;
  const kerasConfig = 'net' in model ? model.kerasConfig : undefined;
  const format = options.format ?? saveFormatFor(path);
  await writeAtomically(path, async (tmp) => {
    if (format === 'keras') await writeKerasH5(net, tmp, kerasConfig);
    else {
      mkdirSync(tmp);
      await writeTfjsFolder(net, tmp);
    }
  }, options);
}
