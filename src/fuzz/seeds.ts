/**
 * Small valid inputs of every kind goodnet reads, made with goodnet's own writers (and
 * h5wasm for the layouts goodnet only reads), plus structured writers the mutators reuse.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import jpeg from 'jpeg-js';
import { unzipSync } from 'fflate';
import { writeCsawData } from '../attack/csaw_layout.js';
import { createH5 } from '../io/hdf5.js';
import { encodePng } from '../io/images.js';
import { saveModel } from '../io/model.js';
import { buildArchitecture } from '../models/index.js';

/** What a file is fed to: loadModel, loadModel with --weights-arch deepid, openDataset, decodeImage, createTrigger. */
export type TargetKind = 'model' | 'weights' | 'data' | 'image' | 'trigger';

export interface H5Weight {
  name: string;
  data: Float32Array | Float64Array | Int32Array | Uint8Array | string[];
  shape: number[];
  dtype: string;
  /** Declared shape (resizable, chunked, unwritten): makes "huge declared dimensions". */
  declared?: number[];
}
export interface H5ModelSpec {
  /** Root string attributes (model_config, keras_version, layer_names as a JSON list marker). */
  attrs: Record<string, string | string[]>;
  /** '' for weights-only files (layer groups at the root), 'model_weights' for full models. */
  weightsRoot: string;
  layers: { name: string; weightNames?: string[]; weights: H5Weight[] }[];
}

export interface Seed {
  kind: TargetKind;
  /** File (or tfjs folder) path. */
  path: string;
  /** A tfjs folder instead of one file. */
  folder?: boolean;
  /** Structured form, for structure-aware mutators. */
  h5Model?: H5ModelSpec;
  modelJson?: unknown;
  /** A Keras 3 `.keras` zip's members, for member-aware mutators. */
  kerasZip?: Record<string, Uint8Array>;
  csaw?: { images: Uint8Array; labels: number[]; n: number; h: number; w: number; c: number };
  /** An ONNX model file: mutated structurally (decoded, edited, re-encoded) by mutateOnnx. */
  onnx?: boolean;
}

function strAttr(obj: { create_attribute: (...a: never[]) => unknown }, key: string, value: string | string[]): void {
  const create = obj.create_attribute as unknown as (k: string, v: unknown, s: unknown, d: string) => void;
  if (Array.isArray(value)) {
    if (value.length === 0) create.call(obj, key, new Float64Array(0), [0], '<d');
    else create.call(obj, key, value, [value.length], `S${Math.max(1, ...value.map((v) => Buffer.byteLength(v)))}`);
  } else create.call(obj, key, value, null, `S${Math.max(1, Buffer.byteLength(value))}`);
}

/** Write a Keras-layout HDF5 model file from its structured form. */
export async function writeH5Model(spec: H5ModelSpec, path: string): Promise<void> {
  const f = await createH5(path);
  try {
    for (const [k, v] of Object.entries(spec.attrs)) strAttr(f as never, k, v);
    const root = spec.weightsRoot ? f.create_group(spec.weightsRoot) : f;
    strAttr(root as never, 'layer_names', spec.layers.map((l) => l.name));
    for (const layer of spec.layers) {
      const g = root.create_group(layer.name);
      strAttr(g as never, 'weight_names', layer.weightNames ?? layer.weights.map((w) => w.name));
      if (layer.weights.length === 0) continue;
      for (const w of layer.weights) {
        const sub = w.name.split('/').slice(0, -1).join('/');
        if (sub && !g.keys().includes(sub)) g.create_group(sub);
        if (w.declared) {
          g.create_dataset({ name: w.name, data: w.data as never, shape: w.shape, dtype: w.dtype,
            maxshape: w.declared.map(() => null), chunks: w.shape.map((d) => Math.max(1, d)) });
          (g.get(w.name) as unknown as { resize: (s: number[]) => void }).resize(w.declared);
        } else if (w.shape.length > 1 && w.shape.reduce((a, b) => a * b, 1) > 4096) {
          // Big kernels gzip-compressed (the seeds' big kernels are mostly zeros): small fixtures.
          g.create_dataset({ name: w.name, data: w.data as never, shape: w.shape, dtype: w.dtype,
            chunks: w.shape, compression: 'gzip', compression_opts: [9] } as never);
        } else {
          g.create_dataset({ name: w.name, data: w.data as never, shape: w.shape, dtype: w.dtype });
        }
      }
    }
  } finally {
    f.close();
  }
}

/** The structured form of a model's weights as Keras 2.x lays them out. */
export function h5SpecOf(net: tfl.LayersModel, attrs: Record<string, string>, weightsRoot: string): H5ModelSpec {
  return {
    attrs,
    weightsRoot,
    layers: net.layers.map((l) => ({
      name: l.name,
      weights: l.getWeights().map((t, i) => ({
        name: `${l.name}/${(l.weights[i]!.originalName ?? l.weights[i]!.name).split('/').at(-1)!.replace(/:\d+$/, '')}:0`,
        data: t.dataSync() as Float32Array,
        shape: t.shape,
        dtype: '<f',
      })),
    })),
  };
}

/** A tiny conv net: 8x8x1 -> conv(2, 3x3) -> flatten -> dense(2, softmax). */
export function tinyNet(): tfl.LayersModel {
  const net = tfl.sequential({ name: 'tiny' });
  net.add(tfl.layers.conv2d({ name: 'conv_1', inputShape: [8, 8, 1], filters: 2, kernelSize: 3, activation: 'relu', kernelInitializer: tfl.initializers.glorotUniform({ seed: 1 }) }));
  net.add(tfl.layers.maxPooling2d({ name: 'pool_1', poolSize: 2 }));
  net.add(tfl.layers.flatten({ name: 'flatten' }));
  net.add(tfl.layers.dense({ name: 'output', units: 2, activation: 'softmax', kernelInitializer: tfl.initializers.glorotUniform({ seed: 2 }) }));
  return net;
}

/** Make one valid seed of every kind under `dir`. */
export async function makeSeeds(dir: string): Promise<Seed[]> {
  mkdirSync(dir, { recursive: true });
  const seeds: Seed[] = [];
  const net = tinyNet();
  const full = join(dir, 'model.h5');
  await saveModel(net, full);
  const config = JSON.stringify(net.toJSON(null, false));
  seeds.push({ kind: 'model', path: full, h5Model: h5SpecOf(net, { keras_version: '2.13.1', backend: 'tensorflow', model_config: config }, 'model_weights') });
  const folder = join(dir, 'tfjs');
  await saveModel(net, folder, { preprocessing: { scale: 255, mean: [0.5], std: [0.25] } }); // mutants also hit the metadata
  seeds.push({ kind: 'model', path: folder, folder: true, modelJson: JSON.parse(readFileSync(join(folder, 'model.json'), 'utf8')) });
  net.dispose();

  // A functional model (inbound_nodes, a residual Add) in Keras HDF5.
  const fin = tfl.input({ shape: [8, 8, 1], name: 'in' });
  const c1 = tfl.layers.conv2d({ name: 'c1', filters: 2, kernelSize: 3, padding: 'same', activation: 'relu' }).apply(fin) as tfl.SymbolicTensor;
  const c2 = tfl.layers.conv2d({ name: 'c2', filters: 2, kernelSize: 3, padding: 'same' }).apply(c1) as tfl.SymbolicTensor;
  const add = tfl.layers.add({ name: 'add' }).apply([c1, c2]) as tfl.SymbolicTensor;
  const pool = tfl.layers.maxPooling2d({ name: 'pool', poolSize: 2 }).apply(add) as tfl.SymbolicTensor;
  const flat = tfl.layers.flatten({ name: 'flat' }).apply(pool) as tfl.SymbolicTensor;
  const fout = tfl.layers.dense({ name: 'out', units: 2, activation: 'softmax' }).apply(flat) as tfl.SymbolicTensor;
  const fnet = tfl.model({ inputs: fin, outputs: fout, name: 'functional' });
  const fpath = join(dir, 'functional.h5');
  await saveModel(fnet, fpath);
  seeds.push({ kind: 'model', path: fpath, h5Model: h5SpecOf(fnet, { keras_version: '2.13.1', backend: 'tensorflow', model_config: JSON.stringify(fnet.toJSON(null, false)) }, 'model_weights') });
  // The same functional model as a Keras 3 .keras zip.
  const kpath = join(dir, 'functional.keras');
  await saveModel(fnet, kpath, { preprocessing: { scale: 255 } });
  seeds.push({ kind: 'model', path: kpath, kerasZip: unzipSync(readFileSync(kpath)) });
  // The same two networks as ONNX, as goodnet exports them (NHWC input, standard operators).
  for (const [name, m] of [['tiny.onnx', tinyNet()], ['functional.onnx', await tfl.models.modelFromJSON({ modelTopology: fnet.toJSON(null, false) as never })]] as const) {
    const path = join(dir, name);
    await saveModel(m, path);
    seeds.push({ kind: 'model', path, onnx: true });
    m.dispose();
  }
  fnet.dispose();
  // A PyTorch export (NCHW, BatchNormalization, Pad, Shape -> Gather -> Concat -> Reshape), when the repository's fixtures are here.
  const torch = fileURLToPath(new URL('../../../test/fixtures/onnx/mobile_op13.onnx', import.meta.url));
  if (existsSync(torch)) {
    const path = join(dir, 'torch.onnx');
    copyFileSync(torch, path);
    seeds.push({ kind: 'model', path, onnx: true });
  }

  // A deepid-shaped weights-only file (2 classes, the lab's 55x47x3 input).
  const deep = buildArchitecture('deepid', { inputShape: [55, 47, 3], numClasses: 2 });
  const wspec = h5SpecOf(deep, { keras_version: '2.13.1', backend: 'tensorflow' }, '');
  // Keep it small on disk: big kernels become sparse (compressible), still valid weights.
  for (const l of wspec.layers) for (const w of l.weights) {
    if (w.data.length > 4096) w.data = (w.data as Float32Array).map((v, i) => (i % 97 === 0 ? v : 0));
  }
  const wpath = join(dir, 'weights.h5');
  await writeH5Model(wspec, wpath);
  seeds.push({ kind: 'weights', path: wpath, h5Model: wspec });
  deep.dispose();

  const n = 6, h = 8, w = 8, c = 1;
  const images = new Uint8Array(n * h * w * c).map((_, i) => (i * 37) % 256);
  const labels = [0, 1, 0, 1, 1, 0];
  const data = join(dir, 'data.h5');
  await writeCsawData(data, images, labels, n, h, w, c);
  seeds.push({ kind: 'data', path: data, csaw: { images, labels, n, h, w, c } });
  // gzip-compressed, float32 labels, 3 channels: byte damage then hits compressed chunks.
  const data3 = join(dir, 'data-gzip.h5');
  await writeCsawData(data3, new Uint8Array(n * h * w * 3).map((_, i) => (i * 5) % 256), labels, n, h, w, 3, { compression: 6, labelDtype: 'float32', blockRows: 2 });
  seeds.push({ kind: 'data', path: data3 });

  // An image folder data set: labels from all-digit sub-folders and a label-in-name file.
  const imgs = join(dir, 'imgs');
  for (const [sub, name, k] of [['0', 'a.png', 3], ['1', 'b.png', 5], ['', 'x_label2.png', 7]] as const) {
    mkdirSync(join(imgs, sub), { recursive: true });
    writeFileSync(join(imgs, sub, name), encodePng(new Uint8Array(8 * 8).map((_, i) => (i * k) % 256), 8, 8, 1));
  }
  seeds.push({ kind: 'data', path: imgs, folder: true });

  const rgb = new Uint8Array(8 * 8 * 3).map((_, i) => (i * 11) % 256);
  const png = join(dir, 'image.png');
  writeFileSync(png, encodePng(rgb, 8, 8, 3));
  seeds.push({ kind: 'image', path: png });
  const rgba = new Uint8Array(8 * 8 * 4).map((_, i) => (i * 7) % 256);
  const jpg = join(dir, 'image.jpg');
  writeFileSync(jpg, jpeg.encode({ data: Buffer.from(rgba), width: 8, height: 8 }, 90).data);
  seeds.push({ kind: 'image', path: jpg });
  const trig = join(dir, 'trigger.png');
  writeFileSync(trig, encodePng(new Uint8Array(4 * 4 * 4).map((_, i) => (i % 4 === 3 ? 255 : i * 13 % 256)), 4, 4, 4));
  seeds.push({ kind: 'trigger', path: trig });
  tf.disposeVariables();
  return seeds;
}
