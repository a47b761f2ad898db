/**
 * A training step of a tfjs-layers classifier as ONE plain ONNX inference graph: the
 * forward pass in training mode, softmax cross-entropy, and the backward pass written out
 * in standard operators, so onnxruntime-node (which has no training API) computes the loss
 * and every weight's gradient in one session run.
 *
 * Graph inputs: `x` (N,H,W,C float32, already scaled), `y` (N,K one-hot), and one input per
 * weight the forward pass reads (`w0`, `w1`, ... in the Keras layout: conv kernels HWIO,
 * dense kernels [in, out]). Outputs: `loss` (mean over the batch, as tfjs-layers'
 * categoricalCrossentropy), `pred` (argmax per image, int64), `g<i>` the gradient of `loss`
 * for trainable weight i (same layout as the weight) and, per BatchNormalization layer,
 * `<layer>.batch_mean` / `.batch_var` (the biased batch statistics tfjs-layers folds into the
 * moving averages). With option `adam` the trainable weights come in as one flat vector with
 * Adam's moments and the graph returns them updated instead of the gradients. N is fixed per
 * graph (every shape is static).
 *
 * Inside, activations are NCHW. Backward ops:
 *  - Conv2D: input gradient = ConvTranspose with the same (OIHW) weights, strides and pads
 *    (output_padding restores the input size when the stride does not divide it; stride 1: a
 *    Conv with the flipped kernel); filter gradient = im2col's product with the output
 *    gradient (option filterGradient), the kernel taps as windows of the input.
 *  - ReLU: dy * Cast(y > 0) (as tfjs: no gradient at 0).
 *  - MaxPool: the gradient goes to the FIRST maximum of a window (tfjs's cpu rule): found by
 *    plain pools anchored at the window's corner where onnxruntime runs those in its blocked
 *    layout (option maxPoolBackward), else MaxPool's Indices output; MaxUnpool (non-overlapping
 *    windows) or ScatterElements put it there. tfjs-wasm's MaxPoolGrad takes the LAST by
 *    default (setMaxPoolGradTies); the two differ only where tied maxima come from different
 *    inputs (ties from identical receptive fields, e.g. flat image regions, pass identical
 *    weight gradients). Option maxPoolBackward 'argmax' follows tfjs's rule exactly.
 *  - Dense: Gemm; BatchNormalization: onnxruntime's BatchNormalization in training mode (output,
 *    batch mean and biased variance in one op) and the standard backward in 4 full-size passes;
 *    Add, ZeroPadding2D (Slice), Flatten (NHWC order, as Keras), GlobalAveragePool.
 *  - Softmax + cross-entropy: d logits = (softmax - y) / N. tfjs clips probabilities to
 *    [1e-7, 1 - 1e-7] and passes no gradient through a clipped one; the two differ only for
 *    saturated outputs (the loss value is computed with the same clip).
 * Anything else is refused by `ortTrainObstacle` with the layer named.
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { GoodnetError } from '../errors.js';
import { getMaxPoolGradTies, type MaxPoolTies } from '../engine/kernels/max_pool_grad.js';
import { AT, encodeModel, floatTensor, int64Tensor, type AttributeProto, type ModelProto, type NodeProto, type TensorProto } from '../io/onnx_proto.js';

const OPSET = 17;
const EPS = 1e-7; // tfjs-layers' epsilon()
/** Slices of at least this many values (C x N x Ho x Wo) get a Gemm each (see the Conv2D case). */
const FILTER_GEMM_SPLIT = 1 << 16; // 2^18 before: 2^16 measured 9-10% less per ResNet step (its 14x14 16-channel convs), 1% per VGG step (train_ort_ab.js)

export interface TrainGraph {
  bytes: Uint8Array;
  batch: number;
  /** For each graph input `w<i>`: its index in net.weights. */
  weightInputs: { name: string; weight: number }[];
  /** For each trainable weight (net.trainableWeights order): its gradient output. */
  gradOutputs: string[];
  /** With options.adam: the length of the flat trainable-weight vector (else 0). */
  flatSize: number;
  /** Per BatchNormalization layer: outputs of the batch statistics and the moving weights they update. */
  bnStats: { mean: string; variance: string; movingMean: number; movingVariance: number; momentum: number }[];
  /**
   * Per Dropout layer (rate > 0): a graph input of the batch's keep mask, [N, ...dims] (the
   * activation's NCHW shape per image), 0 where dropped and 1 / (1 - rate) where kept; the
   * trainer draws it (OrtTrainer: seeded, per step).
   */
  dropouts: { name: string; rate: number; dims: number[] }[];
}

export interface TrainGraphOptions {
  /**
   * How a convolution's filter gradient is computed: 'flat' (stride 1: every kernel tap one
   * contiguous window of the per-image flattened input, a batched MatMul per kernel column;
   * measured 6% less per lab ResNet step than 'gemm' at batch 32, 5% per VGG step; 13% MORE on
   * DeepID's 'valid' convolutions, whose rows are wider than their outputs), 'gemm' (the kh*kw
   * strided slices of the padded input stacked, one Gemm with the output gradient) or 'conv'
   * (a Conv over the batch axis, dilation = stride). Default: 'flat' for stride-1 convolutions
   * whose output is as wide as their input ('same' padding), 'gemm' for the others. Same
   * values up to float summation order.
   */
  filterGradient?: 'gemm' | 'conv' | 'flat';
  /** 'gemm': slices of at least this many values get one Gemm each (default 2^16); smaller ones are stacked for one Gemm. */
  filterGemmSplit?: number;
  /**
   * MaxPool backward: 'prefix' (windows of up to 9 pixels, valid or padded at the end only,
   * others use indices: plain MaxPool forward, the first maximum of each window found by plain
   * pools anchored at the window's corner, then MaxUnpool or ScatterElements: the gradients of
   * 'indices', bit for bit), 'indices' (MaxPool's Indices output + MaxUnpool or ScatterElements;
   * the first maximum of a window gets the gradient), 'auto' (default: 'prefix' where the pool's
   * channels are a multiple of `nchwcBlock`, so that onnxruntime runs the anchored pools in its
   * blocked layout, else 'indices'; bench/train_ort_ab.ts) or 'argmax' (non-overlapping square
   * windows only, others use indices: ArgMax over the strided slices + DepthToSpace, with the
   * tie rule `maxPoolTies`; slower than both).
   */
  maxPoolBackward?: 'auto' | 'prefix' | 'indices' | 'argmax';
  /** Non-overlapping pools' Indices backward by MaxUnpool (default true) rather than ScatterElements. */
  poolUnpool?: boolean;
  /** Apply a ReLU's derivative on the output gradient of the MaxPool that alone reads it (default true; exact). */
  fuseReluPool?: boolean;
  /**
   * Channel block of onnxruntime's NCHWc convolutions on this CPU (16 with AVX-512, 8 with
   * AVX2; see ort_train.ts nchwcBlockSize), or 0 (default) for plain Conv/ConvTranspose.
   * Convolutions whose input and output channels are multiples of it run forward, and for
   * stride 1 their input gradient, as NCHWc convolutions.
   */
  nchwcBlock?: number;
  /**
   * Adam in the graph (OrtTrainer.stepAdam): the trainable weights come in as one flat input
   * `wflat` (net.trainableWeights order, each flattened), Adam's moments as `mflat` / `vflat`
   * and the bias corrections 1 - beta1^t, 1 - beta2^t as `adam_a1` / `adam_a2` ([1]); the
   * graph outputs the updated `w_next`, `m_next`, `v_next` (tf.train.adam's float32 arithmetic,
   * operation by operation as OrtWeights.adam) instead of the gradients.
   */
  adam?: { learningRate: number; beta1: number; beta2: number; epsilon: number };
  /**
   * BatchNormalization's forward as onnxruntime's BatchNormalization op in training mode (the
   * output and the batch statistics in one op; default true) or as ReduceMean/Sub/Mul/Add (false).
   */
  batchNormOp?: boolean;
  /**
   * BatchNormalization's backward with batchNormOp: 'fewer' (default: sum(dy * xc) as
   * sum(dy * x) - mean * sum(dy), and the two per-channel affine terms of dx as inference
   * BatchNormalization ops, 4 full-size passes instead of 6) or 'plain' (xc materialised).
   */
  batchNormBackward?: 'fewer' | 'plain';
  /**
   * ReLU backward: 'cast' (default, dy * Cast(y > 0): 0.4 ms per VGG step against 1.0 ms for
   * Where in onnxruntime's profile) or 'where' (Where(y > 0, dy, 0)); the same values.
   */
  reluBackward?: 'cast' | 'where';
  /** A stride-1 convolution's input gradient: 'convtranspose' (default) or 'conv' (flipped, transposed kernel). */
  inputGradient?: 'convtranspose' | 'conv';
  /**
   * Which of tied maxima of a non-overlapping pool window gets the gradient (default: the rule
   * tfjs's MaxPoolGrad uses now: on wasm getMaxPoolGradTies(), 'last' unless changed; else 'first'). The
   * Indices path (overlapping or same-padded pools) always takes the first.
   */
  maxPoolTies?: MaxPoolTies;
  /**
   * What the summed cross-entropy is divided by (default the graph's batch N): a data-parallel
   * shard of a batch of `total` images passes `total`, so the shards' gradients and losses add
   * up to the whole batch's (models/ort_train.ts).
   */
  lossDenominator?: number;
}

interface Sym {
  name: string;
  /** NCHW dims for rank 4, [N, K] for rank 2; all static. */
  shape: number[];
  /** Whether a gradient must flow back into it. */
  grad: boolean;
}

type Backward = (dy: string) => (string | undefined)[];

const fAttr = (name: string, f: number): AttributeProto => ({ name, type: AT.FLOAT, f });
const iAttr = (name: string, i: number): AttributeProto => ({ name, type: AT.INT, i });
const isAttr = (name: string, ints: number[]): AttributeProto => ({ name, type: AT.INTS, ints });
const sAttr = (name: string, s: string): AttributeProto => ({ name, type: AT.STRING, s: Buffer.from(s) });

function asPair(v: unknown): number[] {
  if (typeof v === 'number') return [v, v];
  if (Array.isArray(v) && v.length === 2) return v.map(Number);
  if (Array.isArray(v) && v.length === 1) return [Number(v[0]), Number(v[0])];
  return [1, 1];
}

const SUPPORTED = new Set(['InputLayer', 'Conv2D', 'Dense', 'MaxPooling2D', 'Flatten', 'BatchNormalization', 'Activation', 'ReLU',
  'Add', 'ZeroPadding2D', 'GlobalAveragePooling2D', 'DepthwiseConv2D', 'Rescaling', 'OnnxPad2D', 'OnnxClip', 'AveragePooling2D', 'Concatenate', 'Dropout',
  'LeakyReLU', 'ELU', 'PReLU', 'OnnxHardSigmoid', 'OnnxHardSwish', 'OnnxConstArith', 'OnnxSub', 'Multiply']);
/** Activations (the `activation` of Conv2D, Dense, DepthwiseConv2D and Activation layers) the graph computes with tfjs's gradients. */
const ACTIVATIONS = new Set(['linear', 'relu', 'relu6', 'sigmoid', 'tanh', 'swish', 'hardSigmoid', 'hard_sigmoid', 'elu']);

/** Why `net` cannot be trained by the ort engine, or undefined when it can. */
export function ortTrainObstacle(net: tfl.LayersModel): string | undefined {
  if (net.inputs.length !== 1 || net.outputs.length !== 1) return 'the model has more than one input or output';
  const inShape = net.inputs[0]!.shape;
  if (inShape.length !== 4 || inShape.slice(1).some((d) => d === null)) return `the model input (${inShape.join(',')}) is not an (N,H,W,C) image batch`;
  for (const l of net.layers) {
    const cls = l.getClassName();
    if (!SUPPORTED.has(cls)) return `layer '${l.name}' (${cls}) is not supported by the ort training engine`;
    const cfg = l.getConfig() as Record<string, unknown>;
    if (cfg.dataFormat !== undefined && cfg.dataFormat !== 'channelsLast') return `layer '${l.name}' is channels_first`;
    for (const k of ['kernelRegularizer', 'biasRegularizer', 'activityRegularizer', 'betaRegularizer', 'gammaRegularizer', 'kernelConstraint', 'biasConstraint', 'betaConstraint', 'gammaConstraint']) {
      if (cfg[k] != null) return `layer '${l.name}' has a ${k}`;
    }
    if (l.inboundNodes.length > 1) return `layer '${l.name}' is applied more than once (shared weights)`;
    const act = cfg.activation;
    const isOut = l === net.outputs[0]!.sourceLayer;
    if (act !== undefined && !ACTIVATIONS.has(String(act)) && !(act === 'softmax' && isOut)) {
      return `layer '${l.name}' has activation '${String(act)}' (the ort training engine takes ${[...ACTIVATIONS].filter((a) => a !== 'hard_sigmoid').join(', ')}, and softmax on the output)`;
    }
    if (cls === 'ELU' && Number(cfg.alpha ?? 1) !== 1) return `layer '${l.name}' is an ELU with alpha ${String(cfg.alpha)}`;
    if (cls === 'Multiply') {
      const shapes = l.inboundNodes[0]!.inputTensors.map((t) => JSON.stringify((t as tfl.SymbolicTensor).shape));
      if (shapes.some((sh) => sh !== shapes[0])) return `layer '${l.name}' multiplies tensors of different shapes (broadcasting)`;
    }
    if (cls === 'Conv2D') {
      if (asPair(cfg.dilationRate).some((d) => d !== 1) && asPair(cfg.strides).some((v) => v !== 1)) return `layer '${l.name}' is a dilated convolution with a stride`;
      if (cfg.padding !== 'valid' && cfg.padding !== 'same') return `layer '${l.name}' has padding '${String(cfg.padding)}'`;
    }
    if (cls === 'DepthwiseConv2D') {
      if (asPair(cfg.dilationRate).some((d) => d !== 1) && asPair(cfg.strides).some((v) => v !== 1)) return `layer '${l.name}' is a dilated convolution with a stride`;
      // tfjs-layers sizes a dilated 'valid' depthwise output as if it were not dilated.
      if (asPair(cfg.dilationRate).some((d) => d !== 1) && cfg.padding !== 'same') return `layer '${l.name}' is a dilated 'valid' DepthwiseConv2D (tfjs-layers mis-sizes its output)`;
      if (cfg.padding !== 'valid' && cfg.padding !== 'same') return `layer '${l.name}' has padding '${String(cfg.padding)}'`;
    }
    if (cls === 'Dropout' && cfg.noiseShape != null) return `layer '${l.name}' is a Dropout with a noise shape`;
    if (cls === 'AveragePooling2D' && cfg.padding !== 'valid' && cfg.padding !== 'same') return `layer '${l.name}' has padding '${String(cfg.padding)}'`;
    if (cls === 'MaxPooling2D' && cfg.padding !== 'valid' && cfg.padding !== 'same') return `layer '${l.name}' has padding '${String(cfg.padding)}'`;
    if (cls === 'ReLU' && (cfg.negativeSlope || cfg.threshold)) return `layer '${l.name}' is a ReLU with a slope or threshold`;
    if (cls === 'Rescaling' && (typeof cfg.scale !== 'number' || typeof (cfg.offset ?? 0) !== 'number')) return `layer '${l.name}' rescales per channel`;
    if (cls === 'BatchNormalization') {
      const axis = Array.isArray(cfg.axis) ? (cfg.axis as number[]) : [cfg.axis as number];
      const rank = (l.inboundNodes[0]!.inputTensors[0] as tfl.SymbolicTensor).shape.length;
      if (axis.length !== 1 || !(axis[0] === -1 || axis[0] === rank - 1)) return `layer '${l.name}' normalizes axis ${String(cfg.axis)}, not the channel axis`;
    }
  }
  const outLayer = net.outputs[0]!.sourceLayer;
  const outAct = (outLayer.getConfig() as Record<string, unknown>).activation;
  if (outAct !== 'softmax') return `the output layer '${outLayer.name}' is not a softmax (the ort training engine minimises softmax cross-entropy)`;
  if (net.outputs[0]!.shape.length !== 2) return 'the model output is not a class vector (N,K)';
  return undefined;
}

class Builder {
  readonly nodes: NodeProto[] = [];
  readonly inits: TensorProto[] = [];
  private n = 0;
  private readonly consts = new Map<string, string>();
  /** Whether a com.microsoft.nchwc op was used (its opset must be imported). */
  usedNchwc = false;
  /** Prefix of node names: the layer being written and the pass ('conv1/', 'conv1:grad/'), for profiles. */
  scope = '';

  /** One output of an op of onnxruntime's com.microsoft.nchwc domain (CPU, blocked channel layout). */
  nchwc(op: string, inputs: string[], attrs: AttributeProto[] = []): string {
    this.usedNchwc = true;
    const out = `nchwc_${op}_${this.n}`;
    this.nodes.push({ opType: op, domain: 'com.microsoft.nchwc', name: `${this.scope}nchwc_${op}_${this.n++}`, input: inputs, output: [out], attribute: attrs });
    return out;
  }

  /**
   * A Conv in onnxruntime's NCHWc form (MLAS's blocked direct kernels, what its own graph
   * optimizer uses for constant weights): the OIHW filter reordered in the graph to
   * OIHWBiBo (block `block`; O and I multiples of it), the input reordered in, the output out.
   */
  nchwcConv(x: string, woihw: string, bias: string | undefined, O: number, I: number, kh: number, kw: number, block: number, attrs: AttributeProto[]): string {
    const w6 = this.reshape(woihw, [O / block, block, I / block, block, kh, kw]);
    const wr = this.reshape(this.transpose(w6, [0, 2, 4, 5, 3, 1]), [O, I, kh, kw]);
    const xr = this.nchwc('ReorderInput', [x]);
    const yr = this.nchwc('Conv', bias ? [xr, wr, bias] : [xr, wr], attrs);
    return this.nchwc('ReorderOutput', [yr], [iAttr('channels', O)]);
  }

  node(op: string, inputs: string[], attrs: AttributeProto[] = [], outputs = 1, hint = op): string[] {
    const outs = Array.from({ length: outputs }, (_, i) => `${hint}_${this.n}${outputs > 1 ? `_${i}` : ''}`);
    this.nodes.push({ opType: op, name: `${this.scope}${hint}_${this.n++}`, input: inputs, output: outs, attribute: attrs });
    return outs;
  }

  one(op: string, inputs: string[], attrs: AttributeProto[] = [], hint = op): string {
    return this.node(op, inputs, attrs, 1, hint)[0]!;
  }

  /** A named graph output computed by an Identity node. */
  output(name: string, from: string): void {
    this.nodes.push({ opType: 'Identity', name: `out_${name}`, input: [from], output: [name] });
  }

  ints(values: number[]): string {
    return this.constant(`i:${values.join(',')}`, (n) => int64Tensor(n, [values.length], values));
  }

  /** An int64 constant of any shape. */
  constInts(dims: number[], values: number[]): string {
    return this.constant(`t:${dims.join('x')}:${values.join(',')}`, (n) => int64Tensor(n, dims, values));
  }

  /** A float constant of any shape. */
  constFloats(dims: number[], values: Float32Array): string {
    return this.constant(`ft:${dims.join('x')}:${values.join(',')}`, (n) => floatTensor(n, dims, values));
  }

  scalar(v: number): string {
    return this.constant(`f:${v}`, (n) => floatTensor(n, [], Float32Array.of(v)));
  }

  /** The initializer named for `key`, made once by `make` (equal constants share one). */
  private constant(key: string, make: (name: string) => TensorProto): string {
    let n = this.consts.get(key);
    if (!n) {
      n = `const_${this.consts.size}`;
      this.inits.push(make(n));
      this.consts.set(key, n);
    }
    return n;
  }

  transpose(x: string, perm: number[]): string { return this.one('Transpose', [x], [isAttr('perm', perm)]); }
  reshape(x: string, shape: number[]): string { return this.one('Reshape', [x, this.ints(shape)]); }
  reduceSum(x: string, axes: number[], keep: boolean): string { return this.one('ReduceSum', [x, this.ints(axes)], [iAttr('keepdims', keep ? 1 : 0)]); }
  reduceMean(x: string, axes: number[], keep: boolean): string { return this.one('ReduceMean', [x], [isAttr('axes', axes), iAttr('keepdims', keep ? 1 : 0)]); }
  slice(x: string, starts: number[], ends: number[], axes: number[]): string {
    return this.one('Slice', [x, this.ints(starts), this.ints(ends), this.ints(axes)]);
  }
  /** x (NCHW) zero-padded by pads [t, l, b, r] (x itself when they are all 0). */
  padHW(x: string, pads: number[]): string {
    return pads.some((v) => v !== 0) ? this.one('Pad', [x, this.ints([0, 0, pads[0]!, pads[1]!, 0, 0, pads[2]!, pads[3]!])], [sAttr('mode', 'constant')]) : x;
  }
  /** A kernel (.., .., kh, kw) reversed along both spatial axes. */
  flipHW(w: string): string {
    return this.one('Slice', [w, this.ints([-1, -1]), this.ints([-(2 ** 53), -(2 ** 53)]), this.ints([2, 3]), this.ints([-1, -1])]);
  }
}

/**
 * The common row width of the 'flat' filter gradient's stride phases (their widest row, at
 * least the output's width), or undefined where a phase would be empty.
 */
function flatGrid(H: number, W: number, s: number[], Wo: number): number | undefined {
  if (H < s[0]! || W < s[1]!) return undefined;
  return Math.max(Wo, Math.ceil(W / s[1]!));
}

/**
 * Windows of size `k` (a dilated kernel's effective size), strides `s` over an H x W input with
 * Keras's `padding`: the pads [t, l, b, r] (TensorFlow's for 'same'), the output size, and the
 * output_padding a ConvTranspose back to H x W needs (the rows / columns no window reaches).
 */
function windowsOver(H: number, W: number, k: number[], s: number[], padding: unknown): { pads: number[]; Ho: number; Wo: number; outputPadding: number[] } {
  const pads = padding === 'same' ? samePads([H, W], k, s) : [0, 0, 0, 0];
  const spanH = H + pads[0]! + pads[2]! - k[0]!, spanW = W + pads[1]! + pads[3]! - k[1]!;
  return { pads, Ho: Math.floor(spanH / s[0]!) + 1, Wo: Math.floor(spanW / s[1]!) + 1, outputPadding: [spanH % s[0]!, spanW % s[1]!] };
}

/** Same-padding pads [t, l, b, r] of TensorFlow for a static input size. */
function samePads(size: number[], k: number[], s: number[]): number[] {
  const begin: number[] = [];
  const end: number[] = [];
  size.forEach((n, i) => {
    const o = Math.ceil(n / s[i]!);
    const total = Math.max((o - 1) * s[i]! + k[i]! - n, 0);
    begin.push(Math.floor(total / 2));
    end.push(total - Math.floor(total / 2));
  });
  return [...begin, ...end];
}

/**
 * The training graph of `net` for batches of exactly `batch` images. Throws GoodnetError
 * (naming the layer) when the net has a layer the engine does not support.
 */
export function buildTrainGraph(net: tfl.LayersModel, batch: number, options: TrainGraphOptions = {}): TrainGraph {
  const obstacle = ortTrainObstacle(net);
  if (obstacle) throw new GoodnetError(`cannot train with --train-engine ort: ${obstacle}; use --train-engine tfjs`);
  if (!Number.isInteger(batch) || batch < 1) throw new GoodnetError(`batch must be a positive integer, got ${batch}`);
  const b = new Builder();
  const N = batch;
  const ties = options.maxPoolTies ?? (tf.getBackend() === 'wasm' ? getMaxPoolGradTies() : 'first');
  const allWeights = net.weights;
  const trainable = net.trainableWeights;
  const weightInputs: { name: string; weight: number }[] = [];
  const inputOf = new Map<unknown, string>();
  /** Graph input of a layer weight (by object identity in net.weights). */
  const flatOffset = new Map<unknown, number>();
  let flatSize = 0;
  if (options.adam) {
    for (const v of trainable) {
      flatOffset.set(v, flatSize);
      flatSize += (v.shape as number[]).reduce((p, q) => p * q, 1);
    }
  }
  const weightInput = (v: tfl.LayerVariable): string => {
    let name = inputOf.get(v);
    const off = flatOffset.get(v);
    if (!name && off !== undefined) {
      const shape = v.shape as number[];
      name = b.reshape(b.slice('wflat', [off], [off + shape.reduce((p, q) => p * q, 1)], [0]), shape);
      inputOf.set(v, name);
    }
    if (!name) {
      const idx = allWeights.indexOf(v);
      if (idx < 0) throw new GoodnetError(`weight '${v.name}' is not one of the model's weights`);
      name = `w${weightInputs.length}`;
      weightInputs.push({ name, weight: idx });
      inputOf.set(v, name);
    }
    return name;
  };
  const gradOf = new Map<unknown, string>();
  const trainableSet = new Set<unknown>(trainable);
  const isTrainable = (v: tfl.LayerVariable) => trainableSet.has(v);
  const addGrad = (v: tfl.LayerVariable, g: string | undefined) => { if (g !== undefined && isTrainable(v)) gradOf.set(v, g); };
  const bnStats: TrainGraph['bnStats'] = [];
  const dropouts: TrainGraph['dropouts'] = [];

  const inT = net.inputs[0]!;
  const [H0, W0, C0] = inT.shape.slice(1) as [number, number, number];
  const K = net.outputs[0]!.shape[1] as number;
  const syms = new Map<number, Sym>();
  syms.set(inT.id, { name: b.transpose('x', [0, 3, 1, 2]), shape: [N, C0, H0, W0], grad: false });
  const tape: { inputs: number[]; output: number; backward: Backward; scope: string }[] = [];
  const outLayer = net.outputs[0]!.sourceLayer;
  let logits: string | undefined;

  /** ReLU forward, with its backward composed onto `next`. */
  /**
   * ReLU outputs whose only reader is a MaxPool: the pool applies the ReLU's derivative to its
   * (smaller) output gradient instead, exactly: the positions a window's gradient goes to hold
   * its maximum, so y > 0 there iff the pooled value is > 0; every other position gets zero.
   */
  const reluFusedIntoPool = new Map<string, { fused: boolean }>();
  /** A boolean tensor as float 0/1. */
  const mask = (cond: string): string => b.one('Cast', [cond], [iAttr('to', 1)]);
  /** 1 where lo <= u <= hi (clipByValue's gradient passes at both bounds), else 0. */
  const within = (u: string, lo: number, hi: number): string => mask(b.one('And', [b.one('GreaterOrEqual', [u, b.scalar(lo)]), b.one('LessOrEqual', [u, b.scalar(hi)])]));
  /** dy where the ReLU output y is > 0, else 0 (option reluBackward). */
  const reluGrad = (dy: string, y: string): string =>
    options.reluBackward === 'where' ? b.one('Where', [b.one('Greater', [y, b.scalar(0)]), dy, b.scalar(0)])
      : b.one('Mul', [dy, mask(b.one('Greater', [y, b.scalar(0)]))]);
  const relu = (x: string): { y: string; back: (dy: string) => string } => {
    const y = b.one('Relu', [x]);
    const flag = { fused: false };
    reluFusedIntoPool.set(y, flag);
    return { y, back: (dy) => (flag.fused ? dy : reluGrad(dy, y)) };
  };
  const readers = new Map<number, number>();
  for (const l of net.layers) for (const t of l.inboundNodes[0]?.inputTensors ?? []) readers.set(t.id, (readers.get(t.id) ?? 0) + 1);
  /** Each activation's backward as tfjs differentiates its forward (tfjs-layers' activations.js and tfjs-core's gradients). */
  const activation = (act: unknown, z: string, isOut: boolean): { y: string; back: (dy: string) => string } => {
    switch (act) {
      case 'relu': return relu(z);
      case 'relu6': { // minimum(6, relu(z)): dy where z > 0 and relu(z) < 6 (minimum's gradient goes to 6 on a tie)
        const y = b.one('Clip', [z, b.scalar(0), b.scalar(6)]);
        return { y, back: (dy) => b.one('Mul', [dy, mask(b.one('And', [b.one('Greater', [z, b.scalar(0)]), b.one('Less', [z, b.scalar(6)])]))]) };
      }
      case 'sigmoid': { // dy * (y * (1 - y))
        const y = b.one('Sigmoid', [z]);
        return { y, back: (dy) => b.one('Mul', [dy, b.one('Mul', [y, b.one('Sub', [b.scalar(1), y])])]) };
      }
      case 'tanh': { // (1 - y^2) * dy
        const y = b.one('Tanh', [z]);
        return { y, back: (dy) => b.one('Mul', [b.one('Sub', [b.scalar(1), b.one('Mul', [y, y])]), dy]) };
      }
      case 'swish': { // sigmoid(z) * z: dy * s + (dy * z) * (s * (1 - s))
        const sg = b.one('Sigmoid', [z]);
        const y = b.one('Mul', [sg, z]);
        return { y, back: (dy) => b.one('Add', [b.one('Mul', [b.one('Mul', [dy, z]), b.one('Mul', [sg, b.one('Sub', [b.scalar(1), sg])])]), b.one('Mul', [dy, sg])]) };
      }
      case 'hardSigmoid': case 'hard_sigmoid': return hardSigmoid(z, 0.2, 0.5); // tfjs-layers' K.hardSigmoid
      case 'elu': return elu(z);
      case 'softmax': if (isOut) { logits = z; return { y: z, back: (dy) => dy }; } break;
    }
    return { y: z, back: (dy) => dy };
  };
  /** clipByValue(z * alpha + beta, 0, 1); backward (dy where 0 <= u <= 1) * alpha. */
  const hardSigmoid = (z: string, alpha: number, beta: number): { y: string; back: (dy: string) => string } => {
    const u = b.one('Add', [b.one('Mul', [z, b.scalar(alpha)]), b.scalar(beta)]);
    return { y: b.one('Clip', [u, b.scalar(0), b.scalar(1)]), back: (dy) => b.one('Mul', [b.one('Mul', [dy, within(u, 0, 1)]), b.scalar(alpha)]) };
  };
  /** ELU (alpha 1), as tfjs's EluGrad: dy where y >= 0, else dy * (y + 1). */
  const elu = (z: string): { y: string; back: (dy: string) => string } => {
    const y = b.one('Elu', [z]);
    return { y, back: (dy) => b.one('Where', [b.one('GreaterOrEqual', [y, b.scalar(0)]), dy, b.one('Mul', [dy, b.one('Add', [y, b.scalar(1)])])]) };
  };

  for (const layer of net.layers) {
    b.scope = `${layer.name}/`;
    const cls = layer.getClassName();
    if (cls === 'InputLayer') continue;
    const node = layer.inboundNodes[0]!;
    const inTs = node.inputTensors as tfl.SymbolicTensor[];
    const xs = inTs.map((t) => syms.get(t.id));
    if (xs.some((s) => !s)) throw new GoodnetError(`layer '${layer.name}' is not connected to the model input`);
    const x = xs[0]!;
    const outT = node.outputTensors[0] as tfl.SymbolicTensor;
    const cfg = layer.getConfig() as Record<string, unknown>;
    const isOut = layer === outLayer;
    const lw = layer.weights;
    const hasTrainable = lw.some((v) => isTrainable(v));
    const needGrad = xs.some((s) => s!.grad) || hasTrainable;
    let y: string;
    let shape: number[];
    let backward: Backward;
    switch (cls) {
      case 'ZeroPadding2D': {
        const p = cfg.padding as number | number[] | number[][];
        const [[t, bo], [l, r]] = typeof p === 'number' ? [[p, p], [p, p]] : Array.isArray(p[0]) ? (p as number[][]) : [[p[0] as number, p[0] as number], [p[1] as number, p[1] as number]];
        const [, C, Hh, Ww] = x.shape as [number, number, number, number];
        y = b.one('Pad', [x.name, b.ints([0, 0, t!, l!, 0, 0, bo!, r!])], [sAttr('mode', 'constant')]);
        shape = [N, C, Hh + t! + bo!, Ww + l! + r!];
        backward = (dy) => [b.slice(dy, [t!, l!], [t! + Hh, l! + Ww], [2, 3])];
        break;
      }
      case 'Conv2D': {
        const kernel = lw[0]!;
        const [kh, kw, I, O] = kernel.shape as [number, number, number, number];
        const s = asPair(cfg.strides);
        const [, , Hh, Ww] = x.shape as [number, number, number, number];
        // Dilated convolutions (stride 1: ortTrainObstacle) take the kernel spread over ek; tfjs has
        // no gradient for them. Their filter gradient is the strided-slices one, the taps at i*d.
        const dil = asPair(cfg.dilationRate);
        const dilated = dil.some((v) => v !== 1);
        const ek = [(kh - 1) * dil[0]! + 1, (kw - 1) * dil[1]! + 1];
        const { pads, Ho, Wo, outputPadding } = windowsOver(Hh, Ww, ek, s, cfg.padding);
        const Wk = weightInput(kernel);
        const Woihw = b.transpose(Wk, [3, 2, 0, 1]);
        const useBias = cfg.useBias !== false && lw.length > 1;
        const ins = [x.name, Woihw];
        if (useBias) ins.push(weightInput(lw[1]!));
        const attrs = [isAttr('kernel_shape', [kh, kw]), isAttr('strides', s), isAttr('pads', pads), ...(dilated ? [isAttr('dilations', dil)] : [])];
        const block = options.nchwcBlock ?? 0;
        const blocked = block > 0 && I % block === 0 && O % block === 0 && !dilated;
        const z = blocked ? b.nchwcConv(x.name, Woihw, useBias ? ins[2] : undefined, O, I, kh, kw, block, attrs) : b.one('Conv', ins, attrs);
        const a = activation(cfg.activation, z, isOut);
        y = a.y;
        shape = [N, O, Ho, Wo];
        /** The 'flat' filter gradient's row width (see flatGrid). */
        const grid = flatGrid(Hh, Ww, s, Wo);
        backward = (dy) => {
          const dz = a.back(dy);
          if (useBias) addGrad(lw[1]!, b.reduceSum(dz, [0, 2, 3], false));
          if (isTrainable(kernel) && options.filterGradient === 'conv' && !dilated) {
            // Filter gradient: correlate the input with the output gradient over the batch axis.
            const xT = b.transpose(x.name, [1, 0, 2, 3]);
            const dzT = b.transpose(dz, [1, 0, 2, 3]);
            let g = b.one('Conv', [xT, dzT], [isAttr('kernel_shape', [Ho, Wo]), isAttr('dilations', s), isAttr('strides', [1, 1]), isAttr('pads', pads)]);
            const gh = Hh + pads[0]! + pads[2]! - (Ho - 1) * s[0]!;
            const gw = Ww + pads[1]! + pads[3]! - (Wo - 1) * s[1]!;
            if (gh !== kh || gw !== kw) g = b.slice(g, [0, 0], [kh, kw], [2, 3]);
            addGrad(kernel, b.transpose(g, [2, 3, 0, 1])); // (C, Cout, kh, kw) -> HWIO
          } else if (isTrainable(kernel) && !dilated && grid !== undefined && (options.filterGradient === 'flat' || (options.filterGradient === undefined && grid === Wo))) {
            // The input in stride phases (x[a::sh, b::sw]; x itself at stride 1), each phase's
            // rows widened to a common width G (>= Wo) and flattened per image and channel with
            // zero margins: the input under output (h, w) for kernel tap (i, j) is then phase
            // (a, b) = ((i - pt) mod sh, (j - pl) mod sw) at (h + di)*G + w + dj, di and dj the
            // floors of (i - pt)/sh and (j - pl)/sw: every tap is ONE contiguous window of a flat
            // phase (no 2-D strided copies). dz is laid on the same width-G grid (columns >= Wo
            // zero) and zeroed, per kernel column j, where w + dj leaves the phase's row (the
            // window would read the neighbouring row there). Default where G = Wo ('same' padding).
            const [sh, sw] = [s[0]!, s[1]!];
            const G = grid;
            const L = Ho * G;
            const mod = (v: number, m: number) => ((v % m) + m) % m;
            const rowOf = (i: number) => ({ a: mod(i - pads[0]!, sh), d: Math.floor((i - pads[0]!) / sh) });
            const colOf = (j: number) => ({ b: mod(j - pads[1]!, sw), d: Math.floor((j - pads[1]!) / sw) });
            const phaseH = (a: number) => Math.ceil((Hh - a) / sh);
            const phaseW = (bb: number) => Math.ceil((Ww - bb) / sw);
            // Margins of each phase's flat rows: every tap window [off, off + L) must lie inside.
            const margins = new Map<string, { top: number; bottom: number }>();
            for (let i = 0; i < kh; i++) {
              for (let j = 0; j < kw; j++) {
                const r = rowOf(i), c = colOf(j);
                const key = `${r.a},${c.b}`;
                const off = r.d * G + c.d;
                const m = margins.get(key) ?? { top: 0, bottom: 0 };
                m.top = Math.max(m.top, -off);
                m.bottom = Math.max(m.bottom, off + L - phaseH(r.a) * G);
                margins.set(key, m);
              }
            }
            /** Flat phase (a, b) of `src` (channels at axis `caxis` of its NCHW or CNHW layout), as [d0, d1, margin + Ha*G + margin]. */
            const phaseCache = new Map<string, string>();
            const phase = (src: string, d0: number, d1: number, a: number, bb: number): string => {
              const key = `${src}|${a},${bb}`;
              let t = phaseCache.get(key);
              if (t) return t;
              const ha = phaseH(a), wb = phaseW(bb);
              t = sh * sw > 1 ? b.one('Slice', [src, b.ints([a, bb]), b.ints([Hh, Ww]), b.ints([2, 3]), b.ints([sh, sw])]) : src;
              if (wb < G) t = b.one('Pad', [t, b.ints([0, 0, 0, 0, 0, 0, 0, G - wb])], [sAttr('mode', 'constant')]);
              const m = margins.get(`${a},${bb}`)!;
              t = b.reshape(t, [d0, d1, ha * G]);
              if (m.top > 0 || m.bottom > 0) t = b.one('Pad', [t, b.ints([0, 0, m.top, 0, 0, m.bottom])], [sAttr('mode', 'constant')]);
              phaseCache.set(key, t);
              return t;
            };
            const window = (src: string, d0: number, d1: number, i: number, j: number): string => {
              const r = rowOf(i), c = colOf(j);
              const start = margins.get(`${r.a},${c.b}`)!.top + r.d * G + c.d;
              return b.slice(phase(src, d0, d1, r.a, c.b), [start], [start + L], [2]);
            };
            const dzW = Wo < G ? b.one('Pad', [dz, b.ints([0, 0, 0, 0, 0, 0, 0, G - Wo])], [sAttr('mode', 'constant')]) : dz;
            const masked = (t: string, j: number, shape: number[]) => {
              // Grid columns w (< Wo) whose tap column j stays in its phase's row: 0 <= w + dj < Wb.
              const c = colOf(j);
              const keep = Float32Array.from({ length: L }, (_, p) => { const w = p % G; return w < Wo && w + c.d >= 0 && w + c.d < phaseW(c.b) ? 1 : 0; });
              return keep.every((v, p) => v === (p % G < Wo ? 1 : 0)) ? t : b.one('Mul', [t, b.constFloats(shape, keep)]);
            };
            if (kh * kw * I * O <= I * Hh * Ww + O * L) {
              // Per image (no transposes): column j's kh windows stacked (N, kh*I, L) times dz_j
              // transposed (N, L, O) in one batched MatMul (onnxruntime fuses the transpose),
              // each summed over the batch; pays where the per-image products (kh*kw*I*O) are
              // smaller than the transposes they save (the lab ResNet's 14x14x16 layers).
              const dzN = b.reshape(dzW, [N, O, L]);
              const parts = Array.from({ length: kw }, (_, j) => {
                const wins = Array.from({ length: kh }, (_, i) => window(x.name, N, I, i, j));
                const cols = kh === 1 ? wins[0]! : b.one('Concat', wins, [iAttr('axis', 1)]);
                // The row-edge mask on whichever factor is smaller (a position's product is zero either way).
                const [u, v] = kh * I < O ? [masked(cols, j, [L]), dzN] : [cols, masked(dzN, j, [L])];
                return b.reduceSum(b.one('MatMul', [u, b.transpose(v, [0, 2, 1])]), [0], false); // (kh*I, O)
              });
              // ([j][i][c], O) -> HWIO
              addGrad(kernel, b.transpose(b.reshape(parts.length === 1 ? parts[0]! : b.one('Concat', parts, [iAttr('axis', 0)]), [kw, kh, I, O]), [1, 0, 2, 3]));
            } else {
              // Channels first (C, N, L): a Gemm per kernel column contracts the batch and the
              // grid at once (the 4x4x64 layers: no batch of kh*kw*I*O products to sum).
              const xT = b.transpose(x.name, [1, 0, 2, 3]);
              const dzT = b.reshape(b.transpose(dzW, [1, 0, 2, 3]), [O, N, L]);
              const parts = Array.from({ length: kw }, (_, j) => {
                const wins = Array.from({ length: kh }, (_, i) => window(xT, I, N, i, j));
                const cols = b.reshape(kh === 1 ? wins[0]! : b.one('Concat', wins, [iAttr('axis', 0)]), [kh * I, N * L]);
                return b.one('Gemm', [b.reshape(masked(dzT, j, [L]), [O, N * L]), cols], [iAttr('transB', 1)]); // (O, kh*I)
              });
              // (O, [j][i][c]) -> HWIO
              addGrad(kernel, b.transpose(b.reshape(parts.length === 1 ? parts[0]! : b.one('Concat', parts, [iAttr('axis', 1)]), [O, kw, kh, I]), [2, 1, 3, 0]));
            }
          } else if (isTrainable(kernel)) {
            // Filter gradient as one GEMM: dW[o, (i, j, c)] = sum over (n, h, w) of
            // dz[n, o, h, w] * xpad[n, c, h*s + i*d0, w*s + j*d1]; the kh*kw strided slices of
            // the padded input (channels first) stacked are im2col's transpose.
            const xp = b.padHW(x.name, pads);
            const xT = b.transpose(xp, [1, 0, 2, 3]);
            const slices: string[] = [];
            for (let i = 0; i < kh; i++) {
              for (let j = 0; j < kw; j++) {
                const [i0, j0] = [i * dil[0]!, j * dil[1]!];
                slices.push(b.one('Slice', [xT, b.ints([i0, j0]), b.ints([i0 + (Ho - 1) * s[0]! + 1, j0 + (Wo - 1) * s[1]! + 1]), b.ints([2, 3]), b.ints(s)]));
              }
            }
            const dz2 = b.reshape(b.transpose(dz, [1, 0, 2, 3]), [O, N * Ho * Wo]);
            let g: string; // (O, kh*kw*C)
            if (slices.length > 1 && I * N * Ho * Wo >= (options.filterGemmSplit ?? FILTER_GEMM_SPLIT)) {
              // Big slices: one Gemm per slice, the small products concatenated (measured
              // 1.6-2.3x faster than the big Concat + one Gemm at VGG's 28x28 and 14x14 layers).
              g = b.one('Concat', slices.map((sl) => b.one('Gemm', [dz2, b.reshape(sl, [I, N * Ho * Wo])], [iAttr('transB', 1)])), [iAttr('axis', 1)]);
            } else {
              const cols = b.reshape(slices.length === 1 ? slices[0]! : b.one('Concat', slices, [iAttr('axis', 0)]), [kh * kw * I, N * Ho * Wo]);
              g = b.one('Gemm', [dz2, cols], [iAttr('transB', 1)]);
            }
            addGrad(kernel, b.transpose(b.reshape(g, [O, kh, kw, I]), [1, 2, 3, 0])); // -> HWIO
          }
          if (!x.grad) return [undefined];
          if ((options.inputGradient === 'conv' || blocked || dilated) && s[0] === 1 && s[1] === 1) {
            // Stride 1: a Conv of dz with the kernel flipped and its in/out axes swapped, dilated
            // as the forward one (NCHWc when the forward conv is).
            const flipped = b.transpose(b.flipHW(Woihw), [1, 0, 2, 3]);
            const pd = [ek[0]! - 1 - pads[0]!, ek[1]! - 1 - pads[1]!, ek[0]! - 1 - pads[2]!, ek[1]! - 1 - pads[3]!];
            const cattrs = [isAttr('kernel_shape', [kh, kw]), isAttr('pads', pd), ...(dilated ? [isAttr('dilations', dil)] : [])];
            return [blocked ? b.nchwcConv(dz, flipped, undefined, I, O, kh, kw, block, cattrs) : b.one('Conv', [dz, flipped], cattrs)];
          }
          const dx = b.one('ConvTranspose', [dz, Woihw], [isAttr('kernel_shape', [kh, kw]), isAttr('strides', s), isAttr('pads', pads), isAttr('output_padding', outputPadding)]);
          return [dx];
        };
        break;
      }
      case 'DepthwiseConv2D': {
        const kernel = lw[0]!;
        const [kh, kw, C, m] = kernel.shape as [number, number, number, number];
        const s = asPair(cfg.strides);
        const useBias = cfg.useBias !== false && lw.length > 1;
        if (kh === 1 && kw === 1 && m === 1 && s[0] === 1 && s[1] === 1) {
          // A per-channel scale (goodnet's pruning mask layer, defense/mask.ts, is one): y = x * k[c] (+ bias[c]).
          const kC = b.reshape(weightInput(kernel), [1, C, 1, 1]);
          let z = b.one('Mul', [x.name, kC]);
          if (useBias) z = b.one('Add', [z, b.reshape(weightInput(lw[1]!), [1, C, 1, 1])]);
          const a = activation(cfg.activation, z, isOut);
          y = a.y;
          shape = x.shape;
          backward = (dy) => {
            const dz = a.back(dy);
            if (useBias) addGrad(lw[1]!, b.reduceSum(dz, [0, 2, 3], false));
            if (isTrainable(kernel)) addGrad(kernel, b.reshape(b.reduceSum(b.one('Mul', [dz, x.name]), [0, 2, 3], false), [1, 1, C, 1]));
            return [x.grad ? b.one('Mul', [dz, kC]) : undefined];
          };
          break;
        }
        // Any depthwise conv: a grouped Conv (output channel c*m + j reads input channel c),
        // dilated or strided (not both: ortTrainObstacle).
        const [, , Hh, Ww] = x.shape as [number, number, number, number];
        const dil = asPair(cfg.dilationRate);
        const ek = [(kh - 1) * dil[0]! + 1, (kw - 1) * dil[1]! + 1];
        const { pads, Ho, Wo, outputPadding } = windowsOver(Hh, Ww, ek, s, cfg.padding);
        const Wd = b.reshape(b.transpose(weightInput(kernel), [2, 3, 0, 1]), [C * m, 1, kh, kw]);
        const attrs = [isAttr('kernel_shape', [kh, kw]), isAttr('strides', s), isAttr('dilations', dil), isAttr('pads', pads), iAttr('group', C)];
        const z = b.one('Conv', useBias ? [x.name, Wd, weightInput(lw[1]!)] : [x.name, Wd], attrs);
        const a = activation(cfg.activation, z, isOut);
        y = a.y;
        shape = [N, C * m, Ho, Wo];
        backward = (dy) => {
          const dz = a.back(dy);
          if (useBias) addGrad(lw[1]!, b.reduceSum(dz, [0, 2, 3], false));
          if (isTrainable(kernel)) {
            // Per kernel tap: the strided window of the padded input times dz, summed over
            // images and positions ([C, m]); taps stacked in (kh, kw) order -> HWCM.
            const xp = b.padHW(x.name, pads);
            const dz5 = m === 1 ? dz : b.reshape(dz, [N, C, m, Ho, Wo]);
            const taps: string[] = [];
            for (let i = 0; i < kh; i++) {
              for (let j = 0; j < kw; j++) {
                const [i0, j0] = [i * dil[0]!, j * dil[1]!];
                const sl = b.one('Slice', [xp, b.ints([i0, j0]), b.ints([i0 + (Ho - 1) * s[0]! + 1, j0 + (Wo - 1) * s[1]! + 1]), b.ints([2, 3]), b.ints(s)]);
                const prod = m === 1 ? b.one('Mul', [sl, dz5]) : b.one('Mul', [b.reshape(sl, [N, C, 1, Ho, Wo]), dz5]);
                taps.push(b.reshape(b.reduceSum(prod, m === 1 ? [0, 2, 3] : [0, 3, 4], false), [1, C * m]));
              }
            }
            addGrad(kernel, b.reshape(taps.length === 1 ? taps[0]! : b.one('Concat', taps, [iAttr('axis', 0)]), [kh, kw, C, m]));
          }
          if (!x.grad) return [undefined];
          if (dil.some((v) => v !== 1)) {
            // Stride 1: a grouped Conv of dz with the flipped kernel ([C, m, kh, kw]: group c reads dz's channels c*m .. c*m + m - 1).
            const flipped = b.flipHW(b.reshape(b.transpose(weightInput(kernel), [2, 3, 0, 1]), [C, m, kh, kw]));
            const pd = [ek[0]! - 1 - pads[0]!, ek[1]! - 1 - pads[1]!, ek[0]! - 1 - pads[2]!, ek[1]! - 1 - pads[3]!];
            return [b.one('Conv', [dz, flipped], [isAttr('kernel_shape', [kh, kw]), isAttr('dilations', dil), isAttr('pads', pd), iAttr('group', C)])];
          }
          return [b.one('ConvTranspose', [dz, Wd], [isAttr('kernel_shape', [kh, kw]), isAttr('strides', s), isAttr('pads', pads), isAttr('output_padding', outputPadding), iAttr('group', C)])];
        };
        break;
      }
      case 'AveragePooling2D': {
        // The mean of each window's real pixels ('same' padding counts no pad, as TensorFlow).
        // Backward: each output's gradient / its pixel count spread over its window (a grouped
        // ConvTranspose with a kernel of ones): the exact gradient. tfjs's AvgPoolGrad divides by
        // the whole window instead, which differs where 'same' padding pads (README).
        const k = asPair(cfg.poolSize), s = asPair(cfg.strides ?? cfg.poolSize);
        const [, C, Hh, Ww] = x.shape as [number, number, number, number];
        const { pads, Ho, Wo, outputPadding } = windowsOver(Hh, Ww, k, s, cfg.padding);
        y = b.one('AveragePool', [x.name], [isAttr('kernel_shape', k), isAttr('strides', s), isAttr('pads', pads), iAttr('count_include_pad', 0)]);
        shape = [N, C, Ho, Wo];
        backward = (dy) => {
          const padded = pads.some((v) => v !== 0);
          let scaled: string;
          if (padded) {
            const inv = new Float32Array(Ho * Wo);
            for (let i = 0; i < Ho; i++) {
              for (let j = 0; j < Wo; j++) {
                const rows = Math.min(Hh, i * s[0]! - pads[0]! + k[0]!) - Math.max(0, i * s[0]! - pads[0]!);
                const cols = Math.min(Ww, j * s[1]! - pads[1]! + k[1]!) - Math.max(0, j * s[1]! - pads[1]!);
                inv[i * Wo + j] = 1 / (rows * cols);
              }
            }
            scaled = b.one('Mul', [dy, b.constFloats([1, 1, Ho, Wo], inv)]);
          } else scaled = b.one('Mul', [dy, b.scalar(1 / (k[0]! * k[1]!))]);
          const ones = b.constFloats([C, 1, k[0]!, k[1]!], new Float32Array(C * k[0]! * k[1]!).fill(1));
          return [b.one('ConvTranspose', [scaled, ones], [isAttr('kernel_shape', k), isAttr('strides', s), isAttr('pads', pads), isAttr('output_padding', outputPadding), iAttr('group', C)])];
        };
        break;
      }
      case 'Dense': {
        if (x.shape.length !== 2) throw new GoodnetError(`layer '${layer.name}' (Dense) gets a rank-${x.shape.length} input; the ort training engine takes Dense on vectors`);
        const kernel = lw[0]!;
        const [, O] = kernel.shape as [number, number];
        const Wk = weightInput(kernel);
        const useBias = cfg.useBias !== false && lw.length > 1;
        const ins = [x.name, Wk];
        if (useBias) ins.push(weightInput(lw[1]!));
        const z = b.one('Gemm', ins);
        const a = activation(cfg.activation, z, isOut);
        y = a.y;
        shape = [N, O];
        backward = (dy) => {
          const dz = a.back(dy);
          if (useBias) addGrad(lw[1]!, b.reduceSum(dz, [0], false));
          if (isTrainable(kernel)) addGrad(kernel, b.one('Gemm', [x.name, dz], [iAttr('transA', 1)]));
          return [x.grad ? b.one('Gemm', [dz, Wk], [iAttr('transB', 1)]) : undefined];
        };
        break;
      }
      case 'OnnxPad2D': {
        // Constant padding (value null: -Infinity, before a max-pool); the backward drops the border.
        const [[t, bo], [l, r]] = cfg.padding as number[][] as [[number, number], [number, number]];
        const [, C, Hh, Ww] = x.shape as [number, number, number, number];
        y = b.one('Pad', [x.name, b.ints([0, 0, t, l, 0, 0, bo, r]), b.scalar(cfg.value == null ? -Infinity : Number(cfg.value))], [sAttr('mode', 'constant')]);
        shape = [N, C, Hh + t + bo, Ww + l + r];
        backward = (dy) => [b.slice(dy, [t, l], [t + Hh, l + Ww], [2, 3])];
        break;
      }
      case 'Rescaling': {
        const scale = Number(cfg.scale), offset = Number(cfg.offset ?? 0);
        y = b.one('Add', [b.one('Mul', [x.name, b.scalar(scale)]), b.scalar(offset)]);
        shape = x.shape;
        backward = (dy) => [b.one('Mul', [dy, b.scalar(scale)])];
        break;
      }
      case 'OnnxClip': {
        // As OnnxClip.call: max(x, min) then min(., max); tfjs's gradients of maximum and
        // minimum pass dy where x >= min and where max(x, min) <= max.
        const lo = cfg.min == null ? undefined : Number(cfg.min), hi = cfg.max == null ? undefined : Number(cfg.max);
        const x1 = lo === undefined ? x.name : b.one('Max', [x.name, b.scalar(lo)]);
        y = hi === undefined ? x1 : b.one('Min', [x1, b.scalar(hi)]);
        shape = x.shape;
        backward = (dy) => {
          let g = dy;
          if (lo !== undefined) g = b.one('Mul', [g, mask(b.one('GreaterOrEqual', [x.name, b.scalar(lo)]))]);
          if (hi !== undefined) g = b.one('Mul', [g, mask(b.one('LessOrEqual', [x1, b.scalar(hi)]))]);
          return [g];
        };
        break;
      }
      case 'ReLU': case 'Activation': {
        if (cls === 'ReLU' && cfg.maxValue != null) {
          // ReLU6 and kin, as tfjs-layers computes them: clipByValue(relu(x), 0, max); the gradient
          // passes where x > 0 (relu) and relu(x) <= max (clipByValue's bounds are inclusive).
          const max = Number(cfg.maxValue);
          y = b.one('Clip', [x.name, b.scalar(0), b.scalar(max)]);
          shape = x.shape;
          backward = (dy) => [b.one('Mul', [dy, mask(b.one('And', [b.one('Greater', [x.name, b.scalar(0)]), b.one('LessOrEqual', [x.name, b.scalar(max)])]))])];
          break;
        }
        const a = activation(cls === 'ReLU' ? 'relu' : cfg.activation, x.name, isOut);
        y = a.y;
        shape = x.shape;
        backward = (dy) => [a.back(dy)];
        break;
      }
      case 'MaxPooling2D': {
        const reluFlag = options.fuseReluPool === false || readers.get(inTs[0]!.id) !== 1 || net.outputs.some((o) => o.id === inTs[0]!.id) ? undefined : reluFusedIntoPool.get(x.name);
        if (reluFlag) reluFlag.fused = true;
        const reluMask = (dy: string, pooled: string) => (reluFlag ? reluGrad(dy, pooled) : dy);
        const k = asPair(cfg.poolSize), s = asPair(cfg.strides ?? cfg.poolSize);
        const [, C, Hh, Ww] = x.shape as [number, number, number, number];
        const { pads, Ho, Wo } = windowsOver(Hh, Ww, k, s, cfg.padding);
        shape = [N, C, Ho, Wo];
        // 'auto': the anchored pools where onnxruntime runs them in its blocked layout (channels
        // a multiple of the NCHWc block); its plain NCHW pools make four passes cost more than
        // the one slow Indices pass (the CSAW DeepID's 20/40/60 channels: 4.1 against 3.7 ms).
        const block = options.nchwcBlock ?? 0;
        const requested = options.maxPoolBackward ?? 'auto';
        const backwardKind = requested === 'auto' ? (block > 0 && C % block === 0 ? 'prefix' : 'indices') : requested;
        const [kh, kw] = [k[0]!, k[1]!], [sh, sw] = [s[0]!, s[1]!];
        const poolAttrs = [isAttr('kernel_shape', k), isAttr('strides', s), isAttr('pads', pads)];
        /** dy routed to the flat (N*C*H*W) indices `index` of the input: MaxUnpool where windows do not overlap, else summed by ScatterElements. */
        const scatter = (dy: string, index: string): string => {
          if (kh <= sh && kw <= sw && options.poolUnpool !== false) {
            // Windows do not overlap: every index is distinct, MaxUnpool puts dy there.
            return b.one('MaxUnpool', [dy, index, b.ints([N, C, Hh, Ww])], poolAttrs);
          }
          const zeros = b.one('ConstantOfShape', [b.ints([N * C * Hh * Ww])], [{ name: 'value', type: AT.TENSOR, t: floatTensor('', [1], Float32Array.of(0)) }]);
          const scattered = b.one('ScatterElements', [zeros, b.reshape(index, [-1]), b.reshape(dy, [-1])], [iAttr('axis', 0), sAttr('reduction', 'add')]);
          return b.reshape(scattered, [N, C, Hh, Ww]);
        };
        if (backwardKind === 'prefix' && pads[0] === 0 && pads[1] === 0 && kh * kw <= 9 && Hh * Ww < 2 ** 24) {
          // Plain MaxPool forward (onnxruntime runs it NCHWc; its Indices output makes it ~20x
          // slower) and the Indices output's FIRST-maximum index rebuilt from plain pools
          // anchored at each window's top-left pixel: A(r, c) pools rows 0..r and columns 0..c
          // of the window. Going through the window in row-major order, the first maximum is
          // the first (r, c) whose A(r, c) equals the window's max: every other pixel A(r, c)
          // covers comes earlier in that order (2x2: a, the first row, the first column, else
          // the last pixel). The offset r*W + c in the image (float: exact below 2^24 pixels)
          // plus the window's corner and the start of its image-channel plane (int64) is the
          // flat index. 'same' padding (extra rows / columns at the end) pads each anchored
          // pool as far as its size allows (a pad must be smaller than the kernel) and crops
          // the extra output row / column that may leave.
          y = b.one('MaxPool', [x.name], poolAttrs);
          const pooled = y;
          backward = (dy0) => {
            const dy = reluMask(dy0, pooled);
            const anchored = (r: number, c: number) => {
              const pb = Math.min(pads[2]!, r), pr = Math.min(pads[3]!, c);
              const q = b.one('MaxPool', [x.name], [isAttr('kernel_shape', [r + 1, c + 1]), isAttr('strides', s), isAttr('pads', [0, 0, pb, pr])]);
              const rows = Math.floor((Hh + pb - r - 1) / sh) + 1, cols = Math.floor((Ww + pr - c - 1) / sw) + 1;
              return b.one('Equal', [rows !== Ho || cols !== Wo ? b.slice(q, [0, 0], [Ho, Wo], [2, 3]) : q, pooled]);
            };
            let inWindow = b.scalar((kh - 1) * Ww + kw - 1); // the last pixel when no earlier one is the maximum
            for (let t = kh * kw - 2; t >= 0; t--) {
              const r = Math.floor(t / kw), c = t % kw;
              inWindow = b.one('Where', [anchored(r, c), b.scalar(r * Ww + c), inWindow]);
            }
            const corner = new Float32Array(Ho * Wo);
            for (let i = 0; i < Ho; i++) for (let j = 0; j < Wo; j++) corner[i * Wo + j] = i * sh * Ww + j * sw;
            const inImage = b.one('Add', [inWindow, b.constFloats([1, 1, Ho, Wo], corner)]);
            const planes = b.constInts([N, C, 1, 1], Array.from({ length: N * C }, (_, i) => i * Hh * Ww));
            return [scatter(dy, b.one('Add', [b.one('Cast', [inImage], [iAttr('to', 7)]), planes]))]; // int64
          };
          break;
        }
        if (cfg.padding === 'valid' && k[0] === s[0] && k[1] === s[1] && k[0] === k[1] && backwardKind === 'argmax') {
          // Non-overlapping square windows: plain MaxPool forward (onnxruntime's Indices output
          // makes it ~20x slower). Backward: the kh*kw strided slices of the input stacked on
          // the channel axis ([N, K, C*Ho*Wo], K = kh*kw in row-major window order), ArgMax over
          // K picks the first (or last: tfjs-wasm's default, see setMaxPoolGradTies) maximum,
          // dy goes there, and DepthToSpace puts the K planes back in place.
          const kk = k[0]!;
          const K = kk * kk;
          y = b.one('MaxPool', [x.name], [isAttr('kernel_shape', k), isAttr('strides', s)]);
          const pooled = y;
          backward = (dy0) => {
            const dy = reluMask(dy0, pooled);
            // SpaceToDepth (DCR) puts window position (i, j) of channel c at depth (i*kk + j)*C + c.
            const crop = Ho * kk !== Hh || Wo * kk !== Ww ? b.slice(x.name, [0, 0], [Ho * kk, Wo * kk], [2, 3]) : x.name;
            const planes = b.reshape(b.one('SpaceToDepth', [crop], [iAttr('blocksize', kk)]), [N, K, C * Ho * Wo]);
            const arg = b.one('ArgMax', [planes], [iAttr('axis', 1), iAttr('keepdims', 1), iAttr('select_last_index', ties === 'last' ? 1 : 0)]);
            const range = b.constInts([1, K, 1], Array.from({ length: K }, (_, i) => i));
            const routed = b.one('Where', [b.one('Equal', [arg, range]), b.reshape(dy, [N, 1, C * Ho * Wo]), b.scalar(0)]);
            let dx = b.one('DepthToSpace', [b.reshape(routed, [N, K * C, Ho, Wo])], [iAttr('blocksize', kk), sAttr('mode', 'DCR')]);
            if (Ho * kk !== Hh || Wo * kk !== Ww) dx = b.one('Pad', [dx, b.ints([0, 0, 0, 0, 0, 0, Hh - Ho * kk, Ww - Wo * kk])], [sAttr('mode', 'constant')]);
            return [dx];
          };
          break;
        }
        const [out, idx] = b.node('MaxPool', [x.name], poolAttrs, 2);
        y = out!;
        backward = (dy0) => [scatter(reluMask(dy0, out!), idx!)];
        break;
      }
      case 'Flatten': {
        if (x.shape.length === 2) { y = x.name; shape = x.shape; backward = (dy) => [dy]; break; }
        const [, C, Hh, Ww] = x.shape as [number, number, number, number];
        y = b.reshape(b.transpose(x.name, [0, 2, 3, 1]), [N, Hh * Ww * C]);
        shape = [N, Hh * Ww * C];
        backward = (dy) => [b.transpose(b.reshape(dy, [N, Hh, Ww, C]), [0, 3, 1, 2])];
        break;
      }
      case 'GlobalAveragePooling2D': {
        const [, C, Hh, Ww] = x.shape as [number, number, number, number];
        y = b.reshape(b.one('GlobalAveragePool', [x.name]), [N, C]);
        shape = [N, C];
        backward = (dy) => [b.one('Expand', [b.one('Mul', [b.reshape(dy, [N, C, 1, 1]), b.scalar(1 / (Hh * Ww))]), b.ints([N, C, Hh, Ww])])];
        break;
      }
      case 'Dropout': {
        // Training mode: x * mask (a graph input, TrainGraph.dropouts); rate 0 is the identity.
        const rate = Number(cfg.rate ?? 0);
        shape = x.shape;
        if (!(rate > 0)) { y = x.name; backward = (dy) => [dy]; break; }
        if (!(rate < 1)) throw new GoodnetError(`layer '${layer.name}' drops everything (rate ${rate})`);
        const mask = `drop${dropouts.length}`;
        dropouts.push({ name: mask, rate, dims: x.shape.slice(1) });
        y = b.one('Mul', [x.name, mask]);
        backward = (dy) => [b.one('Mul', [dy, mask])];
        break;
      }
      case 'LeakyReLU': { // where(x > 0, dy, dy * alpha)
        const alpha = Number(cfg.alpha ?? 0.3);
        y = b.one('LeakyRelu', [x.name], [fAttr('alpha', alpha)]);
        shape = x.shape;
        backward = (dy) => [b.one('Where', [b.one('Greater', [x.name, b.scalar(0)]), dy, b.one('Mul', [dy, b.scalar(alpha)])])];
        break;
      }
      case 'ELU': {
        const a = elu(x.name);
        y = a.y;
        shape = x.shape;
        backward = (dy) => [a.back(dy)];
        break;
      }
      case 'PReLU': {
        // alpha is stored per position of the Keras (NHWC) activation, 1 along shared axes: to NCHW.
        const alphaV = lw[0]!;
        const ash = alphaV.shape as number[];
        const nchw = ash.length === 3 ? [ash[2]!, ash[0]!, ash[1]!] : ash;
        const slope = ash.length === 3 ? b.transpose(weightInput(alphaV), [2, 0, 1]) : weightInput(alphaV);
        y = b.one('PRelu', [x.name, slope]);
        shape = x.shape;
        backward = (dy) => {
          const pos = b.one('Greater', [x.name, b.scalar(0)]);
          if (isTrainable(alphaV)) {
            const g = b.one('Where', [pos, b.scalar(0), b.one('Mul', [dy, x.name])]);
            const axes = [0, ...nchw.map((d, i) => (d === 1 && x.shape[i + 1] !== 1 ? i + 1 : -1)).filter((i) => i > 0)];
            const summed = b.reshape(b.reduceSum(g, axes, true), nchw);
            addGrad(alphaV, ash.length === 3 ? b.transpose(summed, [1, 2, 0]) : summed);
          }
          return [b.one('Where', [pos, dy, b.one('Mul', [dy, slope])])];
        };
        break;
      }
      case 'OnnxHardSigmoid': {
        const a = hardSigmoid(x.name, Number(cfg.alpha), Number(cfg.beta));
        y = a.y;
        shape = x.shape;
        backward = (dy) => [a.back(dy)];
        break;
      }
      case 'OnnxHardSwish': { // x * clipByValue(x / 6 + 0.5, 0, 1): dy * c + ((dy * x) where 0 <= u <= 1) / 6
        const u = b.one('Add', [b.one('Div', [x.name, b.scalar(6)]), b.scalar(0.5)]);
        const c = b.one('Clip', [u, b.scalar(0), b.scalar(1)]);
        y = b.one('Mul', [x.name, c]);
        shape = x.shape;
        backward = (dy) => [b.one('Add', [b.one('Mul', [dy, c]), b.one('Div', [b.one('Mul', [b.one('Mul', [dy, x.name]), within(u, 0, 1)]), b.scalar(6)])])];
        break;
      }
      case 'OnnxConstArith': {
        // x (op) c; c is one value, one per channel (Keras's last axis) or of a shape broadcast
        // against the trailing NHWC axes: laid out for the graph's NCHW.
        const value = (cfg.value as number[]).map(Number);
        const cshape = cfg.shape as number[] | undefined;
        const rank = x.shape.length;
        let c: string;
        if (!cshape && value.length === 1) c = b.scalar(value[0]!);
        else {
          const hwc = cshape ?? [value.length];
          if (rank === 4) {
            const full = [...Array(3 - hwc.length).fill(1), ...hwc] as [number, number, number];
            c = b.constFloats([full[2], full[0], full[1]], (() => {
              const out = new Float32Array(value.length);
              for (let i = 0; i < full[0]; i++) for (let j = 0; j < full[1]; j++) for (let k = 0; k < full[2]; k++) out[(k * full[0] + i) * full[1] + j] = value[(i * full[1] + j) * full[2] + k]!;
              return out;
            })());
          } else c = b.constFloats(hwc, Float32Array.from(value));
        }
        const op = String(cfg.op);
        const onnx = { add: 'Add', sub: 'Sub', mul: 'Mul', div: 'Div', rsub: 'Sub', rdiv: 'Div' }[op];
        if (!onnx) throw new GoodnetError(`layer '${layer.name}' has an unknown operation '${op}'`);
        y = b.one(onnx, op === 'rsub' || op === 'rdiv' ? [c, x.name] : [x.name, c]);
        shape = x.shape;
        backward = (dy) => {
          switch (op) {
            case 'add': case 'sub': return [dy];
            case 'mul': return [b.one('Mul', [dy, c])];
            case 'div': return [b.one('Div', [dy, c])];
            case 'rsub': return [b.one('Neg', [dy])];
            default: return [b.one('Neg', [b.one('Div', [b.one('Mul', [dy, c]), b.one('Mul', [x.name, x.name])])])]; // rdiv: -(dy * c) / x^2
          }
        };
        break;
      }
      case 'OnnxSub': {
        y = b.one('Sub', [xs[0]!.name, xs[1]!.name]);
        shape = x.shape;
        backward = (dy) => [xs[0]!.grad ? dy : undefined, xs[1]!.grad ? b.one('Neg', [dy]) : undefined];
        break;
      }
      case 'Multiply': { // same shapes (ortTrainObstacle): each input's gradient is dy times the others
        y = xs[0]!.name;
        for (const o of xs.slice(1)) y = b.one('Mul', [y, o!.name]);
        shape = x.shape;
        backward = (dy) => xs.map((t, i) => {
          if (!t!.grad) return undefined;
          let g = dy;
          xs.forEach((o, j) => { if (j !== i) g = b.one('Mul', [g, o!.name]); });
          return g;
        });
        break;
      }
      case 'Concatenate': {
        // Keras's axis on NHWC (or on vectors) -> the graph's NCHW axis; the backward splits dy.
        const rank = x.shape.length;
        const kAxis = Number(cfg.axis ?? -1);
        const a = kAxis < 0 ? kAxis + rank : kAxis;
        const axis = rank === 4 ? [0, 2, 3, 1][a]! : a;
        if (xs.some((t) => t!.shape.length !== rank) || axis === undefined || axis === 0) throw new GoodnetError(`layer '${layer.name}' (Concatenate) joins along axis ${String(cfg.axis)}; the ort training engine takes channel or spatial axes`);
        const sizes = xs.map((t) => t!.shape[axis]!);
        y = b.one('Concat', xs.map((t) => t!.name), [iAttr('axis', axis)]);
        shape = x.shape.map((d, i) => (i === axis ? sizes.reduce((p, q) => p + q, 0) : d));
        backward = (dy) => {
          const parts = b.node('Split', [dy, b.ints(sizes)], [iAttr('axis', axis)], xs.length);
          return xs.map((t, i) => (t!.grad ? parts[i] : undefined));
        };
        break;
      }
      case 'Add': {
        y = xs[0]!.name;
        for (const o of xs.slice(1)) y = b.one('Add', [y, o!.name]);
        shape = x.shape;
        backward = (dy) => xs.map((s) => (s!.grad ? dy : undefined));
        break;
      }
      case 'BatchNormalization': {
        const rank4 = x.shape.length === 4;
        const C = x.shape[1]!;
        const axes = rank4 ? [0, 2, 3] : [0];
        const bshape = rank4 ? [1, C, 1, 1] : [1, C];
        const m = rank4 ? x.shape[0]! * x.shape[2]! * x.shape[3]! : x.shape[0]!;
        let i = 0;
        const gammaV = cfg.scale === false ? undefined : lw[i++]!;
        const betaV = cfg.center === false ? undefined : lw[i++]!;
        const movingMean = allWeights.indexOf(lw[i++]!);
        const movingVariance = allWeights.indexOf(lw[i++]!);
        const eps = Number(cfg.epsilon ?? 1e-3);
        const sm = `${layer.name}.batch_mean`, sv = `${layer.name}.batch_var`;
        bnStats.push({ mean: sm, variance: sv, movingMean, movingVariance, momentum: Number(cfg.momentum ?? 0.99) });
        if (options.batchNormOp !== false && options.batchNormBackward !== 'plain') {
          // The default: onnxruntime's BatchNormalization in training mode computes the output
          // and the biased batch statistics in one op (momentum 0: its "running" outputs are the
          // batch mean and variance, written straight to the graph outputs); every per-channel
          // quantity stays a [C] vector (no Reshape nodes). The running-statistics inputs get
          // values of their own per layer (momentum 0 ignores them): with equal constants in
          // every layer the statistics came out mixed between layers once onnxruntime optimised
          // the graph (level basic and above; constant sharing plus in-place outputs,
          // presumably), never with optimisation disabled.
          const k = bnStats.length + 0.5;
          const gammaC = gammaV ? weightInput(gammaV) : undefined;
          const bnY = `${layer.name}_bn_y`;
          b.nodes.push({ opType: 'BatchNormalization', name: `${layer.name}_bn`, output: [bnY, sm, sv],
            input: [x.name, gammaC ?? b.constFloats([C], new Float32Array(C).fill(1)), betaV ? weightInput(betaV) : b.constFloats([C], new Float32Array(C)),
              b.constFloats([C], new Float32Array(C).fill(-k)), b.constFloats([C], new Float32Array(C).fill(k))],
            attribute: [iAttr('training_mode', 1), fAttr('momentum', 0), fAttr('epsilon', eps)] });
          const invstd = b.one('Reciprocal', [b.one('Sqrt', [b.one('Add', [sv, b.scalar(eps)])])]);
          const scale = gammaC ? b.one('Mul', [gammaC, invstd]) : invstd;
          y = bnY;
          shape = x.shape;
          backward = (dy) => {
            const dbeta = b.reduceSum(dy, axes, false);
            // sum(dy * xc) = sum(dy * x) - mean * sum(dy); sum(dy * xhat) = invstd * sum(dy * xc)
            const sumDyXc = b.one('Sub', [b.reduceSum(b.one('Mul', [dy, x.name]), axes, false), b.one('Mul', [sm, dbeta])]);
            if (betaV) addGrad(betaV, dbeta);
            if (gammaV) addGrad(gammaV, b.one('Mul', [sumDyXc, invstd]));
            if (!x.grad) return [undefined];
            // dx = scale * (dy - mean(dy)) - (x - mean) * (scale * invstd^2 * mean(dy * xc)): the
            // two per-channel affine terms one pass each, as inference BatchNormalization ops
            // (variance 1, epsilon 0).
            const mdb = b.one('Mul', [dbeta, b.scalar(1 / m)]);
            const coef = b.one('Mul', [b.one('Mul', [scale, b.one('Mul', [invstd, invstd])]), b.one('Mul', [sumDyXc, b.scalar(1 / m)])]);
            const zerosC = b.constFloats([C], new Float32Array(C));
            const onesC = b.constFloats([C], new Float32Array(C).fill(1));
            const affine = (a: string, scaleC: string, meanC: string) => b.one('BatchNormalization', [a, scaleC, zerosC, meanC, onesC], [fAttr('epsilon', 0)]);
            return [b.one('Sub', [affine(dy, scale, mdb), affine(x.name, coef, sm)])];
          };
          break;
        }
        let mean: string, variance: string, xc: string, out: string;
        const gammaB = gammaV ? b.reshape(weightInput(gammaV), bshape) : undefined;
        if (options.batchNormOp !== false) {
          // As above, with the backward's xc = x - mean computed there (batchNormBackward 'plain').
          const k = bnStats.length + 0.5;
          const [bnY, bnMean, bnVar] = b.node('BatchNormalization', [x.name,
            gammaV ? weightInput(gammaV) : b.constFloats([C], new Float32Array(C).fill(1)),
            betaV ? weightInput(betaV) : b.constFloats([C], new Float32Array(C)),
            b.constFloats([C], new Float32Array(C).fill(-k)), b.constFloats([C], new Float32Array(C).fill(k))],
            [iAttr('training_mode', 1), fAttr('momentum', 0), fAttr('epsilon', eps)], 3);
          out = bnY!;
          mean = b.reshape(bnMean!, bshape);
          variance = b.reshape(bnVar!, bshape);
          xc = '';
        } else {
          mean = b.reduceMean(x.name, axes, true);
          xc = b.one('Sub', [x.name, mean]);
          variance = b.reduceMean(b.one('Mul', [xc, xc]), axes, true);
          out = '';
        }
        const invstd = b.one('Reciprocal', [b.one('Sqrt', [b.one('Add', [variance, b.scalar(eps)])])]);
        // y = xc * (gamma * invstd) + beta; xhat = xc * invstd is never materialised.
        const scale = gammaB ? b.one('Mul', [gammaB, invstd]) : invstd;
        if (!out) {
          out = b.one('Mul', [xc, scale]);
          if (betaV) out = b.one('Add', [out, b.reshape(weightInput(betaV), bshape)]);
        }
        y = out;
        shape = x.shape;
        b.output(sm, b.reshape(mean, [C]));
        b.output(sv, b.reshape(variance, [C]));
        backward = (dy) => {
          if (!xc) xc = b.one('Sub', [x.name, mean]);
          const dbeta = b.reduceSum(dy, axes, false);
          const sumDyXc = b.reduceSum(b.one('Mul', [dy, xc]), axes, true); // sum(dy * xhat) = invstd * sum(dy * xc)
          if (betaV) addGrad(betaV, dbeta);
          if (gammaV) addGrad(gammaV, b.reshape(b.one('Mul', [sumDyXc, invstd]), [C]));
          if (!x.grad) return [undefined];
          // dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat))
          //    = scale * (dy - mean(dy)) - xc * (scale * invstd^2 * mean(dy * xc))
          const mdb = b.one('Mul', [b.reshape(dbeta, bshape), b.scalar(1 / m)]);
          const coef = b.one('Mul', [b.one('Mul', [scale, b.one('Mul', [invstd, invstd])]), b.one('Mul', [sumDyXc, b.scalar(1 / m)])]);
          return [b.one('Sub', [b.one('Mul', [b.one('Sub', [dy, mdb]), scale]), b.one('Mul', [xc, coef])])];
        };
        break;
      }
      default:
        throw new GoodnetError(`layer '${layer.name}' (${cls}) is not supported by the ort training engine`);
    }
    syms.set(outT.id, { name: y, shape, grad: needGrad });
    tape.push({ inputs: inTs.map((t) => t.id), output: outT.id, backward, scope: `${layer.name}:grad/` });
  }
  if (logits === undefined) throw new GoodnetError('the model output is not a softmax');

  // Loss (as tfjs-layers: probabilities clipped to [eps, 1 - eps]), prediction, d logits.
  b.scope = 'loss/';
  const p = b.one('Softmax', [logits], [iAttr('axis', 1)]);
  const clipped = b.one('Clip', [p, b.scalar(EPS), b.scalar(1 - EPS)]);
  const nll = b.one('Neg', [b.one('ReduceSum', [b.one('Mul', ['y', b.one('Log', [clipped])]), b.ints([0, 1])], [iAttr('keepdims', 0)])]);
  const denominator = options.lossDenominator ?? N;
  if (!Number.isInteger(denominator) || denominator < N) throw new GoodnetError(`lossDenominator must be an integer >= the batch (${N}), got ${denominator}`);
  b.output('loss', b.one('Mul', [nll, b.scalar(1 / denominator)]));
  b.output('pred', b.one('ArgMax', [logits], [iAttr('axis', 1), iAttr('keepdims', 0)]));
  const dlogits = b.one('Mul', [b.one('Sub', [p, 'y']), b.scalar(1 / denominator)]);

  // Backward, in reverse topological order; a tensor read by several layers sums their gradients.
  const pending = new Map<number, string[]>();
  pending.set(net.outputs[0]!.id, [dlogits]);
  for (let t = tape.length - 1; t >= 0; t--) {
    const entry = tape[t]!;
    const gs = pending.get(entry.output);
    if (!gs) continue; // nothing downstream needs it
    b.scope = entry.scope;
    let dy = gs[0]!;
    for (const g of gs.slice(1)) dy = b.one('Add', [dy, g]);
    const dxs = entry.backward(dy);
    entry.inputs.forEach((id, i) => {
      const g = dxs[i];
      if (g === undefined || !syms.get(id)!.grad) return;
      const list = pending.get(id) ?? [];
      list.push(g);
      pending.set(id, list);
    });
  }

  b.scope = 'out/';
  // A trainable weight the loss does not reach: gradient zero.
  const gradOrZero = (v: tfl.LayerVariable): string =>
    gradOf.get(v) ?? b.one('ConstantOfShape', [b.ints(v.shape as number[])], [{ name: 'value', type: AT.TENSOR, t: floatTensor('', [1], Float32Array.of(0)) }]);
  const adam = options.adam;
  const gradOutputs = adam ? [] : trainable.map((v, i) => {
    const name = `g${i}`;
    b.output(name, gradOrZero(v));
    return name;
  });
  if (adam) {
    // Adam on the flat vectors, each operation rounded to float32 as OrtWeights.adam does:
    // m = b1 m + c1 g; v = b2 v + c2 g^2; w = ((m / a1) / (sqrt(v / a2) + eps)) * -lr + w.
    const f = Math.fround;
    const b1 = f(adam.beta1), b2 = f(adam.beta2);
    const gflat = trainable.length === 1 ? b.reshape(gradOrZero(trainable[0]!), [flatSize])
      : b.one('Concat', trainable.map((v) => b.reshape(gradOrZero(v), [-1])), [iAttr('axis', 0)]);
    const m = b.one('Add', [b.one('Mul', ['mflat', b.scalar(b1)]), b.one('Mul', [gflat, b.scalar(f(1 - b1))])]);
    const v = b.one('Add', [b.one('Mul', ['vflat', b.scalar(b2)]), b.one('Mul', [b.one('Mul', [gflat, gflat]), b.scalar(f(1 - b2))])]);
    const mh = b.one('Div', [m, 'adam_a1']);
    const vh = b.one('Div', [v, 'adam_a2']);
    const step = b.one('Mul', [b.one('Div', [mh, b.one('Add', [b.one('Sqrt', [vh]), b.scalar(f(adam.epsilon))])]), b.scalar(f(-f(adam.learningRate)))]);
    b.output('w_next', b.one('Add', [step, 'wflat']));
    b.output('m_next', m);
    b.output('v_next', v);
  }

  const dims = (shape: number[]) => ({ dim: shape.map((d) => ({ dimValue: d })) });
  const fin = (name: string, shape: number[]) => ({ name, type: { tensorType: { elemType: 1, shape: dims(shape) } } });
  const model: ModelProto = {
    irVersion: 8,
    opsetImport: [{ domain: '', version: OPSET }, ...(b.usedNchwc ? [{ domain: 'com.microsoft.nchwc', version: 1 }] : [])],
    producerName: 'goodnet-train',
    producerVersion: '0.1.0',
    graph: {
      name: `${net.name || 'net'}_train`,
      node: b.nodes,
      initializer: b.inits,
      input: [
        fin('x', [N, H0, W0, C0]),
        fin('y', [N, K]),
        ...weightInputs.map((w) => fin(w.name, allWeights[w.weight]!.shape as number[])),
        ...(adam ? [fin('wflat', [flatSize]), fin('mflat', [flatSize]), fin('vflat', [flatSize]), fin('adam_a1', [1]), fin('adam_a2', [1])] : []),
        ...dropouts.map((d) => fin(d.name, [N, ...d.dims])),
      ],
      output: [
        fin('loss', []),
        { name: 'pred', type: { tensorType: { elemType: 7, shape: dims([N]) } } },
        ...gradOutputs.map((g, i) => fin(g, trainable[i]!.shape as number[])),
        ...(adam ? [fin('w_next', [flatSize]), fin('m_next', [flatSize]), fin('v_next', [flatSize])] : []),
        ...bnStats.flatMap((s) => {
          const C = allWeights[s.movingMean]!.shape[0] as number;
          return [fin(s.mean, [C]), fin(s.variance, [C])];
        }),
      ],
    },
  };
  return { bytes: encodeModel(model), batch: N, weightInputs, gradOutputs, flatSize, bnStats, dropouts };
}
