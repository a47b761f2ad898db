/**
 * tfjs LayersModel folders: `model.json` (Keras topology + weights manifest) and binary
 * weight shards, read and written with node:fs (tfjs-core's file:// handler needs tfjs-node).
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { GoodnetError } from '../errors.js';
import { toTfjsTopology, type JsonObject } from './keras_config.js';
import { MAX_MODEL_WEIGHTS, shapeSize, withWeightBudget } from './limits.js';
import { PREPROCESSING_KEY, preprocessingFromJson, preprocessingToJson, type Preprocessing } from './preprocess.js';
import { checkRegularFile, readRegularFile } from './safe_open.js';

export const MODEL_JSON = 'model.json';
export const WEIGHTS_BIN = 'group1-shard1of1.bin';
/** Largest model.json read (its topology; the weights are in the shards). */
export const MAX_MODEL_JSON_BYTES = 64 << 20;

interface ModelJson {
  modelTopology?: unknown;
  weightsManifest?: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
  userDefinedMetadata?: Record<string, unknown>;
}

/**
 * The preprocessing recorded in `dir/model.json` (`userDefinedMetadata[PREPROCESSING_KEY]`,
 * an object or its JSON text), if any; malformed metadata is an error naming model.json.
 */
export function readTfjsPreprocessing(dir: string): Preprocessing | undefined {
  const jsonPath = join(dir, MODEL_JSON);
  let doc: ModelJson;
  try {
    doc = JSON.parse(readRegularFile(jsonPath, { within: dir, maxBytes: MAX_MODEL_JSON_BYTES }).toString('utf8')) as ModelJson;
  } catch (err) {
    throw new GoodnetError(`not valid JSON (${(err as Error).message})`, jsonPath);
  }
  const meta = doc?.userDefinedMetadata;
  if (meta === undefined || meta === null || typeof meta !== 'object') return undefined;
  const v = meta[PREPROCESSING_KEY];
  if (v === undefined) return undefined;
  return preprocessingFromJson(typeof v === 'string' ? v : JSON.stringify(v), jsonPath);
}

/** Load `dir/model.json` and its shards. */
export async function readTfjsFolder(dir: string): Promise<tfl.LayersModel> {
  const jsonPath = join(dir, MODEL_JSON);
  if (!existsSync(jsonPath)) throw new GoodnetError(`no ${MODEL_JSON} in the folder`, dir);
  let doc: ModelJson;
  try {
    // Only a regular file inside the folder (no FIFO, no link out of it), of sane size.
    doc = JSON.parse(readRegularFile(jsonPath, { within: dir, maxBytes: MAX_MODEL_JSON_BYTES }).toString('utf8')) as ModelJson;
  } catch (err) {
    if (err instanceof GoodnetError) throw err;
    throw new GoodnetError(`not valid JSON (${(err as Error).message})`, jsonPath);
  }
  if (typeof doc !== 'object' || doc === null || typeof doc.modelTopology !== 'object' || doc.modelTopology === null) {
    throw new GoodnetError('no modelTopology: not a tfjs LayersModel (graph models are not supported)', jsonPath);
  }
  const manifest = doc.weightsManifest;
  if (!Array.isArray(manifest)) throw new GoodnetError('no weightsManifest', jsonPath);
  const root = resolve(dir);
  const shards: string[] = [];
  const specs: tf.io.WeightsManifestEntry[] = [];
  let shardBytes = 0;
  for (const group of manifest) {
    if (!group || !Array.isArray(group.paths) || !Array.isArray(group.weights)) {
      throw new GoodnetError('weightsManifest entry without paths/weights', jsonPath);
    }
    for (const p of group.paths) {
      const shard = resolve(root, String(p));
      // A shard path must not escape the model folder (model files come from strangers),
      // neither by name nor through a symbolic link; it must be a regular file.
      if (!shard.startsWith(root + sep)) throw new GoodnetError(`shard path '${p}' points outside the model folder`, jsonPath);
      if (!existsSync(shard)) throw new GoodnetError(`weight shard '${p}' is missing`, jsonPath);
      const st = checkRegularFile(shard, { within: root });
      shards.push(shard);
      shardBytes += st.size;
      if (shardBytes > MAX_MODEL_WEIGHTS * 4) {
        throw new GoodnetError(`the weight shards listed hold more than ${MAX_MODEL_WEIGHTS * 4} bytes; nothing was read`, jsonPath);
      }
    }
    specs.push(...group.weights);
  }
  // Check every declared size before reading or allocating anything for it.
  let values = 0;
  for (const s of specs) {
    const count = typeof s === 'object' && s !== null && typeof s.name === 'string' ? shapeSize(s.shape) : undefined;
    if (count === undefined) {
      throw new GoodnetError(`weightsManifest entry ${JSON.stringify(s)?.slice(0, 80)} has no name or an invalid shape`, jsonPath);
    }
    if (s.dtype !== undefined && s.dtype !== 'float32' && s.dtype !== 'int32') {
      throw new GoodnetError(`weight '${s.name}' has dtype ${JSON.stringify(s.dtype)}; only float32 and int32 are supported`, jsonPath);
    }
    if (s.quantization !== undefined) throw new GoodnetError(`weight '${s.name}' is quantized; not supported`, jsonPath);
    values += count;
    if (values > MAX_MODEL_WEIGHTS) throw new GoodnetError(`the manifest declares more than ${MAX_MODEL_WEIGHTS} weights`, jsonPath);
  }
  const expected = values * 4;
  // Sizes from the file system first: no byte of a shard is read unless they add up.
  if (shardBytes !== expected) {
    throw new GoodnetError(`weight shards hold ${shardBytes} bytes, the manifest needs ${expected}`, jsonPath);
  }
  const all = Buffer.concat(shards.map((f) => readRegularFile(f, { within: root })));
  if (all.length !== expected) {
    throw new GoodnetError(`weight shards hold ${all.length} bytes, the manifest needs ${expected}`, jsonPath);
  }
  const topology = toTfjsTopology(doc.modelTopology as JsonObject, jsonPath);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  try {
    const net = await withWeightBudget(jsonPath, () =>
      tfl.loadLayersModel(tf.io.fromMemory({ modelTopology: topology as never, weightSpecs: specs, weightData })));
    checkFinite(net, jsonPath);
    return net;
  } catch (err) {
    if (err instanceof GoodnetError) throw err;
    throw new GoodnetError(`cannot load the model: ${String((err as Error).message ?? err).split('\n')[0]}`, jsonPath, { cause: err });
  }
}

function checkFinite(net: tfl.LayersModel, file: string): void {
  for (const w of net.weights) {
    const v = w.read().dataSync();
    for (let i = 0; i < v.length; i++) {
      if (!Number.isFinite(v[i]!)) throw new GoodnetError(`weight '${w.originalName}' contains ${Number.isNaN(v[i]!) ? 'NaN' : 'Inf'}`, file);
    }
  }
}

/**
 * Write `dir/model.json` + one weight shard. `dir` must exist. With `preprocessing`, model.json
 * carries it as `userDefinedMetadata[PREPROCESSING_KEY]` (an object; tfjs-layers keeps it).
 */
export async function writeTfjsFolder(net: tfl.LayersModel, dir: string, preprocessing?: Preprocessing): Promise<void> {
  await net.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const weightData = artifacts.weightData;
      const bytes = weightData === undefined ? new Uint8Array(0)
        : Array.isArray(weightData) ? Buffer.concat(weightData.map((b) => new Uint8Array(b))) : new Uint8Array(weightData);
      writeFileSync(join(dir, WEIGHTS_BIN), bytes);
      const doc = {
        format: 'layers-model',
        generatedBy: artifacts.generatedBy,
        convertedBy: 'goodnet',
        modelTopology: artifacts.modelTopology,
        weightsManifest: [{ paths: [WEIGHTS_BIN], weights: artifacts.weightSpecs }],
        ...(preprocessing ? { userDefinedMetadata: { [PREPROCESSING_KEY]: JSON.parse(preprocessingToJson(preprocessing)) as unknown } } : {}),
      };
      writeFileSync(join(dir, MODEL_JSON), JSON.stringify(doc));
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
}
