/**
 * A small VGG-style network with batch normalisation, sized for Fashion-MNIST on one CPU
 * thread (the lab's `--arch vgg`):
 *
 *   input -> block1: block1_conv1 16@3x3 -> block1_bn1 -> block1_relu1
 *                    -> block1_conv2 16@3x3 -> block1_bn2 -> block1_relu2 -> block1_pool
 *         -> block2: the same with 32 channels -> block2_pool
 *         -> flatten -> fc (128) -> fc_relu -> output (softmax)
 *
 * Convolutions are 'same' padded without bias (the BN that follows has its own beta), so
 * a 28x28 input reaches block2_pool at 7x7x32. The last block's output is `block2_relu2`
 * (before `block2_pool`), the layer a pruning defense cuts at. Only standard Keras layers
 * (Conv2D, BatchNormalization, ReLU, MaxPooling2D, Flatten, Dense), so the model saves as
 * Keras HDF5 and loads back in Keras.
 */
import * as tfl from '@tensorflow/tfjs-layers';
import { GoodnetError } from '../errors.js';

export interface VggOptions {
  /** [H, W, C]; default 28x28x1 (Fashion-MNIST). */
  inputShape?: [number, number, number];
  numClasses?: number;
  seed?: number;
  /** Channels per block (default [16, 32]); one block per entry, each halves H and W. */
  filters?: number[];
  /** Units of the hidden dense layer `fc` (default 128). */
  units?: number;
}

export const VGG_FILTERS: readonly number[] = [16, 32];
export const VGG_UNITS = 128;
/**
 * Momentum of the BN moving averages: 0.9 (PyTorch's 0.1) rather than Keras's 0.99, so short
 * runs (a few hundred steps) end with statistics that match the weights.
 */
export const BN_MOMENTUM = 0.9;

/** Spatial size after the blocks' 2x2 max-pools (floor), for an H x W input. */
export function vggFeatureShape(h: number, w: number, blocks: number): [number, number] {
  let hh = h;
  let ww = w;
  for (let i = 0; i < blocks; i++) {
    hh = Math.floor(hh / 2);
    ww = Math.floor(ww / 2);
  }
  return [hh, ww];
}

export function vgg(options: VggOptions = {}): tfl.LayersModel {
  const inputShape = options.inputShape ?? [28, 28, 1];
  const numClasses = options.numClasses ?? 10;
  const filters = options.filters ?? [...VGG_FILTERS];
  const units = options.units ?? VGG_UNITS;
  const [h, w, c] = inputShape;
  if (filters.length < 1 || !filters.every((f) => Number.isInteger(f) && f >= 1) || !Number.isInteger(units) || units < 1) {
    throw new GoodnetError(`vgg needs >= 1 block of >= 1 filter and >= 1 unit, got filters [${filters.join(', ')}], ${units} units`);
  }
  const [fh, fw] = vggFeatureShape(h, w, filters.length);
  if (!(fh >= 1 && fw >= 1)) {
    throw new GoodnetError(`vgg with ${filters.length} blocks needs inputs of at least ${2 ** filters.length}x${2 ** filters.length} pixels, got ${h}x${w}`);
  }
  if (!(c >= 1) || !Number.isInteger(numClasses) || numClasses < 2) {
    throw new GoodnetError(`vgg needs >= 1 channel and >= 2 classes, got ${c} channels, ${numClasses} classes`);
  }
  const seed = options.seed;
  let k = 0;
  const init = () => tfl.initializers.glorotUniform({ seed: seed === undefined ? undefined : seed + ++k });

  const input = tfl.input({ shape: inputShape, name: 'input' });
  let x: tfl.SymbolicTensor = input;
  filters.forEach((f, b) => {
    const p = `block${b + 1}`;
    for (const j of [1, 2]) {
      x = tfl.layers.conv2d({ name: `${p}_conv${j}`, filters: f, kernelSize: 3, padding: 'same', useBias: false, kernelInitializer: init() })
        .apply(x) as tfl.SymbolicTensor;
      x = tfl.layers.batchNormalization({ name: `${p}_bn${j}`, momentum: BN_MOMENTUM }).apply(x) as tfl.SymbolicTensor;
      x = tfl.layers.reLU({ name: `${p}_relu${j}` }).apply(x) as tfl.SymbolicTensor;
    }
    x = tfl.layers.maxPooling2d({ name: `${p}_pool`, poolSize: 2, strides: 2, padding: 'valid' }).apply(x) as tfl.SymbolicTensor;
  });
  x = tfl.layers.flatten({ name: 'flatten' }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.dense({ name: 'fc', units, kernelInitializer: init() }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.reLU({ name: 'fc_relu' }).apply(x) as tfl.SymbolicTensor;
  const output = tfl.layers.dense({ name: 'output', units: numClasses, activation: 'softmax', kernelInitializer: init() })
    .apply(x) as tfl.SymbolicTensor;
  return tfl.model({ inputs: input, outputs: output, name: 'vgg' });
}
