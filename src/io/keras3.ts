/**
 * Keras 3 native models (`.keras`): a zip holding `config.json` (the model's Keras 3
 * config), `metadata.json` and `model.weights.h5` (each layer's variables under
 * `layers/<snake_case class name>[_<n>]/vars/0..n`, in the order the layer creates them).
 *
 * Reading checks the zip's central directory (members present, declared sizes under
 * limits, known compression) before anything is inflated; an inflated member never grows
 * past its declared size. Writing produces what `keras.saving.load_model` opens: the
 * model's own Keras 3 config when it came from a `.keras` file, else one generated from the layers.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { unzipSync, zipSync, strToU8, strFromU8 } from 'fflate';
import { GoodnetError, oneLine } from '../errors.js';
import { trackPartial } from './atomic.js';
import { createH5, h5Attr, h5Get, openH5, type H5Group } from './hdf5.js';
import { buildKerasNet, isDataset, readWeight } from './keras.js';
import { isKeras3Config, type Json, type JsonObject } from './keras_config.js';
import { PREPROCESSING_KEY, preprocessingFromJson, preprocessingToJson, type Preprocessing } from './preprocess.js';

/** The Keras release whose `.keras` layout writeKerasZip reproduces (checked by loading in it). */
export const KERAS3_FORMAT_VERSION = '3.15.1';

export const KERAS_CONFIG_MEMBER = 'config.json';
export const KERAS_METADATA_MEMBER = 'metadata.json';
export const KERAS_WEIGHTS_MEMBER = 'model.weights.h5';

/** Largest inflated size accepted per member (declared in the central directory). */
export const KERAS_MEMBER_LIMITS: Record<string, number> = {
  [KERAS_CONFIG_MEMBER]: 64 * 2 ** 20,
  [KERAS_METADATA_MEMBER]: 2 ** 20,
  // 10^8 float32 weights (the model limit) plus HDF5 overhead.
  [KERAS_WEIGHTS_MEMBER]: 512 * 2 ** 20,
};

const ZIP_SIGNATURE = [0x50, 0x4b, 0x03, 0x04];

/** True when the bytes start like a zip archive (local file header). */
export function looksLikeZip(head: Uint8Array): boolean {
  return head.length >= 4 && ZIP_SIGNATURE.every((b, i) => head[i] === b);
}

export interface Keras3Model {
  net: tfl.LayersModel;
  kerasVersion?: string;
  /** The file's own config.json, written back verbatim on save. */
  kerasConfig: JsonObject;
  preprocessing?: Preprocessing;
}

/** Read the members goodnet needs, checking declared sizes before inflating anything. */
export function readKerasZipMembers(bytes: Uint8Array, path: string): Map<string, Uint8Array> {
  const wanted = new Set(Object.keys(KERAS_MEMBER_LIMITS));
  const seen = new Set<string>();
  let files: Record<string, Uint8Array>;
  try {
    files = unzipSync(bytes, {
      filter: (f) => {
        if (!wanted.has(f.name)) return false;
        if (seen.has(f.name)) throw new GoodnetError(`.keras zip has member '${f.name}' twice`, path);
        seen.add(f.name);
        const limit = KERAS_MEMBER_LIMITS[f.name]!;
        if (f.originalSize > limit) {
          throw new GoodnetError(`.keras member '${f.name}' declares ${f.originalSize} bytes, over the ${limit}-byte limit`, path);
        }
        if (f.compression !== 0 && f.compression !== 8) {
          throw new GoodnetError(`.keras member '${f.name}' uses unsupported zip compression method ${f.compression}`, path);
        }
        if (f.compression === 0 && f.size !== f.originalSize) {
          throw new GoodnetError(`.keras member '${f.name}' is stored with inconsistent sizes (${f.size} vs ${f.originalSize})`, path);
        }
        if (f.compression === 8 && f.originalSize > 0 && f.size > 0 && f.originalSize / f.size > 1100) {
          // Deflate cannot exceed ~1032:1; a higher declared ratio is a lie.
          throw new GoodnetError(`.keras member '${f.name}' declares an impossible compression ratio`, path);
        }
        return true;
      },
    });
  } catch (err) {
    if (err instanceof GoodnetError) throw err;
    throw new GoodnetError(`not a valid .keras zip: ${oneLine((err as Error)?.message ?? String(err))}`, path, { cause: err });
  }
  const out = new Map<string, Uint8Array>();
  for (const name of [KERAS_CONFIG_MEMBER, KERAS_WEIGHTS_MEMBER]) {
    if (!files[name]) throw new GoodnetError(`.keras zip has no '${name}' member`, path);
  }
  for (const [k, v] of Object.entries(files)) out.set(k, v);
  return out;
}

function parseJsonMember(data: Uint8Array, member: string, path: string): JsonObject {
  let v: unknown;
  try {
    v = JSON.parse(strFromU8(data));
  } catch (err) {
    throw new GoodnetError(`.keras member '${member}' is not valid JSON (${oneLine((err as Error).message)})`, path);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new GoodnetError(`.keras member '${member}' is not a JSON object`, path);
  return v as JsonObject;
}

/** Keras's naming.to_snake_case: "Conv2D" -> "conv2d", "ReLU" -> "re_lu". */
export function kerasSnakeCase(name: string): string {
  return name
    .replace(/\W+/g, '')
    .replace(/(.)([A-Z][a-z]+)/g, '$1_$2')
    .replace(/([a-z])([A-Z])/g, '$1_$2')
    .toLowerCase();
}

/**
 * The weights-file path of each layer, in Keras's order: the model's `layers` list
 * (a Sequential's without its InputLayer), each named after its class, `_1`, `_2`... on repeats.
 */
export function kerasWeightPaths(classNames: { name: string; className: string }[]): Map<string, string> {
  const used = new Map<string, number>();
  const out = new Map<string, string>();
  for (const { name, className } of classNames) {
    let n = kerasSnakeCase(className);
    const k = used.get(n);
    if (k === undefined) used.set(n, 0);
    else {
      used.set(n, k + 1);
      n = `${n}_${k + 1}`;
    }
    out.set(name, `layers/${n}`);
  }
  return out;
}

/** The layers whose weights Keras stores, in its order, from a Keras 3 config. */
export function configLayers(cfg: JsonObject): { name: string; className: string }[] {
  const c = cfg.config as JsonObject;
  const layers = (Array.isArray(c.layers) ? c.layers : []) as JsonObject[];
  const list = layers.map((l) => {
    const lc = (l.config ?? {}) as JsonObject;
    return { name: String(lc.name ?? l.name ?? ''), className: String(l.class_name) };
  });
  return cfg.class_name === 'Sequential' ? list.filter((l) => l.className !== 'InputLayer') : list;
}

/** Copy `layers/<path>/vars/<i>` into each tfjs layer's weights (in creation order), shapes checked first. */
function assignKeras3Weights(net: tfl.LayersModel, root: H5Group, cfg: JsonObject, path: string): void {
  const layersGroup = h5Get(root, 'layers');
  if (!layersGroup || isDataset(layersGroup)) throw new GoodnetError(`.keras member '${KERAS_WEIGHTS_MEMBER}' has no 'layers' group`, path);
  // Keras >= 3.? records each layer's name on its vars group; older files are matched by position.
  const byName = new Map<string, string>();
  for (const key of (layersGroup as H5Group).keys()) {
    const vars = h5Get(layersGroup as H5Group, `${key}/vars`);
    const name = vars && !isDataset(vars) ? h5Attr(vars as never, 'name') : undefined;
    if (typeof name === 'string') byName.set(name, `layers/${key}`);
  }
  const computed = kerasWeightPaths(configLayers(cfg));
  for (const layer of net.layers) {
    if (layer.weights.length === 0) continue;
    const where = byName.get(layer.name) ?? computed.get(layer.name);
    const vars = where ? h5Get(root, `${where}/vars`) : undefined;
    if (!where || !vars || isDataset(vars)) throw new GoodnetError(`no weights for layer '${layer.name}' in '${KERAS_WEIGHTS_MEMBER}'`, path);
    const stored = (vars as H5Group).keys().filter((k) => /^\d+$/.test(k)).sort((a, b) => Number(a) - Number(b));
    if (stored.length !== layer.weights.length) {
      throw new GoodnetError(`layer '${layer.name}' has ${stored.length} variables in '${KERAS_WEIGHTS_MEMBER}', the model needs ${layer.weights.length}`, path);
    }
    const values = layer.weights.map((w, i) => {
      const ds = h5Get(vars as H5Group, stored[i]!);
      if (!isDataset(ds)) throw new GoodnetError(`variable ${where}/vars/${stored[i]} of layer '${layer.name}' is not a dataset`, path);
      const shape = (ds.shape ?? []).map(Number);
      const want = w.shape.map(Number);
      if (shape.length !== want.length || shape.some((d, j) => d !== want[j])) {
        throw new GoodnetError(`variable ${i} of layer '${layer.name}' has shape (${shape.join(',')}), the model needs (${want.join(',')})`, path);
      }
      return tf.tensor(readWeight({ name: `vars/${stored[i]}`, ds, shape }, layer.name, path), want, 'float32');
    });
    layer.setWeights(values);
    tf.dispose(values);
  }
}

/** Run `fn` on an HDF5 file made of `bytes` (h5wasm reads from disk), removed afterwards. */
async function withTempH5<T>(bytes: Uint8Array | undefined, fn: (file: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'goodnet-keras-'));
  const release = trackPartial(dir); // removed on Ctrl-C too
  const file = join(dir, KERAS_WEIGHTS_MEMBER);
  try {
    if (bytes) writeFileSync(file, bytes);
    return await fn(file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    release();
  }
}

/** Load a Keras 3 `.keras` file. */
export async function readKerasZip(path: string): Promise<Keras3Model> {
  const limit = Object.values(KERAS_MEMBER_LIMITS).reduce((a, b) => a + b, 0) + 2 ** 20;
  let bytes: Uint8Array;
  try {
    const size = statSync(path).size;
    if (size > limit) throw new GoodnetError(`.keras file of ${size} bytes is larger than the ${limit}-byte limit`, path);
    bytes = readFileSync(path);
  } catch (err) {
    if (err instanceof GoodnetError) throw err;
    throw new GoodnetError(`cannot read file: ${oneLine((err as Error).message)}`, path, { cause: err });
  }
  const members = readKerasZipMembers(bytes, path);
  const kerasConfig = parseJsonMember(members.get(KERAS_CONFIG_MEMBER)!, KERAS_CONFIG_MEMBER, path);
  let kerasVersion: string | undefined;
  let preprocessing: Preprocessing | undefined;
  const meta = members.get(KERAS_METADATA_MEMBER);
  if (meta) {
    const m = parseJsonMember(meta, KERAS_METADATA_MEMBER, path);
    if (typeof m.keras_version === 'string') kerasVersion = m.keras_version;
    const p = m[PREPROCESSING_KEY];
    if (p !== undefined) preprocessing = preprocessingFromJson(typeof p === 'string' ? p : JSON.stringify(p), path);
  }
  const net = await buildKerasNet(kerasConfig, path, `'${KERAS_CONFIG_MEMBER}'`);
  await withTempH5(members.get(KERAS_WEIGHTS_MEMBER)!, async (file) => {
    let f;
    try {
      f = await openH5(file);
    } catch (err) {
      throw new GoodnetError(`.keras member '${KERAS_WEIGHTS_MEMBER}' is not a readable HDF5 file`, path, { cause: err });
    }
    try {
      assignKeras3Weights(net, f, kerasConfig, path);
    } finally {
      f.close();
    }
  });
  return { net, kerasVersion, kerasConfig, ...(preprocessing ? { preprocessing } : {}) };
}

// ---------------------------------------------------------------------------------------
// Writing

const DTYPE_POLICY: JsonObject = { module: 'keras', class_name: 'DTypePolicy', config: { name: 'float32' }, registered_name: null };

/** Keras 3 constructor arguments per layer class (beyond name/trainable/dtype). */
const KERAS3_ARGS: Record<string, string[]> = {
  Conv2D: ['filters', 'kernel_size', 'strides', 'padding', 'data_format', 'dilation_rate', 'groups', 'activation', 'use_bias'],
  DepthwiseConv2D: ['kernel_size', 'strides', 'padding', 'depth_multiplier', 'data_format', 'dilation_rate', 'activation', 'use_bias'],
  SeparableConv2D: ['filters', 'kernel_size', 'strides', 'padding', 'data_format', 'dilation_rate', 'depth_multiplier', 'activation', 'use_bias'],
  BatchNormalization: ['axis', 'momentum', 'epsilon', 'center', 'scale'],
  Dense: ['units', 'activation', 'use_bias'],
  Activation: ['activation'],
  ReLU: ['max_value'],
  Softmax: ['axis'],
  ELU: ['alpha'],
  MaxPooling2D: ['pool_size', 'strides', 'padding', 'data_format'],
  AveragePooling2D: ['pool_size', 'strides', 'padding', 'data_format'],
  GlobalAveragePooling2D: ['data_format'],
  GlobalMaxPooling2D: ['data_format'],
  Flatten: ['data_format'],
  Dropout: ['rate', 'noise_shape', 'seed'],
  SpatialDropout2D: ['rate', 'seed'],
  Add: [], Multiply: [], Average: [], Maximum: [], Minimum: [], Subtract: [],
  Concatenate: ['axis'],
  ZeroPadding2D: ['padding', 'data_format'],
  Cropping2D: ['cropping', 'data_format'],
  UpSampling2D: ['size', 'data_format', 'interpolation'],
  Reshape: ['target_shape'],
  Permute: ['dims'],
  Rescaling: ['scale', 'offset'],
};

function shapeOf(s: unknown): Json {
  return (Array.isArray(s) && !Array.isArray(s[0]) ? s : Array.isArray(s) ? s[0] : null) as Json;
}

function kerasTensor(layer: tfl.layers.Layer, nodeIndex: number, tensorIndex: number): JsonObject {
  const node = layer.inboundNodes[nodeIndex];
  const shapes = node?.outputShapes;
  const shape = Array.isArray(shapes) && Array.isArray(shapes[0]) ? (shapes as unknown[])[tensorIndex] : shapes;
  return {
    class_name: '__keras_tensor__',
    config: { shape: (shape ?? null) as Json, dtype: 'float32', keras_history: [layer.name, nodeIndex, tensorIndex] },
  };
}

/**
 * A Keras 3 functional config for `net`, generated from its layers (tfjs or Keras 2
 * models). Weight initialisers, regularisers and constraints are left at Keras's
 * defaults: they play no part in inference and the weights come from model.weights.h5.
 */
export function toKeras3Config(net: tfl.LayersModel, source?: string): JsonObject {
  const layers: JsonObject[] = [];
  const seen = new Set<string>();
  // toJSON's Python-style configs (snake_case keys and enum values) are what Keras reads.
  const topo = net.toJSON(null, false) as unknown as JsonObject;
  const pyConfigs = new Map<string, Record<string, unknown>>();
  for (const l of ((topo.config as JsonObject)?.layers ?? []) as JsonObject[]) {
    const c = l.config as JsonObject;
    if (c && typeof c.name === 'string') pyConfigs.set(c.name, c);
  }
  const add = (layer: tfl.layers.Layer) => {
    if (seen.has(layer.name)) return;
    seen.add(layer.name);
    const cls = layer.getClassName();
    const snake = pyConfigs.get(layer.name) ?? {};
    if (cls === 'InputLayer' && snake.batch_input_shape === undefined) snake.batch_input_shape = layer.batchInputShape as unknown;
    if (cls === 'InputLayer') {
      layers.push({
        module: 'keras.layers', class_name: 'InputLayer', registered_name: null, name: layer.name, inbound_nodes: [],
        config: { batch_shape: snake.batch_input_shape as Json, dtype: 'float32', sparse: false, ragged: false, name: layer.name },
      });
      return;
    }
    const args = KERAS3_ARGS[cls];
    if (!args) throw new GoodnetError(`layer '${layer.name}' (${cls}) cannot be written as Keras 3`, source);
    const config: JsonObject = { name: layer.name, trainable: layer.trainable, dtype: DTYPE_POLICY };
    for (const k of args) {
      let v = snake[k];
      if (v === undefined) continue;
      if (cls === 'ZeroPadding2D' && k === 'padding' && typeof v === 'number') v = [[v, v], [v, v]];
      config[k] = v as Json;
    }
    if (cls === 'Conv2D' || cls === 'SeparableConv2D') config.groups ??= 1;
    if (cls === 'ReLU') {
      config.negative_slope = 0;
      config.threshold = 0;
    }
    if (cls === 'Rescaling' && config.offset === undefined) config.offset = 0;
    if (layer.inboundNodes.length !== 1) {
      throw new GoodnetError(`layer '${layer.name}' is used ${layer.inboundNodes.length} times (shared layers cannot be written as Keras 3)`, source);
    }
    const node = layer.inboundNodes[0]!;
    const refs = node.inboundLayers.map((l, i) => kerasTensor(l, node.nodeIndices[i]!, node.tensorIndices[i]!));
    layers.push({
      module: 'keras.layers', class_name: cls, config, registered_name: null,
      build_config: { input_shape: refs.length === 1 ? shapeOf(node.inputShapes) : (node.inputShapes as Json) }, name: layer.name,
      inbound_nodes: [{ args: refs.length === 1 ? [refs[0]!] : [refs], kwargs: {} }],
    });
  };
  for (const t of net.inputs) add(t.sourceLayer as tfl.layers.Layer);
  for (const l of net.layers) add(l);
  const ref = (t: tfl.SymbolicTensor | undefined): Json => {
    const h = t?.sourceLayer;
    if (!t || !h) throw new GoodnetError('model tensor without a source layer cannot be written as Keras 3', source);
    return [h.name, t.nodeIndex, t.tensorIndex];
  };
  const ins = net.inputs.map(ref);
  const outs = net.outputs.map(ref);
  return {
    module: 'keras.src.models.functional', class_name: 'Functional', registered_name: 'Functional',
    config: {
      name: net.name, trainable: true, layers,
      input_layers: ins.length === 1 ? ins[0]! : ins,
      output_layers: outs.length === 1 ? outs[0]! : outs,
    },
    build_config: { input_shape: null },
    compile_config: null,
  };
}

/**
 * Write a Keras 3 `.keras` zip to `path` (directly; saveModel makes it atomic). A model
 * loaded from Keras 3 keeps its own config.json; others get toKeras3Config's. The
 * preprocessing goes into metadata.json under PREPROCESSING_KEY.
 */
export async function writeKerasZip(
  net: tfl.LayersModel,
  path: string,
  kerasConfig?: JsonObject,
  preprocessing?: Preprocessing,
): Promise<void> {
  // Keras 3's legacy .h5 drops the `module` keys load_model needs: such configs are regenerated too.
  const own = kerasConfig && isKeras3Config(kerasConfig) && typeof kerasConfig.module === 'string';
  const config = own ? kerasConfig : toKeras3Config(net, path);
  const order = kerasWeightPaths(configLayers(config));
  const weights = await withTempH5(undefined, async (file) => {
    const f = await createH5(file);
    try {
      const layersGroup = f.create_group('layers');
      const byName = new Map(net.layers.map((l) => [l.name, l]));
      for (const [name, where] of order) {
        const g = layersGroup.create_group(where.slice('layers/'.length));
        const vars = g.create_group('vars');
        vars.create_attribute('name', name);
        const layer = byName.get(name);
        if (!layer) continue;
        // getWeights() hands out the variables' own tensors: read, never dispose.
        layer.getWeights().forEach((t, i) => {
          vars.create_dataset({ name: String(i), data: t.dataSync() as Float32Array, shape: t.shape, dtype: '<f' });
        });
      }
      f.create_group('vars');
    } finally {
      f.close();
    }
    return readFileSync(file);
  });
  const metadata: Record<string, string> = {
    keras_version: KERAS3_FORMAT_VERSION,
    date_saved: new Date().toISOString().replace('T', '@').slice(0, 19),
  };
  if (preprocessing) metadata[PREPROCESSING_KEY] = preprocessingToJson(preprocessing);
  const zip = zipSync({
    [KERAS_METADATA_MEMBER]: [strToU8(JSON.stringify(metadata)), { level: 0 }],
    [KERAS_CONFIG_MEMBER]: [strToU8(JSON.stringify(config)), { level: 0 }],
    [KERAS_WEIGHTS_MEMBER]: [new Uint8Array(weights), { level: 0 }],
  });
  writeFileSync(path, zip);
}
