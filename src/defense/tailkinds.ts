/**
 * Tail kinds for the incremental pruning sweep: each kind has one match function (the
 * tail's weights when the layers right after the cut have its shape, else null) and one
 * kernel (labels and ambiguity flags at steps 0..last). sweep.ts takes the first kind that
 * matches and recomputes ambiguous images exactly; no match means the general tail path.
 *
 *   deepid  P -> Flatten -> Dense, P -> Conv -> Flatten -> Dense, summed (fastsweep.ts)
 *   linear  P -> [Flatten | GlobalAveragePooling2D] -> Dense, or P (N, C) -> Dense, then any
 *           layers to the output: the Dense pre-activation z is linear in P's channels, so
 *           pruning one more channel subtracts that channel's rows (x_c @ W_c) from z; the
 *           layers after z run in one batch per step on z only (cheap next to the Dense).
 *           Where they are an activation and the output Dense (or nothing: z is the logits),
 *           every step of a chunk runs in one onnxruntime session run (ortsweep.ts; engine
 *           'tfjs': the activation and output Dense as two tf ops per step). A pooled cut into
 *           the output Dense is swept lazily in JS (lazy_kernel.ts; on this thread and one
 *           helper worker, lazy_pool.ts). `prepare` starts the engine or the worker before the sweep.
 *
 * Exactness as in fastsweep.ts: the label comes from logits (a final softmax is dropped);
 * an image whose top-two margin is within tol * (1 + |top|) is flagged and recomputed.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type { CutActivations } from './activations.js';
import { fastShares, FAST_TOL, matchDeepIdTail, splitShares, type DeepIdTail, type FastSweepOptions, type ShareResult } from './fastsweep.js';
import { ortLinearShare, prepareOrtSweep } from './ortsweep.js';
import { getBackend } from '../engine/backend.js';
import { lazyKernelEngine, pooledShare } from './lazy_kernel.js';
import { lazyShares, startLazyWorker } from './lazy_pool.js';

type Layer = tfl.layers.Layer;

export interface TailKind<T> {
  name: string;
  match(tail: tfl.LayersModel, channels: number): T | null;
  /** Start the kernel's engine ahead of the sweep (optional; never throws). */
  prepare?(t: T, o: FastSweepOptions): void;
  /** engine: what ran the kernel ('tfjs', 'ort', 'wasm' or 'js': the lazy kernel's WebAssembly or JS build; undefined: tfjs). */
  run(t: T, sets: CutActivations[], order: number[], last: number, o: FastSweepOptions, host?: (set: number) => Promise<Float32Array>): Promise<{ sets: ShareResult[]; computed: number; engine?: 'tfjs' | 'ort' | 'js' | 'wasm' }>;
}

export const deepIdKind: TailKind<DeepIdTail> = {
  name: 'deepid',
  match: (tail, channels) => {
    const t = matchDeepIdTail(tail);
    return t && t.c === channels ? t : null;
  },
  run: (t, sets, order, last, o, host) => fastShares(t, sets, order, last, o, host),
};

/** A linear-first tail: how P reaches the Dense, its weights, and the model from z to logits. */
export interface LinearTail {
  via: 'flatten' | 'gap' | 'direct';
  /** Positions per channel (h*w; 1 for direct). */
  hw: number;
  c: number;
  u: number;
  kernel: Float32Array;
  bias: Float32Array;
  /** z (N, u) -> logits; null when z is the logits (the Dense is the output layer). */
  rest: tfl.LayersModel | null;
  /** When rest is only an activation then the output Dense: its weights (run as two tf ops, not predict). */
  out?: { act: string; kernel: Float32Array; bias: Float32Array; classes: number };
}

function cfg(l: Layer): Record<string, unknown> {
  return l.getConfig() as Record<string, unknown>;
}
const inbound = (l: Layer): Layer[] => (l.inboundNodes.at(-1)?.inboundLayers as Layer[] | undefined) ?? [];
const act = (l: Layer) => (typeof cfg(l).activation === 'string' ? cfg(l).activation as string : 'linear');

/** Layers reading `l` in the tail. */
function readers(tail: tfl.LayersModel, l: Layer): Layer[] {
  return tail.layers.filter((x) => inbound(x).includes(l));
}

/** The model z -> logits: Dense's activation, then the tail's layers after it, a final softmax dropped. */
function restModel(tail: tfl.LayersModel, dense: Layer): tfl.LayersModel | 'identity' | null {
  const u = (cfg(dense).units as number);
  const input = tfl.input({ shape: [u] });
  const out = tail.outputs[0]!;
  const denseOut = dense.inboundNodes.at(-1)!.outputTensors[0] as tfl.SymbolicTensor;
  const lastLayer = tail.layers.at(-1)!;
  const dropSoftmax = (l: Layer) => (l === lastLayer || (l.inboundNodes.at(-1)!.outputTensors[0] as tfl.SymbolicTensor).id === out.id)
    && ((l.getClassName() === 'Activation' || l.getClassName() === 'Softmax' || l.getClassName() === 'Dense') && (act(l) === 'softmax' || l.getClassName() === 'Softmax'));
  if (denseOut.id === out.id) {
    // The Dense is the output layer: z is the logits when it is softmax/linear.
    return ['softmax', 'linear'].includes(act(dense)) ? 'identity' : null;
  }
  let x: tfl.SymbolicTensor = act(dense) === 'linear' ? input : tfl.layers.activation({ activation: act(dense) as never }).apply(input) as tfl.SymbolicTensor;
  const mapped = new Map<number, tfl.SymbolicTensor>([[denseOut.id, x]]);
  const after = tail.layers.slice(tail.layers.indexOf(dense) + 1);
  for (const l of after) {
    const node = l.inboundNodes.at(-1)!;
    const ins = (node.inputTensors as tfl.SymbolicTensor[]).map((t) => mapped.get(t.id));
    if (ins.some((t) => t === undefined) || ins.length !== 1) return null;
    const isOut = (node.outputTensors[0] as tfl.SymbolicTensor).id === out.id;
    let y: tfl.SymbolicTensor;
    if (isOut && dropSoftmax(l)) {
      if (l.getClassName() === 'Dense') {
        const w = l.getWeights();
        const linear = tfl.layers.dense({ units: cfg(l).units as number, useBias: w.length > 1, activation: 'linear' });
        y = linear.apply(ins[0]!) as tfl.SymbolicTensor;
        linear.setWeights(w);
      } else {
        y = ins[0]!;
      }
    } else {
      // Weight-sharing reuse of the tail's (cloned) layer on a new input.
      y = l.apply(ins[0]!) as tfl.SymbolicTensor;
    }
    mapped.set((node.outputTensors[0] as tfl.SymbolicTensor).id, y);
    x = y;
  }
  const logits = mapped.get(out.id);
  return logits ? tfl.model({ inputs: input, outputs: logits }) : null;
}

/** Activations before the output Dense run as one tf op. */
const LIPSCHITZ: Record<string, (x: tf.Tensor) => tf.Tensor> = {
  linear: (x) => x, relu: (x) => tf.relu(x), tanh: (x) => tf.tanh(x), sigmoid: (x) => tf.sigmoid(x),
};

/**
 * The output Dense when the tail after the first Dense is only [Dropout...] -> Dense (output,
 * softmax/linear), the activation being the first Dense's own or, after a linear Dense, a
 * separate Activation or plain ReLU layer (Dense -> ReLU -> Dense, as the lab's VGG).
 */
function outputDense(tail: tfl.LayersModel, dense: Layer): LinearTail['out'] {
  let actName = act(dense);
  let after = tail.layers.slice(tail.layers.indexOf(dense) + 1).filter((l) => l.getClassName() !== 'Dropout');
  const through = (l: Layer) => {
    // l's input, past any Dropout layers.
    let x = inbound(l)[0];
    while (x && x.getClassName() === 'Dropout') x = inbound(x)[0];
    return x;
  };
  if (actName === 'linear' && after.length === 2) {
    const a = after[0]!;
    const ca = cfg(a);
    if (a.getClassName() === 'Activation' && act(a) in LIPSCHITZ) actName = act(a);
    else if (a.getClassName() === 'ReLU' && (ca.maxValue ?? null) === null && !ca.negativeSlope && !ca.threshold) actName = 'relu';
    else return undefined;
    if (through(a) !== dense) return undefined;
    after = after.slice(1);
    if (through(after[0]!) !== a) return undefined;
  }
  if (!(actName in LIPSCHITZ)) return undefined;
  const o = after[0];
  if (after.length !== 1 || !o || o.getClassName() !== 'Dense' || !['softmax', 'linear'].includes(act(o))) return undefined;
  if ((o.inboundNodes.at(-1)!.outputTensors[0] as tfl.SymbolicTensor).id !== tail.outputs[0]!.id) return undefined;
  const w = o.getWeights();
  if (w[0]!.shape[0] !== (cfg(dense).units as number)) return undefined;
  const classes = w[0]!.shape[1]!;
  return { act: actName, kernel: w[0]!.dataSync() as Float32Array, bias: w[1] ? w[1].dataSync() as Float32Array : new Float32Array(classes), classes };
}

export const linearKind: TailKind<LinearTail> = {
  name: 'linear',
  match: (tail, channels) => {
    if (tail.inputs.length !== 1 || tail.outputs.length !== 1) return null;
    const input = tail.layers.find((l) => l.getClassName() === 'InputLayer');
    if (!input) return null;
    const shape = (input.output as tfl.SymbolicTensor).shape.slice(1) as number[];
    if (shape.at(-1) !== channels) return null;
    const first = readers(tail, input);
    if (first.length !== 1) return null;
    let via: LinearTail['via'];
    let dense: Layer | undefined;
    const f = first[0]!;
    if (shape.length === 1 && f.getClassName() === 'Dense') {
      via = 'direct';
      dense = f;
    } else if (shape.length === 3 && (f.getClassName() === 'Flatten' || f.getClassName() === 'GlobalAveragePooling2D')) {
      via = f.getClassName() === 'Flatten' ? 'flatten' : 'gap';
      const next = readers(tail, f);
      if (next.length !== 1 || next[0]!.getClassName() !== 'Dense') return null;
      dense = next[0]!;
      const df = cfg(f).data_format ?? cfg(f).dataFormat;
      if (df !== undefined && df !== null && df !== 'channels_last') return null;
    } else {
      return null;
    }
    const w = dense.getWeights();
    if (w.length < 1 || w[0]!.shape.length !== 2) return null;
    // Read before restModel, which applies the layers after the Dense to a new input (new nodes).
    const out = outputDense(tail, dense);
    const rest = restModel(tail, dense);
    if (!rest) return null;
    const u = w[0]!.shape[1]!;
    return {
      via, hw: shape.length === 3 ? shape[0]! * shape[1]! : 1, c: channels, u,
      kernel: w[0]!.dataSync() as Float32Array, bias: w[1] ? w[1].dataSync() as Float32Array : new Float32Array(u), rest: rest === 'identity' ? null : rest,
      out: rest === 'identity' ? undefined : out,
    };
  },
  prepare: (t, o) => {
    if (t.rest || t.via === 'flatten') {
      if (sweepEngine(o) === 'ort') prepareOrtSweep(t, o.threads ?? 1);
    } else if ((o.workers ?? 2) > 1) {
      startLazyWorker();
    }
  },
  run: async (t, sets, order, last, o, host) => {
    const read = (s: number) => host?.(s) ?? (sets[s]!.values.data() as Promise<Float32Array>);
    const ns = sets.map((s) => s.values.shape[0]);
    const tol = o.tol ?? FAST_TOL;
    // onnxruntime where its graph covers the tail (one set at a time, no copy), except a pooled
    // cut into the output layer: pooledShare's lazy path does no work at all for most
    // image-steps (their label provably cannot change).
    const lazy = !t.rest && t.via !== 'flatten';
    // Per-channel values of a GAP cut: the mean over positions on the backend (the tail's own
    // GlobalAveragePooling2D computes tf.mean over the same axes), not a JS loop over every value.
    const perChannel = async (s: number) => {
      if (t.via !== 'gap') return read(s);
      const m = tf.tidy(() => tf.mean(sets[s]!.values, [1, 2]));
      const v = await m.data() as Float32Array;
      m.dispose();
      return v;
    };
    if (lazy) {
      const fs: Float32Array[] = [];
      for (let s = 0; s < sets.length; s++) fs.push(await perChannel(s));
      const rs = await lazyShares(t, fs, ns, order, last, tol, (o.workers ?? 2) > 1);
      return { sets: rs, computed: rs.reduce((a, r) => a + (r.computed ?? 0), 0), engine: lazyKernelEngine() };
    }
    if (sweepEngine(o) === 'ort') {
      const rs: ShareResult[] = [];
      for (let s = 0; s < sets.length && rs.length === s; s++) {
        const r = await ortLinearShare(t, await perChannel(s), ns[s]!, order, last, tol, o.threads ?? 1);
        if (r) rs.push(r);
      }
      if (rs.length === sets.length) return { sets: rs, computed: rs.reduce((a, r) => a + (r.computed ?? 0), 0), engine: 'ort' };
    }
    // Both sets in one pass: one set of tfjs calls per step instead of one per set.
    const per = t.via === 'direct' ? t.c : t.hw * t.c;
    const all = new Float32Array(ns.reduce((a, b) => a + b, 0) * per);
    let off = 0;
    for (let s = 0; s < sets.length; s++) {
      const v = await read(s);
      all.set(v, off);
      off += v.length;
    }
    const r = linearShare(t, all, all.length / per, order, last, tol);
    return { sets: splitShares(r, ns, last), computed: r.computed ?? 0, engine: 'tfjs' };
  },
};

/**
 * The incremental sweep of `n` images `x` (NHWC at the cut, (n, C) for direct) on the current
 * backend. Per-channel features are cut out in JS (the wasm backend's slice copies the whole
 * tensor per call); the Dense pre-activation z is updated with one small matmul per step;
 * an activation and output Dense after it run as two tf ops instead of a model's predict.
 */
export function linearShare(t: LinearTail, x: Float32Array, n: number, order: number[], last: number, tol: number, chunkSize?: number): ShareResult {
  const { hw, c, u } = t;
  const per = t.via === 'direct' ? c : hw * c;
  const labels = new Int32Array((last + 1) * n);
  const ambiguous = new Uint8Array((last + 1) * n);
  // Images per chunk: about 2^24 floats of state (cut values, z, logits) at a time.
  const chunk = chunkSize ?? Math.max(256, Math.min(65536, Math.floor(2 ** 24 / (per + 2 * u + 16))));
  if (!t.rest && t.via !== 'flatten') {
    let computed = 0;
    for (let start = 0; start < n; start += chunk) {
      const m = Math.min(chunk, n - start);
      computed += pooledShare(t, pooled(t, x.subarray(start * per, (start + m) * per), m), m, start, n, order, last, tol, labels, ambiguous);
    }
    return { labels, ambiguous, computed };
  }
  const rows = t.via === 'flatten' ? hw * c : c;
  const pf = t.via === 'flatten' ? hw : 1;
  const kernel = tf.tensor2d(t.kernel, [rows, u]);
  const bias = tf.tensor1d(t.bias);
  // Rows of channel ch: (hw, u) for flatten (row p*c + ch), (1, u) otherwise.
  const wc: tf.Tensor2D[] = [];
  for (let ch = 0; ch < c; ch++) {
    const a = new Float32Array(pf * u);
    for (let p = 0; p < pf; p++) a.set(t.kernel.subarray((p * c + ch) * u, (p * c + ch + 1) * u), p * u);
    wc.push(tf.tensor2d(a, [pf, u]));
  }
  const out = t.out;
  const oK = out ? tf.tensor2d(out.kernel, [u, out.classes]) : null;
  const oB = out ? tf.tensor1d(out.bias) : null;
  let computed = 0;
  try {
    for (let start = 0; start < n; start += chunk) {
      const m = Math.min(chunk, n - start);
      const xs = x.subarray(start * per, (start + m) * per);
      const f = t.via === 'flatten' ? null : pooled(t, xs, m);
      // Channel-major copy (c, m, pf): a step's features are one contiguous upload.
      const cm = new Float32Array(c * m * pf);
      if (f) {
        for (let i = 0; i < m; i++) for (let ch = 0; ch < c; ch++) cm[ch * m + i] = f[i * c + ch]!;
      } else {
        for (let i = 0; i < m; i++) {
          const r = i * per;
          for (let p = 0; p < pf; p++) for (let ch = 0; ch < c; ch++) cm[(ch * m + i) * pf + p] = xs[r + p * c + ch]!;
        }
      }
      let z = tf.tidy(() => tf.add(tf.matMul(tf.tensor2d(f ?? xs, [m, rows]), kernel), bias) as tf.Tensor2D);
      for (let k = 0; k <= last; k++) {
        if (k > 0) {
          const ch = order[k - 1]!;
          const nz = tf.tidy(() => tf.sub(z, tf.matMul(tf.tensor2d(cm.subarray(ch * m * pf, (ch + 1) * m * pf), [m, pf]), wc[ch]!)) as tf.Tensor2D);
          z.dispose();
          z = nz;
        }
        // The layers after z on every image: the output Dense directly where that is all there is
        // (tf.gather on wasm costs more than running the small output layer on all rows).
        const logits = out ? tf.tidy(() => tf.fused.matMul({ a: LIPSCHITZ[out.act]!(z) as tf.Tensor2D, b: oK!, bias: oB! }) as tf.Tensor2D)
          : t.rest ? tf.tidy(() => t.rest!.predict(z, { batchSize: m }) as tf.Tensor2D) : z;
        const classes = logits.shape[1]!;
        const v = logits.dataSync() as Float32Array;
        if (logits !== z) logits.dispose();
        const o = k * n + start;
        for (let i = 0; i < m; i++) topInto(v, i * classes, classes, tol, labels, ambiguous, o + i);
        computed += m;
      }
      z.dispose();
    }
  } finally {
    tf.dispose([kernel, bias, ...wc]);
    if (oK) tf.dispose([oK, oB!]);
  }
  return { labels, ambiguous, computed };
}

/** (m, c) per-channel values for gap (mean over positions, as float32) and direct cuts. */
function pooled(t: LinearTail, xs: Float32Array, m: number): Float32Array {
  if (t.via === 'direct') return xs;
  const { hw, c } = t;
  const f = new Float32Array(m * c);
  const s = new Float64Array(c);
  for (let i = 0; i < m; i++) {
    s.fill(0);
    const r = i * hw * c;
    for (let p = 0; p < hw; p++) for (let ch = 0; ch < c; ch++) s[ch]! += xs[r + p * c + ch]!;
    for (let ch = 0; ch < c; ch++) f[i * c + ch] = s[ch]! / hw;
  }
  return f;
}

/** Writes the top label of row r of (m, classes) logits to labels[o] and 1 to ambiguous[o] where its top-two margin is within tol * (1 + |top|) (or NaN). */
function topInto(v: Float32Array | Float64Array, r: number, classes: number, tol: number, labels: Int32Array, ambiguous: Uint8Array, o: number): void {
  let v1 = -Infinity;
  let b1 = 0;
  let nan = false;
  for (let j = 0; j < classes; j++) {
    const y = v[r + j]!;
    if (y !== y) nan = true;
    if (y > v1) { v1 = y; b1 = j; }
  }
  let v2 = -Infinity;
  for (let j = 0; j < classes; j++) if (j !== b1 && v[r + j]! > v2) v2 = v[r + j]!;
  labels[o] = b1;
  ambiguous[o] = !nan && v1 - v2 > tol * (1 + Math.abs(v1)) ? 0 : 1;
}

/** The engine of the linear kind's kernel: 'auto' is onnxruntime except on the cpu backend (the reference path). */
function sweepEngine(o: FastSweepOptions): 'ort' | 'tfjs' {
  const e = o.engine ?? 'auto';
  return e === 'auto' ? (getBackend() === 'cpu' ? 'tfjs' : 'ort') : e;
}

/** The kinds sweep.ts tries, in order. */
export const TAIL_KINDS: TailKind<unknown>[] = [deepIdKind as TailKind<unknown>, linearKind as TailKind<unknown>];

const matched = new WeakMap<tfl.LayersModel, { kind: TailKind<unknown>; t: unknown } | null>();

/**
 * The first kind matching `tail`, with its matched state. Matched once per tail: the linear
 * kind applies the tail's layers after the Dense to a new input (more nodes on them), so a
 * second match on the same tail would see a different graph.
 */
export function matchTail(tail: tfl.LayersModel, channels: number): { kind: TailKind<unknown>; t: unknown } | null {
  if (matched.has(tail)) return matched.get(tail)!;
  let found: { kind: TailKind<unknown>; t: unknown } | null = null;
  for (const kind of TAIL_KINDS) {
    const t = kind.match(tail, channels);
    if (t) {
      found = { kind, t };
      break;
    }
  }
  matched.set(tail, found);
  return found;
}
