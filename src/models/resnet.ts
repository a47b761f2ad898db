/**
 * A small ResNet (He et al. 2016, basic blocks) with batch normalisation, sized for
 * Fashion-MNIST on one CPU thread (the lab's `--arch resnet`):
 *
 *   input -> stem_conv 16@3x3 -> stem_bn -> stem_relu [-> stem_pool 2x2]
 *   blockN:  x -> blockN_conv1 3x3 (stride s) -> blockN_bn1 -> blockN_relu1
 *               -> blockN_conv2 3x3 -> blockN_bn2 ----------------------+
 *            x -> (identity, or blockN_proj 1x1 stride s -> blockN_proj_bn) +-> blockN_add -> blockN_relu
 *   block1: 16 channels, stride 1, identity shortcut
 *   block2: 32 channels, stride 2, projection shortcut
 *   block3: 64 channels, stride 2, projection shortcut
 *   -> gap (GlobalAveragePooling2D) -> output (softmax)
 *
 * Convolutions are 'same' padded without bias (BN follows each). The last block's output
 * is `blockK_relu` (K = number of blocks), what `gap` averages and what a pruning defense
 * cuts at. Standard Keras layers only (Conv2D, BatchNormalization, ReLU, Add, MaxPooling2D,
 * GlobalAveragePooling2D, Dense). With 28x28 inputs and the stem pool the blocks run at
 * 14x14, 7x7 and 4x4. Global average pooling makes the weights independent of the image
 * size, so a weights-only file does not fix it (pass --input-shape).
 */
import * as tfl from '@tensorflow/tfjs-layers';
import { GoodnetError } from '../errors.js';
import { BN_MOMENTUM } from './vgg.js';

export interface ResNetOptions {
  /** [H, W, C]; default 28x28x1 (Fashion-MNIST). */
  inputShape?: [number, number, number];
  numClasses?: number;
  seed?: number;
  /** Channels of the stem (default 16). */
  stemFilters?: number;
  /** One residual block per entry: its channels; stride 1 when equal to the previous, else 2 (default [16, 32, 64]). */
  blocks?: number[];
  /** 2x2 max-pool after the stem (default true). */
  stemPool?: boolean;
}

export const RESNET_BLOCKS: readonly number[] = [16, 32, 64];
export const RESNET_STEM = 16;

export function resnet(options: ResNetOptions = {}): tfl.LayersModel {
  const inputShape = options.inputShape ?? [28, 28, 1];
  const numClasses = options.numClasses ?? 10;
  const stemFilters = options.stemFilters ?? RESNET_STEM;
  const blocks = options.blocks ?? [...RESNET_BLOCKS];
  const stemPool = options.stemPool ?? true;
  const [h, w, c] = inputShape;
  if (!Number.isInteger(stemFilters) || stemFilters < 1 || blocks.length < 1 || !blocks.every((f) => Number.isInteger(f) && f >= 1)) {
    throw new GoodnetError(`resnet needs a stem of >= 1 filter and >= 1 block of >= 1 filter, got ${stemFilters}, [${blocks.join(', ')}]`);
  }
  const minSide = stemPool ? 2 : 1;
  if (!(h >= minSide && w >= minSide)) throw new GoodnetError(`resnet needs inputs of at least ${minSide}x${minSide} pixels, got ${h}x${w}`);
  if (!(c >= 1) || !Number.isInteger(numClasses) || numClasses < 2) {
    throw new GoodnetError(`resnet needs >= 1 channel and >= 2 classes, got ${c} channels, ${numClasses} classes`);
  }
  const seed = options.seed;
  let k = 0;
  const init = () => tfl.initializers.heNormal({ seed: seed === undefined ? undefined : seed + ++k });
  const conv = (name: string, filters: number, kernelSize: number, strides: number) =>
    tfl.layers.conv2d({ name, filters, kernelSize, strides, padding: 'same', useBias: false, kernelInitializer: init() });
  const bn = (name: string) => tfl.layers.batchNormalization({ name, momentum: BN_MOMENTUM });
  const relu = (name: string) => tfl.layers.reLU({ name });
  const apply = (layer: tfl.layers.Layer, t: tfl.SymbolicTensor | tfl.SymbolicTensor[]) => layer.apply(t) as tfl.SymbolicTensor;

  const input = tfl.input({ shape: inputShape, name: 'input' });
  let x = apply(relu('stem_relu'), apply(bn('stem_bn'), apply(conv('stem_conv', stemFilters, 3, 1), input)));
  if (stemPool) x = apply(tfl.layers.maxPooling2d({ name: 'stem_pool', poolSize: 2, strides: 2, padding: 'valid' }), x);
  let channels = stemFilters;
  blocks.forEach((f, i) => {
    const p = `block${i + 1}`;
    const stride = f === channels ? 1 : 2;
    let y = apply(relu(`${p}_relu1`), apply(bn(`${p}_bn1`), apply(conv(`${p}_conv1`, f, 3, stride), x)));
    y = apply(bn(`${p}_bn2`), apply(conv(`${p}_conv2`, f, 3, 1), y));
    const shortcut = stride === 1 ? x : apply(bn(`${p}_proj_bn`), apply(conv(`${p}_proj`, f, 1, stride), x));
    x = apply(relu(`${p}_relu`), apply(tfl.layers.add({ name: `${p}_add` }), [y, shortcut]));
    channels = f;
  });
  x = apply(tfl.layers.globalAveragePooling2d({ name: 'gap' }), x);
  const output = apply(tfl.layers.dense({ name: 'output', units: numClasses, activation: 'softmax', kernelInitializer: tfl.initializers.glorotUniform({ seed: seed === undefined ? undefined : seed + ++k }) }), x);
  return tfl.model({ inputs: input, outputs: output, name: 'resnet' });
}
