/**
 * A graph rewrite for onnxruntime's CPU convolutions, applied to what the ort engine runs (not
 * to exported files): onnxruntime computes convolutions in its blocked NCHWc layout (channel
 * blocks of 8 or 16) and converts back to plain NCHW before any op it cannot run blocked. A
 * MaxPool or AveragePool on a channel count that is not a multiple of the block is such an
 * op: the full-size conv output is reordered, pooled in NCHW, and reordered again for the next
 * conv (DeepID's 20, 40 and 60 channels: 28% of the kernel time of a full-DeepID forward pass,
 * bench/ort_infer_profile.ts).
 *
 * The rewrite pads such a conv's filters (and bias, and a BatchNormalization's parameters
 * between it and the pool) with zero filters up to the block, so its output and the pool after
 * it stay blocked; a conv reading the pool gets zero weights for the
 * extra channels, any other reader reads the pool through a Slice back to the real channels.
 * Every real channel is computed by the same kernel from the same values, so the scores are
 * the plain graph's (tested equal); the padded channels are zero filters whose outputs no
 * weight reads.
 */
import { GoodnetError } from '../errors.js';
import { decodeModel, encodeModel, floatTensor, int64Tensor, num, tensorValue, type GraphProto, type NodeProto, type TensorProto } from '../io/onnx_proto.js';

const POOLS = new Set(['MaxPool', 'AveragePool']);
/** Element-wise ops that may sit between the conv and its pool (no per-channel parameters). */
const UNARY = new Set(['Relu', 'LeakyRelu', 'Elu', 'Selu', 'Sigmoid', 'HardSigmoid', 'Tanh', 'Softplus', 'HardSwish']);

/** Whether `node` is an inference BatchNormalization of tensor `t` (O channels) with constant parameters used by it alone. */
function normOf(node: NodeProto, t: string, O: number, weights: Map<string, TensorProto>, uses: Map<string, NodeProto[]>): boolean {
  if (node.opType !== 'BatchNormalization' || node.input?.[0] !== t || (node.input ?? []).length !== 5 || (node.output ?? []).length !== 1) return false;
  if (node.attribute?.some((a) => a.name === 'training_mode' && num(a.i) !== 0)) return false;
  return node.input.slice(1).every((name) => {
    const w = weights.get(name);
    return !!w && (w.dataType ?? 0) === 1 && (w.dims ?? []).map(num).join() === String(O) && (uses.get(name) ?? []).length === 1;
  });
}

/** Whether `node` is a plain (group 1, 4-D constant float weights) Conv of `graph`. */
function plainConv(node: NodeProto, weights: Map<string, TensorProto>): boolean {
  if (node.opType !== 'Conv' || (node.domain ?? '') !== '') return false;
  const group = node.attribute?.find((a) => a.name === 'group');
  if (group && num(group.i) !== 1) return false;
  const w = weights.get(node.input?.[1] ?? '');
  if (!w || (w.dataType ?? 0) !== 1 || (w.dims ?? []).length !== 4) return false;
  const b = node.input?.[2];
  return !b || (weights.get(b)?.dataType ?? 0) === 1;
}

/**
 * `bytes` (an ONNX model) with the pooled convolutions' channels padded to multiples of
 * `block` (see above); the same bytes when nothing applies or `block` is 0. A graph it cannot
 * read is returned as is (onnxruntime reports what is wrong with it).
 */
export function alignPooledChannels(bytes: Uint8Array, block: number): Uint8Array {
  if (!(block > 1)) return bytes;
  const m = (() => {
    try {
      return decodeModel(bytes, 'model');
    } catch (e) {
      if (e instanceof GoodnetError) return undefined;
      throw e;
    }
  })();
  if (!m?.graph) return bytes;
  // Slice takes its bounds as inputs from opset 10 on.
  const opset = num((m.opsetImport ?? []).find((o) => (o.domain ?? '') === '')?.version);
  if (!(opset >= 10)) return bytes;
  const g: GraphProto = m.graph;
  const nodes = g.node ?? [];
  const weights = new Map((g.initializer ?? []).map((t) => [t.name ?? '', t]));
  const uses = new Map<string, NodeProto[]>();
  for (const n of nodes) for (const i of n.input ?? []) if (i) uses.set(i, [...(uses.get(i) ?? []), n]);
  const graphOutputs = new Set((g.output ?? []).map((o) => o.name ?? ''));
  const only = (t: string) => (graphOutputs.has(t) ? [] : uses.get(t) ?? []);
  const replace = (name: string, dims: number[], data: Float32Array) => {
    const t = floatTensor(name, dims, data);
    g.initializer = (g.initializer ?? []).map((x) => (x.name === name ? t : x));
    weights.set(name, t);
  };
  const touched = new Set<string>();
  let changed = false;
  for (const conv of [...nodes]) {
    if (!plainConv(conv, weights)) continue;
    const wName = conv.input![1]!;
    if ((uses.get(wName) ?? []).length !== 1) continue;
    const w = tensorValue(weights.get(wName)!, 'model', wName);
    const [O, I, kh, kw] = w.dims as [number, number, number, number];
    if (O % block === 0) continue;
    // conv -> [BatchNormalization, channel-wise activations] -> pools, nothing else reading the way.
    let t = conv.output![0]!;
    let readers = only(t);
    const chain = [t];
    const norms: NodeProto[] = [];
    while (readers.length === 1 && (readers[0]!.domain ?? '') === '' && (UNARY.has(readers[0]!.opType ?? '') || normOf(readers[0]!, t, O, weights, uses))) {
      const r = readers[0]!;
      if (r.opType === 'BatchNormalization') norms.push(r);
      t = r.output![0]!;
      chain.push(t);
      readers = only(t);
    }
    if (readers.length === 0 || !readers.every((r) => POOLS.has(r.opType ?? '') && (r.domain ?? '') === '' && (r.output ?? []).length === 1)) continue;
    const pools = readers;
    if (pools.some((p) => graphOutputs.has(p.output![0]!))) continue;
    const bName = conv.input![2];
    if (bName && (uses.get(bName) ?? []).length !== 1) continue;
    const O2 = Math.ceil(O / block) * block;
    const nw = new Float32Array(O2 * I * kh * kw);
    nw.set(w.data);
    replace(wName, [O2, I, kh, kw], nw);
    if (bName) {
      const nb = new Float32Array(O2);
      nb.set(tensorValue(weights.get(bName)!, 'model', bName).data);
      replace(bName, [O2], nb);
    }
    for (const bn of norms) {
      // scale, bias and mean padded with 0, variance with 1: the padded channels stay finite.
      bn.input!.slice(1, 5).forEach((name, k) => {
        const v = new Float32Array(O2).fill(k === 3 ? 1 : 0);
        v.set(tensorValue(weights.get(name)!, 'model', name).data);
        replace(name, [O2], v);
      });
    }
    for (const x of chain) touched.add(x);
    for (const pool of pools) {
      const out = pool.output![0]!;
      touched.add(out);
      const slicers: NodeProto[] = [];
      for (const r of uses.get(out) ?? []) {
        const rw = r.input?.[1];
        const widen = r.input?.[0] === out && plainConv(r, weights) && (uses.get(rw!) ?? []).length === 1 && !(r.input ?? []).slice(1).includes(out);
        if (!widen) {
          slicers.push(r);
          continue;
        }
        // A conv reading the pool: zero weights for the padded input channels.
        const v = tensorValue(weights.get(rw!)!, 'model', rw!);
        const [O3, I3, h3, w3] = v.dims as [number, number, number, number];
        if (I3 !== O) {
          slicers.push(r);
          continue;
        }
        const k = h3 * w3;
        const nv = new Float32Array(O3 * O2 * k);
        for (let o = 0; o < O3; o++) nv.set(v.data.subarray(o * I3 * k, (o + 1) * I3 * k), o * O2 * k);
        replace(rw!, [O3, O2, h3, w3], nv);
      }
      if (slicers.length > 0) {
        // Every other reader sees the real channels again.
        const padded = `${out}__padded`;
        pool.output = [padded];
        for (const r of uses.get(out) ?? []) if (!slicers.includes(r)) r.input = r.input!.map((i) => (i === out ? padded : i));
        const c = (s: string, v: number) => { g.initializer!.push(int64Tensor(`${out}__${s}`, [1], [v])); return `${out}__${s}`; };
        const slice: NodeProto = { opType: 'Slice', name: `${out}__unpad`, input: [padded, c('start', 0), c('end', O), c('axis', 1)], output: [out], attribute: [] };
        g.node!.splice(g.node!.indexOf(pool) + 1, 0, slice);
      }
    }
    changed = true;
  }
  if (!changed) return bytes;
  // Shapes recorded for the widened tensors would now be wrong: let onnxruntime infer them.
  g.valueInfo = (g.valueInfo ?? []).filter((v) => !touched.has(v.name ?? ''));
  return encodeModel(m);
}
