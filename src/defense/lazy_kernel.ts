/**
 * The lazy kernel of the linear tail kind (tailkinds.ts) for a pooled (GAP) or direct cut
 * into the output Dense: no tfjs, so it also runs in a worker thread (lazy_pool.ts). It runs
 * as WebAssembly (lazy_wasm.ts, compiled from asm/lazy_kernel.ts) where that loads, else as the
 * JS below, which is the reference the WebAssembly build is tested against.
 */
import { lazyWasm, pooledShareWasm } from './lazy_wasm.js';

/** Which build of the kernel runs: WebAssembly (the default; JS where it cannot load) or JS. */
export type LazyEngine = 'wasm' | 'js';
/** GOODNET_LAZY_KERNEL=js selects the JS build (benchmarks compare the two). */
const lazyEngine: LazyEngine = typeof process !== 'undefined' && process.env?.GOODNET_LAZY_KERNEL === 'js' ? 'js' : 'wasm';

/** The build that `pooledShare` runs on this thread by default. */
export function lazyKernelEngine(): LazyEngine {
  return lazyEngine === 'wasm' && lazyWasm() ? 'wasm' : 'js';
}

/** The output Dense read by the cut's channels: kernel (c, u), bias (u). */
export interface PooledWeights {
  c: number;
  u: number;
  kernel: Float32Array;
  bias: Float32Array;
}

/**
 * linearShare for GAP/direct cuts into the output Dense, in JS (float64): z = f @ W + b. Lazily:
 * pruning channel ch moves every logit j by -f_ch W[ch, j], so the margin of the last top label
 * a over any other label b falls by f_ch (W[ch, a] - W[ch, b]), at most f_ch (W[ch, a] -
 * min_b W[ch, b]) for f_ch >= 0 and |f_ch| (max_b W[ch, b] - W[ch, a]) otherwise, and |top|
 * grows by at most |f_ch| max_b |W[ch, b]|. An image whose last margin exceeds the summed falls
 * with the tol rule's headroom (tol * (1 + |top| + growth)) keeps its label, not ambiguous,
 * without touching z; otherwise its z catches up on the channels pruned since and its logits are
 * read again. Non-finite weights: every image-step is flagged (recomputed exactly); a non-finite
 * value: every step of that image.
 */
export function pooledShare(t: PooledWeights, f: Float32Array, m: number, start: number, n: number, order: number[], last: number, tol: number, labels: Int32Array, ambiguous: Uint8Array, engine: LazyEngine = lazyEngine): number {
  const { c, u } = t;
  const W = t.kernel;
  // Non-finite weights: every image-step is flagged. Non-finite values f are caught per image
  // (lazyImage): any of them makes every step-0 logit NaN or infinite.
  if (!allFinite(W, c * u) || !allFinite(t.bias, u)) {
    for (let k = 0; k <= last; k++) ambiguous.fill(1, k * n + start, k * n + start + m);
    return 0;
  }
  if (engine === 'wasm') {
    const r = pooledShareWasm(t, f, m, start, n, order, last, tol, labels, ambiguous);
    if (r !== null) return r;
  }
  // Per channel and top label a: the largest fall of a's margin per unit of f_ch (>= 0, < 0),
  // and the largest |W[ch, :]|; 1.001 covers the rounding of the sums.
  const decPos = new Float64Array(c * u);
  const decNeg = new Float64Array(c * u);
  const wAbs = new Float64Array(c);
  for (let ch = 0; ch < c; ch++) {
    let lo = Infinity;
    let hi = -Infinity;
    for (let j = 0; j < u; j++) { lo = Math.min(lo, W[ch * u + j]!); hi = Math.max(hi, W[ch * u + j]!); }
    for (let a = 0; a < u; a++) {
      decPos[ch * u + a] = (W[ch * u + a]! - lo) * 1.001;
      decNeg[ch * u + a] = (hi - W[ch * u + a]!) * 1.001;
    }
    wAbs[ch] = Math.max(hi, -lo) * 1.001;
  }
  // Image by image through every step: the image's state stays in locals and its values in
  // one cache line or two; only the label writes are strided. One call per image (optimised
  // after a few calls; a long loop would run in the interpreter until on-stack replacement).
  const z = new Float64Array(u);
  const ord = Int32Array.from(order);
  // W by unit (u, c), so step 0's sums run in a register.
  const wt = new Float64Array(u * c);
  for (let ch = 0; ch < c; ch++) for (let j = 0; j < u; j++) wt[j * c + ch] = W[ch * u + j]!;
  const s: LazyState = { c, u, W, wt, bias: t.bias, ord, last, tol, decPos, decNeg, wAbs, z, labels, ambiguous };
  let computed = 0;
  for (let i = 0; i < m; i++) computed += lazyImage(s, f, i * c, start + i, n);
  return computed;
}

function allFinite(v: Float32Array, len: number): boolean {
  for (let i = 0; i < len; i++) if (!Number.isFinite(v[i]!)) return false;
  return true;
}

interface LazyState {
  c: number; u: number; W: Float32Array; wt: Float64Array; bias: Float32Array; ord: Int32Array; last: number; tol: number;
  decPos: Float64Array; decNeg: Float64Array; wAbs: Float64Array; z: Float64Array; labels: Int32Array; ambiguous: Uint8Array;
}

/** pooledShare for one image (values f[fr..fr+c), output column col of n); returns how many steps read its logits. */
function lazyImage(s: LazyState, f: Float32Array, fr: number, col: number, n: number): number {
  const { c, u, W, wt, ord, last, tol, decPos, decNeg, wAbs, z, labels, ambiguous } = s;
  for (let j = 0; j < u; j++) {
    let sum = s.bias[j]!;
    const w = j * c;
    for (let ch = 0; ch < c; ch++) sum += f[fr + ch]! * wt[w + ch]!;
    z[j] = sum;
  }
  if (!Number.isFinite(z[0]!)) {
    // A non-finite value among this image's f (it reaches every logit): all its steps exactly.
    for (let k = 0; k <= last; k++) {
      labels[k * n + col] = 0;
      ambiguous[k * n + col] = 1;
    }
    return 0;
  }
  let computed = 0;
  let synced = 0;
  let lab = 0;
  let second = 0;
  let gap2 = -Infinity;
  let gap3 = -Infinity;
  let top = 0;
  let fall = 0;
  let grow = 0;
  for (let k = 0; k <= last; k++) {
    const o = k * n + col;
    if (k > 0) {
      const ch = ord[k - 1]!;
      const fv = f[fr + ch]!;
      const w = ch * u;
      // The gap to the runner-up exactly; to the others, at least the third's gap less the falls.
      gap2 -= fv * (W[w + lab]! - W[w + second]!);
      fall += fv >= 0 ? fv * decPos[w + lab]! : -fv * decNeg[w + lab]!;
      grow += Math.abs(fv) * wAbs[ch]!;
      const need = tol * (1 + top + grow);
      if (gap2 > need && gap3 - fall > need) {
        labels[o] = lab;
        continue; // ambiguous stays 0
      }
      for (let q = synced; q < k; q++) {
        const cq = ord[q]!;
        const v = f[fr + cq]!;
        const wq = cq * u;
        for (let j = 0; j < u; j++) z[j] -= v * W[wq + j]!;
      }
      synced = k;
    }
    // Top three (first index wins ties, as argMax).
    let v1 = -Infinity;
    let v2 = -Infinity;
    let v3 = -Infinity;
    let b1 = 0;
    let b2 = 0;
    let nan = false;
    for (let j = 0; j < u; j++) {
      const y = z[j]!;
      if (y > v1) { v3 = v2; v2 = v1; b2 = b1; v1 = y; b1 = j; } else if (y > v2) { v3 = v2; v2 = y; b2 = j; } else if (y > v3) v3 = y; else if (y !== y) nan = true;
    }
    const ok = !nan && v1 - v2 > tol * (1 + Math.abs(v1));
    labels[o] = b1;
    ambiguous[o] = ok ? 0 : 1;
    lab = b1;
    second = b2;
    gap2 = ok ? v1 - v2 : -Infinity;
    gap3 = ok ? v1 - v3 : -Infinity;
    top = Math.abs(v1);
    fall = 0;
    grow = 0;
    computed++;
  }
  return computed;
}

