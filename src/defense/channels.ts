/**
 * Channels of conv layers as units a defense can scale, perturb or remove, on any
 * functional or Sequential model (BN or not, residual or not):
 *
 *  - `channelUnits`: every Conv2D output channel, tied to the BatchNormalization layer that
 *    directly follows it when there is one (then the BN's gamma/beta carry the channel);
 *  - `zeroUnitChannels`: remove channels in place (BN: gamma and beta set to 0, so the
 *    channel is exactly 0 after BN; plain conv: kernel slice and bias set to 0, exactly 0
 *    after any activation with f(0) = 0);
 *  - `forwardScaled`: run the network eagerly with a per-channel multiplier on the weight
 *    part and on the bias part of every unit's output (ANP's masks and noise), built from
 *    the model's own layers, so gradients reach the multipliers.
 *
 * Kept separate from graph.ts (the pruning defense's cut point) so the two can be
 * reconciled later with a general channel-masking module.
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { GoodnetError } from '../errors.js';

type Layer = tfl.layers.Layer;

export interface ChannelUnit {
  /** The conv layer whose output channels these are. */
  conv: string;
  /** The layer that carries the channel: the following BatchNormalization, or the conv itself. */
  layer: string;
  kind: 'bn' | 'conv';
  channels: number;
}

function consumers(net: tfl.LayersModel, layer: Layer): Layer[] {
  return net.layers.filter((l) => l.inboundNodes.some((n) => (n.inboundLayers as Layer[]).includes(layer)));
}

function config(layer: Layer): Record<string, unknown> {
  return layer.getConfig() as Record<string, unknown>;
}

/** Every Conv2D's output channels, with its BN when a BatchNormalization layer is its only consumer. */
export function channelUnits(net: tfl.LayersModel): ChannelUnit[] {
  const units: ChannelUnit[] = [];
  for (const l of net.layers) {
    if (l.getClassName() !== 'Conv2D') continue;
    const filters = config(l).filters as number;
    const next = consumers(net, l);
    const bn = next.length === 1 && next[0]!.getClassName() === 'BatchNormalization' ? next[0]! : undefined;
    if (bn) {
      const axis = config(bn).axis;
      const ax = Array.isArray(axis) ? axis[0] : axis;
      if (ax !== -1 && ax !== 3) throw new GoodnetError(`BatchNormalization '${bn.name}' normalises axis ${String(ax)}, not the channels`);
    }
    units.push(bn ? { conv: l.name, layer: bn.name, kind: 'bn', channels: filters } : { conv: l.name, layer: l.name, kind: 'conv', channels: filters });
  }
  return units;
}

/** The weights of a BatchNormalization layer by role (gamma/beta may be absent). */
export function bnWeights(layer: Layer): { gamma?: tf.Tensor; beta?: tf.Tensor; mean: tf.Tensor; variance: tf.Tensor; epsilon: number } {
  const c = config(layer);
  const w = layer.getWeights();
  let i = 0;
  const gamma = c.scale !== false ? w[i++] : undefined;
  const beta = c.center !== false ? w[i++] : undefined;
  return { gamma, beta, mean: w[i++]!, variance: w[i++]!, epsilon: (c.epsilon as number) ?? 1e-3 };
}

/**
 * Remove `channels` of `unit` in place (see the file comment). `weightOnly`: as ANP's mask
 * = 0 does (and the original's pruning, which zeroes only BN's weight): BN gamma only, or
 * the conv's kernel slice only; the channel then outputs its constant bias (beta), exactly
 * what the mask optimisation saw with that mask at 0.
 */
export function zeroUnitChannels(net: tfl.LayersModel, unit: ChannelUnit, channels: Iterable<number>, options: { weightOnly?: boolean } = {}): void {
  const list = [...channels];
  if (list.length === 0) return;
  const mask = new Float32Array(unit.channels).fill(1);
  for (const ch of list) {
    if (!(Number.isInteger(ch) && ch >= 0 && ch < unit.channels)) throw new GoodnetError(`channel ${ch} is not a channel of ${unit.layer}`);
    mask[ch] = 0;
  }
  const layer = net.getLayer(unit.layer);
  const m = tf.tensor1d(mask);
  const weights = layer.getWeights();
  let next: tf.Tensor[];
  if (unit.kind === 'bn') {
    const c = config(layer);
    if (c.scale === false) throw new GoodnetError(`BatchNormalization '${unit.layer}' has no gamma (scale=false); cannot remove its channels`);
    // gamma and beta (when present) are the first weights.
    const k = c.center === false || options.weightOnly ? 1 : 2;
    next = weights.map((w, i) => (i < k ? tf.mul(w, m) : w.clone()));
  } else {
    // kernel (.., C) and bias (C) both end in the channel axis
    next = weights.map((w, i) => (i === 0 || !options.weightOnly ? tf.mul(w, m) : w.clone()));
  }
  layer.setWeights(next);
  tf.dispose([m, ...next]);
}

const ACTIVATIONS: Record<string, (x: tf.Tensor) => tf.Tensor> = {
  linear: (x) => x,
  relu: (x) => tf.relu(x),
  relu6: (x) => tf.relu6(x),
  elu: (x) => tf.elu(x),
  selu: (x) => tf.selu(x),
  tanh: (x) => tf.tanh(x),
  sigmoid: (x) => tf.sigmoid(x),
  softmax: (x) => tf.softmax(x),
  swish: (x) => tf.mul(x, tf.sigmoid(x)),
};

/** Per-channel multipliers of one unit's weight part (w) and bias part (b). */
export interface ChannelScale {
  w: tf.Tensor1D;
  b?: tf.Tensor1D;
}

function scaledConv(layer: Layer, x: tf.Tensor4D, s: ChannelScale): tf.Tensor {
  const c = config(layer);
  if (c.dataFormat === 'channelsFirst') throw new GoodnetError(`conv layer '${layer.name}' is channels_first; not supported`);
  const act = ACTIVATIONS[(c.activation as string) ?? 'linear'];
  if (!act) throw new GoodnetError(`conv layer '${layer.name}' uses activation '${String(c.activation)}', which goodnet cannot rebuild`);
  const [kernel, bias] = layer.getWeights();
  const strides = c.strides as [number, number];
  const dil = c.dilationRate as number | [number, number];
  let z = tf.mul(tf.conv2d(x, kernel as tf.Tensor4D, strides, c.padding as 'same' | 'valid', 'NHWC', dil), s.w);
  if (bias && c.useBias !== false) z = tf.add(z, s.b ? tf.mul(bias, s.b) : bias);
  return act(z);
}

/**
 * BN with the mini-batch's own mean and variance (what PyTorch's model.train() does, and
 * the original ANP optimises its masks in train mode); the layer's moving statistics are
 * neither used nor updated. Without `s`, the plain layer in that mode.
 */
function batchStatsBn(layer: Layer, x: tf.Tensor, s?: ChannelScale): tf.Tensor {
  const axis = config(layer).axis;
  const ax = Array.isArray(axis) ? axis[0] : axis;
  if (ax !== -1 && ax !== x.rank - 1) throw new GoodnetError(`BatchNormalization '${layer.name}' normalises axis ${String(ax)}, not the channels`);
  const { gamma, beta, epsilon } = bnWeights(layer);
  const axes = x.shape.slice(0, -1).map((_, i) => i);
  const { mean, variance } = tf.moments(x, axes);
  const xhat = tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, epsilon)));
  const g = gamma ? (s ? tf.mul(gamma, s.w) : gamma) : s?.w;
  const y = g ? tf.mul(xhat, g) : xhat;
  if (!beta) return y;
  return tf.add(y, s?.b ? tf.mul(beta, s.b) : beta);
}

function scaledBn(layer: Layer, x: tf.Tensor, s: ChannelScale): tf.Tensor {
  const y = layer.apply(x) as tf.Tensor;
  const { beta } = bnWeights(layer);
  if (!beta) return tf.mul(y, s.w);
  // BN(x) = gamma * xhat + beta; scaled: s.w * gamma * xhat + s.b * beta.
  return tf.add(tf.mul(tf.sub(y, beta), s.w), s.b ? tf.mul(beta, s.b) : beta);
}

/**
 * The network's output on `x` with every unit in `scales` (by carrying layer name) scaled
 * per channel; other layers run as they are (inference mode; with `batchStats` every
 * BatchNormalization normalises with the batch's own statistics, as in PyTorch's train
 * mode, without touching its moving statistics). Call inside tf.tidy/grads.
 */
export function forwardScaled(net: tfl.LayersModel, x: tf.Tensor4D, scales: Map<string, ChannelScale>, options: { logits?: boolean; batchStats?: boolean } = {}): tf.Tensor {
  const outLayer = (net.outputs[0] as tfl.SymbolicTensor).sourceLayer as Layer;
  const values = new Map<number, tf.Tensor>();
  const inputs = net.inputs as tfl.SymbolicTensor[];
  values.set(inputs[0]!.id, x);
  for (const layer of net.layers) {
    if (layer.getClassName() === 'InputLayer') continue;
    const node = layer.inboundNodes.find((n) => (n.inputTensors as tfl.SymbolicTensor[]).every((t) => values.has(t.id)));
    if (!node) throw new GoodnetError(`layer '${layer.name}': its inputs are not computed before it; cannot run the model layer by layer`);
    const ins = (node.inputTensors as tfl.SymbolicTensor[]).map((t) => values.get(t.id)!);
    const s = scales.get(layer.name);
    let out: tf.Tensor;
    if (options.logits && layer === outLayer && outputIsSoftmax(net)) out = preSoftmax(layer, ins);
    else if (s && layer.getClassName() === 'Conv2D') out = scaledConv(layer, ins[0] as tf.Tensor4D, s);
    else if (options.batchStats && layer.getClassName() === 'BatchNormalization') out = batchStatsBn(layer, ins[0]!, s);
    else if (s && layer.getClassName() === 'BatchNormalization') out = scaledBn(layer, ins[0]!, s);
    else out = layer.apply(ins.length === 1 ? ins[0]! : ins) as tf.Tensor;
    values.set((node.outputTensors[0] as tfl.SymbolicTensor).id, out);
  }
  const y = values.get((net.outputs[0] as tfl.SymbolicTensor).id);
  if (!y) throw new GoodnetError('the model output was not reached running the model layer by layer');
  return y;
}

/** The output layer's value before its softmax (Activation('softmax'), Softmax, or Dense with softmax). */
function preSoftmax(layer: Layer, ins: tf.Tensor[]): tf.Tensor {
  const cls = layer.getClassName();
  if (cls === 'Activation' || cls === 'Softmax') return ins[0]!;
  if (cls === 'Dense') {
    const [kernel, bias] = layer.getWeights();
    const z = tf.matMul(ins[0] as tf.Tensor2D, kernel as tf.Tensor2D);
    return bias ? tf.add(z, bias) : z;
  }
  throw new GoodnetError(`output layer '${layer.name}' (${cls}) applies softmax in a way goodnet cannot undo; cannot compute logits`);
}

/** Logits of the model on x (the output before its final softmax; the output itself when there is none). */
export function forwardLogits(net: tfl.LayersModel, x: tf.Tensor4D, scales: Map<string, ChannelScale> = new Map(), options: { batchStats?: boolean } = {}): tf.Tensor {
  return forwardScaled(net, x, scales, { logits: true, ...options });
}

/** Mean cross-entropy from logits against integer labels. */
export function crossEntropyLogits(logits: tf.Tensor, labels: tf.Tensor1D, numClasses: number): tf.Scalar {
  return tf.neg(tf.mean(tf.sum(tf.mul(tf.oneHot(labels, numClasses), tf.logSoftmax(logits)), -1))) as tf.Scalar;
}

/** True when the model's last layer ends in softmax (its output is probabilities). */
export function outputIsSoftmax(net: tfl.LayersModel): boolean {
  const last = (net.outputs[0] as tfl.SymbolicTensor).sourceLayer as Layer;
  const c = config(last);
  return c.activation === 'softmax' || last.getClassName() === 'Softmax';
}

/** Mean cross-entropy of model outputs `y` (probabilities or logits) against integer labels. */
export function crossEntropy(y: tf.Tensor, labels: tf.Tensor1D, numClasses: number, probabilities: boolean): tf.Scalar {
  const oneHot = tf.oneHot(labels, numClasses);
  const logp = probabilities ? tf.log(tf.clipByValue(y, 1e-7, 1)) : tf.logSoftmax(y);
  return tf.neg(tf.mean(tf.sum(tf.mul(oneHot, logp), -1))) as tf.Scalar;
}
