/** What a model is made of, and which conv channels are entirely zero (i.e. pruned). */
import type * as tfl from '@tensorflow/tfjs-layers';

export interface LayerInfo {
  name: string;
  type: string;
  outputShape: (number | null)[];
  params: number;
}

export interface ConvInfo {
  layer: string;
  channels: number;
  /** Output channels whose kernel slice and bias are all zero. */
  zeroChannels: number[];
}

export interface ModelInspection {
  layers: LayerInfo[];
  totalParams: number;
  convs: ConvInfo[];
}

/** Output channels (last kernel axis) whose kernel slice and bias are all exactly zero. */
export function zeroOutputChannels(kernel: ArrayLike<number>, bias: ArrayLike<number> | undefined, channels: number): number[] {
  const zero = new Array<boolean>(channels).fill(true);
  for (let i = 0; i < kernel.length; i++) if (kernel[i] !== 0) zero[i % channels] = false;
  if (bias) for (let c = 0; c < channels; c++) if (bias[c] !== 0) zero[c] = false;
  return zero.flatMap((z, c) => (z ? [c] : []));
}

export function inspectModel(net: tfl.LayersModel): ModelInspection {
  const layers: LayerInfo[] = net.layers.map((l) => {
    const shape = l.outputShape;
    const outputShape = (Array.isArray(shape[0]) ? shape[0] : shape) as (number | null)[];
    return { name: l.name, type: l.getClassName(), outputShape, params: l.countParams() };
  });
  const convs: ConvInfo[] = [];
  for (const l of net.layers) {
    if (l.getClassName() !== 'Conv2D') continue;
    const [kernel, bias] = l.getWeights();
    if (!kernel) continue;
    const channels = kernel.shape.at(-1)!;
    convs.push({ layer: l.name, channels, zeroChannels: zeroOutputChannels(kernel.dataSync(), bias?.dataSync(), channels) });
  }
  return { layers, totalParams: layers.reduce((s, l) => s + l.params, 0), convs };
}
