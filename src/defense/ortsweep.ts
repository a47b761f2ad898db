/**
 * The linear kind's sweep (tailkinds.ts) on onnxruntime-node: every step of a chunk of
 * images in one session run, no tf op dispatch per step.
 *
 * For a tail P -> [Flatten | GAP] -> Dense(W, b) -> [act -> Dense(V, c)] the Dense
 * pre-activation at step k is z_k = b + sum over the channels not yet pruned of x_ch @ W_ch.
 * With the channels in pruning order, D_q = x_{order[q]} @ W_{order[q]} (one batched MatMul)
 * and a last slice D_C = b, z_k is the reverse cumulative sum of D from q = k:
 *
 *   X (M, pf*C) -> (M, pf, C) ++ ones -> (C+1, M, pf), gathered in pruning order
 *     -> MatMul with W's rows in the same order (bias row at C) -> D (C+1, M, u)
 *     -> CumSum(axis 0, reverse) -> z_0..z_C -> act -> Gemm(V, c) -> logits
 *
 * The same work as the incremental tfjs update (one x_ch @ W_ch per step and image) plus one
 * pass for the sum, in MLAS kernels; the logits' top two are read in JS. Floats differ from the tfjs tail in rounding only: images whose
 * top-two margin is within tol * (1 + |top|) (or NaN) are flagged, and sweep.ts recomputes
 * them with the tail-mask path, as for every kind. One session per tail (the pruning order
 * is an input), created lazily; null where onnxruntime-node cannot be loaded (the
 * browser build) or refuses the graph, and the caller takes the tfjs path.
 */
import type { LinearTail } from './tailkinds.js';
import type { ShareResult } from './fastsweep.js';
import { encodeModel, type ModelProto, type NodeProto, type TensorProto } from '../io/onnx_proto.js';

type Ort = typeof import('onnxruntime-node');
type Session = import('onnxruntime-node').InferenceSession;

/** Most images per session run (the graph's fixed batch; the last chunk is padded with zeros). */
export const ORT_SWEEP_CHUNK = 256;
/** Largest Dense kernel (floats) the graph copies as an initializer; larger tails take the tfjs path. */
export const ORT_SWEEP_MAX_KERNEL = 2 ** 24;

/** Images per run: at most ORT_SWEEP_CHUNK, and about 2^24 floats in each (steps x images x width) tensor. */
export function ortSweepChunk(t: LinearTail): number {
  const pf = t.via === 'flatten' ? t.hw : 1;
  const width = Math.max(t.u, pf, t.out?.classes ?? 0);
  return Math.max(16, Math.min(ORT_SWEEP_CHUNK, Math.floor(2 ** 24 / ((t.c + 1) * width))));
}

/** Activations before the output Dense that the graph writes (tailkinds' LIPSCHITZ set). */
const ACT_OPS: Record<string, string | null> = { linear: null, relu: 'Relu', tanh: 'Tanh', sigmoid: 'Sigmoid' };

/** True when the ORT graph covers this tail: z is the logits, or act -> output Dense follows. */
export function ortSweepable(t: LinearTail): boolean {
  if (t.rest && !t.out) return false;
  if (t.kernel.length > ORT_SWEEP_MAX_KERNEL) return false;
  return !t.out || t.out.act in ACT_OPS;
}

const f32 = (name: string, dims: number[], data: Float32Array): TensorProto => ({ name, dims, dataType: 1, rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
const i64 = (name: string, vals: number[]): TensorProto => ({ name, dims: [vals.length], dataType: 7, int64Data: vals });
const node = (opType: string, input: string[], output: string[], attribute: NodeProto['attribute'] = []): NodeProto => ({ opType, input, output, name: output[0], attribute });
const valueInfo = (name: string, elemType: number, dims: (number | string)[]) => ({
  name, type: { tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) } } },
});

/**
 * The sweep graph of a linear tail for chunks of `chunk` images. Inputs: X (chunk, per) the
 * cut values (per-channel pooled values for gap), order (C+1) int64: the pruning order then C.
 * Output: logits ((C+1) * chunk, classes), step-major (steps past the sweep's last are not read).
 */
export function linearSweepGraph(t: LinearTail, chunk: number): Uint8Array {
  const { c, u } = t;
  const pf = t.via === 'flatten' ? t.hw : 1;
  // W's rows per channel, natural channel order, and the bias as channel C (row 0; the
  // ones slab gives it weight 1): (C+1, pf, u).
  const wc = new Float32Array((c + 1) * pf * u);
  for (let ch = 0; ch < c; ch++) {
    for (let p = 0; p < pf; p++) {
      const row = t.via === 'flatten' ? p * c + ch : ch;
      wc.set(t.kernel.subarray(row * u, (row + 1) * u), (ch * pf + p) * u);
    }
  }
  wc.set(t.bias, c * pf * u);
  const ones = new Float32Array(chunk * pf).fill(1);
  const inits: TensorProto[] = [
    f32('wc', [c + 1, pf, u], wc), f32('ones', [chunk, pf, 1], ones),
    i64('shape3', [chunk, pf, c]), i64('zero', [0]), i64('rows', [-1, u]),
  ];
  const nodes: NodeProto[] = [
    node('Reshape', ['X', 'shape3'], ['x3']),
    node('Concat', ['x3', 'ones'], ['x3b'], [{ name: 'axis', type: 2, i: 2 }]),
    node('Transpose', ['x3b'], ['xt'], [{ name: 'perm', type: 7, ints: [2, 0, 1] }]),
    node('Gather', ['xt', 'order'], ['xo'], [{ name: 'axis', type: 2, i: 0 }]),
    node('Gather', ['wc', 'order'], ['wo'], [{ name: 'axis', type: 2, i: 0 }]),
    node('MatMul', ['xo', 'wo'], ['d']),
    node('CumSum', ['d', 'zero'], ['z'], [{ name: 'reverse', type: 2, i: 1 }]),
    node('Reshape', ['z', 'rows'], ['z2']),
  ];
  let logits = 'z2';
  if (t.out) {
    const op = ACT_OPS[t.out.act];
    let h = 'z2';
    if (op) {
      nodes.push(node(op, ['z2'], ['h']));
      h = 'h';
    }
    inits.push(f32('v', [u, t.out.classes], t.out.kernel), f32('vb', [t.out.classes], t.out.bias));
    nodes.push(node('Gemm', [h, 'v', 'vb'], ['L']));
    logits = 'L';
  }
  const classes = t.out ? t.out.classes : u;
  const m: ModelProto = {
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    producerName: 'goodnet',
    graph: {
      name: 'goodnet_linear_sweep',
      node: nodes,
      initializer: inits,
      input: [valueInfo('X', 1, [chunk, pf * c]), valueInfo('order', 7, [c + 1])],
      output: [valueInfo(logits, 1, [(c + 1) * chunk, classes])],
    },
  };
  return encodeModel(m);
}

let ortModule: Promise<Ort | null> | undefined;
function loadOrt(): Promise<Ort | null> {
  ortModule ??= import('onnxruntime-node').then((m) => m as Ort, () => null);
  return ortModule;
}

interface Compiled { ort: Ort; session: Session; chunk: number }
/** Sessions per tail and thread count; dropped with the tail (the session is freed when collected). */
const sessions = new WeakMap<LinearTail, Map<number, Promise<Compiled | null>>>();

/** The tail's session, or null when onnxruntime is unavailable or refuses the graph. */
function sessionFor(t: LinearTail, threads: number): Promise<Compiled | null> {
  let byThreads = sessions.get(t);
  if (!byThreads) sessions.set(t, byThreads = new Map());
  let p = byThreads.get(threads);
  if (!p) byThreads.set(threads, p = compile(t, threads));
  return p;
}

/** Load onnxruntime and create the tail's session now (in the background), so the sweep finds it ready. */
export function prepareOrtSweep(t: LinearTail, threads = 1): void {
  if (ortSweepable(t)) void sessionFor(t, threads);
}

async function compile(t: LinearTail, threads: number): Promise<Compiled | null> {
  const ort = await loadOrt();
  if (!ort) return null;
  const chunk = ortSweepChunk(t);
  try {
    const session = await ort.InferenceSession.create(linearSweepGraph(t, chunk), {
      intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all',
    });
    return { ort, session, chunk };
  } catch {
    return null;
  }
}

/**
 * linearShare (tailkinds.ts) on onnxruntime: labels and ambiguity flags of `n` images `x`
 * (NHWC at the cut for flatten, (n, C) per-channel values for gap/direct) at steps 0..last.
 * Null when onnxruntime is not available or a run fails: use the tfjs path.
 */
export async function ortLinearShare(t: LinearTail, x: Float32Array, n: number, order: number[], last: number, tol: number, threads = 1): Promise<ShareResult | null> {
  if (!ortSweepable(t)) return null;
  const s = await sessionFor(t, threads);
  if (!s) return null;
  const { ort, session, chunk } = s;
  const outName = session.outputNames[0]!;
  const { c } = t;
  const per = (t.via === 'flatten' ? t.hw : 1) * c;
  const classes = t.out ? t.out.classes : t.u;
  const labels = new Int32Array((last + 1) * n);
  const ambiguous = new Uint8Array((last + 1) * n);
  const orderT = new ort.Tensor('int64', BigInt64Array.from([...order, c], (v) => BigInt(v)), [c + 1]);
  const run = (start: number) => {
    const m = Math.min(chunk, n - start);
    let xs = x.subarray(start * per, (start + m) * per);
    if (m < chunk) {
      const padded = new Float32Array(chunk * per);
      padded.set(xs);
      xs = padded;
    }
    return session.run({ X: new ort.Tensor('float32', xs, [chunk, per]), order: orderT });
  };
  for (let start = 0; start < n; start += chunk) {
    let out: Awaited<ReturnType<typeof run>>;
    try {
      out = await run(start);
    } catch {
      return null; // e.g. out of memory in onnxruntime: the tfjs path computes the same labels
    }
    const v = out[outName]!.data as Float32Array;
    const m = Math.min(chunk, n - start);
    for (let k = 0; k <= last; k++) {
      const o = k * n + start;
      const r0 = k * chunk * classes;
      for (let i = 0; i < m; i++) top2Into(v, r0 + i * classes, classes, tol, labels, ambiguous, o + i);
    }
  }
  return { labels, ambiguous, computed: (last + 1) * n };
}

/** The top label of v[r..r+classes) (first index wins ties) into labels[o]; ambiguous[o] = 1 where its margin is within tol * (1 + |top|) or a value is NaN. */
function top2Into(v: Float32Array, r: number, classes: number, tol: number, labels: Int32Array, ambiguous: Uint8Array, o: number): void {
  let v1 = -Infinity;
  let v2 = -Infinity;
  let b1 = 0;
  let nan = false;
  for (let j = 0; j < classes; j++) {
    const y = v[r + j]!;
    if (y > v1) {
      v2 = v1;
      v1 = y;
      b1 = j;
    } else if (y > v2) {
      v2 = y;
    } else if (y !== y) {
      nan = true;
    }
  }
  labels[o] = b1;
  ambiguous[o] = !nan && v1 - v2 > tol * (1 + Math.abs(v1)) ? 0 : 1;
}
