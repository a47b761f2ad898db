/**
 * Keras HDF5 model files, both kinds Keras 2.x writes:
 *  - full model: root attr `model_config` (JSON) + group `model_weights`;
 *  - weights only: root attr `layer_names`, loaded into a built-in architecture.
 * Weights are matched by layer name, then by weight name (kernel, bias, gamma, ...).
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { GoodnetError } from '../errors.js';
import { weightsOnlyArchitecture, weightsOnlyArchitectures } from './architectures.js';
import { withWeightBudget } from './limits.js';
import { clearH5Times, createH5, h5Attr, h5Get, hdf5Reason, openH5, type H5File, type H5Group, type H5Dataset } from './hdf5.js';
import { isKeras3Config, parseModelConfig, toTfjsTopology, type JsonObject } from './keras_config.js';
import { PREPROCESSING_KEY, preprocessingFromJson, preprocessingToJson, type Preprocessing } from './preprocess.js';

/** The Keras release whose HDF5 layout writeKerasH5 reproduces. */
export const KERAS_FORMAT_VERSION = '2.13.1';

export interface KerasLoadOptions {
  /** Architecture for weights-only files (default 'deepid'). */
  arch?: string;
  /** Input shape [H, W, C] for weights-only files, when it cannot be inferred. */
  inputShape?: [number, number, number];
}

export interface KerasModel {
  net: tfl.LayersModel;
  kind: 'keras-full' | 'keras-weights';
  kerasVersion?: string;
  /** The file's own model_config, written back verbatim on save (full models only). */
  kerasConfig?: JsonObject;
  /** Root attribute PREPROCESSING_KEY (JSON text), when goodnet (or the author) recorded it. */
  preprocessing?: Preprocessing;
}

/** The root attribute PREPROCESSING_KEY as a Preprocessing, if present (a malformed one is an error). */
function readPreprocessingAttr(f: H5File, path: string): Preprocessing | undefined {
  const v = h5Attr(f as never, PREPROCESSING_KEY);
  if (v === undefined) return undefined;
  const text = typeof v === 'string' ? v : Array.isArray(v) && v.length === 1 && typeof v[0] === 'string' ? v[0] : undefined;
  if (text === undefined) throw new GoodnetError(`attribute '${PREPROCESSING_KEY}' is not a string`, path);
  return preprocessingFromJson(text, path);
}

function asStringList(v: unknown): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return [v];
  if (ArrayBuffer.isView(v)) return (v as unknown as ArrayLike<unknown>).length === 0 ? [] : undefined;
  if (Array.isArray(v) && v.every((s) => typeof s === 'string')) return v as string[];
  return undefined;
}

/** "conv_1/kernel:0" -> "kernel". */
function weightBase(name: string): string {
  return (name.split('/').at(-1) ?? name).replace(/:\d+$/, '');
}

export function isDataset(e: unknown): e is H5Dataset {
  return typeof e === 'object' && e !== null && 'shape' in e && 'dtype' in e && typeof (e as H5Dataset).slice === 'function';
}

export interface StoredWeight { name: string; ds: H5Dataset; shape: number[] }

/** One layer's weight datasets from its group, keyed by base name, in file order (not read yet). */
function readLayerGroup(group: H5Group, layer: string, file: string): Map<string, StoredWeight> {
  const names = asStringList(h5Attr(group as never, 'weight_names'));
  if (names === undefined) throw new GoodnetError(`layer '${layer}' has no readable weight_names attribute`, file);
  const out = new Map<string, StoredWeight>();
  for (const wn of names) {
    const ds = h5Get(group, wn);
    if (!isDataset(ds)) throw new GoodnetError(`missing weight '${wn}' of layer '${layer}'`, file);
    out.set(weightBase(wn), { name: wn, ds, shape: (ds.shape ?? []).map(Number) });
  }
  return out;
}

/** Read a weight whose declared shape has been checked against the model's. */
export function readWeight(w: StoredWeight, layer: string, file: string): Float32Array {
  const { name: wn, ds } = w;
  let raw: unknown;
  try {
    raw = ds.value as unknown;
  } catch (err) {
    throw new GoodnetError(`cannot read weight '${wn}' of layer '${layer}': ${hdf5Reason(err)}`, file, { cause: err });
  }
  if (!(raw instanceof Float32Array || raw instanceof Float64Array)) {
    throw new GoodnetError(`weight '${wn}' of layer '${layer}' has dtype ${String(ds.dtype)}, expected float32 or float64`, file);
  }
  const data = raw instanceof Float32Array ? raw : Float32Array.from(raw);
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i]!)) {
      throw new GoodnetError(`weight '${wn}' of layer '${layer}' contains ${Number.isNaN(data[i]!) ? 'NaN' : 'Inf'}`, file);
    }
  }
  if (data.length !== w.shape.reduce((a, b) => a * b, 1)) {
    throw new GoodnetError(`weight '${wn}' of layer '${layer}' holds ${data.length} values for shape (${w.shape.join(',')})`, file);
  }
  return data;
}

/** Copy weights from an HDF5 weights root (file root or `model_weights`) into net, by name. */
function assignWeights(net: tfl.LayersModel, root: H5Group, file: string): void {
  for (const layer of net.layers) {
    if (layer.weights.length === 0) continue;
    const group = h5Get(root, layer.name);
    if (!group || isDataset(group)) throw new GoodnetError(`no weights for layer '${layer.name}'`, file);
    const stored = readLayerGroup(group as H5Group, layer.name, file);
    const storedList = [...stored.values()];
    if (storedList.length !== layer.weights.length) {
      throw new GoodnetError(
        `layer '${layer.name}' has ${storedList.length} weights in the file, the model needs ${layer.weights.length}`, file);
    }
    const values = layer.weights.map((w, i) => {
      const base = weightBase(w.originalName ?? w.name);
      const s = stored.get(base) ?? storedList[i]!;
      const want = w.shape.map(Number);
      if (s.shape.length !== want.length || s.shape.some((d, j) => d !== want[j])) {
        throw new GoodnetError(
          `weight '${layer.name}/${base}' has shape (${s.shape.join(',')}), the model needs (${want.join(',')})`, file);
      }
      return tf.tensor(readWeight(s, layer.name, file), want, 'float32');
    });
    layer.setWeights(values);
    tf.dispose(values);
  }
}

function shapeOf(root: H5Group, path: string): number[] | undefined {
  const ds = h5Get(root, path);
  return isDataset(ds) ? (ds.shape ?? []).map(Number) : undefined;
}

/** Build (weights not loaded) the network a Keras model_config / config.json describes. */
export async function buildKerasNet(kerasConfig: JsonObject, path: string, what = 'model_config'): Promise<tfl.LayersModel> {
  const topology = toTfjsTopology(kerasConfig, path);
  try {
    return await withWeightBudget(path, () => tfl.models.modelFromJSON({ modelTopology: topology as never }));
  } catch (err) {
    if (err instanceof GoodnetError) throw err;
    const msg = (err as Error).message ?? String(err);
    const unknown = /Unknown (?:layer|activation|initializer|constraint|regularizer): (\S+?)\./.exec(msg);
    throw new GoodnetError(
      unknown ? `unsupported Keras object '${unknown[1]}' in ${what}` : `cannot build the model from ${what}: ${msg.split('\n')[0]}`,
      path, { cause: err });
  }
}

async function withFile<T>(path: string, fn: (f: H5File) => Promise<T> | T): Promise<T> {
  const f = await openH5(path);
  try {
    return await fn(f);
  } finally {
    f.close();
  }
}

/** Load a Keras HDF5 file (full model or weights-only). */
export async function readKerasH5(path: string, options: KerasLoadOptions = {}): Promise<KerasModel> {
  return withFile(path, async (f) => {
    const preprocessing = readPreprocessingAttr(f, path);
    const kerasVersion = h5Attr(f as never, 'keras_version');
    const version = typeof kerasVersion === 'string' ? kerasVersion : undefined;
    const configText = h5Attr(f as never, 'model_config');
    if (configText !== undefined) {
      const kerasConfig = parseModelConfig(configText, path);
      const net = await buildKerasNet(kerasConfig, path);
      const weightsRoot = h5Get(f, 'model_weights');
      if (!weightsRoot || isDataset(weightsRoot)) throw new GoodnetError("full model file has no 'model_weights' group", path);
      assignWeights(net, weightsRoot as H5Group, path);
      return { net, kind: 'keras-full' as const, kerasVersion: version, kerasConfig, ...(preprocessing ? { preprocessing } : {}) };
    }
    const layerNames = asStringList(h5Attr(f as never, 'layer_names'));
    if (layerNames === undefined) {
      throw new GoodnetError("not a Keras model file (no 'model_config' or 'layer_names' attribute)", path);
    }
    const arch = options.arch ?? 'deepid';
    const build = weightsOnlyArchitecture(arch);
    if (!build) {
      const known = weightsOnlyArchitectures();
      throw new GoodnetError(`unknown architecture '${arch}' for a weights-only file (${known.length ? `built in: ${known.join(', ')}` : "none registered: import goodnet's models"})`, path);
    }
    const weightShape = (l: string, w: string) => shapeOf(f, `${l}/${l}/${w}:0`) ?? shapeOf(f, `${l}/${w}:0`);
    let net: tfl.LayersModel;
    try {
      net = await withWeightBudget(path, () => build(weightShape, options.inputShape));
    } catch (err) {
      // Architecture errors do not know the file; the shapes came from it.
      if (err instanceof GoodnetError) throw err.file ? err : new GoodnetError(err.message, path, { cause: err });
      throw new GoodnetError(`cannot build ${arch} from the file's weight shapes: ${String((err as Error)?.message ?? err).split('\n')[0]}`, path, { cause: err });
    }
    const missing = net.layers.filter((l) => l.weights.length > 0 && !layerNames.includes(l.name));
    if (missing.length > 0) throw new GoodnetError(`no weights for layer '${missing[0]!.name}' (architecture ${arch})`, path);
    assignWeights(net, f, path);
    return { net, kind: 'keras-weights' as const, kerasVersion: version, ...(preprocessing ? { preprocessing } : {}) };
  });
}

/**
 * Strings go in as fixed-length byte strings, as numpy/h5py wrote them for Keras 2.2-2.6
 * (whose readers call .decode()); later Keras reads both kinds.
 */
function setString(obj: H5Group, key: string, value: string): void {
  obj.create_attribute(key, value, null, `S${Math.max(1, Buffer.byteLength(value))}`);
}

/** Keras stores weightless layers' weight_names as an empty float64 array. */
function setNames(obj: H5Group, key: string, names: string[]): void {
  if (names.length === 0) obj.create_attribute(key, new Float64Array(0), [0], '<d');
  else obj.create_attribute(key, names, [names.length], `S${Math.max(1, ...names.map((n) => Buffer.byteLength(n)))}`);
}

/**
 * Write a Keras 2.x HDF5 full-model file (what `model.save('x.h5')` writes): root attrs
 * keras_version, backend, model_config; `model_weights/<layer>/<layer>/<w>:0` datasets.
 * With `preprocessing`, also the root attr PREPROCESSING_KEY (JSON text; Keras ignores it).
 * Writes to `path` directly; callers wanting atomicity write to a temp name and rename.
 */
export async function writeKerasH5(net: tfl.LayersModel, path: string, kerasConfig?: JsonObject, preprocessing?: Preprocessing): Promise<void> {
  // A Keras 3 config is not readable by Keras 2; the HDF5 layout gets a Keras 2 style one.
  const config = kerasConfig && !isKeras3Config(kerasConfig) ? kerasConfig : (net.toJSON(null, false) as unknown as JsonObject);
  const modelConfig = { class_name: config.class_name, config: config.config };
  const f = await createH5(path);
  try {
    setString(f, 'keras_version', KERAS_FORMAT_VERSION);
    setString(f, 'backend', 'tensorflow');
    setString(f, 'model_config', JSON.stringify(modelConfig));
    if (preprocessing) setString(f, PREPROCESSING_KEY, preprocessingToJson(preprocessing));
    const mw = f.create_group('model_weights');
    setNames(mw, 'layer_names', net.layers.map((l) => l.name));
    setString(mw, 'backend', 'tensorflow');
    setString(mw, 'keras_version', KERAS_FORMAT_VERSION);
    for (const layer of net.layers) {
      const g = mw.create_group(layer.name);
      const bases = layer.weights.map((w) => weightBase(w.originalName ?? w.name));
      setNames(g, 'weight_names', bases.map((b) => `${layer.name}/${b}:0`));
      if (layer.weights.length === 0) continue;
      const inner = g.create_group(layer.name);
      const values = layer.getWeights();
      for (let i = 0; i < values.length; i++) {
        const t = values[i]!;
        inner.create_dataset({ name: `${bases[i]}:0`, data: t.dataSync() as Float32Array, shape: t.shape, dtype: '<f' });
      }
    }
  } finally {
    f.close();
  }
  clearH5Times(path); // the same model, the same bytes
}
