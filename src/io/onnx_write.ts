/**
 * ONNX out.
 *  - A model read from ONNX is written as its ORIGINAL graph (same nodes, names, opset,
 *    NCHW input, metadata) with only the initializers whose weights changed replaced
 *    (HWIO -> OIHW, Dense rows back to channel-first order, BN parameters as they are), so
 *    deployment code written for the original runs the repaired model unchanged.
 *  - Any other model (Keras, tfjs, built-in architectures) becomes a clean opset-17 graph
 *    of standard operators with an NHWC input ("input", (N,H,W,C)) transposed to NCHW
 *    inside; metadata_props state the input layout.
 * Both write metadata_props[PREPROCESSING_KEY] when the preprocessing is known.
 */
import { writeFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { GoodnetError } from '../errors.js';
import { writeAtomically, type AtomicOptions } from './atomic.js';
import { hwioToOihw, linkForward, linkInverse, type OnnxSource } from './onnx.js';
import { AT, decodeModel, encodeModel, floatTensor, int64Tensor, tensorValue, type ModelProto, type NodeProto, type TensorProto, type AttributeProto } from './onnx_proto.js';
import { PREPROCESSING_KEY, preprocessingToJson, type Preprocessing } from './preprocess.js';

/** metadata_props key stating the input layout of a goodnet-written graph ('nhwc' or 'nchw'). */
export const INPUT_LAYOUT_KEY = 'goodnet.input_layout';
/** Opset of the graphs goodnet builds from non-ONNX models. */
export const EXPORT_OPSET = 17;

export interface OnnxWritable {
  net: tfl.LayersModel;
  onnx?: OnnxSource;
  preprocessing?: Preprocessing;
}

function setMeta(m: ModelProto, key: string, value: string): void {
  m.metadataProps = (m.metadataProps ?? []).filter((p) => p.key !== key);
  m.metadataProps.push({ key, value });
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
  return true;
}

/**
 * The original ONNX graph of `src` with the current weights of `net` put back. Weights that
 * did not change keep their initializers byte for byte.
 */
export function onnxWithWeights(src: OnnxSource, net: tfl.LayersModel, preprocessing?: Preprocessing, file = 'model.onnx'): Uint8Array {
  const m = decodeModel(src.bytes, file);
  const g = m.graph!;
  const inits = new Map((g.initializer ?? []).map((t, i) => [t.name ?? '', i]));
  for (const link of src.weights) {
    let layer: tfl.layers.Layer;
    try {
      layer = net.getLayer(link.layer);
    } catch {
      throw new GoodnetError(`the model has no layer '${link.layer}' of its ONNX source; it cannot be written into the original graph`, file);
    }
    const w = layer.getWeights()[link.index];
    if (!w) throw new GoodnetError(`layer '${link.layer}' has no weight ${link.index}`, file);
    const current = w.dataSync() as Float32Array;
    let stored: TensorProto | undefined;
    let put: (t: TensorProto) => void;
    if (link.initializer !== undefined && inits.has(link.initializer)) {
      const i = inits.get(link.initializer)!;
      stored = g.initializer![i]!;
      put = (t) => { g.initializer![i] = t; };
    } else if (link.constantNode !== undefined) {
      const node = g.node![link.constantNode]!;
      const attr = (node.attribute ?? []).find((a) => a.name === 'value');
      stored = attr?.t;
      put = (t) => { attr!.t = t; };
    } else {
      throw new GoodnetError(`weight ${link.index} of layer '${link.layer}' has no initializer to write back to`, file);
    }
    if (!stored) throw new GoodnetError(`weight ${link.index} of layer '${link.layer}': its ONNX tensor is missing`, file);
    const orig = tensorValue(stored, file, `initializer '${stored.name ?? ''}'`).data as Float32Array;
    if (sameBits(linkForward(link, Float32Array.from(orig)), current)) continue;
    const data = linkInverse(link, current);
    if (!data) throw new GoodnetError(`weight ${link.index} of layer '${link.layer}' comes from one shared ONNX value and no longer fits it`, file);
    put(floatTensor(stored.name ?? '', link.dims, data));
  }
  if (preprocessing) setMeta(m, PREPROCESSING_KEY, preprocessingToJson({ ...preprocessing, layout: src.inputLayout }));
  setMeta(m, INPUT_LAYOUT_KEY, src.inputLayout);
  return encodeModel(m);
}

// ---------------------------------------------------------------------------------------
// Export of models that did not come from ONNX

type Layer = tfl.layers.Layer;
interface Sym { name: string; rank: number; shape: (number | null)[] }

class Exporter {
  readonly nodes: NodeProto[] = [];
  readonly inits: TensorProto[] = [];
  private readonly used = new Set<string>();
  private readonly syms = new Map<number, Sym>();

  constructor(private readonly file: string) {}

  unique(base: string): string {
    let n = base;
    for (let i = 1; this.used.has(n); i++) n = `${base}_${i}`;
    this.used.add(n);
    return n;
  }

  node(op: string, inputs: string[], name: string, attrs: AttributeProto[] = []): string {
    const out = this.unique(`${name}_out`);
    this.nodes.push({ opType: op, name: this.unique(name), input: inputs, output: [out], attribute: attrs });
    return out;
  }

  init(name: string, dims: number[], data: Float32Array): string {
    const n = this.unique(name);
    this.inits.push(floatTensor(n, dims, data));
    return n;
  }

  ints(name: string, data: number[]): string {
    const n = this.unique(name);
    this.inits.push(int64Tensor(n, [data.length], data));
    return n;
  }

  err(layer: Layer, msg: string): GoodnetError {
    return new GoodnetError(`layer '${layer.name}' (${layer.getClassName()}): ${msg}`, this.file);
  }

  /** Same-padding pads [t, l, b, r] of TensorFlow for a static input size. */
  samePads(layer: Layer, size: (number | null)[], k: number[], s: number[], d: number[]): number[] {
    const out: number[] = [];
    const end: number[] = [];
    size.forEach((n, i) => {
      if (n === null) throw this.err(layer, 'needs a static input size');
      const eff = (k[i]! - 1) * d[i]! + 1;
      const o = Math.ceil(n / s[i]!);
      const total = Math.max((o - 1) * s[i]! + eff - n, 0);
      out.push(Math.floor(total / 2));
      end.push(total - Math.floor(total / 2));
    });
    return [...out, ...end];
  }

  activation(layer: Layer, x: Sym, act: string, name: string): Sym {
    const f = (op: string, attrs: AttributeProto[] = []) => ({ ...x, name: this.node(op, [x.name], name, attrs) });
    switch (act) {
      case 'linear': return x;
      case 'relu': return f('Relu');
      case 'sigmoid': return f('Sigmoid');
      case 'tanh': return f('Tanh');
      case 'softplus': return f('Softplus');
      case 'selu': return f('Selu');
      case 'elu': return f('Elu', [fAttr('alpha', 1)]);
      case 'hardSigmoid': case 'hard_sigmoid': return f('HardSigmoid', [fAttr('alpha', 0.2), fAttr('beta', 0.5)]);
      case 'relu6': return { ...x, name: this.node('Clip', [x.name, this.init(`${name}_min`, [], Float32Array.of(0)), this.init(`${name}_max`, [], Float32Array.of(6))], name) };
      case 'softmax': return f('Softmax', [iAttr('axis', x.rank === 4 ? 1 : -1)]);
      case 'swish': {
        const s = this.node('Sigmoid', [x.name], `${name}_sigmoid`);
        return { ...x, name: this.node('Mul', [x.name, s], name) };
      }
      default: throw this.err(layer, `activation '${act}' has no ONNX export`);
    }
  }

  layer(layer: Layer, xs: Sym[], outShape: (number | null)[]): Sym {
    const cls = layer.getClassName();
    const cfg = layer.getConfig() as Record<string, unknown>;
    const x = xs[0]!;
    const name = layer.name;
    const ws = layer.getWeights().map((w) => w.dataSync() as Float32Array);
    const shapeOf = (i: number) => layer.getWeights()[i]!.shape;
    const need4 = () => { if (x.rank !== 4) throw this.err(layer, 'input is not a feature map'); };
    const out = (n: string, rank = outShape.length): Sym => ({ name: n, rank, shape: outShape });
    if (cfg.dataFormat !== undefined && cfg.dataFormat !== 'channelsLast') throw this.err(layer, 'channels_first layers cannot be exported');
    switch (cls) {
      case 'Conv2D': case 'DepthwiseConv2D': {
        need4();
        const k = shapeOf(0) as number[];
        const [kh, kw, I, O] = k as [number, number, number, number];
        const dw = cls === 'DepthwiseConv2D';
        const outC = dw ? I * O : O;
        const s = asPair(cfg.strides), d = asPair(cfg.dilationRate);
        const pads = cfg.padding === 'same' ? this.samePads(layer, x.shape.slice(2), [kh, kw], s, d) : cfg.padding === 'valid' ? [0, 0, 0, 0] : (() => { throw this.err(layer, `padding '${String(cfg.padding)}' cannot be exported`); })();
        const W = this.init(`${name}.weight`, [outC, dw ? 1 : I, kh, kw], hwioToOihw(ws[0]!, outC, dw ? 1 : I, kh, kw));
        const inputs = [x.name, W];
        if (cfg.useBias && ws[1]) inputs.push(this.init(`${name}.bias`, [outC], ws[1]));
        const attrs = [isAttr('kernel_shape', [kh, kw]), isAttr('strides', s), isAttr('dilations', d), isAttr('pads', pads), iAttr('group', dw ? I : 1)];
        const y = out(this.node('Conv', inputs, name, attrs));
        return this.activation(layer, y, String(cfg.activation ?? 'linear'), `${name}_act`);
      }
      case 'Dense': {
        if (x.rank !== 2) throw this.err(layer, 'input is not a vector');
        const [K, O] = shapeOf(0) as [number, number];
        const inputs = [x.name, this.init(`${name}.weight`, [K, O], ws[0]!)];
        if (cfg.useBias && ws[1]) inputs.push(this.init(`${name}.bias`, [O], ws[1]));
        const y = out(this.node('Gemm', inputs, name));
        return this.activation(layer, y, String(cfg.activation ?? 'linear'), `${name}_act`);
      }
      case 'MaxPooling2D': case 'AveragePooling2D': {
        need4();
        const k = asPair(cfg.poolSize), s = asPair(cfg.strides ?? cfg.poolSize);
        const pads = cfg.padding === 'same' ? this.samePads(layer, x.shape.slice(2), k, s, [1, 1]) : [0, 0, 0, 0];
        const attrs = [isAttr('kernel_shape', k), isAttr('strides', s), isAttr('pads', pads)];
        if (cls === 'AveragePooling2D') attrs.push(iAttr('count_include_pad', 0));
        return out(this.node(cls === 'MaxPooling2D' ? 'MaxPool' : 'AveragePool', [x.name], name, attrs));
      }
      case 'GlobalAveragePooling2D': case 'GlobalMaxPooling2D': {
        need4();
        const p = this.node(cls === 'GlobalMaxPooling2D' ? 'GlobalMaxPool' : 'GlobalAveragePool', [x.name], name);
        return out(this.node('Flatten', [p], `${name}_flatten`, [iAttr('axis', 1)]), 2);
      }
      case 'Flatten': {
        if (x.rank === 2) return x;
        need4();
        // Keras flattens (H,W,C): back to channel-last first.
        const t = this.node('Transpose', [x.name], `${name}_nhwc`, [isAttr('perm', [0, 2, 3, 1])]);
        return out(this.node('Flatten', [t], name, [iAttr('axis', 1)]), 2);
      }
      case 'BatchNormalization': {
        const axis = cfg.axis as number | number[];
        const ax = Array.isArray(axis) ? axis[0] : axis;
        if (!(ax === -1 || ax === x.rank - 1)) throw this.err(layer, `normalizes axis ${String(axis)}; only the channel axis can be exported`);
        const C = (outShape[1] ?? 0) as number;
        let i = 0;
        const gamma = cfg.scale === false ? new Float32Array(C).fill(1) : ws[i++]!;
        const beta = cfg.center === false ? new Float32Array(C) : ws[i++]!;
        const mean = ws[i++]!, variance = ws[i++]!;
        const ins = [x.name, this.init(`${name}.weight`, [C], gamma), this.init(`${name}.bias`, [C], beta), this.init(`${name}.running_mean`, [C], mean), this.init(`${name}.running_var`, [C], variance)];
        return out(this.node('BatchNormalization', ins, name, [fAttr('epsilon', Number(cfg.epsilon ?? 1e-3))]));
      }
      case 'Activation': return this.activation(layer, x, String(cfg.activation), name);
      case 'ReLU': {
        if (cfg.negativeSlope || cfg.threshold) throw this.err(layer, 'ReLU with a negative slope or threshold cannot be exported');
        if (cfg.maxValue === null || cfg.maxValue === undefined) return this.activation(layer, x, 'relu', name);
        return { ...x, name: this.node('Clip', [x.name, this.init(`${name}_min`, [], Float32Array.of(0)), this.init(`${name}_max`, [], Float32Array.of(Number(cfg.maxValue)))], name) };
      }
      case 'LeakyReLU': return { ...x, name: this.node('LeakyRelu', [x.name], name, [fAttr('alpha', Number(cfg.alpha ?? 0.3))]) };
      case 'ELU': return { ...x, name: this.node('Elu', [x.name], name, [fAttr('alpha', Number(cfg.alpha ?? 1))]) };
      case 'Softmax': return this.activation(layer, x, 'softmax', name);
      case 'PReLU': {
        const C = ws[0]!.length;
        const slopeShape = x.rank === 4 ? (shapeOf(0).length === 3 && shapeOf(0)[0] === 1 && shapeOf(0)[1] === 1 ? [C, 1, 1] : undefined) : [C];
        if (!slopeShape) throw this.err(layer, 'PReLU with per-pixel slopes cannot be exported');
        return { ...x, name: this.node('PRelu', [x.name, this.init(`${name}.weight`, slopeShape, ws[0]!)], name) };
      }
      case 'Dropout': case 'SpatialDropout2D': case 'GaussianNoise': case 'GaussianDropout': case 'AlphaDropout': return x;
      case 'ZeroPadding2D': case 'OnnxPad2D': {
        need4();
        const p = cfg.padding as number | number[] | number[][];
        const [[t, b], [l, r]] = typeof p === 'number' ? [[p, p], [p, p]] : Array.isArray(p[0]) ? (p as number[][]) : [[p[0] as number, p[0] as number], [p[1] as number, p[1] as number]];
        const ins = [x.name, this.ints(`${name}_pads`, [0, 0, t!, l!, 0, 0, b!, r!])];
        if (cls === 'OnnxPad2D') ins.push(this.init(`${name}_value`, [], Float32Array.of(cfg.value === null ? -Infinity : Number(cfg.value))));
        return out(this.node('Pad', ins, name, [sAttr('mode', 'constant')]));
      }
      case 'Add': case 'Multiply': case 'OnnxSub': {
        const op = cls === 'Add' ? 'Add' : cls === 'Multiply' ? 'Mul' : 'Sub';
        let acc = xs[0]!.name;
        xs.slice(1).forEach((y, i) => { acc = this.node(op, [acc, y.name], i === xs.length - 2 ? name : `${name}_${i}`); });
        return out(acc);
      }
      case 'Concatenate': {
        const axis = Number(cfg.axis ?? -1);
        if (!(axis === -1 || axis === x.rank - 1)) throw this.err(layer, 'only channel concatenation can be exported');
        return out(this.node('Concat', xs.map((y) => y.name), name, [iAttr('axis', 1)]));
      }
      case 'OnnxConstArith': {
        const v = cfg.value as number[];
        const shape = cfg.shape as number[] | undefined;
        // NHWC-shaped constants ([H, W, C]) go to NCHW ([C, H, W]).
        const dims = shape ? (shape.length === 3 ? [shape[2]!, shape[0]!, shape[1]!] : shape) : v.length === 1 ? [] : x.rank === 4 ? [v.length, 1, 1] : [v.length];
        const data = shape && shape.length === 3 ? hwioToOihw(Float32Array.from(v), shape[2]!, 1, shape[0]!, shape[1]!) : Float32Array.from(v);
        const c = this.init(`${name}_value`, dims, data);
        const op = String(cfg.op);
        const onnxOp = { add: 'Add', sub: 'Sub', mul: 'Mul', div: 'Div', rsub: 'Sub', rdiv: 'Div' }[op];
        if (!onnxOp) throw this.err(layer, `unknown op '${op}'`);
        return { ...x, name: this.node(onnxOp, op.startsWith('r') ? [c, x.name] : [x.name, c], name) };
      }
      case 'OnnxHardSigmoid': return { ...x, name: this.node('HardSigmoid', [x.name], name, [fAttr('alpha', Number(cfg.alpha)), fAttr('beta', Number(cfg.beta))]) };
      case 'OnnxHardSwish': return { ...x, name: this.node('HardSwish', [x.name], name) };
      case 'OnnxClip': {
        const ins = [x.name, cfg.min === null ? '' : this.init(`${name}_min`, [], Float32Array.of(Number(cfg.min))), cfg.max === null ? '' : this.init(`${name}_max`, [], Float32Array.of(Number(cfg.max)))];
        return { ...x, name: this.node('Clip', ins, name) };
      }
      default:
        throw this.err(layer, 'has no ONNX export in goodnet');
    }
  }

  build(net: tfl.LayersModel): { input: string; output: string; inShape: number[]; outShape: (number | null)[] } {
    if (net.inputs.length !== 1 || net.outputs.length !== 1) throw new GoodnetError('only models with one input and one output can be exported to ONNX', this.file);
    const inT = net.inputs[0]!;
    const inShape = inT.shape.slice(1) as number[];
    if (inShape.length !== 3 || inShape.some((d) => d === null)) throw new GoodnetError(`model input (${inT.shape.join(',')}) is not an (N,H,W,C) image batch`, this.file);
    const input = this.unique('input');
    const [H, W, C] = inShape as [number, number, number];
    const nchw = this.node('Transpose', [input], 'input_to_nchw', [isAttr('perm', [0, 3, 1, 2])]);
    this.syms.set(inT.id, { name: nchw, rank: 4, shape: [null, C, H, W] });
    for (const layer of net.layers) {
      if (layer.getClassName() === 'InputLayer') continue;
      const node = layer.inboundNodes.find((n) => (n.inputTensors as tfl.SymbolicTensor[]).every((t) => this.syms.has(t.id)));
      if (!node) throw this.err(layer, 'is not connected to the model input');
      const xs = (node.inputTensors as tfl.SymbolicTensor[]).map((t) => this.syms.get(t.id)!);
      const outT = node.outputTensors[0] as tfl.SymbolicTensor;
      const s = outT.shape;
      const onnxShape = s.length === 4 ? [s[0]!, s[3]!, s[1]!, s[2]!] : [...s];
      const y = this.layer(layer, xs, onnxShape);
      this.syms.set(outT.id, { ...y, shape: onnxShape });
    }
    const outT = net.outputs[0]!;
    const y = this.syms.get(outT.id);
    if (!y) throw new GoodnetError('the model output is not reachable from its input', this.file);
    if (y.rank !== 2) throw new GoodnetError(`model output (${outT.shape.join(',')}) is not a class vector (N,K)`, this.file);
    const output = this.unique('output');
    this.nodes.push({ opType: 'Identity', name: this.unique('output_identity'), input: [y.name], output: [output] });
    return { input, output, inShape, outShape: outT.shape };
  }
}

function asPair(v: unknown): number[] {
  if (typeof v === 'number') return [v, v];
  if (Array.isArray(v) && v.length === 2) return v.map(Number);
  if (Array.isArray(v) && v.length === 1) return [Number(v[0]), Number(v[0])];
  return [1, 1];
}
const fAttr = (name: string, f: number): AttributeProto => ({ name, type: AT.FLOAT, f });
const iAttr = (name: string, i: number): AttributeProto => ({ name, type: AT.INT, i });
const isAttr = (name: string, ints: number[]): AttributeProto => ({ name, type: AT.INTS, ints });
const sAttr = (name: string, s: string): AttributeProto => ({ name, type: AT.STRING, s: Buffer.from(s) });

const dimsOf = (shape: (number | null)[]) => ({ dim: shape.map((d) => (d === null ? { dimParam: 'batch' } : { dimValue: d })) });

/** A clean ONNX graph (opset 17, NHWC input transposed to NCHW inside) of a tfjs-layers model. */
export function exportOnnx(net: tfl.LayersModel, preprocessing?: Preprocessing, file = 'model.onnx'): Uint8Array {
  const ex = new Exporter(file);
  let built: ReturnType<Exporter['build']> | undefined;
  tf.tidy(() => { built = ex.build(net); });
  const { input, output, inShape, outShape } = built!;
  const m: ModelProto = {
    irVersion: 8,
    opsetImport: [{ domain: '', version: EXPORT_OPSET }],
    producerName: 'goodnet',
    producerVersion: '0.1.0',
    graph: {
      name: net.name || 'goodnet',
      node: ex.nodes,
      initializer: ex.inits,
      input: [{ name: input, type: { tensorType: { elemType: 1, shape: dimsOf([null, ...inShape]) } } }],
      output: [{ name: output, type: { tensorType: { elemType: 1, shape: dimsOf(outShape) } } }],
    },
    metadataProps: [],
  };
  setMeta(m, INPUT_LAYOUT_KEY, 'nhwc');
  if (preprocessing) setMeta(m, PREPROCESSING_KEY, preprocessingToJson({ ...preprocessing, layout: 'nhwc' }));
  return encodeModel(m);
}

/** The ONNX bytes of a model: its original graph when it came from ONNX, else a clean export. */
export function onnxBytes(model: OnnxWritable | tfl.LayersModel, file = 'model.onnx'): Uint8Array {
  const m: OnnxWritable = 'net' in model ? model : { net: model };
  return m.onnx ? onnxWithWeights(m.onnx, m.net, m.preprocessing, file) : exportOnnx(m.net, m.preprocessing, file);
}

/** Write a model as ONNX, atomically (see onnxBytes). */
export async function writeOnnx(model: OnnxWritable | tfl.LayersModel, path: string, options: AtomicOptions = {}): Promise<void> {
  const bytes = onnxBytes(model, path);
  await writeAtomically(path, (tmp) => writeFileSync(tmp, bytes), options);
}
