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
 *
 * Exactness as in fastsweep.ts: the label comes from logits (a final softmax is dropped);
 * an image whose top-two margin is within tol * (1 + |top|) is flagged and recomputed.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type { CutActivations } from './activations.js';
import { fastShares, FAST_TOL, matchDeepIdTail, type DeepIdTail, type FastSweepOptions, type ShareResult } from './fastsweep.js';

type Layer = tfl.layers.Layer;

export interface TailKind<T> {
  name: string;
  match(tail: tfl.LayersModel, channels: number): T | null;
  run(t: T, sets: CutActivations[], order: number[], last: number, o: FastSweepOptions): Promise<{ sets: ShareResult[]; computed: number }>;
}

export const deepIdKind: TailKind<DeepIdTail> = {
  name: 'deepid',
  match: (tail, channels) => {
    const t = matchDeepIdTail(tail);
    return t && t.c === channels ? t : null;
  },
  run: (t, sets, order, last, o) => fastShares(t, sets, order, last, o),
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
    const rest = restModel(tail, dense);
    if (!rest) return null;
    const u = w[0]!.shape[1]!;
    return {
      via, hw: shape.length === 3 ? shape[0]! * shape[1]! : 1, c: channels, u,
      kernel: w[0]!.dataSync() as Float32Array, bias: w[1] ? w[1].dataSync() as Float32Array : new Float32Array(u), rest: rest === 'identity' ? null : rest,
    };
  },
  run: async (t, sets, order, last, o) => {
    const tol = o.tol ?? FAST_TOL;
    const out: ShareResult[] = [];
    let computed = 0;
    for (const s of sets) {
      const r = linearShare(t, s.values, order, last, tol);
      computed += r.computed ?? 0;
      out.push(r);
    }
    return { sets: out, computed };
  },
};

/** The incremental sweep of one set on the current backend. */
export function linearShare(t: LinearTail, values: tf.Tensor, order: number[], last: number, tol: number, chunkSize?: number): ShareResult {
  const { hw, c, u } = t;
  // Images per chunk: about 2^24 floats of state (cut values, z, logits) at a time.
  const chunk = chunkSize ?? Math.max(256, Math.min(65536, Math.floor(2 ** 24 / (hw * c + 2 * u + 16))));
  const n = values.shape[0]!;
  const labels = new Int32Array((last + 1) * n);
  const ambiguous = new Uint8Array((last + 1) * n);
  const rows = t.via === 'flatten' ? hw * c : c;
  const kernel = tf.tensor2d(t.kernel, [rows, u]);
  const bias = tf.tensor1d(t.bias);
  // Rows of channel ch: (hw, u) for flatten (row p*c + ch), (1, u) otherwise.
  const wc: tf.Tensor2D[] = [];
  for (let ch = 0; ch < c; ch++) {
    const per = t.via === 'flatten' ? hw : 1;
    const a = new Float32Array(per * u);
    for (let p = 0; p < per; p++) a.set(t.kernel.subarray((p * c + ch) * u, (p * c + ch + 1) * u), p * u);
    wc.push(tf.tensor2d(a, [per, u]));
  }
  let computed = 0;
  try {
    for (let start = 0; start < n; start += chunk) {
      const m = Math.min(chunk, n - start);
      const x = tf.slice(values, start, m);
      // Per-channel features: (m, hw) for flatten, (m, 1) for GAP (mean over positions) and direct.
      const feats = tf.tidy(() => {
        if (t.via === 'flatten') return tf.unstack(tf.reshape(tf.transpose(x, [3, 0, 1, 2]), [c, m, hw])) as tf.Tensor2D[];
        const v = t.via === 'gap' ? tf.mean(x, [1, 2]) : x;
        return tf.split(v as tf.Tensor2D, c, 1) as tf.Tensor2D[];
      });
      if (!t.rest && t.via !== 'flatten') {
        // z is the logits and one channel is one input row: the update is m*u multiply-adds per step, done here in JS.
        computed += pooledShare(t, x, m, start, n, order, last, tol, labels, ambiguous);
        tf.dispose([...feats, x]);
        continue;
      }
      let z = tf.tidy(() => {
        const v = t.via === 'flatten' ? tf.reshape(x, [m, rows]) : t.via === 'gap' ? tf.mean(x, [1, 2]) : x;
        return tf.add(tf.matMul(v as tf.Tensor2D, kernel), bias) as tf.Tensor2D;
      });
      x.dispose();
      for (let k = 0; k <= last; k++) {
        if (k > 0) {
          const ch = order[k - 1]!;
          const nz = tf.tidy(() => tf.sub(z, tf.matMul(feats[ch]!, wc[ch]!)) as tf.Tensor2D);
          z.dispose();
          z = nz;
        }
        const logits = t.rest ? tf.tidy(() => t.rest!.predict(z, { batchSize: m }) as tf.Tensor2D) : z;
        const classes = logits.shape[1]!;
        const v = logits.dataSync() as Float32Array;
        if (logits !== z) logits.dispose();
        for (let i = 0; i < m; i++) {
          const [b1, amb] = top(v, i * classes, classes, tol);
          labels[k * n + start + i] = b1;
          ambiguous[k * n + start + i] = amb;
        }
        computed += m;
      }
      tf.dispose([...feats, z]);
    }
  } finally {
    tf.dispose([kernel, bias, ...wc]);
  }
  return { labels, ambiguous, computed };
}

/** Top label and ambiguity of row i of (m, classes) logits. */
function top(v: Float32Array | Float64Array, r: number, classes: number, tol: number): [number, number] {
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
  return [b1, !nan && v1 - v2 > tol * (1 + Math.abs(v1)) ? 0 : 1];
}

/** linearShare for GAP/direct cuts into the output Dense: z = f @ W + b updated in JS (float64). */
function pooledShare(t: LinearTail, x: tf.Tensor, m: number, start: number, n: number, order: number[], last: number, tol: number, labels: Int32Array, ambiguous: Uint8Array): number {
  const { c, u } = t;
  const fT = tf.tidy(() => (t.via === 'gap' ? tf.mean(x, [1, 2]) : x));
  const f = fT.dataSync() as Float32Array;
  fT.dispose();
  const z = new Float64Array(m * u);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < u; j++) {
      let s = t.bias[j]!;
      for (let ch = 0; ch < c; ch++) s += f[i * c + ch]! * t.kernel[ch * u + j]!;
      z[i * u + j] = s;
    }
  }
  for (let k = 0; k <= last; k++) {
    if (k > 0) {
      const ch = order[k - 1]!;
      const w0 = ch * u;
      for (let i = 0; i < m; i++) {
        const fv = f[i * c + ch]!;
        if (fv === 0) continue;
        const r = i * u;
        for (let j = 0; j < u; j++) z[r + j] -= fv * t.kernel[w0 + j]!;
      }
    }
    for (let i = 0; i < m; i++) {
      const [lab, amb] = top(z, i * u, u, tol);
      labels[k * n + start + i] = lab;
      ambiguous[k * n + start + i] = amb;
    }
  }
  return m * (last + 1);
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
