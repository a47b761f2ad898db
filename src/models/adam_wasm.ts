/**
 * Adam's step on flat float32 vectors in WebAssembly SIMD (asm/adam_kernel.ts): the weights,
 * both moments and a few gradient slots live in one module instance's memory, so OrtWeights
 * keeps its vectors there and a step is one call (the JS loop, ort_train.ts `adamLoop`, takes
 * 0.5 ms per step on the lab ResNet's 77,754 weights). The same float32 operations in the
 * same order as the JS loop: bit-identical results (tested). `null` where WebAssembly or its
 * SIMD is missing; OrtWeights then uses the JS loop.
 */
import { instantiateWasm } from '../engine/wasm_module.js';
import { ADAM_WASM_BASE64 } from './adam_wasm_module.js';

interface Exports {
  memory: { buffer: ArrayBuffer; grow(pages: number): number };
  adam(n: number, pW: number, pM: number, pV: number, pG: number, nG: number,
    b1: number, b2: number, c1: number, c2: number, negLr: number, eps: number, a1: number, a2: number): void;
}

/** The module's own data lies below this offset (its stub runtime allocates nothing). */
const BASE = 65536;

/** Weights, moments and `slots` gradient vectors of `n` floats each, in one instance's memory. */
export class WasmAdam {
  readonly w: Float32Array;
  readonly m: Float32Array;
  readonly v: Float32Array;
  /** Gradient slots, contiguous: `step(k, ...)` sums slots 0..k-1. */
  readonly grads: Float32Array[];
  private constructor(private readonly x: Exports, readonly n: number, readonly slots: number) {
    const stride = (Math.ceil(n / 4) * 4) * 4; // 16-byte aligned vectors (the kernel's slot stride)
    const need = BASE + stride * (3 + slots);
    const have = x.memory.buffer.byteLength;
    if (need > have) x.memory.grow(Math.ceil((need - have) / 65536));
    const at = (k: number) => new Float32Array(x.memory.buffer, BASE + k * stride, n);
    this.w = at(0);
    this.m = at(1);
    this.v = at(2);
    this.grads = Array.from({ length: slots }, (_, k) => at(3 + k));
    this.gradBase = BASE + 3 * stride;
  }
  private readonly gradBase: number;

  /** A new instance for `n` weights and `slots` gradient vectors, or null where the module cannot run. */
  static create(n: number, slots: number): WasmAdam | null {
    const x = instantiateWasm<Exports>(ADAM_WASM_BASE64);
    if (!x) return null;
    try {
      return new WasmAdam(x, n, slots);
    } catch {
      return null; // memory that cannot grow that far
    }
  }

  /** One Adam step with the sum of gradient slots 0..k-1 (summed in slot order). */
  step(k: number, b1: number, b2: number, c1: number, c2: number, negLr: number, eps: number, a1: number, a2: number): void {
    if (!(k >= 1 && k <= this.slots)) throw new Error(`Adam over ${k} gradient slots of ${this.slots}`);
    this.x.adam(this.n, this.w.byteOffset, this.m.byteOffset, this.v.byteOffset, this.gradBase, k, b1, b2, c1, c2, negLr, eps, a1, a2);
  }
}
