/**
 * ONNX in: a graph exported by torch.onnx.export (opsets 9 to 21) becomes a tfjs-layers
 * LayersModel built from standard layers (Conv2D, DepthwiseConv2D, BatchNormalization,
 * ReLU, MaxPooling2D, Dense, Add, ...), converted from NCHW to NHWC exactly: conv kernels
 * OIHW -> HWIO, the rows of a Gemm/MatMul after a Flatten/Reshape of a feature map
 * permuted from channel-first (C,H,W) to channel-last (H,W,C) order. Shape arithmetic
 * (Shape -> Gather -> Concat -> Reshape, the pads of F.pad) is evaluated at load time.
 *
 * Every weight remembers the initializer it came from and its transform, so writeOnnx
 * (onnx_write.ts) can put changed weights back into the original graph.
 */
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { GoodnetError } from '../errors.js';
import { withWeightBudget } from './limits.js';
import { OnnxClip, OnnxConstArith, OnnxHardSigmoid, OnnxHardSwish, OnnxPad2D, OnnxSub, type ConstOp } from './onnx_layers.js';
import {
  DT, decodeModel, num, tensorValue,
  type AttributeProto, type ModelProto, type NodeProto, type TensorProto,
} from './onnx_proto.js';
import { PREPROCESSING_KEY, preprocessingFromJson, type InputLayout, type Preprocessing } from './preprocess.js';

/** How one tfjs weight is made from an ONNX tensor (and back). */
export type WeightTransform =
  | { kind: 'conv' }
  | { kind: 'grouped'; group: number }
  | { kind: 'depthwise' }
  | { kind: 'dense'; transB: boolean; alpha: number; perm?: Int32Array }
  | { kind: 'scale'; factor: number }
  | { kind: 'repeat'; count: number };

/** Where a tfjs weight lives in the ONNX file. */
export interface WeightLink {
  layer: string;
  /** Index into layer.getWeights(). */
  index: number;
  /** Initializer name, or the index of the Constant node holding it. */
  initializer?: string;
  constantNode?: number;
  /** ONNX dims of the stored tensor. */
  dims: number[];
  transform: WeightTransform;
}

/** What a model loaded from ONNX keeps so that it can be written back as the same graph. */
export interface OnnxSource {
  /** The original file's bytes (decoded afresh for every write, so the original is never modified). */
  bytes: Uint8Array;
  weights: WeightLink[];
  inputLayout: InputLayout;
  opset: number;
}

export interface OnnxModel {
  net: tfl.LayersModel;
  onnx: OnnxSource;
  /** From metadata_props[PREPROCESSING_KEY] (layout filled in from the graph), or just the layout. */
  preprocessing: Preprocessing;
}

/** Opsets goodnet reads (default domain). */
export const ONNX_OPSETS = [9, 21] as const;

export { looksLikeOnnx } from './onnx_sniff.js';

// ---------------------------------------------------------------------------------------
// Values flowing through the graph

interface Const { k: 'const'; dims: number[]; data: Float32Array | Float64Array; isFloat: boolean; initializer?: string; constantNode?: number }
/**
 * An activation. rank 4: ONNX (N,C,H,W) held as tfjs NHWC (`order`: tfjs axis i is ONNX
 * axis order[i]; [0,2,3,1] for NCHW graphs). rank 2: (N,K); `chw` when it is a flattened
 * (C,H,W) feature map held in (H,W,C) order. pooled: ONNX (N,C,1,1) held as tfjs (N,C).
 */
interface Act { k: 'act'; t: tfl.SymbolicTensor; rank: 2 | 4; order?: number[]; chw?: [number, number, number]; pooled?: boolean; denseNoBias?: tfl.layers.Layer }
type Val = Const | Act;

const NHWC_ORDER = [0, 2, 3, 1];
const sameOrder = (a?: number[], b?: number[]) => !!a && !!b && a.every((v, i) => v === b[i]);

function attrMap(node: NodeProto): Map<string, AttributeProto> {
  return new Map((node.attribute ?? []).map((a) => [a.name ?? '', a]));
}

class Converter {
  private readonly vals = new Map<string, Val>();
  private readonly uses = new Map<string, number>();
  private readonly consumers = new Map<string, NodeProto[]>();
  /** Relu nodes folded into the Conv2D/Dense before them (activation 'relu', as Keras builds them). */
  private readonly fused = new Set<NodeProto>();
  private readonly names = new Set<string>();
  readonly links: WeightLink[] = [];
  /** The graph input's batch size when it is fixed (torch exports without dynamic_axes: 1). */
  private fixedBatch = NaN;
  /** True when the graph ends in logits and a softmax layer was appended (see convert). */
  addedSoftmax = false;
  inputLayout: InputLayout = 'nchw';
  input?: tfl.SymbolicTensor;
  opset = 0;

  constructor(private readonly model: ModelProto, private readonly file: string) {}

  private err(node: NodeProto | undefined, msg: string): GoodnetError {
    return new GoodnetError(node ? `node '${node.name || node.output?.[0] || '?'}' (${node.opType}): ${msg}` : msg, this.file);
  }

  private uniqueName(base: string): string {
    let n = base.replace(/[^A-Za-z0-9_.-]+/g, '_').replace(/^[_.-]+|[_.-]+$/g, '') || 'layer';
    if (/^\d/.test(n)) n = `l_${n}`;
    let name = n;
    for (let i = 1; this.names.has(name); i++) name = `${n}_${i}`;
    this.names.add(name);
    return name;
  }

  private layerName(node: NodeProto, weight?: string): string {
    if (weight && !weight.startsWith('onnx::')) return this.uniqueName(weight.replace(/\.(weight|bias)$/, ''));
    return this.uniqueName(node.name || `${node.opType}_${node.output?.[0] ?? ''}`);
  }

  // ---- value access

  private val(node: NodeProto, i: number): Val {
    const name = node.input?.[i];
    if (!name) throw this.err(node, `input ${i} is missing`);
    const v = this.vals.get(name);
    if (!v) throw this.err(node, `input '${name}' is not produced by any earlier node, initializer or graph input`);
    return v;
  }
  private optVal(node: NodeProto, i: number): Val | undefined {
    const name = node.input?.[i];
    return name ? this.val(node, i) : undefined;
  }
  private cst(node: NodeProto, i: number, what: string): Const {
    const v = this.val(node, i);
    if (v.k !== 'const') throw this.err(node, `${what} (input '${node.input![i]}') must be a constant or initializer`);
    return v;
  }
  private act(node: NodeProto, i: number): Act {
    const v = this.val(node, i);
    if (v.k !== 'act') throw this.err(node, `input '${node.input![i]}' must be a tensor computed from the graph input`);
    return v;
  }
  private set(node: NodeProto, v: Val, i = 0): void {
    const name = node.output?.[i];
    if (name) this.vals.set(name, v);
  }
  private ints(node: NodeProto, a: Map<string, AttributeProto>, name: string, def?: number[]): number[] {
    const x = a.get(name);
    if (!x) {
      if (def) return def;
      throw this.err(node, `attribute '${name}' is missing`);
    }
    return (x.ints ?? []).map(num);
  }
  private int(a: Map<string, AttributeProto>, name: string, def: number): number {
    const x = a.get(name);
    return x ? num(x.i) : def;
  }
  private float(a: Map<string, AttributeProto>, name: string, def: number): number {
    const x = a.get(name);
    return x && x.f !== undefined ? x.f : def;
  }
  private str(a: Map<string, AttributeProto>, name: string, def: string): string {
    const x = a.get(name);
    return x?.s ? Buffer.from(x.s).toString('utf8') : def;
  }

  /** ONNX dims of an activation (batch NaN). */
  private onnxDims(v: Act): number[] {
    const s = v.t.shape.map((d) => (d === null ? NaN : d));
    if (v.rank === 2) return v.pooled ? [NaN, s[1]!, 1, 1] : [NaN, s[1]!];
    const out = new Array<number>(4);
    v.order!.forEach((onnxAxis, i) => { out[onnxAxis] = s[i]!; });
    out[0] = NaN;
    return out;
  }

  private apply(layer: tfl.layers.Layer, inputs: tfl.SymbolicTensor | tfl.SymbolicTensor[], node: NodeProto): tfl.SymbolicTensor {
    try {
      return layer.apply(inputs) as tfl.SymbolicTensor;
    } catch (err) {
      if (err instanceof GoodnetError) throw err;
      throw this.err(node, `cannot build layer '${layer.name}': ${String((err as Error).message).split('\n')[0]}`);
    }
  }

  private checkFinite(node: NodeProto, data: Float32Array, what: string): void {
    for (let i = 0; i < data.length; i++) {
      if (!Number.isFinite(data[i]!)) throw this.err(node, `${what} contains ${Number.isNaN(data[i]!) ? 'NaN' : 'Inf'}`);
    }
  }

  /** Weights set once the layer is built; links recorded for writing back. */
  private weights(layer: tfl.layers.Layer, node: NodeProto, ws: { data: Float32Array; from?: Const; dims?: number[]; transform: WeightTransform }[]): void {
    ws.forEach((w, index) => {
      this.checkFinite(node, w.data, `weight ${index} of layer '${layer.name}'`);
      if (w.from) {
        this.links.push({ layer: layer.name, index, initializer: w.from.initializer, constantNode: w.from.constantNode, dims: w.dims ?? w.from.dims, transform: w.transform });
      }
    });
    const shapes = layer.weights.map((w) => w.shape);
    ws.forEach((w, i) => {
      const n = (shapes[i] ?? []).reduce((p: number, q) => p * (q ?? 1), 1);
      if (n !== w.data.length) throw this.err(node, `weight ${i} of layer '${layer.name}' has ${w.data.length} values, the layer needs ${n}`);
    });
    const ts = ws.map((w, i) => tfTensor(w.data, shapes[i]! as number[]));
    layer.setWeights(ts);
    tf.dispose(ts);
  }

  // ---- the graph

  async convert(): Promise<tfl.LayersModel> {
    const m = this.model;
    const g = m.graph!;
    if (m.trainingInfo && m.trainingInfo.length > 0) throw new GoodnetError('is an ONNX training graph (training_info); export the model for inference', this.file);
    const ops = (m.opsetImport ?? []).filter((o) => !o.domain || o.domain === 'ai.onnx');
    this.opset = ops.length ? num(ops[0]!.version) : 0;
    if (this.opset < ONNX_OPSETS[0] || this.opset > ONNX_OPSETS[1]) {
      throw new GoodnetError(`ONNX opset ${this.opset} is not supported (goodnet reads opsets ${ONNX_OPSETS[0]} to ${ONNX_OPSETS[1]})`, this.file);
    }
    if (g.sparseInitializer && g.sparseInitializer.length > 0) throw new GoodnetError('has sparse initializers, which goodnet does not read', this.file);
    (g.initializer ?? []).forEach((t, i) => {
      const name = t.name ?? '';
      const v = tensorValue(t, this.file, `initializer '${name || i}'`);
      this.vals.set(name, { k: 'const', ...v, initializer: name });
    });
    for (const n of g.node ?? []) {
      for (const i of n.input ?? []) {
        if (!i) continue;
        this.uses.set(i, (this.uses.get(i) ?? 0) + 1);
        this.consumers.set(i, [...(this.consumers.get(i) ?? []), n]);
      }
    }
    for (const o of g.output ?? []) this.uses.set(o.name ?? '', (this.uses.get(o.name ?? '') ?? 0) + 1);

    const inputs = (g.input ?? []).filter((i) => !this.vals.has(i.name ?? ''));
    if (inputs.length !== 1) throw new GoodnetError(`ONNX graph has ${inputs.length} inputs; goodnet needs exactly one image input`, this.file);
    if ((g.output ?? []).length !== 1) throw new GoodnetError(`ONNX graph has ${(g.output ?? []).length} outputs; goodnet needs exactly one (the class scores)`, this.file);
    const inp = inputs[0]!;
    const tt = inp.type?.tensorType;
    if (!tt || (tt.elemType ?? DT.FLOAT) !== DT.FLOAT) throw new GoodnetError(`graph input '${inp.name}' is not a float32 tensor`, this.file);
    const dims = tt.shape?.dim ?? [];
    if (dims.length !== 4) throw new GoodnetError(`graph input '${inp.name}' has ${dims.length} dimensions; goodnet needs an image batch (N,C,H,W) or (N,H,W,C)`, this.file);
    const d = dims.map((x) => (x.dimValue !== undefined && x.dimValue !== null ? num(x.dimValue) : NaN));
    if (d.slice(1).some((x) => !Number.isSafeInteger(x) || x <= 0 || x > 65536)) {
      throw new GoodnetError(`graph input '${inp.name}' has dynamic or invalid image dimensions (${dims.map((x) => x.dimParam || num(x.dimValue)).join(',')}); only the batch dimension may be symbolic`, this.file);
    }
    this.fixedBatch = d[0]!;
    // NHWC input when every consumer transposes it to NCHW (goodnet's own export of Keras models).
    const consumers = (g.node ?? []).filter((n) => (n.input ?? []).includes(inp.name ?? ''));
    const nhwc = consumers.length > 0 && consumers.every((n) => n.opType === 'Transpose' && (attrMap(n).get('perm')?.ints ?? []).map(num).join() === '0,3,1,2');
    this.inputLayout = nhwc ? 'nhwc' : 'nchw';
    const shape = nhwc ? [d[1]!, d[2]!, d[3]!] : [d[2]!, d[3]!, d[1]!];
    this.input = tfl.input({ shape, name: this.uniqueName(inp.name || 'input') });
    this.vals.set(inp.name ?? '', { k: 'act', t: this.input, rank: 4, order: nhwc ? [0, 1, 2, 3] : NHWC_ORDER });

    for (const [idx, node] of (g.node ?? []).entries()) {
      if (node.domain && node.domain !== 'ai.onnx') throw this.err(node, `operator domain '${node.domain}' is not supported`);
      this.node(node, idx);
    }
    const outName = g.output![0]!.name ?? '';
    const out = this.vals.get(outName);
    if (!out || out.k !== 'act') throw new GoodnetError(`graph output '${outName}' is not computed from the input`, this.file);
    if (out.rank !== 2 || out.chw) throw new GoodnetError(`graph output '${outName}' is not a class-score vector (N,K)`, this.file);
    // PyTorch classifiers usually end in logits; goodnet's models output probabilities (STRIP's
    // entropy, training's cross-entropy, reported confidences). A weightless softmax layer is
    // appended here; written back, the original graph keeps its own output.
    const src = out.t.sourceLayer as tfl.layers.Layer;
    const act = (src.getConfig() as { activation?: unknown }).activation;
    // A graph that already ends in Softmax (or Sigmoid, per-class scores) is left as it is.
    const probabilities = src.getClassName() === 'Softmax' || act === 'softmax' || act === 'sigmoid';
    this.addedSoftmax = !probabilities;
    const t = probabilities ? out.t
      : tfl.layers.activation({ activation: 'softmax', name: this.uniqueName('goodnet_softmax') }).apply(out.t) as tfl.SymbolicTensor;
    return tfl.model({ inputs: this.input, outputs: t, name: this.uniqueName(g.name || 'onnx') });
  }

  private node(node: NodeProto, idx: number): void {
    const op = node.opType ?? '';
    const a = attrMap(node);
    switch (op) {
      case 'Constant': return this.set(node, this.constantNode(node, a, idx));
      case 'Identity': return this.set(node, this.val(node, 0));
      case 'Conv': return this.conv(node, a);
      case 'BatchNormalization': return this.batchNorm(node, a);
      case 'Relu': return this.fused.has(node) ? this.set(node, this.val(node, 0)) : this.activation(node, 'relu');
      case 'Sigmoid': return this.activation(node, 'sigmoid');
      case 'Tanh': return this.activation(node, 'tanh');
      case 'Softplus': return this.activation(node, 'softplus');
      case 'Elu': {
        const alpha = this.float(a, 'alpha', 1);
        return this.unary(node, (nm) => (alpha === 1 ? tfl.layers.activation({ activation: 'elu', name: nm }) : tfl.layers.elu({ alpha, name: nm })));
      }
      case 'LeakyRelu': {
        const alpha = this.float(a, 'alpha', 0.01);
        return this.unary(node, (nm) => tfl.layers.leakyReLU({ alpha, name: nm }));
      }
      case 'HardSigmoid': {
        const alpha = this.float(a, 'alpha', 0.2), beta = this.float(a, 'beta', 0.5);
        return this.unary(node, (nm) => new OnnxHardSigmoid({ alpha, beta, name: nm }));
      }
      case 'HardSwish': return this.unary(node, (nm) => new OnnxHardSwish({ name: nm }));
      case 'Clip': return this.clip(node, a);
      case 'PRelu': return this.prelu(node);
      case 'Softmax': return this.softmax(node, a);
      case 'MaxPool': case 'AveragePool': return this.pool(node, a, op === 'MaxPool');
      case 'GlobalAveragePool': case 'GlobalMaxPool': {
        const x = this.nchw(node, this.act(node, 0));
        const layer = op === 'GlobalMaxPool' ? tfl.layers.globalMaxPooling2d({ name: this.layerName(node) }) : tfl.layers.globalAveragePooling2d({ name: this.layerName(node) });
        return this.set(node, { k: 'act', t: this.apply(layer, x.t, node), rank: 2, pooled: true });
      }
      case 'Flatten': {
        const v = this.val(node, 0);
        const axis = this.int(a, 'axis', 1);
        if (v.k === 'const') return this.set(node, reshapeConst(v, [axis === 0 ? 1 : v.dims.slice(0, axis).reduce((x, y) => x * y, 1), -1]));
        if (axis !== 1) throw this.err(node, `Flatten on axis ${axis} is not supported (only axis 1)`);
        return this.set(node, this.flatten(node, v));
      }
      case 'Reshape': return this.reshape(node, a);
      case 'Squeeze': case 'Unsqueeze': return this.squeeze(node, a, op === 'Unsqueeze');
      case 'Transpose': return this.transpose(node, a);
      case 'Gemm': return this.gemm(node, a);
      case 'MatMul': return this.matmul(node);
      case 'Add': case 'Sub': case 'Mul': case 'Div': return this.binary(node, op);
      case 'Concat': return this.concat(node, a);
      case 'Pad': return this.pad(node, a);
      case 'Dropout': {
        if (node.output && node.output.length > 1 && node.output[1] && (this.uses.get(node.output[1]) ?? 0) > 0) throw this.err(node, 'uses the dropout mask (a training graph)');
        const v = this.val(node, 0);
        if (v.k === 'const') return this.set(node, v);
        const ratio = a.has('ratio') ? this.float(a, 'ratio', 0.5) : (this.optVal(node, 1)?.k === 'const' ? (this.optVal(node, 1) as Const).data[0]! : 0.5);
        return this.unary(node, (nm) => tfl.layers.dropout({ rate: Math.min(Math.max(ratio, 0), 0.99), name: nm }));
      }
      case 'Shape': {
        const v = this.val(node, 0);
        let dims = v.k === 'const' ? v.dims : this.onnxDims(v);
        const start = this.int(a, 'start', 0), end = a.has('end') ? this.int(a, 'end', dims.length) : dims.length;
        dims = dims.slice(start < 0 ? dims.length + start : start, end < 0 ? dims.length + end : end);
        return this.set(node, { k: 'const', dims: [dims.length], data: Float64Array.from(dims), isFloat: false });
      }
      case 'Gather': return this.set(node, gatherConst(this.cst(node, 0, 'Gather data'), this.cst(node, 1, 'Gather indices'), this.int(a, 'axis', 0), (m) => this.err(node, m)));
      case 'Cast': {
        const v = this.val(node, 0);
        const to = this.int(a, 'to', DT.FLOAT);
        if (v.k === 'act') {
          if (to !== DT.FLOAT) throw this.err(node, 'casts a tensor to a non-float type');
          return this.set(node, v);
        }
        const isFloat = to === DT.FLOAT || to === DT.DOUBLE || to === 10 || to === 16;
        return this.set(node, { k: 'const', dims: v.dims, data: isFloat ? Float32Array.from(v.data) : Float64Array.from(v.data, (x) => (Number.isNaN(x) ? x : Math.trunc(x))), isFloat });
      }
      case 'ConstantOfShape': {
        const s = this.cst(node, 0, 'shape');
        const dims = Array.from(s.data);
        if (dims.some((x) => !Number.isSafeInteger(x) || x < 0) || dims.reduce((p, q) => p * q, 1) > 1e6) throw this.err(node, `invalid shape (${dims.join(',')})`);
        const value = a.get('value')?.t ? tensorValue(a.get('value')!.t!, this.file, `value of node '${node.name}'`) : { dims: [1], data: new Float32Array(1), isFloat: true };
        const n = dims.reduce((p, q) => p * q, 1);
        const data = value.isFloat ? new Float32Array(n).fill(value.data[0] ?? 0) : new Float64Array(n).fill(value.data[0] ?? 0);
        return this.set(node, { k: 'const', dims, data, isFloat: value.isFloat });
      }
      case 'Slice': return this.set(node, this.sliceConst(node, a));
      default:
        throw this.err(node, 'operator is not supported by goodnet');
    }
  }

  private constantNode(node: NodeProto, a: Map<string, AttributeProto>, idx: number): Const {
    const what = `value of Constant '${node.name || node.output?.[0]}'`;
    const t = a.get('value')?.t;
    if (t) return { k: 'const', ...tensorValue(t as TensorProto, this.file, what), constantNode: idx };
    if (a.has('value_float')) return { k: 'const', dims: [], data: Float32Array.of(this.float(a, 'value_float', 0)), isFloat: true };
    if (a.has('value_floats')) { const f = a.get('value_floats')!.floats ?? []; return { k: 'const', dims: [f.length], data: Float32Array.from(f), isFloat: true }; }
    if (a.has('value_int')) return { k: 'const', dims: [], data: Float64Array.of(this.int(a, 'value_int', 0)), isFloat: false };
    if (a.has('value_ints')) { const f = (a.get('value_ints')!.ints ?? []).map(num); return { k: 'const', dims: [f.length], data: Float64Array.from(f), isFloat: false }; }
    throw this.err(node, 'has no value attribute goodnet reads (value, value_float(s), value_int(s))');
  }

  /** The Relu node that alone reads this node's output (not a graph output), to fold into it. */
  private foldRelu(node: NodeProto): 'relu' | undefined {
    const out = node.output?.[0] ?? '';
    const cs = this.consumers.get(out) ?? [];
    if (cs.length !== 1 || this.uses.get(out) !== 1 || cs[0]!.opType !== 'Relu') return undefined;
    this.fused.add(cs[0]!);
    return 'relu';
  }

  /** An NCHW-ordered 4-D activation (held NHWC), or an error. */
  private nchw(node: NodeProto, x: Act): Act {
    if (x.rank !== 4 || !sameOrder(x.order, NHWC_ORDER)) throw this.err(node, 'input is not a (N,C,H,W) feature map');
    return x;
  }

  private unary(node: NodeProto, make: (name: string) => tfl.layers.Layer): void {
    const v = this.val(node, 0);
    if (v.k !== 'act') throw this.err(node, 'applied to a constant (not supported)');
    this.set(node, { ...v, t: this.apply(make(this.layerName(node)), v.t, node), denseNoBias: undefined });
  }

  private activation(node: NodeProto, activation: string): void {
    this.unary(node, (name) => tfl.layers.activation({ activation: activation as never, name }));
  }

  private clip(node: NodeProto, a: Map<string, AttributeProto>): void {
    let min: number | null, max: number | null;
    if (this.opset < 11) {
      min = a.has('min') ? this.float(a, 'min', 0) : null;
      max = a.has('max') ? this.float(a, 'max', 0) : null;
    } else {
      const lo = this.optVal(node, 1), hi = this.optVal(node, 2);
      if ((lo && lo.k !== 'const') || (hi && hi.k !== 'const')) throw this.err(node, 'bounds must be constants');
      min = lo ? (lo as Const).data[0]! : null;
      max = hi ? (hi as Const).data[0]! : null;
    }
    if (min !== null && !Number.isFinite(min)) min = min < 0 ? null : min;
    if (max !== null && !Number.isFinite(max)) max = max > 0 ? null : max;
    if (min === 0 && max === null) return this.activation(node, 'relu');
    if (min === 0 && max === 6) return this.unary(node, (name) => tfl.layers.reLU({ maxValue: 6, name }));
    this.unary(node, (name) => new OnnxClip({ min, max, name }));
  }

  private prelu(node: NodeProto): void {
    const x = this.act(node, 0);
    const s = this.cst(node, 1, 'slope');
    const n = s.data.length;
    const channels = x.rank === 4 ? this.onnxDims(x)[1]! : x.t.shape[1]!;
    if (x.rank === 4) this.nchw(node, x);
    if (n !== 1 && (n !== channels || x.chw)) throw this.err(node, `slope has ${n} values; need 1 or one per channel (${channels})`);
    const name = this.layerName(node, s.initializer);
    const layer = tfl.layers.prelu({ name, ...(x.rank === 4 ? { sharedAxes: [1, 2] } : {}) });
    const t = this.apply(layer, x.t, node);
    const data = n === 1 ? new Float32Array(channels).fill(s.data[0]!) : Float32Array.from(s.data);
    this.weights(layer, node, [{ data, from: s, transform: n === 1 ? { kind: 'repeat', count: channels } : { kind: 'scale', factor: 1 } }]);
    this.set(node, { ...x, t, denseNoBias: undefined });
  }

  private softmax(node: NodeProto, a: Map<string, AttributeProto>): void {
    const x = this.act(node, 0);
    const axis = this.int(a, 'axis', this.opset < 13 ? 1 : -1);
    const rank = x.pooled ? 4 : x.rank;
    const ax = axis < 0 ? axis + rank : axis;
    if (x.rank === 2 && !x.pooled && ax === 1 && !x.chw) return this.activation(node, 'softmax');
    if (x.rank === 4 && ax === 1 && sameOrder(x.order, NHWC_ORDER) && this.opset >= 13) {
      return this.unary(node, (name) => tfl.layers.softmax({ axis: -1, name }));
    }
    throw this.err(node, `softmax over axis ${axis} of a rank-${rank} tensor is not supported`);
  }

  private conv(node: NodeProto, a: Map<string, AttributeProto>): void {
    const x = this.nchw(node, this.act(node, 0));
    const w = this.cst(node, 1, 'weight');
    const b = this.optVal(node, 2);
    if (b && b.k !== 'const') throw this.err(node, 'bias must be a constant');
    if (w.dims.length !== 4) throw this.err(node, `weight has ${w.dims.length} dimensions; only 2-D convolutions are supported`);
    const [O, Ig, kh, kw] = w.dims as [number, number, number, number];
    const [, C, H, W] = this.onnxDims(x) as [number, number, number, number];
    const group = this.int(a, 'group', 1);
    if (group < 1 || Ig * group !== C || O % group !== 0) throw this.err(node, `weight (${w.dims.join(',')}) with group ${group} does not fit an input of ${C} channels`);
    const ks = this.ints(node, a, 'kernel_shape', [kh, kw]);
    if (ks[0] !== kh || ks[1] !== kw) throw this.err(node, 'kernel_shape does not match the weight');
    const strides = this.ints(node, a, 'strides', [1, 1]);
    const dil = this.ints(node, a, 'dilations', [1, 1]);
    if (strides.length !== 2 || dil.length !== 2 || [...strides, ...dil].some((v) => !Number.isSafeInteger(v) || v < 1)) throw this.err(node, 'invalid strides or dilations');
    if (strides.some((s) => s > 1) && dil.some((v) => v > 1)) throw this.err(node, 'strides and dilations both above 1 are not supported');
    const padding = this.spatialPads(node, a, [H, W], [kh, kw], strides, dil, false);
    let t = x.t;
    if (padding.pre) t = this.apply(tfl.layers.zeroPadding2d({ padding: padding.pre, name: this.uniqueName(`${node.name || 'conv'}_pad`) }), t, node);
    const name = this.layerName(node, w.initializer);
    const useBias = !!b;
    const common = { kernelSize: [kh, kw] as [number, number], strides: strides as [number, number], dilationRate: dil as [number, number], padding: padding.mode, useBias, name, activation: this.foldRelu(node) };
    const transform: WeightTransform = group === 1 ? { kind: 'conv' } : Ig === 1 ? { kind: 'depthwise' } : { kind: 'grouped', group };
    // Grouped convolutions become one standard Conv2D with a block-diagonal kernel (zeros across groups).
    const layer = transform.kind === 'depthwise'
      ? tfl.layers.depthwiseConv2d({ ...common, depthMultiplier: O / C })
      : tfl.layers.conv2d({ ...common, filters: O });
    // Built (and its size checked against the weight budget) before the kernel is allocated.
    const out = this.apply(layer, t, node);
    const kernel = transform.kind === 'grouped'
      ? groupedToHwio(w.data as Float32Array, O, Ig, kh, kw, group)
      : oihwToHwio(w.data as Float32Array, O, Ig, kh, kw); // depthwise: [kh,kw,1,C*m] is [kh,kw,C,m] in memory
    const ws: { data: Float32Array; from?: Const; transform: WeightTransform }[] = [{ data: kernel, from: w, transform }];
    if (b) ws.push({ data: Float32Array.from((b as Const).data), from: b as Const, transform: { kind: 'scale', factor: 1 } });
    this.weights(layer, node, ws);
    this.set(node, { k: 'act', t: out, rank: 4, order: NHWC_ORDER });
  }

  /**
   * Padding of a conv or pool: 'same' when the ONNX pads equal TensorFlow's 'same' split,
   * 'valid' with no pads, else explicit pads to apply before a 'valid' op (`pre`).
   */
  private spatialPads(node: NodeProto, a: Map<string, AttributeProto>, size: number[], k: number[], s: number[], d: number[], ceil: boolean):
    { mode: 'same' | 'valid'; pre?: [[number, number], [number, number]] } {
    const auto = this.str(a, 'auto_pad', 'NOTSET');
    const eff = k.map((kk, i) => (kk - 1) * d[i]! + 1);
    const tfSame = size.map((n, i) => {
      const out = Math.ceil(n / s[i]!);
      const total = Math.max((out - 1) * s[i]! + eff[i]! - n, 0);
      return [Math.floor(total / 2), total - Math.floor(total / 2)] as [number, number];
    });
    let pads: [[number, number], [number, number]];
    if (auto === 'VALID') pads = [[0, 0], [0, 0]];
    else if (auto === 'SAME_UPPER') pads = tfSame as never;
    else if (auto === 'SAME_LOWER') pads = tfSame.map(([p, q]) => [q, p]) as never;
    else if (auto === 'NOTSET') {
      const p = this.ints(node, a, 'pads', [0, 0, 0, 0]);
      if (p.length !== 4 || p.some((v) => !Number.isSafeInteger(v) || v < 0 || v > 4096)) throw this.err(node, `invalid pads (${p.join(',')})`);
      pads = [[p[0]!, p[2]!], [p[1]!, p[3]!]];
    } else throw this.err(node, `auto_pad '${auto}' is not supported`);
    if (ceil) {
      // ceil_mode: extra rows/columns at the end so the last partial window is produced.
      pads = pads.map(([pb, pe], i) => {
        const n = size[i]! + pb + pe;
        let out = Math.ceil((n - eff[i]!) / s[i]!) + 1;
        if ((out - 1) * s[i]! >= size[i]! + pb) out--;
        const extra = Math.max((out - 1) * s[i]! + eff[i]! - n, 0);
        return [pb, pe + extra];
      }) as never;
    }
    for (const [i, [pb, pe]] of pads.entries()) {
      if (size[i]! + pb + pe < eff[i]!) throw this.err(node, `window ${eff[i]} is larger than the padded input ${size[i]! + pb + pe}`);
    }
    if (pads.every(([p, q]) => p === 0 && q === 0)) return { mode: 'valid' };
    if (pads.every(([p, q], i) => p === tfSame[i]![0] && q === tfSame[i]![1])) return { mode: 'same' };
    return { mode: 'valid', pre: pads };
  }

  private batchNorm(node: NodeProto, a: Map<string, AttributeProto>): void {
    if ((node.output ?? []).slice(1).some((o) => o && (this.uses.get(o) ?? 0) > 0) || this.int(a, 'training_mode', 0) !== 0) {
      throw this.err(node, 'is in training mode (a training graph); export the model in eval mode');
    }
    if (this.int(a, 'spatial', 1) !== 1) throw this.err(node, 'spatial=0 (per-pixel statistics) is not supported');
    const x = this.act(node, 0);
    if (x.rank === 4) this.nchw(node, x);
    else if (x.chw) throw this.err(node, 'normalizes a flattened feature map (not supported)');
    const [scale, bias, mean, variance] = [1, 2, 3, 4].map((i) => this.cst(node, i, ['scale', 'B', 'mean', 'var'][i - 1]!));
    const C = x.rank === 4 ? this.onnxDims(x)[1]! : x.t.shape[1]!;
    for (const c of [scale, bias, mean, variance]) if (c!.data.length !== C) throw this.err(node, `parameter of ${c!.data.length} values for ${C} channels`);
    const layer = tfl.layers.batchNormalization({ axis: -1, epsilon: this.float(a, 'epsilon', 1e-5), momentum: this.float(a, 'momentum', 0.9), name: this.layerName(node, scale!.initializer) });
    const t = this.apply(layer, x.t, node);
    this.weights(layer, node, [scale, bias, mean, variance].map((c) => ({ data: Float32Array.from(c!.data), from: c, transform: { kind: 'scale', factor: 1 } as WeightTransform })));
    this.set(node, { ...x, t, denseNoBias: undefined });
  }

  private pool(node: NodeProto, a: Map<string, AttributeProto>, max: boolean): void {
    const x = this.nchw(node, this.act(node, 0));
    const [, , H, W] = this.onnxDims(x) as [number, number, number, number];
    const k = this.ints(node, a, 'kernel_shape');
    const s = this.ints(node, a, 'strides', [1, 1]);
    const d = this.ints(node, a, 'dilations', [1, 1]);
    if (k.length !== 2 || s.length !== 2 || [...k, ...s].some((v) => !Number.isSafeInteger(v) || v < 1)) throw this.err(node, 'invalid kernel_shape or strides');
    if (d.some((v) => v !== 1)) throw this.err(node, 'dilated pooling is not supported');
    const ceil = this.int(a, 'ceil_mode', 0) === 1;
    const includePad = this.int(a, 'count_include_pad', 0) === 1;
    const plain = this.spatialPads(node, a, [H, W], k, s, d, false);
    const p = ceil ? this.spatialPads(node, a, [H, W], k, s, d, true) : plain;
    let t = x.t;
    let mode: 'same' | 'valid' = p.mode;
    let divisor: { value: number[]; shape: number[] } | undefined;
    if (p.pre) {
      if (max) {
        t = this.apply(new OnnxPad2D({ padding: p.pre, value: null, name: this.uniqueName(`${node.name || 'pool'}_pad`) }), t, node);
      } else if (includePad && !ceil) {
        t = this.apply(tfl.layers.zeroPadding2d({ padding: p.pre, name: this.uniqueName(`${node.name || 'pool'}_pad`) }), t, node);
      } else if (!includePad) {
        // Zero-pad, average over the whole window, then rescale each position by
        // window size / real (unpadded) elements in it: exactly ONNX's count_include_pad=0.
        t = this.apply(tfl.layers.zeroPadding2d({ padding: p.pre, name: this.uniqueName(`${node.name || 'pool'}_pad`) }), t, node);
        divisor = avgPoolRescale([H, W], k, s, p.pre);
      } else {
        throw this.err(node, `average pooling with pads ${JSON.stringify(p.pre)}, ceil_mode and counting the pads is not supported`);
      }
      mode = 'valid';
    } else if (!max && mode === 'same' && includePad) {
      throw this.err(node, 'average pooling counting the pads (count_include_pad=1) with TensorFlow-like padding is not supported');
    } else if (!max && ceil && plain.mode !== p.mode && includePad) {
      throw this.err(node, 'average pooling with ceil_mode counting the pads is not supported');
    }
    const args = { poolSize: k as [number, number], strides: s as [number, number], padding: mode, name: this.layerName(node) };
    const layer = max ? tfl.layers.maxPooling2d(args) : tfl.layers.averagePooling2d(args);
    t = this.apply(layer, t, node);
    if (divisor) t = this.apply(new OnnxConstArith({ op: 'mul', ...divisor, name: this.uniqueName(`${layer.name}_count`) }), t, node);
    this.set(node, { k: 'act', t, rank: 4, order: NHWC_ORDER });
  }

  private flatten(node: NodeProto, v: Act): Act {
    if (v.rank === 2) return { ...v, pooled: false, denseNoBias: undefined };
    if (sameOrder(v.order, [0, 1, 2, 3])) {
      // ONNX (N,H,W,C) held as is: both flatten (H,W,C).
      return { k: 'act', t: this.apply(tfl.layers.flatten({ name: this.layerName(node) }), v.t, node), rank: 2 };
    }
    const x = this.nchw(node, v);
    const [, C, H, W] = this.onnxDims(x) as [number, number, number, number];
    const t = this.apply(tfl.layers.flatten({ name: this.layerName(node) }), x.t, node);
    return { k: 'act', t, rank: 2, ...(H * W > 1 && C > 1 ? { chw: [C, H, W] as [number, number, number] } : {}) };
  }

  private reshape(node: NodeProto, a: Map<string, AttributeProto>): void {
    const v = this.val(node, 0);
    let target: number[];
    if (this.opset < 5 || a.has('shape')) target = this.ints(node, a, 'shape');
    else target = Array.from(this.cst(node, 1, 'shape').data);
    if (v.k === 'const') return this.set(node, reshapeConst(v, target.map((t, i) => (t === 0 ? v.dims[i]! : t))));
    const dims = this.onnxDims(v);
    const allowZero = this.int(a, 'allowzero', 0) === 1;
    const out = target.map((t, i) => (t === 0 && !allowZero ? dims[i]! : t));
    const rest = dims.slice(1).reduce((p, q) => p * q, 1);
    const isBatch = (d: number) => Number.isNaN(d) || d === this.fixedBatch;
    if (out.length === 2 && (isBatch(out[0]!) || out[0] === -1) && (out[1] === -1 || out[1] === rest) && !(out[0] === -1 && out[1] === -1)) {
      return this.set(node, this.flatten(node, v));
    }
    if (out.length === dims.length && out.every((d, i) => i === 0 ? (isBatch(d) || d === -1) : d === dims[i])) return this.set(node, v);
    throw this.err(node, `reshaping (${dims.map((d) => (Number.isNaN(d) ? 'N' : d)).join(',')}) to (${target.map((d) => (Number.isNaN(d) ? 'N' : d)).join(',')}) is not supported (only flattening to (N,-1))`);
  }

  private squeeze(node: NodeProto, a: Map<string, AttributeProto>, un: boolean): void {
    const v = this.val(node, 0);
    let axes: number[] | undefined;
    if (a.has('axes')) axes = this.ints(node, a, 'axes');
    else if (node.input?.[1]) axes = Array.from(this.cst(node, 1, 'axes').data);
    if (v.k === 'const') {
      if (un) {
        if (!axes) throw this.err(node, 'axes are missing');
        const rank = v.dims.length + axes.length;
        const norm = axes.map((x) => (x < 0 ? x + rank : x));
        const dims: number[] = [];
        for (let i = 0, j = 0; i < rank; i++) dims.push(norm.includes(i) ? 1 : v.dims[j++]!);
        return this.set(node, { ...v, dims, initializer: undefined, constantNode: undefined });
      }
      const norm = axes?.map((x) => (x < 0 ? x + v.dims.length : x));
      return this.set(node, { ...v, dims: v.dims.filter((d, i) => (norm ? !norm.includes(i) : d !== 1)), initializer: undefined, constantNode: undefined });
    }
    const norm = (axes ?? [2, 3]).map((x) => (x < 0 ? x + 4 : x)).sort();
    if (!un && v.pooled && norm.join() === '2,3') return this.set(node, { ...v, pooled: false });
    throw this.err(node, `${un ? 'unsqueezing' : 'squeezing'} a tensor on axes (${axes?.join(',') ?? 'all'}) is not supported`);
  }

  private transpose(node: NodeProto, a: Map<string, AttributeProto>): void {
    const v = this.val(node, 0);
    const rank = v.k === 'const' ? v.dims.length : 4;
    const perm = this.ints(node, a, 'perm', [...Array(rank).keys()].reverse());
    if (v.k === 'const') return this.set(node, transposeConst(v, perm));
    if (v.rank !== 4) throw this.err(node, 'transposing a 2-D tensor is not supported');
    const inv = new Array<number>(4);
    perm.forEach((p, j) => { inv[p] = j; });
    if (perm.length !== 4 || perm[0] !== 0 || inv.some((i) => i === undefined)) throw this.err(node, `permutation (${perm.join(',')}) is not supported (the batch axis must stay first)`);
    // Only the bookkeeping changes: ops that need (N,C,H,W) check the order they get.
    this.set(node, { ...v, order: v.order!.map((o) => inv[o]!) });
  }

  /** Dense from a (K,O) kernel made from B, with rows permuted to channel-last when x is a flattened map. */
  private dense(node: NodeProto, x: Act, B: Const, transB: boolean, alpha: number, K: number, O: number, bias: { data: Float32Array; from?: Const; transform: WeightTransform } | undefined, activation?: 'relu'): Act {
    const perm = x.chw ? chwPerm(...x.chw) : undefined;
    const kernel = denseKernel(B.data as Float32Array, K, O, transB, alpha, perm);
    const layer = tfl.layers.dense({ units: O, useBias: true, activation, name: this.layerName(node, B.initializer) });
    const t = this.apply(layer, x.t, node);
    this.weights(layer, node, [
      { data: kernel, from: B, transform: { kind: 'dense', transB, alpha, perm } },
      bias ?? { data: new Float32Array(O), transform: { kind: 'scale', factor: 1 } },
    ]);
    return { k: 'act', t, rank: 2, denseNoBias: bias ? undefined : layer };
  }

  private gemm(node: NodeProto, a: Map<string, AttributeProto>): void {
    const x = this.act(node, 0);
    if (x.rank !== 2) throw this.err(node, 'input A is not a (N,K) matrix');
    if (this.int(a, 'transA', 0) !== 0) throw this.err(node, 'transA=1 is not supported');
    const B = this.cst(node, 1, 'B');
    const transB = this.int(a, 'transB', 0) === 1;
    const alpha = this.float(a, 'alpha', 1), beta = this.float(a, 'beta', 1);
    if (B.dims.length !== 2) throw this.err(node, 'B is not a matrix');
    const [K, O] = transB ? [B.dims[1]!, B.dims[0]!] : [B.dims[0]!, B.dims[1]!];
    if (K !== x.t.shape[1]) throw this.err(node, `B has ${K} rows; the input has ${x.t.shape[1]} features`);
    const c = this.optVal(node, 2);
    let bias: { data: Float32Array; from?: Const; dims?: number[]; transform: WeightTransform } | undefined;
    if (c) {
      if (c.k !== 'const') throw this.err(node, 'C must be a constant');
      if (c.data.length !== O && c.data.length !== 1) throw this.err(node, `C has ${c.data.length} values for ${O} outputs`);
      const data = new Float32Array(O).map((_, i) => beta * c.data[c.data.length === 1 ? 0 : i]!);
      bias = { data, from: c, transform: c.data.length === 1 ? { kind: 'repeat', count: O } : { kind: 'scale', factor: beta } };
    }
    this.set(node, this.dense(node, x, B, transB, alpha, K, O, bias, this.foldRelu(node)));
  }

  private matmul(node: NodeProto): void {
    const x = this.act(node, 0);
    const B = this.cst(node, 1, 'B');
    if (x.rank !== 2 || B.dims.length !== 2) throw this.err(node, 'only (N,K) x (K,O) with a constant (K,O) is supported');
    if (B.dims[0] !== x.t.shape[1]) throw this.err(node, `B has ${B.dims[0]} rows; the input has ${x.t.shape[1]} features`);
    this.set(node, this.dense(node, x, B, false, 1, B.dims[0]!, B.dims[1]!, undefined));
  }

  /** A per-channel (or single) value of a constant broadcast against `x`, or undefined when it varies otherwise. */
  private perChannel(x: Act, c: Const): number[] | undefined {
    const n = c.data.length;
    if (n === 1) return [c.data[0]!];
    const dims = [...c.dims];
    while (dims.length > 0 && dims[0] === 1) dims.shift();
    const rank4 = x.rank === 4 || x.pooled;
    if (rank4 && dims.length === 3 && dims[1] === 1 && dims[2] === 1) {
      if (x.rank === 4 && !sameOrder(x.order, NHWC_ORDER)) return undefined;
      return Array.from(c.data);
    }
    if (!rank4 && dims.length === 1 && !x.chw) return Array.from(c.data);
    return undefined;
  }

  private binary(node: NodeProto, op: 'Add' | 'Sub' | 'Mul' | 'Div'): void {
    const l = this.val(node, 0), r = this.val(node, 1);
    if (l.k === 'const' && r.k === 'const') return this.set(node, broadcastConst(l, r, op, (m) => this.err(node, m)));
    if (l.k === 'act' && r.k === 'act') {
      if (l.rank !== r.rank || !!l.pooled !== !!r.pooled || (l.rank === 4 && !sameOrder(l.order, r.order)) || String(l.chw) !== String(r.chw) || String(l.t.shape) !== String(r.t.shape)) {
        throw this.err(node, 'operands have different shapes or layouts (broadcasting two tensors is not supported)');
      }
      const name = this.layerName(node);
      const layer = op === 'Add' ? tfl.layers.add({ name }) : op === 'Mul' ? tfl.layers.multiply({ name }) : op === 'Sub' ? new OnnxSub({ name }) : undefined;
      if (!layer) throw this.err(node, 'dividing two tensors is not supported');
      return this.set(node, { ...l, t: this.apply(layer, [l.t, r.t], node), denseNoBias: undefined });
    }
    const x = (l.k === 'act' ? l : r) as Act;
    const c = (l.k === 'const' ? l : r) as Const;
    // MatMul + Add of a bias vector: the bias of the Dense layer the MatMul became.
    if (op === 'Add' && x.denseNoBias && c.data.length === x.t.shape[1] && (this.uses.get(node.input![l.k === 'act' ? 0 : 1]!) ?? 0) === 1) {
      const layer = x.denseNoBias;
      const [kernel] = layer.getWeights();
      const data = Float32Array.from(c.data);
      this.checkFinite(node, data, 'bias');
      this.links.push({ layer: layer.name, index: 1, initializer: c.initializer, constantNode: c.constantNode, dims: c.dims, transform: { kind: 'scale', factor: 1 } });
      const bt = tfTensor(data, [data.length]);
      layer.setWeights([kernel!, bt]);
      bt.dispose();
      return this.set(node, { ...x, denseNoBias: undefined });
    }
    const value = this.perChannel(x, c);
    if (!value) throw this.err(node, `constant of shape (${c.dims.join(',')}) does not broadcast per channel against the tensor`);
    const constFirst = l.k === 'const';
    const kind: ConstOp = op === 'Add' ? 'add' : op === 'Mul' ? 'mul' : op === 'Sub' ? (constFirst ? 'rsub' : 'sub') : (constFirst ? 'rdiv' : 'div');
    this.set(node, { ...x, t: this.apply(new OnnxConstArith({ op: kind, value, name: this.layerName(node) }), x.t, node), denseNoBias: undefined });
  }

  private concat(node: NodeProto, a: Map<string, AttributeProto>): void {
    const vs = (node.input ?? []).map((_, i) => this.val(node, i));
    const axis = this.int(a, 'axis', 0);
    if (vs.every((v) => v.k === 'const')) return this.set(node, concatConst(vs as Const[], axis, (m) => this.err(node, m)));
    if (vs.some((v) => v.k !== 'act')) throw this.err(node, 'concatenating tensors with constants is not supported');
    const acts = vs as Act[];
    const f = acts[0]!;
    const rank = f.pooled ? 4 : f.rank;
    const ax = axis < 0 ? axis + rank : axis;
    if (ax !== 1 || acts.some((v) => v.rank !== f.rank || !!v.pooled !== !!f.pooled || v.chw || (v.rank === 4 && !sameOrder(v.order, NHWC_ORDER)))) {
      throw this.err(node, `concatenation on axis ${axis} is not supported (only channels, axis 1)`);
    }
    if (acts.length === 1) return this.set(node, f);
    const t = this.apply(tfl.layers.concatenate({ axis: -1, name: this.layerName(node) }), acts.map((v) => v.t), node);
    this.set(node, { ...f, t, denseNoBias: undefined });
  }

  private pad(node: NodeProto, a: Map<string, AttributeProto>): void {
    const x = this.nchw(node, this.act(node, 0));
    const mode = this.str(a, 'mode', 'constant');
    if (mode !== 'constant') throw this.err(node, `pad mode '${mode}' is not supported (only constant)`);
    let pads: number[];
    let value = 0;
    if (this.opset < 11) {
      pads = this.ints(node, a, 'pads');
      value = this.float(a, 'value', 0);
    } else {
      pads = Array.from(this.cst(node, 1, 'pads').data);
      const cv = this.optVal(node, 2);
      if (cv) { if (cv.k !== 'const') throw this.err(node, 'constant_value must be a constant'); value = cv.data[0] ?? 0; }
      const axesV = this.optVal(node, 3);
      if (axesV) {
        if (axesV.k !== 'const') throw this.err(node, 'axes must be a constant');
        const axes = Array.from(axesV.data).map((v) => (v < 0 ? v + 4 : v));
        const full = new Array<number>(8).fill(0);
        axes.forEach((ax, i) => { full[ax] = pads[i]!; full[ax + 4] = pads[i + axes.length]!; });
        pads = full;
      }
    }
    if (pads.length !== 8 || pads.some((p) => !Number.isSafeInteger(p) || p < 0 || p > 4096)) throw this.err(node, `pads (${pads.join(',')}) are not supported (non-negative spatial pads of a 4-D tensor only)`);
    if (pads[0] || pads[1] || pads[4] || pads[5]) throw this.err(node, 'padding the batch or channel axis is not supported');
    const padding: [[number, number], [number, number]] = [[pads[2]!, pads[6]!], [pads[3]!, pads[7]!]];
    const name = this.layerName(node);
    const layer = value === 0 ? tfl.layers.zeroPadding2d({ padding, name }) : new OnnxPad2D({ padding, value: Number.isFinite(value) ? value : null, name });
    if (value !== 0 && value !== -Infinity && !Number.isFinite(value)) throw this.err(node, `pad value ${value} is not supported`);
    this.set(node, { ...x, t: this.apply(layer, x.t, node) });
  }

  private sliceConst(node: NodeProto, a: Map<string, AttributeProto>): Const {
    const v = this.cst(node, 0, 'data');
    let starts: number[], ends: number[], axes: number[] | undefined, steps: number[] | undefined;
    if (this.opset < 10) {
      starts = this.ints(node, a, 'starts'); ends = this.ints(node, a, 'ends');
      axes = a.has('axes') ? this.ints(node, a, 'axes') : undefined;
    } else {
      starts = Array.from(this.cst(node, 1, 'starts').data); ends = Array.from(this.cst(node, 2, 'ends').data);
      const ax = this.optVal(node, 3), st = this.optVal(node, 4);
      if ((ax && ax.k !== 'const') || (st && st.k !== 'const')) throw this.err(node, 'axes and steps must be constants');
      axes = ax ? Array.from((ax as Const).data) : undefined;
      steps = st ? Array.from((st as Const).data) : undefined;
    }
    return sliceConst(v, starts, ends, axes, steps, (m) => this.err(node, m));
  }
}

/** Per output position: window size / number of real input elements under the window (pads excluded). */
function avgPoolRescale(size: number[], k: number[], s: number[], pads: [[number, number], [number, number]]): { value: number[]; shape: number[] } {
  const counts = [0, 1].map((i) => {
    const [pb, pe] = pads[i]!;
    const n = size[i]!, out = Math.floor((n + pb + pe - k[i]!) / s[i]!) + 1;
    return Array.from({ length: out }, (_, o) => {
      const start = o * s[i]! - pb;
      return Math.min(start + k[i]!, n) - Math.max(start, 0);
    });
  });
  const value: number[] = [];
  for (const ch of counts[0]!) for (const cw of counts[1]!) value.push((k[0]! * k[1]!) / Math.max(1, ch * cw));
  return { value, shape: [counts[0]!.length, counts[1]!.length, 1] };
}

// ---------------------------------------------------------------------------------------
// Weight layouts

function tfTensor(data: Float32Array, shape: number[]): tf.Tensor {
  return tf.tensor(data, shape, 'float32');
}

/** OIHW -> HWIO. */
export function oihwToHwio(w: Float32Array, O: number, I: number, kh: number, kw: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let o = 0; o < O; o++) for (let i = 0; i < I; i++) for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) {
    out[((y * kw + x) * I + i) * O + o] = w[((o * I + i) * kh + y) * kw + x]!;
  }
  return out;
}

/** HWIO -> OIHW. */
export function hwioToOihw(k: Float32Array, O: number, I: number, kh: number, kw: number): Float32Array {
  const out = new Float32Array(k.length);
  for (let o = 0; o < O; o++) for (let i = 0; i < I; i++) for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) {
    out[((o * I + i) * kh + y) * kw + x] = k[((y * kw + x) * I + i) * O + o]!;
  }
  return out;
}

/** Grouped OIHW (I = channels per group) -> a block-diagonal HWIO kernel over all C = I*group input channels. */
export function groupedToHwio(w: Float32Array, O: number, Ig: number, kh: number, kw: number, group: number): Float32Array {
  const C = Ig * group, per = O / group;
  const out = new Float32Array(kh * kw * C * O);
  for (let o = 0; o < O; o++) {
    const g = Math.floor(o / per);
    for (let i = 0; i < Ig; i++) for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) {
      out[((y * kw + x) * C + g * Ig + i) * O + o] = w[((o * Ig + i) * kh + y) * kw + x]!;
    }
  }
  return out;
}

/** The diagonal blocks of a block-diagonal HWIO kernel, as grouped OIHW. */
export function hwioToGrouped(k: Float32Array, O: number, Ig: number, kh: number, kw: number, group: number): Float32Array {
  const C = Ig * group, per = O / group;
  const out = new Float32Array(O * Ig * kh * kw);
  for (let o = 0; o < O; o++) {
    const g = Math.floor(o / per);
    for (let i = 0; i < Ig; i++) for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) {
      out[((o * Ig + i) * kh + y) * kw + x] = k[((y * kw + x) * C + g * Ig + i) * O + o]!;
    }
  }
  return out;
}

/** perm[tfjs row] = ONNX row: tfjs flattens (H,W,C), ONNX (C,H,W). */
export function chwPerm(C: number, H: number, W: number): Int32Array {
  const p = new Int32Array(C * H * W);
  for (let h = 0; h < H; h++) for (let w = 0; w < W; w++) for (let c = 0; c < C; c++) p[(h * W + w) * C + c] = (c * H + h) * W + w;
  return p;
}

/** The (K,O) Dense kernel: alpha * B (or B^T), rows in tfjs order. */
export function denseKernel(B: Float32Array, K: number, O: number, transB: boolean, alpha: number, perm?: Int32Array): Float32Array {
  const out = new Float32Array(K * O);
  for (let r = 0; r < K; r++) {
    const src = perm ? perm[r]! : r;
    for (let o = 0; o < O; o++) out[r * O + o] = alpha * B[transB ? o * K + src : src * O + o]!;
  }
  return out;
}

/** Inverse of denseKernel. */
export function denseKernelInverse(k: Float32Array, K: number, O: number, transB: boolean, alpha: number, perm?: Int32Array): Float32Array {
  const out = new Float32Array(K * O);
  for (let r = 0; r < K; r++) {
    const src = perm ? perm[r]! : r;
    for (let o = 0; o < O; o++) out[transB ? o * K + src : src * O + o] = k[r * O + o]! / alpha;
  }
  return out;
}

/** ONNX tensor values -> the tfjs weight (forward) for a link. */
export function linkForward(link: WeightLink, onnx: Float32Array): Float32Array {
  const t = link.transform, d = link.dims;
  switch (t.kind) {
    case 'conv': return oihwToHwio(onnx, d[0]!, d[1]!, d[2]!, d[3]!);
    case 'depthwise': return oihwToHwio(onnx, d[0]!, 1, d[2]!, d[3]!);
    case 'grouped': return groupedToHwio(onnx, d[0]!, d[1]!, d[2]!, d[3]!, t.group);
    case 'dense': {
      const [K, O] = t.transB ? [d[1]!, d[0]!] : [d[0]!, d[1]!];
      return denseKernel(onnx, K, O, t.transB, t.alpha, t.perm);
    }
    case 'scale': return t.factor === 1 ? Float32Array.from(onnx) : onnx.map((v) => v * t.factor);
    case 'repeat': return new Float32Array(t.count).fill(onnx[0]!);
  }
}

/** The tfjs weight -> ONNX tensor values (inverse) for a link; undefined when it cannot be expressed (a repeated scalar that now varies). */
export function linkInverse(link: WeightLink, w: Float32Array): Float32Array | undefined {
  const t = link.transform, d = link.dims;
  switch (t.kind) {
    case 'conv': return hwioToOihw(w, d[0]!, d[1]!, d[2]!, d[3]!);
    case 'depthwise': return hwioToOihw(w, d[0]!, 1, d[2]!, d[3]!);
    case 'grouped': return hwioToGrouped(w, d[0]!, d[1]!, d[2]!, d[3]!, t.group);
    case 'dense': {
      const [K, O] = t.transB ? [d[1]!, d[0]!] : [d[0]!, d[1]!];
      return denseKernelInverse(w, K, O, t.transB, t.alpha, t.perm);
    }
    case 'scale': return t.factor === 1 ? Float32Array.from(w) : w.map((v) => v / t.factor);
    case 'repeat': return w.every((v) => v === w[0]) ? Float32Array.of(w[0]!) : undefined;
  }
}

// ---------------------------------------------------------------------------------------
// Constant folding (shape arithmetic)

function strides(dims: number[]): number[] {
  const s = new Array<number>(dims.length).fill(1);
  for (let i = dims.length - 2; i >= 0; i--) s[i] = s[i + 1]! * dims[i + 1]!;
  return s;
}

function like(c: Const, n: number): Float32Array | Float64Array {
  return c.isFloat ? new Float32Array(n) : new Float64Array(n);
}

function reshapeConst(c: Const, target: number[]): Const {
  const n = c.data.length;
  const known = target.filter((d) => d !== -1).reduce((p, q) => p * q, 1);
  const dims = target.map((d) => (d === -1 ? (known === 0 ? 0 : n / known) : d));
  if (dims.reduce((p, q) => p * q, 1) !== n || dims.some((d) => !Number.isSafeInteger(d) || d < 0)) {
    throw new GoodnetError(`cannot reshape a constant of ${n} values to (${target.join(',')})`);
  }
  return { k: 'const', dims, data: c.data, isFloat: c.isFloat };
}

function transposeConst(c: Const, perm: number[]): Const {
  const dims = perm.map((p) => c.dims[p]!);
  if (perm.length !== c.dims.length || dims.some((d) => d === undefined)) throw new GoodnetError(`invalid permutation (${perm.join(',')})`);
  const inS = strides(c.dims), outS = strides(dims);
  const out = like(c, c.data.length);
  for (let i = 0; i < c.data.length; i++) {
    let src = 0;
    for (let j = 0; j < dims.length; j++) src += Math.floor(i / outS[j]!) % dims[j]! * inS[perm[j]!]!;
    out[i] = c.data[src]!;
  }
  return { k: 'const', dims, data: out, isFloat: c.isFloat };
}

function gatherConst(data: Const, idx: Const, axis: number, err: (m: string) => Error): Const {
  if (data.dims.length !== 1 || axis !== 0) throw err('Gather is supported on 1-D constants only (shape arithmetic)');
  const n = data.data.length;
  const out = like(data, idx.data.length);
  idx.data.forEach((v, i) => {
    const j = v < 0 ? v + n : v;
    if (!Number.isInteger(j) || j < 0 || j >= n) throw err(`index ${v} out of range for ${n} values`);
    out[i] = data.data[j]!;
  });
  return { k: 'const', dims: idx.dims, data: out, isFloat: data.isFloat };
}

function concatConst(cs: Const[], axis: number, err: (m: string) => Error): Const {
  const f = cs[0]!;
  const rank = f.dims.length;
  const ax = axis < 0 ? axis + rank : axis;
  if (cs.some((c) => c.dims.length !== rank || c.dims.some((d, i) => i !== ax && d !== f.dims[i]))) throw err('constants of different shapes');
  const outer = f.dims.slice(0, ax).reduce((p, q) => p * q, 1);
  const dims = [...f.dims];
  dims[ax] = cs.reduce((s, c) => s + c.dims[ax]!, 0);
  const isFloat = cs.some((c) => c.isFloat);
  const out = isFloat ? new Float32Array(dims.reduce((p, q) => p * q, 1)) : new Float64Array(dims.reduce((p, q) => p * q, 1));
  let o = 0;
  for (let i = 0; i < outer; i++) for (const c of cs) {
    const inner = c.data.length / outer;
    for (let j = 0; j < inner; j++) out[o++] = c.data[i * inner + j]!;
  }
  return { k: 'const', dims, data: out, isFloat };
}

function broadcastConst(l: Const, r: Const, op: string, err: (m: string) => Error): Const {
  const rank = Math.max(l.dims.length, r.dims.length);
  const ld = [...Array(rank - l.dims.length).fill(1), ...l.dims], rd = [...Array(rank - r.dims.length).fill(1), ...r.dims];
  const dims = ld.map((d, i) => {
    if (d !== rd[i] && d !== 1 && rd[i] !== 1) throw err(`constants of shapes (${l.dims.join(',')}) and (${r.dims.join(',')}) do not broadcast`);
    return Math.max(d, rd[i]!);
  });
  const n = dims.reduce((p, q) => p * q, 1);
  if (n > 1e7) throw err('constant too large');
  const os = strides(dims), ls = strides(ld), rs = strides(rd);
  const isFloat = l.isFloat || r.isFloat;
  const out = isFloat ? new Float32Array(n) : new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let li = 0, ri = 0;
    for (let j = 0; j < rank; j++) {
      const k = Math.floor(i / os[j]!) % dims[j]!;
      if (ld[j] !== 1) li += k * ls[j]!;
      if (rd[j] !== 1) ri += k * rs[j]!;
    }
    const a = l.data[li]!, b = r.data[ri]!;
    const v = op === 'Add' ? a + b : op === 'Sub' ? a - b : op === 'Mul' ? a * b : a / b;
    out[i] = isFloat ? v : Math.trunc(v);
  }
  return { k: 'const', dims, data: out, isFloat };
}

function sliceConst(c: Const, starts: number[], ends: number[], axes: number[] | undefined, steps: number[] | undefined, err: (m: string) => Error): Const {
  const rank = c.dims.length;
  const ax = (axes ?? starts.map((_, i) => i)).map((a) => (a < 0 ? a + rank : a));
  const lo = c.dims.map(() => 0), step = c.dims.map(() => 1), count = [...c.dims];
  ax.forEach((a, i) => {
    const n = c.dims[a];
    if (n === undefined) throw err(`axis ${a} out of range`);
    const s = steps?.[i] ?? 1;
    if (s === 0) throw err('step 0');
    const clamp = (v: number, min: number, max: number) => Math.min(Math.max(v, min), max);
    let st = starts[i]!, en = ends[i]!;
    if (st < 0) st += n;
    if (en < 0) en += n;
    if (s > 0) { st = clamp(st, 0, n); en = clamp(en, 0, n); count[a] = Math.max(0, Math.ceil((en - st) / s)); }
    else { st = clamp(st, -1, n - 1); en = clamp(en, -1, n - 1); count[a] = Math.max(0, Math.ceil((st - en) / -s)); }
    lo[a] = st; step[a] = s;
  });
  const inS = strides(c.dims), outS = strides(count);
  const n = count.reduce((p, q) => p * q, 1);
  const out = like(c, n);
  for (let i = 0; i < n; i++) {
    let src = 0;
    for (let j = 0; j < rank; j++) src += (lo[j]! + (Math.floor(i / outS[j]!) % count[j]!) * step[j]!) * inS[j]!;
    out[i] = c.data[src]!;
  }
  return { k: 'const', dims: count, data: out, isFloat: c.isFloat };
}

// ---------------------------------------------------------------------------------------

/** Build the tfjs-layers model of a decoded ONNX model. */
export async function onnxToLayers(model: ModelProto, bytes: Uint8Array, file: string): Promise<OnnxModel> {
  const conv = new Converter(model, file);
  const net = await withWeightBudget(file, async () => {
    try {
      return await conv.convert();
    } catch (err) {
      if (err instanceof GoodnetError) throw err.file ? err : new GoodnetError(err.message, file, { cause: err });
      throw err;
    }
  });
  let preprocessing: Preprocessing = { scale: 1 };
  const meta = (model.metadataProps ?? []).find((p) => p.key === PREPROCESSING_KEY);
  if (meta) preprocessing = preprocessingFromJson(meta.value ?? '', file);
  preprocessing = { ...preprocessing, layout: conv.inputLayout };
  return { net, onnx: { bytes, weights: conv.links, inputLayout: conv.inputLayout, opset: conv.opset }, preprocessing };
}

/** Read an ONNX file into a tfjs-layers model (see the module comment). */
export async function readOnnx(path: string): Promise<OnnxModel> {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(readFileSync(path));
  } catch (err) {
    throw new GoodnetError(`cannot read: ${(err as Error).message}`, path, { cause: err });
  }
  return onnxToLayers(decodeModel(bytes, path), bytes, path);
}
