/**
 * Where the pruning defense cuts a network: the last pooling layer and the conv layer that
 * feeds it, a head model (input -> pool) and a tail model (pool -> output) that shares
 * nothing with the caller's model, so building it never touches the model being repaired.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { GoodnetError } from '../errors.js';

const POOLS = new Set(['MaxPooling2D', 'AveragePooling2D']);

export interface CutPoint {
  pool: string;
  conv: string;
  channels: number;
}

type Layer = tfl.layers.Layer;

/** The layers feeding `layer` in this model (first inbound node). */
function inboundLayers(layer: Layer): Layer[] {
  const node = layer.inboundNodes[0];
  return node ? (node.inboundLayers as Layer[]) : [];
}

function activationName(layer: Layer): string {
  const cfg = layer.getConfig() as { activation?: unknown };
  return typeof cfg.activation === 'string' ? cfg.activation : 'linear';
}

/**
 * Find the pooling layer to profile and the conv layer whose channels get pruned.
 * `layer` may name either; by default the last pooling layer in the network.
 */
export function findCutPoint(net: tfl.LayersModel, layer?: string, source = 'model'): CutPoint {
  let pool: Layer | undefined;
  if (layer !== undefined) {
    const named = net.layers.find((l) => l.name === layer);
    if (!named) throw new GoodnetError(`no layer named '${layer}' (layers: ${net.layers.map((l) => l.name).join(', ')})`, source);
    if (POOLS.has(named.getClassName())) pool = named;
    else if (named.getClassName() === 'Conv2D') {
      const consumers = net.layers.filter((l) => inboundLayers(l).includes(named));
      pool = consumers.find((l) => POOLS.has(l.getClassName()));
      if (!pool || consumers.length !== 1) {
        throw new GoodnetError(`conv layer '${layer}' does not feed exactly one pooling layer`, source);
      }
    } else {
      throw new GoodnetError(`layer '${layer}' is a ${named.getClassName()}; give a Conv2D or a pooling layer`, source);
    }
  } else {
    pool = [...net.layers].reverse().find((l) => POOLS.has(l.getClassName()));
    if (!pool) throw new GoodnetError('the model has no pooling layer to prune before (use --layer to pick one)', source);
  }
  const feeds = inboundLayers(pool);
  const conv = feeds[0];
  if (feeds.length !== 1 || !conv || conv.getClassName() !== 'Conv2D') {
    throw new GoodnetError(`pooling layer '${pool.name}' is not fed directly by a Conv2D layer`, source);
  }
  // Zeroing a channel's kernel and bias zeroes that channel of the pooled output only when f(0) = 0.
  const act = activationName(conv);
  if (!['relu', 'linear', 'relu6', 'elu', 'selu', 'tanh', 'swish', 'gelu'].includes(act)) {
    throw new GoodnetError(`conv layer '${conv.name}' uses activation '${act}', which is not zero at zero; cannot prune it`, source);
  }
  const consumers = net.layers.filter((l) => inboundLayers(l).includes(conv));
  if (consumers.length !== 1) throw new GoodnetError(`conv layer '${conv.name}' feeds more than the pooling layer`, source);
  const channels = (conv.getConfig() as { filters: number }).filters;
  return { pool: pool.name, conv: conv.name, channels };
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

/** A copy of `net` with the given output channels of `conv` zeroed (kernel slice and bias). */
export async function pruneChannels(net: tfl.LayersModel, conv: string, channels: Iterable<number>): Promise<tfl.LayersModel> {
  const copy = await cloneNet(net);
  zeroChannelsInPlace(copy, conv, channels);
  return copy;
}

/** Zero output channels of a conv layer in place. */
export function zeroChannelsInPlace(net: tfl.LayersModel, conv: string, channels: Iterable<number>): void {
  const layer = net.getLayer(conv);
  const [kernel, bias] = layer.getWeights();
  const c = kernel!.shape.at(-1)!;
  const mask = new Float32Array(c).fill(1);
  for (const ch of channels) mask[ch] = 0;
  const m = tf.tensor1d(mask);
  const weights = [tf.mul(kernel!, m), ...(bias ? [tf.mul(bias, m)] : [])];
  layer.setWeights(weights);
  tf.dispose([m, ...weights]);
}
