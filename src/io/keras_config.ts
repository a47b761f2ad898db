/**
 * Keras `model_config` JSON -> a topology tfjs-layers' own Keras deserialiser accepts.
 * Keras 2.2 through 2.13 wrote slightly different JSON (Model vs Functional, Sequential as
 * a bare list, `module`/`registered_name` keys, dtype policies); we smooth those over here
 * and refuse what we cannot run with a message that names the layer.
 */
import { GoodnetError } from '../errors.js';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

/** Layers goodnet loads (all implemented by tfjs-layers with Keras semantics). */
export const SUPPORTED_LAYERS = new Set([
  'InputLayer', 'Conv2D', 'MaxPooling2D', 'AveragePooling2D', 'GlobalAveragePooling2D',
  'GlobalMaxPooling2D', 'Flatten', 'Dense', 'Add', 'Concatenate', 'Activation', 'Dropout',
  'BatchNormalization', 'ReLU', 'LeakyReLU', 'Softmax', 'ZeroPadding2D', 'Reshape', 'Multiply',
  'Average', 'Maximum', 'Minimum', 'Subtract', 'SpatialDropout2D', 'DepthwiseConv2D',
  'SeparableConv2D', 'ELU', 'PReLU', 'Permute', 'Cropping2D', 'UpSampling2D', 'Rescaling',
  // goodnet's own layers for ONNX operators without a standard layer (src/io/onnx_layers.ts).
  'OnnxConstArith', 'OnnxHardSigmoid', 'OnnxHardSwish', 'OnnxClip', 'OnnxSub', 'OnnxPad2D',
]);

const MODEL_CLASSES = new Set(['Model', 'Functional', 'Sequential']);

/** Keys newer Keras versions add that carry no meaning for loading. */
const DROP_KEYS = new Set(['module', 'registered_name', 'build_config', 'shared_object_id', 'compile_config']);

const MAX_DEPTH = 64;

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Parse the root `model_config` attribute. */
export function parseModelConfig(text: unknown, file: string): JsonObject {
  if (typeof text !== 'string') throw new GoodnetError('model_config attribute is not a string', file);
  let cfg: unknown;
  try {
    cfg = JSON.parse(text);
  } catch (err) {
    throw new GoodnetError(`model_config is not valid JSON (${(err as Error).message})`, file);
  }
  if (!isObject(cfg)) throw new GoodnetError('model_config is not a JSON object', file);
  return cfg;
}

/** Recursively drop keys tfjs does not know and resolve dtype policies to plain dtypes. */
function clean(value: Json, file: string, depth: number): Json {
  if (depth > MAX_DEPTH) throw new GoodnetError('model_config is nested too deeply', file);
  if (Array.isArray(value)) return value.map((v) => clean(v, file, depth + 1));
  if (!isObject(value)) return value;
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(value)) {
    if (DROP_KEYS.has(k)) continue;
    if (k === 'dtype' && isObject(v)) {
      // Keras mixed-precision policy object: {"class_name": "Policy", "config": {"name": "float32"}}.
      const name = isObject(v.config) ? v.config.name : undefined;
      if (name !== 'float32') throw new GoodnetError(`dtype policy '${String(name)}' is not supported (float32 only)`, file);
      out[k] = 'float32';
      continue;
    }
    out[k] = clean(v, file, depth + 1);
  }
  return out;
}

/**
 * True for the config dialect Keras 3 writes (`.keras` config.json and Keras 3's legacy
 * `.h5` model_config): InputLayer `batch_shape`, `DTypePolicy` objects, inbound nodes as
 * `{"args": [...], "kwargs": {...}}` with `__keras_tensor__` references.
 */
export function isKeras3Config(cfg: JsonObject): boolean {
  const config = cfg.config;
  const layers = isObject(config) && Array.isArray(config.layers) ? config.layers : [];
  for (const l of layers) {
    if (!isObject(l)) continue;
    if (Array.isArray(l.inbound_nodes) && l.inbound_nodes.some((n) => isObject(n))) return true;
    const lc = l.config;
    if (isObject(lc) && (lc.batch_shape !== undefined || (isObject(lc.dtype) && lc.dtype.class_name === 'DTypePolicy'))) return true;
  }
  return false;
}

/**
 * Keras 3 inbound node `{"args": [t | [t, ...]], "kwargs": {}}` -> tfjs's
 * `[[layer, node, index, {}], ...]`: every `__keras_tensor__` in args, in order.
 */
function keras3Node(node: JsonObject, layer: string, file: string): Json[] {
  const refs: Json[] = [];
  const walk = (v: Json, depth: number): void => {
    if (depth > 8) throw new GoodnetError(`layer '${layer}' has an inbound node nested too deeply (Keras 3 config)`, file);
    if (Array.isArray(v)) {
      for (const x of v) walk(x, depth + 1);
    } else if (isObject(v) && v.class_name === '__keras_tensor__') {
      const h = isObject(v.config) ? v.config.keras_history : undefined;
      if (!Array.isArray(h) || h.length !== 3) throw new GoodnetError(`layer '${layer}' has a tensor without keras_history (Keras 3 config)`, file);
      refs.push([h[0]!, h[1]!, h[2]!, {}]);
    } else if (v !== null && typeof v === 'object') {
      throw new GoodnetError(`layer '${layer}' has an inbound argument that is not a tensor (Keras 3 config)`, file);
    }
  };
  walk(node.args ?? [], 0);
  const kwargs = node.kwargs;
  if (kwargs !== undefined && !isObject(kwargs)) throw new GoodnetError(`layer '${layer}' has malformed inbound kwargs (Keras 3 config)`, file);
  for (const [k, v] of Object.entries(kwargs ?? {})) {
    // training/mask flags change nothing at inference; tensors passed by keyword would be lost.
    if (v !== null && typeof v === 'object') throw new GoodnetError(`layer '${layer}' takes a tensor as keyword '${k}', not supported (Keras 3 config)`, file);
  }
  return refs;
}

function checkLayer(layer: Json, file: string, dialect = ''): void {
  if (!isObject(layer) || typeof layer.class_name !== 'string') {
    throw new GoodnetError('model_config has a layer without class_name', file);
  }
  const cls = layer.class_name;
  const cfg = isObject(layer.config) ? layer.config : {};
  const name = typeof cfg.name === 'string' ? cfg.name : typeof layer.name === 'string' ? layer.name : '?';
  if (MODEL_CLASSES.has(cls)) throw new GoodnetError(`nested model '${name}' is not supported${dialect}; flatten it first`, file);
  if (!SUPPORTED_LAYERS.has(cls)) throw new GoodnetError(`unsupported Keras layer '${cls}' (layer '${name}')${dialect}`, file);
  if (cfg.groups !== undefined && cfg.groups !== 1) {
    throw new GoodnetError(`grouped convolution (groups=${String(cfg.groups)}) is not supported (layer '${name}')`, file);
  }
  if (cfg.data_format === 'channels_first') {
    throw new GoodnetError(`channels_first layers are not supported (layer '${name}')`, file);
  }
}

/** Per-layer spelling differences between Keras versions and tfjs-layers. */
function normaliseLayerConfig(cls: string, lc: JsonObject, file: string): void {
  delete lc.groups;
  // Keras 3 additions that are no-ops at inference when off.
  for (const k of ['synchronized', 'renorm', 'renorm_clipping', 'renorm_momentum', 'quantization_config', 'optional', 'sparse', 'ragged'] as const) {
    const v = lc[k];
    if (v === undefined) continue;
    if (v !== null && v !== false && !(k === 'renorm_momentum' && typeof v === 'number')) {
      throw new GoodnetError(`${cls} '${String(lc.name)}' with ${k}=${JSON.stringify(v)} is not supported`, file);
    }
    delete lc[k];
  }
  if (lc.keepdims !== undefined) {
    if (lc.keepdims !== false) throw new GoodnetError(`${cls} '${String(lc.name)}' with keepdims=true is not supported`, file);
    delete lc.keepdims;
  }
  if (cls === 'Rescaling') {
    // tfjs's Rescaling takes one scale and one offset; Keras also allows one per channel.
    for (const k of ['scale', 'offset'] as const) {
      if (lc[k] !== undefined && typeof lc[k] !== 'number') {
        throw new GoodnetError(`Rescaling '${String(lc.name)}' with a per-channel ${k} is not supported`, file);
      }
    }
  }
  // Keras >= 2.4 writes BatchNormalization's axis as a list ([3]); tfjs takes one integer.
  if (Array.isArray(lc.axis)) {
    if (lc.axis.length !== 1 || typeof lc.axis[0] !== 'number') {
      throw new GoodnetError(`${cls} '${String(lc.name)}' normalises over several axes (${JSON.stringify(lc.axis)}), not supported`, file);
    }
    lc.axis = lc.axis[0]!;
  }
  if (cls === 'ReLU') {
    // tfjs's ReLU has only max_value; a leaky slope or a threshold would silently change results.
    for (const k of ['negative_slope', 'threshold'] as const) {
      if (lc[k] !== undefined && lc[k] !== null && lc[k] !== 0) {
        throw new GoodnetError(`ReLU '${String(lc.name)}' with ${k}=${String(lc[k])} is not supported`, file);
      }
      delete lc[k];
    }
  }
}

const isIndex = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/**
 * A functional model's graph must be well formed before tfjs-layers sees it: its
 * deserialiser re-queues a node whose inbound layer or node does not exist (or that sits on
 * a cycle) forever. Every layer needs a unique name; every inbound reference must name an
 * existing layer's existing node; the node graph must be acyclic.
 */
function checkGraph(config: JsonObject, file: string): void {
  const layers = config.layers as JsonObject[];
  const inbound = new Map<string, Json[]>();
  for (const l of layers) {
    if (typeof l.name !== 'string' || l.name === '') {
      throw new GoodnetError(`model_config has a ${String(l.class_name)} layer without a name`, file);
    }
    if (inbound.has(l.name)) throw new GoodnetError(`model_config has two layers named '${l.name}'`, file);
    const nodes = l.inbound_nodes ?? [];
    if (!Array.isArray(nodes)) throw new GoodnetError(`layer '${l.name}' has malformed inbound_nodes`, file);
    inbound.set(l.name, nodes);
  }
  const nodeCount = (name: string) => (inbound.get(name)!.length === 0 && layers.find((l) => l.name === name)!.class_name === 'InputLayer' ? 1 : inbound.get(name)!.length);
  const ref = (r: Json, where: string): string => {
    if (!Array.isArray(r) || typeof r[0] !== 'string' || !isIndex(r[1]) || !isIndex(r[2])) {
      throw new GoodnetError(`${where} has a malformed reference ${JSON.stringify(r)?.slice(0, 60)}`, file);
    }
    if (!inbound.has(r[0])) throw new GoodnetError(`${where} refers to a layer '${r[0]}' that does not exist`, file);
    if (r[1] >= nodeCount(r[0])) throw new GoodnetError(`${where} refers to node ${r[1]} of layer '${r[0]}', which has ${nodeCount(r[0])}`, file);
    return `${r[0]}#${r[1]}`;
  };
  const deps = new Map<string, string[]>();
  for (const [name, nodes] of inbound) {
    nodes.forEach((node, j) => {
      // An empty node never calls its layer, so nothing downstream could ever be built.
      if (!Array.isArray(node) || node.length === 0) throw new GoodnetError(`layer '${name}' has malformed inbound_nodes`, file);
      deps.set(`${name}#${j}`, node.map((r) => ref(r, `layer '${name}'`)));
    });
  }
  for (const key of ['input_layers', 'output_layers'] as const) {
    const list = config[key];
    if (list === undefined) continue;
    if (!Array.isArray(list)) throw new GoodnetError(`model_config ${key} is not a list`, file);
    for (const r of list) ref(r, `model_config ${key}`);
  }
  // Depth-first search for a cycle (iterative: configs come from strangers).
  const state = new Map<string, 1 | 2>();
  for (const start of deps.keys()) {
    if (state.has(start)) continue;
    const stack: [string, number][] = [[start, 0]];
    state.set(start, 1);
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const next = (deps.get(top[0]) ?? [])[top[1]++];
      if (next === undefined) {
        state.set(top[0], 2);
        stack.pop();
      } else if (state.get(next) === 1) {
        throw new GoodnetError(`model_config's layer graph has a cycle through layer '${next.split('#')[0]}'`, file);
      } else if (!state.has(next)) {
        state.set(next, 1);
        stack.push([next, 0]);
      }
    }
  }
}

/**
 * Normalise a Keras model_config for tfjs-layers' deserialiser. Returns a new object;
 * the caller keeps the original to write it back verbatim.
 */
export function toTfjsTopology(cfg: JsonObject, file: string): JsonObject {
  const cls = cfg.class_name;
  if (typeof cls !== 'string' || !MODEL_CLASSES.has(cls)) {
    throw new GoodnetError(`model_config class '${String(cls)}' is not a Keras Model or Sequential`, file);
  }
  const keras3 = isKeras3Config(cfg);
  const dialect = keras3 ? ' in Keras 3 config' : '';
  const out = clean(cfg, file, 0) as JsonObject;
  // Keras 2.2.0-2.2.2 wrote a Sequential's config as the bare list of layers.
  if (cls === 'Sequential' && Array.isArray(out.config)) out.config = { name: 'sequential', layers: out.config };
  if (cls === 'Functional') out.class_name = 'Model';
  const config = out.config;
  if (!isObject(config) || !Array.isArray(config.layers)) throw new GoodnetError('model_config has no layer list', file);
  if (config.layers.length === 0) throw new GoodnetError('model_config has no layers', file);
  for (const layer of config.layers) {
    checkLayer(layer, file, dialect);
    if (!isObject((layer as JsonObject).config)) {
      throw new GoodnetError(`layer '${String((layer as JsonObject).name ?? '?')}' (${String((layer as JsonObject).class_name)}) has no config object`, file);
    }
    const lc = (layer as JsonObject).config as JsonObject;
    normaliseLayerConfig((layer as JsonObject).class_name as string, lc, file);
    // Keras 3 spells InputLayer's shape `batch_shape`.
    if (lc.batch_shape !== undefined && lc.batch_input_shape === undefined) {
      lc.batch_input_shape = lc.batch_shape;
      delete lc.batch_shape;
    }
    const l = layer as JsonObject;
    if (Array.isArray(l.inbound_nodes)) {
      l.inbound_nodes = l.inbound_nodes.map((n) => (isObject(n) ? keras3Node(n, String(l.name ?? lc.name ?? '?'), file) : n));
    }
  }
  // Keras 3 writes a single model input/output as one flat reference ["name", 0, 0].
  for (const key of ['input_layers', 'output_layers'] as const) {
    const list = config[key];
    if (Array.isArray(list) && typeof list[0] === 'string') config[key] = [list];
  }
  if (out.class_name === 'Model') checkGraph(config, file);
  return out;
}

export type { Json, JsonObject };
