/**
 * The lazy pooled kernel (lazy_kernel.ts `pooledShare`) compiled to WebAssembly from
 * asm/lazy_kernel.ts: the same algorithm and float64 arithmetic in the same order, so the same
 * labels and flags (tested against the JS kernel). Why: the JS kernel runs its first sweep
 * mostly before V8 has optimised it (the sweep is one call over every image); WebAssembly is
 * compiled ahead of running. The images go through in blocks (bounded memory) and calls of
 * CHUNK images, so V8's tier-up from its baseline compiler to its optimising one, which takes
 * effect at the next call, happens within the first few hundred images.
 *
 * One instance per thread (module state), created on first use; `null` where WebAssembly is
 * missing or the module does not instantiate, and the JS kernel runs instead.
 */
import { instantiateWasm } from '../engine/wasm_module.js';
import { LAZY_WASM_BASE64 } from './lazy_wasm_module.js';
import type { PooledWeights } from './lazy_kernel.js';
import { stepAccuracies, stepAttackSuccessRates, stepDenominator } from '../eval/metrics.js';

interface Exports {
  memory: { buffer: ArrayBuffer; grow(pages: number): number };
  prepare(c: number, u: number, pW: number, pDP: number, pDN: number, pWA: number, pWT: number): void;
  run(c: number, u: number, m: number, i0: number, i1: number, last: number, tol: number,
    pW: number, pB: number, pF: number, pO: number, pL: number, pA: number,
    pDP: number, pDN: number, pWA: number, pWT: number, pZ: number): number;
  stepCorrect(pL: number, pY: number, n: number, steps: number, pOut: number): void;
  stepHits(pL: number, pY: number, n: number, steps: number, target: number, all: number, pOut: number): void;
}

/** Images per call of `run` (the tier-up point: see above). */
const CHUNK = 256;
/** Byte budget of one block's values and outputs in the module's memory. */
const BLOCK_BYTES = 16 << 20;
/** The module's own data lies below this offset (its stub runtime allocates nothing). */
const BASE = 65536;

let instance: Exports | null | undefined;

/** The module's exports on this thread (one instance), or null where it cannot run. */
export function lazyWasm(): Exports | null {
  if (instance === undefined) instance = instantiateWasm<Exports>(LAZY_WASM_BASE64);
  return instance;
}

/**
 * `pooledShare` on the WebAssembly module: the same arguments and results. Returns null when
 * the module is unavailable (the caller runs the JS kernel).
 */
export function pooledShareWasm(t: PooledWeights, f: Float32Array, m: number, start: number, n: number, order: number[], last: number, tol: number, labels: Int32Array, ambiguous: Uint8Array, blockBytes = BLOCK_BYTES): number | null {
  const w = lazyWasm();
  if (!w) return null;
  const { c, u } = t;
  if (m === 0) return 0;
  const steps = last + 1;
  const block = Math.max(1, Math.min(m, Math.floor(blockBytes / (c * 4 + steps * 5))));
  const [pW, pB, pO, pDP, pDN, pWA, pWT, pZ, pF, pL, pA] = regions(w, [
    c * u * 4, u * 4, Math.max(1, last) * 4, c * u * 8, c * u * 8, c * 8, u * c * 8, u * 8, block * c * 4, block * steps * 4, block * steps,
  ]) as [number, number, number, number, number, number, number, number, number, number, number];
  const mem = w.memory.buffer;
  new Float32Array(mem, pW, c * u).set(t.kernel.subarray(0, c * u));
  new Float32Array(mem, pB, u).set(t.bias.subarray(0, u));
  new Int32Array(mem, pO, last).set(order.slice(0, last));
  w.prepare(c, u, pW, pDP, pDN, pWA, pWT);
  const fIn = new Float32Array(mem, pF, block * c);
  const lOut = new Int32Array(mem, pL, block * steps);
  const aOut = new Uint8Array(mem, pA, block * steps);
  let computed = 0;
  for (let b0 = 0; b0 < m; b0 += block) {
    const mb = Math.min(block, m - b0);
    fIn.set(f.subarray(b0 * c, (b0 + mb) * c));
    for (let i0 = 0; i0 < mb; i0 += CHUNK) {
      computed += w.run(c, u, mb, i0, Math.min(mb, i0 + CHUNK), last, tol, pW, pB, pF, pO, pL, pA, pDP, pDN, pWA, pWT, pZ);
    }
    for (let k = 0; k < steps; k++) {
      labels.set(lOut.subarray(k * mb, (k + 1) * mb), k * n + start + b0);
      ambiguous.set(aOut.subarray(k * mb, (k + 1) * mb), k * n + start + b0);
    }
  }
  return computed;
}

/**
 * Consecutive 16-byte-aligned regions of the given byte sizes from BASE in the module's memory
 * (grown as needed; nothing else lives there); their offsets.
 */
function regions(w: Exports, bytes: number[]): number[] {
  let off = BASE;
  const at = bytes.map((b) => {
    const p = off;
    off += Math.ceil(b / 16) * 16;
    return p;
  });
  const need = off - w.memory.buffer.byteLength;
  if (need > 0) w.memory.grow(Math.ceil(need / 65536));
  return at;
}

/**
 * The sweep's per-step metrics, `stepAccuracies` (target 'accuracy') or
 * `stepAttackSuccessRates` of src/eval/metrics.ts, counted on the module (the same values,
 * tested; the JS functions run cold on a sweep's first call); the JS functions where the
 * module is unavailable or the labels too many for one pass.
 */
export function stepMetrics(labels: Int32Array, truth: Int32Array, steps: number, target: number | 'accuracy'): number[] {
  const w = lazyWasm();
  const n = truth.length;
  if (!w || n === 0 || steps * n * 4 > 1 << 30) {
    return target === 'accuracy' ? stepAccuracies(labels, truth, steps) : stepAttackSuccessRates(labels, truth, steps, target);
  }
  const [pY, pOut, pL] = regions(w, [n * 4, steps * 4, steps * n * 4]) as [number, number, number];
  const mem = w.memory.buffer;
  new Int32Array(mem, pY, n).set(truth);
  new Int32Array(mem, pL, steps * n).set(labels.subarray(0, steps * n));
  const { count, all } = stepDenominator(truth, target);
  if (target === 'accuracy') w.stepCorrect(pL, pY, n, steps, pOut);
  else w.stepHits(pL, pY, n, steps, target, all ? 1 : 0, pOut);
  return Array.from(new Int32Array(w.memory.buffer, pOut, steps), (k) => (count === 0 ? NaN : k / count));
}
