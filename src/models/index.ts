/**
 * Built-in architectures, by the name the CLI's --arch and --weights-arch take: one
 * function per architecture and a registry, as tfjs-layers keeps its layer classes.
 */
import type * as tfl from '@tensorflow/tfjs-layers';
import { GoodnetError } from '../errors.js';
import { registerWeightsOnlyArchitecture, type WeightShapeOf } from '../io/architectures.js';
import { deepId, deepIdPool3Shape, DEEPID_INPUT } from './deepid.js';
import { resnet, type ResNetOptions } from './resnet.js';
import { vgg, vggFeatureShape, type VggOptions } from './vgg.js';

export type ArchitectureName = 'deepid' | 'vgg' | 'resnet';

/** What every architecture takes; each builder also accepts its own options (VggOptions, ResNetOptions). */
export interface ArchitectureOptions {
  inputShape?: [number, number, number];
  numClasses?: number;
  seed?: number;
}

export const ARCHITECTURES: Record<ArchitectureName, (o: ArchitectureOptions) => tfl.LayersModel> = {
  deepid: (o) => deepId(o),
  vgg: (o: VggOptions) => vgg(o),
  resnet: (o: ResNetOptions) => resnet(o),
};

export const ARCHITECTURE_NAMES = Object.keys(ARCHITECTURES) as ArchitectureName[];

export function isArchitectureName(name: string): name is ArchitectureName {
  return Object.prototype.hasOwnProperty.call(ARCHITECTURES, name);
}

export function buildArchitecture(name: string, options: ArchitectureOptions): tfl.LayersModel {
  if (!isArchitectureName(name)) {
    throw new GoodnetError(`unknown architecture '${name}' (built in: ${ARCHITECTURE_NAMES.join(', ')})`);
  }
  return ARCHITECTURES[name](options);
}

/** Shape of a stored weight (e.g. ('block1_conv1', 'kernel')), or undefined when absent. */
export type { WeightShapeOf } from '../io/architectures.js';

/**
 * Build options for a weights-only file of the vgg or resnet architecture, read from its
 * weight shapes: classes from output/bias, channels and widths from the conv kernels, and for
 * vgg the image size from fc's kernel (square images). resnet's global average pooling leaves
 * the image size open: it must be given. (deepid's inference lives with the Keras reader.)
 */
export function architectureFromWeights(name: string, shapeOf: WeightShapeOf, given?: [number, number, number]): ArchitectureOptions {
  const need = (layer: string, weight: string): number[] => {
    const s = shapeOf(layer, weight);
    if (!s) throw new GoodnetError(`weights do not look like a ${name} network (no ${layer}/${weight})`);
    return s;
  };
  const blockWidths = (): number[] => {
    const widths: number[] = [];
    for (let b = 1; ; b++) {
      const k = shapeOf(`block${b}_conv1`, 'kernel');
      if (!k) return widths;
      widths.push(k[3]!);
    }
  };
  if (name === 'deepid') return deepIdFromWeights(shapeOf, given);
  if (name === 'vgg') {
    const numClasses = need('output', 'bias')[0]!;
    const channels = need('block1_conv1', 'kernel')[2]!;
    const filters = blockWidths();
    const fc = need('fc', 'kernel');
    const options: VggOptions = { numClasses, filters, units: fc[1]! };
    if (given) return { ...options, inputShape: given };
    const side = Math.sqrt(fc[0]! / filters.at(-1)!);
    if (Number.isInteger(side) && side >= 1) {
      const s = side * 2 ** filters.length;
      const [fh, fw] = vggFeatureShape(s, s, filters.length);
      if (fh * fw * filters.at(-1)! === fc[0]) return { ...options, inputShape: [s, s, channels] };
    }
    throw new GoodnetError(`cannot infer the input size from fc (${fc.join('x')}); pass --input-shape HxWxC`);
  }
  if (name === 'resnet') {
    const numClasses = need('output', 'bias')[0]!;
    const stem = need('stem_conv', 'kernel');
    const options: ResNetOptions = { numClasses, stemFilters: stem[3]!, blocks: blockWidths() };
    if (!given) {
      throw new GoodnetError('resnet weights do not fix the image size (global average pooling); pass --input-shape HxWxC');
    }
    if (given[2] !== stem[2]) throw new GoodnetError(`--input-shape has ${given[2]} channels, stem_conv takes ${stem[2]}`);
    return { ...options, inputShape: given };
  }
  throw new GoodnetError(`unknown architecture '${name}' (built in: ${ARCHITECTURE_NAMES.join(', ')})`);
}

/** DeepID from its weights: classes from output/bias, channels from conv_1, size from fc_1 (the lab's 55x47 fits). */
function deepIdFromWeights(shapeOf: WeightShapeOf, given?: [number, number, number]): ArchitectureOptions {
  const out = shapeOf('output', 'bias');
  const k1 = shapeOf('conv_1', 'kernel');
  const fc1 = shapeOf('fc_1', 'kernel');
  if (!out || !k1 || !fc1) throw new GoodnetError('weights do not look like a deepid network (need conv_1, fc_1, output)');
  const numClasses = out[0]!;
  if (given) return { inputShape: given, numClasses };
  // fc_1 sees pool_3 flattened: h3 * w3 * 60. The lab's 55x47 fits; anything else needs --input-shape.
  const p = deepIdPool3Shape(DEEPID_INPUT[0], DEEPID_INPUT[1])!;
  if (p[0] * p[1] * 60 === fc1[0]) return { inputShape: [DEEPID_INPUT[0], DEEPID_INPUT[1], k1[2]!], numClasses };
  throw new GoodnetError(`cannot infer the input size from fc_1 (${fc1.join('x')}); pass --input-shape HxWxC`);
}

// Weights-only Keras files are read into these (src/io/keras.ts looks them up by name).
for (const name of ARCHITECTURE_NAMES) {
  registerWeightsOnlyArchitecture(name, (shapeOf, given) => buildArchitecture(name, architectureFromWeights(name, shapeOf, given)));
}

export { deepId, deepIdPool3Shape, DEEPID_INPUT, DEEPID_CLASSES, DEEPID_MIN_SIDE, type DeepIdOptions } from './deepid.js';
export { vgg, vggFeatureShape, VGG_FILTERS, VGG_UNITS, type VggOptions } from './vgg.js';
export { resnet, RESNET_BLOCKS, RESNET_STEM, type ResNetOptions } from './resnet.js';
