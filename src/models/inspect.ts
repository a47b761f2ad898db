/**
 * What a model is made of, and which conv channels are pruned: channels whose block output
 * (Conv[->BatchNormalization][->activation with f(0) = 0]) is provably zero whatever the
 * input. Without batch norm that is a conv kernel slice and bias that are all zero; after
 * batch norm it takes its gamma and beta to be zero too (a zero conv channel alone is
 * shifted by beta - gamma * mean / sqrt(var + eps), so it is not pruned).
 */
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
  /** The last layer of the conv's block (the conv, its BatchNormalization or activation layer). */
  output: string;
  /** Output channels of the block that are provably zero (pruned). */
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

type Layer = tfl.layers.Layer;
const ZERO_AT_ZERO = new Set(['relu', 'linear', 'relu6', 'elu', 'selu', 'tanh', 'swish', 'gelu', 'softsign']);

function activation(l: Layer): string {
  const a = (l.getConfig() as { activation?: unknown }).activation;
  return typeof a === 'string' ? a : 'linear';
}

function onlyConsumer(net: tfl.LayersModel, l: Layer): Layer | undefined {
  const cs = net.layers.filter((x) => x.inboundNodes.some((n) => (n.inboundLayers as Layer[]).includes(l)));
  return cs.length === 1 && cs[0]!.inboundNodes.length === 1 && cs[0]!.inboundNodes[0]!.inboundLayers.length === 1 ? cs[0] : undefined;
}

/** Zero channels of a conv's block output, and the block's last layer. */
function blockZeroChannels(net: tfl.LayersModel, conv: Layer): { output: string; zero: number[] } | undefined {
  const [kernel, bias] = conv.getWeights();
  if (!kernel) return undefined;
  const depthwise = conv.getClassName() === 'DepthwiseConv2D';
  const channels = depthwise ? kernel.shape[2]! * kernel.shape[3]! : kernel.shape.at(-1)!;
  let zero = ZERO_AT_ZERO.has(activation(conv)) ? zeroOutputChannels(kernel.dataSync(), bias?.dataSync(), channels) : [];
  let output = conv;
  let next = onlyConsumer(net, conv);
  if (next?.getClassName() === 'BatchNormalization') {
    const cfg = next.getConfig() as { center?: boolean; scale?: boolean };
    const w = next.getWeights();
    if (cfg.center !== false && cfg.scale !== false && w.length === 4) {
      const g = w[0]!.dataSync();
      const b = w[1]!.dataSync();
      zero = Array.from({ length: channels }, (_, c) => c).filter((c) => g[c] === 0 && b[c] === 0);
    } else {
      zero = [];
    }
    output = next;
    next = onlyConsumer(net, next);
  }
  const cls = next?.getClassName();
  if (next && ((cls === 'Activation' && ZERO_AT_ZERO.has(activation(next))) || cls === 'ReLU' || cls === 'LeakyReLU' || cls === 'ELU')) output = next;
  return { output: output.name, zero };
}

export function inspectModel(net: tfl.LayersModel): ModelInspection {
  const layers: LayerInfo[] = net.layers.map((l) => {
    const shape = l.outputShape;
    const outputShape = (Array.isArray(shape[0]) ? shape[0] : shape) as (number | null)[];
    return { name: l.name, type: l.getClassName(), outputShape, params: l.countParams() };
  });
  const convs: ConvInfo[] = [];
  for (const l of net.layers) {
    if (l.getClassName() !== 'Conv2D' && l.getClassName() !== 'DepthwiseConv2D') continue;
    const b = blockZeroChannels(net, l);
    if (!b) continue;
    const k = l.getWeights()[0]!;
    const channels = l.getClassName() === 'DepthwiseConv2D' ? k.shape[2]! * k.shape[3]! : k.shape.at(-1)!;
    convs.push({ layer: l.name, channels, output: b.output, zeroChannels: b.zero });
  }
  return { layers, totalParams: layers.reduce((s, l) => s + l.params, 0), convs };
}
