/**
 * The fast pruning sweep for DeepID-shaped tails:
 *
 *   P (pool) -> flatten -> Dense A (linear) ----------------------------+
 *   P        -> Conv2D (relu, valid, stride 1) -> flatten -> Dense B (linear) -> Add -> relu -> Dense (softmax/linear)
 *
 * Both linear layers that read P see each channel separately, so pruning one more channel
 * only subtracts that channel's contribution from Dense A's and the conv's pre-activations
 * (incremental update); then fc_2 and the output layer run on the updated state. Only
 * the top two logits per image leave the backend.
 *
 * Exactness: float32 incremental updates are not bit-identical to the reference tail
 * (tailLabels: mask, then the tfjs model). Every image whose top-two logit margin is within
 * `tol * (1 + |top|)` is marked ambiguous and recomputed with the reference path, so the
 * labels equal the reference wherever the incremental error is below that margin (measured
 * drift on the lab3 weights: at most 4.4e-5 x (1 + |logit|) over 60 steps, bench/drift.ts;
 * tol defaults to 1e-3). The output layer is skipped for images whose last margin exceeds
 * the summed bound 2 max_j ||W_out[:, j]|| x ||hidden change|| (their label cannot change). Argmax of logits equals argmax of softmax
 * for margins that large.
 *
 * Work is split over worker_threads (each its own tfjs wasm engine) by images.
 */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { CutActivations } from './activations.js';

type Layer = tfl.layers.Layer;

/** Weights of a DeepID-shaped tail, as plain arrays (sendable to workers). */
export interface DeepIdTail {
  /** pool output h, w, c */
  h: number; w: number; c: number;
  /** conv kernel kh x kw x c x f, bias f */
  kh: number; kw: number; f: number;
  convK: Float32Array; convB: Float32Array;
  /** Dense A: (h*w*c) x u */
  u: number; aK: Float32Array; aB: Float32Array;
  /** Dense B: (oh*ow*f) x u */
  bK: Float32Array; bB: Float32Array;
  /** output: u x classes */
  classes: number; oK: Float32Array; oB: Float32Array;
}

/** The layers feeding `layer` in the tail (its latest node: tail layers are clones applied anew). */
function inbound(layer: Layer): Layer[] {
  const node = layer.inboundNodes.at(-1);
  return node ? (node.inboundLayers as Layer[]) : [];
}
function cfg(layer: Layer): Record<string, unknown> {
  return layer.getConfig() as Record<string, unknown>;
}
const act = (l: Layer) => (typeof cfg(l).activation === 'string' ? cfg(l).activation as string : 'linear');
const ones = (v: unknown) => v === undefined || v === 1 || (Array.isArray(v) && v.every((x) => x === 1));

/** The tail's weights when it has exactly the DeepID shape above, else null (use the general path). */
export function matchDeepIdTail(tail: tfl.LayersModel): DeepIdTail | null {
  if (tail.inputs.length !== 1 || tail.outputs.length !== 1) return null;
  const layers = tail.layers.filter((l) => l.getClassName() !== 'InputLayer');
  if (layers.length !== 8) return null;
  const input = tail.layers.find((l) => l.getClassName() === 'InputLayer');
  const by = (cls: string) => layers.filter((l) => l.getClassName() === cls);
  const convs = by('Conv2D');
  const flats = by('Flatten');
  const denses = by('Dense');
  const adds = by('Add');
  const acts = by('Activation');
  if (convs.length !== 1 || flats.length !== 2 || denses.length !== 3 || adds.length !== 1 || acts.length !== 1) return null;
  const conv = convs[0]!;
  const cc = cfg(conv);
  if (inbound(conv)[0] !== input || act(conv) !== 'relu' || cc.padding !== 'valid' || !ones(cc.strides) || !ones(cc.dilation_rate)
    || (cc.data_format !== undefined && cc.data_format !== 'channels_last') || cc.use_bias === false) return null;
  const flatP = flats.find((l) => inbound(l)[0] === input);
  const flatC = flats.find((l) => inbound(l)[0] === conv);
  if (!flatP || !flatC) return null;
  const denseA = denses.find((l) => inbound(l)[0] === flatP);
  const denseB = denses.find((l) => inbound(l)[0] === flatC);
  const out = denses.find((l) => l !== denseA && l !== denseB);
  const add = adds[0]!;
  const relu = acts[0]!;
  if (!denseA || !denseB || !out || act(denseA) !== 'linear' || act(denseB) !== 'linear') return null;
  if (cfg(denseA).use_bias === false || cfg(denseB).use_bias === false || cfg(out).use_bias === false) return null;
  const addIn = inbound(add);
  if (addIn.length !== 2 || !addIn.includes(denseA) || !addIn.includes(denseB)) return null;
  if (inbound(relu)[0] !== add || act(relu) !== 'relu' || inbound(out)[0] !== relu) return null;
  if (!['softmax', 'linear'].includes(act(out)) || tail.outputs[0] !== out.inboundNodes.at(-1)!.outputTensors[0]) return null;
  const [h, w, c] = (input!.output as tfl.SymbolicTensor).shape.slice(1) as number[];
  const data = (l: Layer) => l.getWeights().map((t) => t.dataSync() as Float32Array);
  const [convK, convB] = data(conv);
  const [aK, aB] = data(denseA);
  const [bK, bB] = data(denseB);
  const [oK, oB] = data(out);
  const [kh, kw, , f] = conv.getWeights()[0]!.shape as number[];
  const u = aB!.length;
  return {
    h: h!, w: w!, c: c!, kh: kh!, kw: kw!, f: f!, convK: convK!, convB: convB!,
    u, aK: aK!, aB: aB!, bK: bK!, bB: bB!, classes: oB!.length, oK: oK!, oB: oB!,
  };
}

export interface ShareResult {
  /** (steps+1) x n top labels, step-major. */
  labels: Int32Array;
  /** (steps+1) x n: 1 where the margin was too small to trust. */
  ambiguous: Uint8Array;
  /** Image-steps that ran the output layer (the rest provably kept their label). */
  computed?: number;
}

/**
 * Incremental sweep over the images `x` (n x h x w x c, NHWC) on the current tfjs backend:
 * labels and ambiguity flags at steps 0..last of `order`.
 */
export async function sweepShare(t: DeepIdTail, x: Float32Array, n: number, order: number[], last: number, tol: number, skip = true, chunk = 2048): Promise<ShareResult> {
  const { h, w, c, kh, kw, f, u, classes } = t;
  const hw = h * w;
  const oh = h - kh + 1;
  const ow = w - kw + 1;
  const labels = new Int32Array((last + 1) * n);
  const ambiguous = new Uint8Array((last + 1) * n);
  const convK = tf.tensor4d(t.convK, [kh, kw, c, f]);
  const convB = tf.tensor1d(t.convB);
  const aK = tf.tensor2d(t.aK, [hw * c, u]);
  // fc_2's bias is folded into fc_1's state: hidden = relu(z1 + relu(z4) @ bK).
  const abB = tf.tensor1d(t.aB.map((v, i) => v + t.bB[i]!));
  const bK = tf.tensor2d(t.bK, [oh * ow * f, u]);
  const oK = tf.tensor2d(t.oK, [u, classes]);
  const oB = tf.tensor1d(t.oB);
  // Bound on how much any difference of two logits moves per unit (L2) of hidden change:
  // ||W_a - W_b|| <= 2 max ||W_j|| (columns of the output kernel), with a margin for rounding.
  let maxNorm = 0;
  for (let j = 0; j < classes; j++) {
    let s2 = 0;
    for (let q = 0; q < u; q++) s2 += t.oK[q * classes + j]! ** 2;
    maxNorm = Math.max(maxNorm, Math.sqrt(s2));
  }
  const colSpread = 2 * maxNorm * 1.001;
  let computed = 0;
  // Per channel ch: its rows of fc_1 (hw x u) and conv_4 written as a dense map from the
  // channel's hw pooled values to the oh*ow*f pre-activations (hw x oh*ow*f).
  const aKc: tf.Tensor2D[] = [];
  const cKc: tf.Tensor2D[] = [];
  for (let ch = 0; ch < c; ch++) {
    const a = new Float32Array(hw * u);
    for (let p = 0; p < hw; p++) a.set(t.aK.subarray((p * c + ch) * u, (p * c + ch + 1) * u), p * u);
    aKc.push(tf.tensor2d(a, [hw, u]));
    const m = new Float32Array(hw * oh * ow * f);
    for (let oy = 0; oy < oh; oy++) {
      for (let ox = 0; ox < ow; ox++) {
        for (let dy = 0; dy < kh; dy++) {
          for (let dx = 0; dx < kw; dx++) {
            const row = (oy + dy) * w + (ox + dx);
            const k0 = ((dy * kw + dx) * c + ch) * f;
            const o0 = row * oh * ow * f + (oy * ow + ox) * f;
            for (let g = 0; g < f; g++) m[o0 + g]! += t.convK[k0 + g]!;
          }
        }
      }
    }
    cKc.push(tf.tensor2d(m, [hw, oh * ow * f]));
  }
  try {
    for (let start = 0; start < n; start += chunk) {
      const m = Math.min(chunk, n - start);
      const p = tf.tensor4d(x.subarray(start * hw * c, (start + m) * hw * c), [m, h, w, c]);
      // One (m, hw) tensor per channel, so a step reads its channel without a slice; cut out
      // in JS (unstack on wasm copies the whole tensor once per channel).
      const cm = new Float32Array(c * m * hw);
      for (let i = 0; i < m; i++) {
        const r = (start + i) * hw * c;
        for (let q = 0; q < hw; q++) for (let ch = 0; ch < c; ch++) cm[(ch * m + i) * hw + q] = x[r + q * c + ch]!;
      }
      const pcs = Array.from({ length: c }, (_, ch) => tf.tensor2d(cm.subarray(ch * m * hw, (ch + 1) * m * hw), [m, hw]));
      let z1 = tf.tidy(() => tf.add(tf.matMul(tf.reshape(p, [m, hw * c]), aK), abB) as tf.Tensor2D);
      let z4 = tf.tidy(() => tf.reshape(tf.add(tf.conv2d(p, convK, 1, 'valid'), convB), [m, oh * ow * f]) as tf.Tensor2D);
      p.dispose();
      const lab = new Int32Array(m);
      const amb = new Uint8Array(m);
      const lastMargin = new Float64Array(m);
      const lastTop = new Float64Array(m);
      const acc = new Float64Array(m);
      let prevHid: tf.Tensor2D | null = null;
      for (let k = 0; k <= last; k++) {
        if (k > 0) {
          const ch = order[k - 1]!;
          const [n1, n4] = tf.tidy(() => {
            const pc = pcs[ch]!;
            return [tf.sub(z1, tf.matMul(pc, aKc[ch]!)), tf.sub(z4, tf.matMul(pc, cKc[ch]!))] as const;
          });
          z1.dispose();
          z4.dispose();
          z1 = n1 as tf.Tensor2D;
          z4 = n4 as tf.Tensor2D;
        }
        const hid = tf.tidy(() => tf.relu(tf.add(z1, tf.matMul(tf.relu(z4), bK))) as tf.Tensor2D);
        // Images whose answer cannot have changed since their last output-layer run:
        // |change of (top - other)| <= colSpread * ||hidden change||, summed over steps.
        let todo: Int32Array | null = null;
        if (prevHid && skip) {
          const dn = tf.tidy(() => tf.sqrt(tf.sum(tf.square(tf.sub(hid, prevHid!)), 1)));
          const d = dn.dataSync();
          dn.dispose();
          const list: number[] = [];
          for (let i = 0; i < m; i++) {
            acc[i]! += d[i]! * colSpread;
            if (!(lastMargin[i]! - acc[i]! > tol * (1 + lastTop[i]! + acc[i]!))) list.push(i);
          }
          todo = list.length === m ? null : Int32Array.from(list);
        }
        prevHid?.dispose();
        prevHid = hid;
        const rows = todo ? todo.length : m;
        if (rows > 0) {
          // The rows to run, gathered in JS (tf.gather on wasm is slow): the same floats.
          let rowsIn = hid;
          if (todo) {
            const hv = hid.dataSync() as Float32Array;
            const g = new Float32Array(todo.length * u);
            for (let q = 0; q < todo.length; q++) g.set(hv.subarray(todo[q]! * u, (todo[q]! + 1) * u), q * u);
            rowsIn = tf.tensor2d(g, [todo.length, u]);
          }
          const logits = tf.tidy(() => tf.fused.matMul({ a: rowsIn, b: oK, bias: oB }));
          if (rowsIn !== hid) rowsIn.dispose();
          const v = logits.dataSync() as Float32Array;
          logits.dispose();
          for (let q = 0; q < rows; q++) {
            const i = todo ? todo[q]! : q;
            // Top logit (first index wins ties, as argMax does) and the runner-up.
            const r = q * classes;
            const e = r + classes;
            let v1 = -Infinity;
            let b1 = r;
            for (let j = r; j < e; j++) {
              const x = v[j]!;
              if (x > v1) {
                v1 = x;
                b1 = j;
              }
            }
            let v2 = -Infinity;
            let nan = false;
            for (let j = r; j < e; j++) {
              const x = v[j]!;
              if (x > v2 && j !== b1) v2 = x;
              if (x !== x) nan = true;
            }
            lab[i] = b1 - r;
            const margin = v1 - v2;
            const ok = !nan && margin > tol * (1 + Math.abs(v1));
            amb[i] = ok ? 0 : 1;
            lastMargin[i] = ok ? margin : -Infinity;
            lastTop[i] = Math.abs(v1);
            acc[i] = 0;
          }
        }
        labels.set(lab, k * n + start);
        ambiguous.set(amb, k * n + start);
        computed += rows;
      }
      prevHid?.dispose();
      tf.dispose([...pcs, z1, z4]);
    }
  } finally {
    tf.dispose([convK, convB, aK, abB, bK, oK, oB, ...aKc, ...cKc]);
  }
  return { labels, ambiguous, computed };
}

export interface FastSweepOptions {
  /**
   * Threads for the sweep (default: available cores; 0 or 1 runs in this thread): the deepid
   * kind's worker count; the linear kind's lazy JS kernel uses this thread and at most one helper.
   */
  workers?: number;
  /** Skip the output layer for images whose label provably cannot have changed (default true). */
  skip?: boolean;
  /** Relative top-two margin below which an image is recomputed with the reference path. */
  tol?: number;
  /**
   * The linear kind's engine (tailkinds.ts, ortsweep.ts): 'ort' (onnxruntime-node, falling
   * back to tfjs where it cannot be loaded), 'tfjs', or 'auto' (default: ort except on the cpu backend).
   */
  engine?: 'auto' | 'ort' | 'tfjs';
  /** onnxruntime intra-op threads for the linear kind (default 1). */
  threads?: number;
}

export const FAST_TOL = 1e-3;

/** Run sweepShare over clean + poisoned images, split over workers; returns per-set results. `host`: a set's values read from the backend (shared with the caller). */
export async function fastShares(t: DeepIdTail, sets: CutActivations[], order: number[], last: number, o: FastSweepOptions = {}, host?: (set: number) => Promise<Float32Array>): Promise<{ sets: ShareResult[]; computed: number }> {
  const tol = o.tol ?? FAST_TOL;
  const skip = o.skip ?? true;
  const per = t.h * t.w * t.c;
  const ns = sets.map((s) => s.values.shape[0]);
  const total = ns.reduce((a, b) => a + b, 0);
  const all = new Float32Array(total * per);
  let off = 0;
  for (const [i, s] of sets.entries()) {
    all.set(await (host?.(i) ?? s.values.data()) as Float32Array, off);
    off += s.values.size;
  }
  const workers = Math.min(o.workers ?? availableParallelism(), Math.ceil(total / 512));
  let merged: ShareResult;
  if (workers <= 1) {
    merged = await sweepShare(t, all, total, order, last, tol, skip);
  } else {
    const bounds = Array.from({ length: workers + 1 }, (_, i) => Math.round((i * total) / workers));
    const parts = await Promise.all(Array.from({ length: workers }, (_, i) => {
      const x = all.slice(bounds[i]! * per, bounds[i + 1]! * per);
      return runWorker(t, x, bounds[i + 1]! - bounds[i]!, order, last, tol, skip);
    }));
    merged = { labels: new Int32Array((last + 1) * total), ambiguous: new Uint8Array((last + 1) * total), computed: parts.reduce((a, r) => a + (r.computed ?? 0), 0) };
    parts.forEach((r, i) => {
      const n = bounds[i + 1]! - bounds[i]!;
      for (let k = 0; k <= last; k++) {
        merged.labels.set(r.labels.subarray(k * n, (k + 1) * n), k * total + bounds[i]!);
        merged.ambiguous.set(r.ambiguous.subarray(k * n, (k + 1) * n), k * total + bounds[i]!);
      }
    });
  }
  return { sets: splitShares(merged, ns, last), computed: merged.computed ?? 0 };
}

/** Split a step-major result over all images back into one result per set of `ns` images. */
export function splitShares(merged: ShareResult, ns: number[], last: number): ShareResult[] {
  const total = ns.reduce((a, b) => a + b, 0);
  const out: ShareResult[] = [];
  let s0 = 0;
  for (const n of ns) {
    const r = { labels: new Int32Array((last + 1) * n), ambiguous: new Uint8Array((last + 1) * n) };
    for (let k = 0; k <= last; k++) {
      r.labels.set(merged.labels.subarray(k * total + s0, k * total + s0 + n), k * n);
      r.ambiguous.set(merged.ambiguous.subarray(k * total + s0, k * total + s0 + n), k * n);
    }
    out.push(r);
    s0 += n;
  }
  return out;
}

function runWorker(t: DeepIdTail, x: Float32Array, n: number, order: number[], last: number, tol: number, skip: boolean): Promise<ShareResult> {
  return new Promise((resolve, reject) => {
    // No inherited node flags: `node -e` code, --input-type or heap flags would break or misconfigure the worker.
    const execArgv: string[] = [];
    const w = new Worker(new URL('./sweep_worker.js', import.meta.url), { workerData: { t, x, n, order, last, tol, skip }, transferList: [x.buffer as ArrayBuffer], execArgv });
    let done = false;
    w.once('message', (m: ShareResult | { error: string }) => {
      done = true;
      void w.terminate();
      if ('error' in m) reject(new Error(`sweep worker: ${m.error}`));
      else resolve(m);
    });
    w.once('error', (e) => { done = true; reject(e); });
    w.once('exit', (code) => { if (!done) reject(new Error(`sweep worker exited with code ${code}`)); });
  });
}
