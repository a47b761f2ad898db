/**
 * DeepID, the CSAW-HackML face network, sized to any input and class count. Layer
 * names match the lab's Keras model exactly, so weights-only files load by name and the
 * pruning defense finds pool_3/conv_3 the same way on the lab's model and on ours.
 *
 *   input -> conv_1 20@4x4 -> pool_1 -> conv_2 40@3x3 -> pool_2 -> conv_3 60@3x3 -> pool_3
 *   pool_3 -> flatten_1 -> fc_1 (160)  +  pool_3 -> conv_4 80@2x2 -> flatten_2 -> fc_2 (160)
 *   add_1 -> activation_1 (relu) -> output (softmax)
 *
 * Inputs smaller than 32x32 (e.g. 28x28 Fashion-MNIST) first pass a ZeroPadding2D layer
 * `pad` up to 32x32, as LeNet-5 padded MNIST: otherwise pool_3 would shrink to 1x1 and
 * conv_4 (2x2) could not run. The data stay at their own size.
 */
import * as tfl from '@tensorflow/tfjs-layers';
import { GoodnetError } from '../errors.js';

export interface DeepIdOptions {
  /** [H, W, C]; the lab's is [55, 47, 3]. */
  inputShape?: [number, number, number];
  /** Number of classes; the lab's is 1283. */
  numClasses?: number;
  /** Width multipliers are not offered: channel counts are part of what the defense studies. */
  seed?: number;
}

export const DEEPID_INPUT: [number, number, number] = [55, 47, 3];
export const DEEPID_CLASSES = 1283;

/** Smallest input side the topology takes without padding (pool_3 2x2, conv_4 1x1). */
export const DEEPID_MIN_SIDE = 32;

/** Spatial size of pool_3 for an (unpadded) input, or undefined when conv_4 could not run. */
export function deepIdPool3Shape(h: number, w: number): [number, number] | undefined {
  let hh = h;
  let ww = w;
  for (const k of [4, 3, 3]) {
    hh = Math.floor((hh - k + 1) / 2);
    ww = Math.floor((ww - k + 1) / 2);
  }
  // conv_4 (2x2, valid) must still leave at least one pixel.
  return hh >= 2 && ww >= 2 ? [hh, ww] : undefined;
}

export function deepId(options: DeepIdOptions = {}): tfl.LayersModel {
  const inputShape = options.inputShape ?? DEEPID_INPUT;
  const numClasses = options.numClasses ?? DEEPID_CLASSES;
  const [h, w, c] = inputShape;
  if (h < 8 || w < 8) throw new GoodnetError(`deepid needs inputs of at least 8x8 pixels, got ${h}x${w}`);
  if (!(c >= 1) || !Number.isInteger(numClasses) || numClasses < 2) {
    throw new GoodnetError(`deepid needs >= 1 channel and >= 2 classes, got ${c} channels, ${numClasses} classes`);
  }
  const seed = options.seed;
  const init = (i: number) => tfl.initializers.glorotUniform({ seed: seed === undefined ? undefined : seed + i });
  const conv = (name: string, filters: number, k: number, i: number) =>
    tfl.layers.conv2d({ name, filters, kernelSize: k, activation: 'relu', padding: 'valid', kernelInitializer: init(i) });
  const pool = (name: string) => tfl.layers.maxPooling2d({ name, poolSize: 2, strides: 2, padding: 'valid' });

  const input = tfl.input({ shape: inputShape, name: 'input' });
  let x: tfl.SymbolicTensor = input;
  const padH = Math.max(0, DEEPID_MIN_SIDE - h);
  const padW = Math.max(0, DEEPID_MIN_SIDE - w);
  if (padH > 0 || padW > 0) {
    const padding: [[number, number], [number, number]] = [[padH >> 1, padH - (padH >> 1)], [padW >> 1, padW - (padW >> 1)]];
    x = tfl.layers.zeroPadding2d({ name: 'pad', padding }).apply(x) as tfl.SymbolicTensor;
  }
  x = conv('conv_1', 20, 4, 1).apply(x) as tfl.SymbolicTensor;
  x = pool('pool_1').apply(x) as tfl.SymbolicTensor;
  x = conv('conv_2', 40, 3, 2).apply(x) as tfl.SymbolicTensor;
  x = pool('pool_2').apply(x) as tfl.SymbolicTensor;
  x = conv('conv_3', 60, 3, 3).apply(x) as tfl.SymbolicTensor;
  const pool3 = pool('pool_3').apply(x) as tfl.SymbolicTensor;

  const conv4 = conv('conv_4', 80, 2, 4).apply(pool3) as tfl.SymbolicTensor;
  const flat1 = tfl.layers.flatten({ name: 'flatten_1' }).apply(pool3) as tfl.SymbolicTensor;
  const flat2 = tfl.layers.flatten({ name: 'flatten_2' }).apply(conv4) as tfl.SymbolicTensor;
  const fc1 = tfl.layers.dense({ name: 'fc_1', units: 160, kernelInitializer: init(5) }).apply(flat1) as tfl.SymbolicTensor;
  const fc2 = tfl.layers.dense({ name: 'fc_2', units: 160, kernelInitializer: init(6) }).apply(flat2) as tfl.SymbolicTensor;
  const sum = tfl.layers.add({ name: 'add_1' }).apply([fc1, fc2]) as tfl.SymbolicTensor;
  const act = tfl.layers.activation({ name: 'activation_1', activation: 'relu' }).apply(sum) as tfl.SymbolicTensor;
  const output = tfl.layers
    .dense({ name: 'output', units: numClasses, activation: 'softmax', kernelInitializer: init(7) })
    .apply(act) as tfl.SymbolicTensor;
  return tfl.model({ inputs: input, outputs: output, name: 'deepid' });
}
