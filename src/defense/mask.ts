/**
 * Pruned copies that compute exactly what the sweep measured: channel c of the prune
 * point's output is zero (or, for 'fold', read by nothing), in every format goodnet writes.
 *
 *   zero: Conv[->BN][->activation f(0)=0]: the conv's kernel slice and bias, and BN's gamma
 *         and beta, are zeroed, so the channel is exactly zero after the block.
 *   fold: no such weights (e.g. after a residual Add): the input weights of the Conv2D/Dense
 *         layers that read the channel (through pooling, GAP, Dropout, Flatten in
 *         channel-last order) are zeroed.
 *   mask: a consumer is not linear: a DepthwiseConv2D 1x1 layer with a 0/1 kernel and no
 *         bias is inserted after the prune point (Keras 2, Keras 3, tfjs and ONNX load it).
 *
 * Used by prune (saved B'_X), fineprune (re-applied after every optimizer step) and inspect.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { GoodnetError } from '../errors.js';
import { cloneNet, findCutPoint, MASK_SUFFIX, type CutPoint } from './graph.js';

type Json = Record<string, unknown>;

/** 1 for kept channels, 0 for pruned ones. */
export function keepVector(channels: number, pruned: Iterable<number>): Float32Array {
  const keep = new Float32Array(channels).fill(1);
  for (const c of pruned) {
    if (!(Number.isInteger(c) && c >= 0 && c < channels)) throw new GoodnetError(`channel ${c} is out of range 0..${channels - 1}`);
    keep[c] = 0;
  }
  return keep;
}

/** Multiply `t` by `keep` along `axis` (keep repeated `repeat` times for flattened positions). */
function scaleAxis(t: tf.Tensor, keep: Float32Array, axis: number, repeat = 1): tf.Tensor {
  return tf.tidy(() => {
    const n = keep.length * repeat;
    const v = new Float32Array(n);
    for (let i = 0; i < n; i++) v[i] = keep[i % keep.length]!;
    const shape = t.shape.map((d, i) => (i === axis ? d : 1));
    if (shape[axis] !== n) throw new GoodnetError(`weight of shape (${t.shape.join(',')}) does not have ${n} entries on axis ${axis}`);
    return tf.mul(t, tf.tensor(v, shape));
  });
}

function setScaled(layer: tfl.layers.Layer, scale: (w: tf.Tensor, i: number) => tf.Tensor | null): void {
  const ws = layer.getWeights();
  const out = ws.map((w, i) => scale(w, i) ?? w);
  layer.setWeights(out);
  tf.dispose(out.filter((w, i) => w !== ws[i]));
}

/** The name of the mask layer `maskedCopy` inserts for a 'mask' cut. */
export function maskLayerName(cut: CutPoint): string {
  return cut.realise.kind === 'mask' ? cut.realise.layer : `${cut.conv}${MASK_SUFFIX}`;
}

/**
 * Apply the mask in place (weights only). For 'mask' cuts `net` must be a maskedCopy (it
 * has the mask layer). Fine-pruning calls this after every optimizer step.
 */
export function applyMaskInPlace(net: tfl.LayersModel, cut: CutPoint, pruned: Iterable<number>): void {
  const keep = keepVector(cut.channels, pruned);
  const r = cut.realise;
  if (r.kind === 'zero') {
    const conv = net.getLayer(r.conv);
    const depthwise = conv.getClassName() === 'DepthwiseConv2D';
    setScaled(conv, (w, i) => scaleAxis(w, keep, i === 0 ? (depthwise ? 2 : 3) : 0));
    if (r.bn) setScaled(net.getLayer(r.bn), (w, i) => (i < 2 ? scaleAxis(w, keep, 0) : null));
  } else if (r.kind === 'fold') {
    for (const t of r.targets) {
      const layer = net.getLayer(t.layer);
      setScaled(layer, (w, i) => {
        if (i !== 0) return null;
        if (t.kind === 'conv') return scaleAxis(w, keep, 2);
        return scaleAxis(w, keep, 0, t.kind === 'dense-flat' ? w.shape[0]! / keep.length : 1);
      });
    }
  } else {
    const layer = net.getLayer(r.layer);
    const k = tf.tensor4d(keep, [1, 1, keep.length, 1]);
    layer.setWeights([k]);
    k.dispose();
  }
}

/** The topology of `net` with a DepthwiseConv2D 1x1 mask layer after `point` (functional or Sequential). */
function withMaskLayer(net: tfl.LayersModel, point: string, name: string): Json {
  const topo = JSON.parse(JSON.stringify(net.toJSON(null, false))) as Json;
  const config = topo.config as Json;
  const layers = config.layers as Json[];
  const maskCfg = {
    name, trainable: false, dtype: 'float32', kernel_size: [1, 1], strides: [1, 1], padding: 'valid', data_format: 'channels_last',
    dilation_rate: [1, 1], depth_multiplier: 1, activation: 'linear', use_bias: false,
    depthwise_initializer: { class_name: 'Ones', config: {} }, bias_initializer: { class_name: 'Zeros', config: {} },
    depthwise_regularizer: null, bias_regularizer: null, activity_regularizer: null, depthwise_constraint: null, bias_constraint: null,
  };
  const at = layers.findIndex((l) => (l.config as Json).name === point || l.name === point);
  if (at < 0) throw new GoodnetError(`layer '${point}' not found in the model topology`);
  if (topo.class_name === 'Sequential') {
    layers.splice(at + 1, 0, { class_name: 'DepthwiseConv2D', config: maskCfg });
    return topo;
  }
  // Functional: every reference to the point's output now reads the mask layer's.
  const rewire = (v: unknown): unknown => {
    if (Array.isArray(v)) {
      if (v.length >= 3 && v[0] === point && typeof v[1] === 'number' && typeof v[2] === 'number') return [name, ...v.slice(1)];
      return v.map(rewire);
    }
    return v;
  };
  for (const l of layers) l.inbound_nodes = rewire(l.inbound_nodes);
  config.output_layers = rewire(config.output_layers);
  layers.splice(at + 1, 0, { class_name: 'DepthwiseConv2D', config: maskCfg, name, inbound_nodes: [[[point, 0, 0, {}]]] });
  return topo;
}

/** A copy of `net` whose prune-point channels `pruned` are zero (module comment). */
export async function maskedCopy(net: tfl.LayersModel, cut: CutPoint, pruned: Iterable<number>): Promise<tfl.LayersModel> {
  const list = [...pruned];
  if (cut.realise.kind !== 'mask') {
    const copy = await cloneNet(net);
    applyMaskInPlace(copy, cut, list);
    return copy;
  }
  const name = cut.realise.layer;
  const copy = await tfl.models.modelFromJSON({ modelTopology: withMaskLayer(net, cut.conv, name) as never });
  for (const l of net.layers) {
    if (l.weights.length > 0) copy.getLayer(l.name).setWeights(l.getWeights());
  }
  applyMaskInPlace(copy, cut, list);
  return copy;
}

/** maskedCopy at the prune point `layer` (or a CutPoint); the default prune point when omitted. */
export async function pruneChannels(net: tfl.LayersModel, layer: string | CutPoint | undefined, pruned: Iterable<number>): Promise<tfl.LayersModel> {
  const cut = typeof layer === 'object' ? layer : findCutPoint(net, layer);
  return maskedCopy(net, cut, pruned);
}

function channelZero(t: tf.Tensor, axis: number, channels: number): boolean[] {
  const v = t.dataSync();
  const shape = t.shape;
  let inner = 1;
  for (let i = axis + 1; i < shape.length; i++) inner *= shape[i]!;
  const zero = new Array<boolean>(channels).fill(true);
  const period = shape[axis]!;
  for (let i = 0; i < v.length; i++) if (v[i] !== 0) zero[Math.floor(i / inner) % period % channels] = false;
  return zero;
}

/**
 * Channels of the prune point that are pruned in `net`: provably zero at the prune point
 * ('zero': BN gamma and beta zero, or without BN the conv's kernel slice and bias), or read
 * by nothing ('fold': every consumer's input weights zero). A 'mask' cut of an unpruned
 * model has none.
 */
export function prunedChannels(net: tfl.LayersModel, cut: CutPoint): number[] {
  const r = cut.realise;
  let zero = new Array<boolean>(cut.channels).fill(true);
  const and = (z: boolean[]) => { zero = zero.map((x, i) => x && z[i]!); };
  if (r.kind === 'zero') {
    if (r.bn) {
      const [gamma, beta] = net.getLayer(r.bn).getWeights();
      and(channelZero(gamma!, 0, cut.channels));
      and(channelZero(beta!, 0, cut.channels));
    } else {
      const conv = net.getLayer(r.conv);
      const [kernel, bias] = conv.getWeights();
      and(channelZero(kernel!, conv.getClassName() === 'DepthwiseConv2D' ? 2 : 3, cut.channels));
      if (bias) and(channelZero(bias, 0, cut.channels));
    }
  } else if (r.kind === 'fold') {
    for (const t of r.targets) {
      const [kernel] = net.getLayer(t.layer).getWeights();
      if (t.kind === 'conv') and(channelZero(kernel!, 2, cut.channels));
      else {
        // Row p*C + c of a (P*C, U) kernel: channel c, period C.
        const v = kernel!.dataSync();
        const u = kernel!.shape[1]!;
        const z = new Array<boolean>(cut.channels).fill(true);
        for (let i = 0; i < v.length; i++) if (v[i] !== 0) z[Math.floor(i / u) % cut.channels] = false;
        and(z);
      }
    }
  } else {
    if (!net.layers.some((l) => l.name === r.layer)) return [];
    const [kernel] = net.getLayer(r.layer).getWeights();
    and(channelZero(kernel!, 2, cut.channels));
  }
  return zero.flatMap((z, c) => (z ? [c] : []));
}
