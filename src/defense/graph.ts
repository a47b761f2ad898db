/**
 * Where the pruning defense cuts a network.
 *
 * The *prune point* is a layer whose output has channels (a 4-D output); pruning a channel
 * means masking that channel of the prune point's output to zero. By default it is the
 * output of the last convolutional block before the classifier head: the input of the last
 * local pooling layer that feeds the head (DeepID: conv_3 before pool_3; VGG: the last
 * block's activation before its max-pool), else the input of the global pooling layer
 * (ResNets: the last block's output, after its residual Add and activation), else the input
 * of the Flatten. The *cut* is the tensor cached once per image: the pooled output when a
 * pooling layer is the prune point's only consumer (pooling commutes with a per-channel zero
 * mask: max/avg of zeros is zero), else the prune point's output. The head model is
 * input -> cut, the tail model cut -> output; the mask is applied to the cut's channels.
 *
 * How a saved model realises the mask (mask.ts): 'zero' when the channel comes from
 * Conv[->BN][->activation] with f(0) = 0 (zero the conv's kernel and bias and BN's gamma and
 * beta), 'fold' when every consumer reaches a Conv2D/Dense through layers that keep zeros
 * at zero (zero those input weights), else 'mask' (a DepthwiseConv2D 1x1 0/1 layer).
 */
import * as tfl from '@tensorflow/tfjs-layers';
import { GoodnetError } from '../errors.js';

const LOCAL_POOLS = new Set(['MaxPooling2D', 'AveragePooling2D']);
const GLOBAL_POOLS = new Set(['GlobalAveragePooling2D', 'GlobalMaxPooling2D']);
const CONVS = new Set(['Conv2D', 'DepthwiseConv2D', 'SeparableConv2D', 'Conv2DTranspose']);
const MERGES = new Set(['Add', 'Subtract', 'Average', 'Maximum', 'Minimum', 'Multiply', 'Concatenate']);
/** Activations with f(0) = 0. */
export const ZERO_AT_ZERO = new Set(['relu', 'linear', 'relu6', 'elu', 'selu', 'tanh', 'swish', 'gelu', 'softsign', 'leakyRelu', 'leaky_relu']);

/** A conv whose output channels are zeroed (kernel slice and bias), and the BN after it, if any. */
export interface ZeroPlan { kind: 'zero'; conv: string; bn?: string }
/** Consumers whose input weights are zeroed: Conv2D kernel[:, :, c, :], Dense rows c (direct) or p*C + c (through Flatten). */
export interface FoldTarget { layer: string; kind: 'conv' | 'dense' | 'dense-flat' }
export interface FoldPlan { kind: 'fold'; targets: FoldTarget[] }
/** A DepthwiseConv2D 1x1 mask layer inserted after the prune point. */
export interface MaskPlan { kind: 'mask'; layer: string }
export type Realisation = ZeroPlan | FoldPlan | MaskPlan;

export interface CutPoint {
  /** The layer whose output is cached and masked: the pooling layer after the prune point, or the prune point itself. */
  pool: string;
  /** The prune point: the layer whose output channels are pruned. */
  conv: string;
  channels: number;
  /** How a saved model computes the mask. */
  realise: Realisation;
  /** Why this layer (one line, for the log). */
  reason: string;
}

type Layer = tfl.layers.Layer;

/** Name suffix of the 1x1 mask layers goodnet inserts where no weights can carry a prune (mask.ts). */
export const MASK_SUFFIX = '_goodnet_mask';

/** A mask layer goodnet inserted into `net`, if any: a pruned model's prune point. */
export function maskLayerOf(net: tfl.LayersModel): Layer | undefined {
  return net.layers.find((l) => l.name.endsWith(MASK_SUFFIX));
}

/** The layers feeding `layer` in this model (first inbound node). */
function inboundLayers(layer: Layer): Layer[] {
  const node = layer.inboundNodes[0];
  return node ? (node.inboundLayers as Layer[]) : [];
}

function cfgOf(layer: Layer): Record<string, unknown> {
  return layer.getConfig() as Record<string, unknown>;
}

function activationName(layer: Layer): string {
  const a = cfgOf(layer).activation;
  return typeof a === 'string' ? a : 'linear';
}

function outShape(layer: Layer): (number | null)[] {
  const s = layer.outputShape;
  return (Array.isArray(s[0]) ? s[0] : s) as (number | null)[];
}

/** Layers of `net` that read `layer`'s output. */
export function consumersOf(net: tfl.LayersModel, layer: Layer): Layer[] {
  return net.layers.filter((l) => inboundLayers(l).includes(layer));
}

/** Layers that map a zero channel to a zero channel, channel by channel (zeros stay zeros). */
function keepsZero(l: Layer): boolean {
  const cls = l.getClassName();
  if (LOCAL_POOLS.has(cls) || GLOBAL_POOLS.has(cls) || cls === 'Dropout' || cls === 'SpatialDropout2D' || cls === 'Flatten') return true;
  if (cls === 'Activation') return ZERO_AT_ZERO.has(activationName(l));
  if (cls === 'ReLU') return !(Number(cfgOf(l).threshold ?? 0) > 0);
  if (cls === 'LeakyReLU' || cls === 'ELU') return true;
  return false;
}

/** An activation layer with f(0) = 0. */
function isZeroActivation(l: Layer): boolean {
  const cls = l.getClassName();
  return (cls === 'Activation' && ZERO_AT_ZERO.has(activationName(l))) || (cls === 'ReLU' && !(Number(cfgOf(l).threshold ?? 0) > 0)) || cls === 'LeakyReLU' || cls === 'ELU';
}

function zeroPlan(net: tfl.LayersModel, point: Layer): ZeroPlan | null {
  let l = point;
  const single = (x: Layer) => x.inboundNodes.length === 1 && consumersOf(net, x).length === 1;
  if (isZeroActivation(l)) {
    const [prev] = inboundLayers(l);
    if (!prev || inboundLayers(l).length !== 1 || !single(prev)) return null;
    l = prev;
  }
  let bn: string | undefined;
  if (l.getClassName() === 'BatchNormalization') {
    const c = cfgOf(l);
    if (c.axis !== undefined && c.axis !== -1 && c.axis !== 3) return null;
    if (c.center === false || c.scale === false) return null;
    const [prev] = inboundLayers(l);
    if (!prev || inboundLayers(l).length !== 1 || (l !== point && !single(l)) || !single(prev)) return null;
    bn = l.name;
    l = prev;
  }
  const cls = l.getClassName();
  const depthwiseOne = cls === 'DepthwiseConv2D' && Number(cfgOf(l).depth_multiplier ?? cfgOf(l).depthMultiplier ?? 1) === 1;
  if ((cls !== 'Conv2D' && !depthwiseOne) || l.inboundNodes.length !== 1) return null;
  if (l !== point && !single(l)) return null;
  if (!ZERO_AT_ZERO.has(activationName(l))) return null;
  return { kind: 'zero', conv: l.name, ...(bn ? { bn } : {}) };
}

/** Consumers reached through zero-keeping layers, when all are foldable Conv2D/Dense; else null. */
function foldPlan(net: tfl.LayersModel, point: Layer): FoldPlan | null {
  const targets: FoldTarget[] = [];
  const walk = (l: Layer, flat: boolean): boolean => {
    for (const c of consumersOf(net, l)) {
      const cls = c.getClassName();
      if (c.inboundNodes.length !== 1 || inboundLayers(c).length !== 1) return false;
      if (cls === 'Conv2D' && !flat) {
        const df = cfgOf(c).data_format ?? cfgOf(c).dataFormat;
        if (df !== undefined && df !== 'channels_last') return false;
        targets.push({ layer: c.name, kind: 'conv' });
      } else if (cls === 'Dense') {
        const rank = outShape(l).length;
        if (!flat && rank !== 2) return false;
        targets.push({ layer: c.name, kind: flat ? 'dense-flat' : 'dense' });
      } else if (keepsZero(c)) {
        if (cls === 'Flatten' && flat) return false;
        if (!walk(c, flat || cls === 'Flatten')) return false;
      } else {
        return false;
      }
    }
    return true;
  };
  return walk(point, false) && targets.length > 0 ? { kind: 'fold', targets } : null;
}

/** The one-consumer chain from `point` through per-channel layers ends in a merge with another branch. */
function summedBranch(net: tfl.LayersModel, point: Layer): Layer | null {
  let l = point;
  for (;;) {
    const cs = consumersOf(net, l);
    if (cs.length !== 1) return null;
    const c = cs[0]!;
    if (MERGES.has(c.getClassName()) && c.getClassName() !== 'Concatenate') return c;
    if (c.getClassName() === 'BatchNormalization' || isZeroActivation(c) || c.getClassName() === 'Activation'
      || c.getClassName() === 'Dropout' || c.getClassName() === 'SpatialDropout2D') {
      l = c;
      continue;
    }
    return null;
  }
}

/** Walk back from a layer's input through dropout layers. */
function producer(l: Layer): Layer | undefined {
  let p = inboundLayers(l);
  while (p.length === 1 && (p[0]!.getClassName() === 'Dropout' || p[0]!.getClassName() === 'SpatialDropout2D')) p = inboundLayers(p[0]!);
  return p.length === 1 ? p[0] : undefined;
}

/** Reaches a Flatten / global pooling / Dense on a 2-D tensor through zero-keeping layers: feeds the classifier head. */
function feedsHead(net: tfl.LayersModel, l: Layer): boolean {
  return consumersOf(net, l).some((c) => {
    const cls = c.getClassName();
    if (cls === 'Flatten' || GLOBAL_POOLS.has(cls)) return true;
    if (cls === 'Dropout' || cls === 'SpatialDropout2D') return feedsHead(net, c);
    return false;
  });
}

/** The default prune point and why. */
function defaultPoint(net: tfl.LayersModel, source: string): { point: Layer; reason: string } {
  const layers = net.layers;
  const rev = [...layers].reverse();
  const pool = rev.find((l) => LOCAL_POOLS.has(l.getClassName()) && feedsHead(net, l));
  if (pool) {
    const p = producer(pool);
    if (p) return { point: p, reason: `the input of '${pool.name}', the last pooling layer before the classifier head` };
  }
  const gp = rev.find((l) => GLOBAL_POOLS.has(l.getClassName()));
  if (gp) {
    const p = producer(gp);
    if (p) return { point: p, reason: `the last block's output, before global pooling '${gp.name}'` };
  }
  const flat = rev.find((l) => l.getClassName() === 'Flatten');
  if (flat) {
    const p = producer(flat);
    if (p && outShape(p).length === 4) return { point: p, reason: `the last layer with channels, before '${flat.name}'` };
  }
  throw new GoodnetError('found no convolutional block before the classifier head (no pooling or Flatten after a layer with channels); use --layer to pick one', source);
}

/**
 * Find the prune point (`layer`, or the default above), the cut and how a saved model
 * realises the mask. Throws a one-line GoodnetError where no sound choice exists.
 */
export function findCutPoint(net: tfl.LayersModel, layer?: string, source = 'model'): CutPoint {
  if (!net.layers.some((l) => CONVS.has(l.getClassName()))) throw new GoodnetError('the model has no convolutional layer to prune', source);
  let point: Layer;
  let reason: string;
  if (layer !== undefined) {
    const named = net.layers.find((l) => l.name === layer);
    if (!named) throw new GoodnetError(`no layer named '${layer}' (layers: ${net.layers.map((l) => l.name).join(', ')})`, source);
    const cls = named.getClassName();
    if (LOCAL_POOLS.has(cls) || GLOBAL_POOLS.has(cls)) {
      const p = producer(named);
      if (!p) throw new GoodnetError(`pooling layer '${layer}' is not fed by exactly one layer`, source);
      point = p;
      reason = `the input of '${layer}' (--layer)`;
    } else {
      point = named;
      reason = '--layer';
    }
  } else {
    ({ point, reason } = defaultPoint(net, source));
  }
  const shape = outShape(point);
  if (shape.length !== 4 || shape[3] === null) {
    throw new GoodnetError(`layer '${point.name}' is a ${point.getClassName()} with output (${shape.map((d) => d ?? 'N').join(', ')}), which has no channels; give a layer with a 4-D output (conv, activation, pooling)`, source);
  }
  if (point.getClassName() === 'InputLayer') throw new GoodnetError(`layer '${point.name}' is the model input; give a layer after a conv`, source);
  if (point.inboundNodes.length !== 1) throw new GoodnetError(`layer '${point.name}' is used more than once in the model; cannot prune it`, source);
  const merge = summedBranch(net, point);
  if (merge) {
    throw new GoodnetError(`layer '${point.name}' is inside a branch that '${merge.name}' (${merge.getClassName()}) sums with another branch: zeroing its channel would not zero the sum; prune at '${merge.name}' or after it`, source);
  }
  const channels = shape[3]!;
  const consumers = consumersOf(net, point);
  const only = consumers.length === 1 ? consumers[0]! : undefined;
  const cut = only && LOCAL_POOLS.has(only.getClassName()) || (only && GLOBAL_POOLS.has(only.getClassName())) ? only : point;
  const realise: Realisation = zeroPlan(net, point) ?? foldPlan(net, point) ?? { kind: 'mask', layer: `${point.name}${MASK_SUFFIX}` };
  return { pool: cut.name, conv: point.name, channels, realise, reason };
}

/** An independent copy of a model (same topology and weights, new layer objects). */
export async function cloneNet(net: tfl.LayersModel): Promise<tfl.LayersModel> {
  const copy = await tfl.models.modelFromJSON({ modelTopology: net.toJSON(null, false) as never });
  copy.setWeights(net.getWeights());
  return copy;
}

/** input -> pooling layer output (shares layers with `net`; it only reads them). */
export function headModel(net: tfl.LayersModel, cut: CutPoint): tfl.LayersModel {
  return tfl.model({ inputs: net.inputs, outputs: net.getLayer(cut.pool).output as tfl.SymbolicTensor });
}

/**
 * pooling layer output -> model output, rebuilt from the layers after the cut. Built on a
 * clone, because applying layers to a new input adds nodes to them.
 */
export async function tailModel(net: tfl.LayersModel, cut: CutPoint): Promise<tfl.LayersModel> {
  const copy = await cloneNet(net);
  const pool = copy.getLayer(cut.pool);
  const poolOut = pool.output as tfl.SymbolicTensor;
  const input = tfl.input({ shape: poolOut.shape.slice(1) as number[], name: `${cut.pool}_in` });
  const mapped = new Map<number, tfl.SymbolicTensor>([[poolOut.id, input]]);
  const after = copy.layers.slice(copy.layers.indexOf(pool) + 1);
  for (const layer of after) {
    const node = layer.inboundNodes[0];
    if (!node) continue;
    const ins = node.inputTensors as tfl.SymbolicTensor[];
    const got = ins.map((t) => mapped.get(t.id));
    if (got.every((t) => t === undefined)) continue;
    if (got.some((t) => t === undefined)) {
      throw new GoodnetError(`layer '${layer.name}' after '${cut.pool}' also reads layers before it; cannot split the model there`);
    }
    const out = layer.apply(got.length === 1 ? got[0]! : (got as tfl.SymbolicTensor[])) as tfl.SymbolicTensor;
    mapped.set((node.outputTensors[0] as tfl.SymbolicTensor).id, out);
  }
  const output = mapped.get((copy.outputs[0] as tfl.SymbolicTensor).id);
  if (!output) throw new GoodnetError(`the model output does not depend only on '${cut.pool}'; cannot split the model there`);
  return tfl.model({ inputs: input, outputs: output });
}

