/**
 * Replacement for the wasm backend's MaxPoolGrad, a scalar C++ loop that, for every input
 * position, revisits every window covering it and recomputes that window's max: ~15x the
 * forward max-pool, over a quarter of a DeepID training step.
 *
 * This one makes one pass over the windows (NHWC): for each window and channel it finds the
 * maximum (strict `>`, as tfjs's cpu maxPoolPositions: NaN never wins, a window of only
 * -Infinity or NaN passes no gradient) and adds dy there. On ties it picks the first (cpu) or
 * the last (native wasm) in row-major window order, see setMaxPoolGradTies; the default keeps
 * the native kernel's choice. Windows are visited in row-major order, so where windows overlap
 * the sums run in the reference kernel's order and precision (float64 for cpu, float32 for
 * native); without overlap each dx gets at most one term. Tests: bit-identical to the cpu
 * kernel ('first') and to the native wasm kernel ('last', on windows whose maximum is positive:
 * the native kernel sends the gradient of a window whose maximum is <= 0 to its first tap).
 *
 * Non-float32 inputs go to the native kernel. Opt-in: see registerWasmKernelOverrides.
 */
import { backend_util, MaxPoolGrad } from '@tensorflow/tfjs-core';
import type { KernelFunc, MaxPoolGradAttrs, MaxPoolGradInputs, TensorInfo } from '@tensorflow/tfjs-core';
import { input, type WasmBackendLike } from './wasm_ops.js';

/** The part of BackendWasm this kernel uses beyond WasmBackendLike. */
interface WasmHeapBackend extends WasmBackendLike {
  makeOutput(shape: number[], dtype: 'float32'): TensorInfo;
  typedArrayFromHeap(info: TensorInfo): Float32Array;
}

type Shape4 = [number, number, number, number];

/**
 * Which of several equal maxima in a window gets the gradient: 'first' in row-major window
 * order (tfjs's cpu backend, and PyTorch), or 'last' (tfjs's native wasm MaxPoolGrad).
 */
export type MaxPoolTies = 'first' | 'last';

let registeredTies: MaxPoolTies = 'last';

/**
 * Tie rule of the MaxPoolGrad goodnet registers for wasm. 'last' (the default) is what the
 * native wasm kernel did, so training on wasm gives the same weights as before this kernel
 * existed; 'first' matches the cpu backend. Ties are common: a flat image region gives equal
 * positive ReLU outputs, and the two rules then train (slightly) different models.
 */
export function setMaxPoolGradTies(ties: MaxPoolTies): void {
  registeredTies = ties;
}

export function getMaxPoolGradTies(): MaxPoolTies {
  return registeredTies;
}

/**
 * dx (zeroed by the caller, length B*H*W*C) += the max-pool gradient of dy given input x.
 * Plain arrays in, so it can be tested and timed on its own. The search is a strict `>` over
 * the window's taps, in row-major order for 'first' and reversed for 'last'.
 */
export function maxPoolGradInto(
  x: Float32Array, dy: Float32Array, dx: Float32Array | Float64Array, info: backend_util.Conv2DInfo,
  ties: MaxPoolTies = 'first',
): void {
  const last = ties === 'last';
  const { batchSize: nb, inHeight: h, inWidth: w, inChannels: c, outHeight: oh, outWidth: ow } = info;
  const { strideHeight: sh, strideWidth: sw, effectiveFilterHeight: kh, effectiveFilterWidth: kw } = info;
  const { top, left } = info.padInfo;
  const taps = new Int32Array(Math.max(1, kh * kw)); // offsets of x[b, r, s, 0] in the window
  let o = 0; // offset of dy[b, p, q, 0]
  for (let b = 0; b < nb; b++) {
    for (let p = 0; p < oh; p++) {
      const r0 = p * sh - top;
      const rMin = Math.max(0, r0);
      const rMax = Math.min(h, r0 + kh);
      for (let q = 0; q < ow; q++, o += c) {
        const c0 = q * sw - left;
        const cMin = Math.max(0, c0);
        const cMax = Math.min(w, c0 + kw);
        let nt = 0;
        for (let r = rMin; r < rMax; r++) {
          for (let s = cMin; s < cMax; s++) taps[nt++] = ((b * h + r) * w + s) * c;
        }
        if (last) {
          for (let i = 0, j = nt - 1; i < j; i++, j--) {
            const t = taps[i]!;
            taps[i] = taps[j]!;
            taps[j] = t;
          }
        }
        if (nt === 4 && cMax - cMin === 2) {
          // A whole 2x2 window (DeepID's pools): the same search, unrolled.
          const t0 = taps[0]!;
          const t1 = taps[1]!;
          const t2 = taps[2]!;
          const t3 = taps[3]!;
          for (let k = 0; k < c; k++) {
            let best = Number.NEGATIVE_INFINITY;
            let where = -1;
            let v = x[t0 + k]!;
            if (v > best) { best = v; where = t0 + k; }
            v = x[t1 + k]!;
            if (v > best) { best = v; where = t1 + k; }
            v = x[t2 + k]!;
            if (v > best) { best = v; where = t2 + k; }
            v = x[t3 + k]!;
            if (v > best) where = t3 + k;
            if (where >= 0) dx[where] += dy[o + k]!;
          }
          continue;
        }
        for (let k = 0; k < c; k++) {
          let best = Number.NEGATIVE_INFINITY;
          let where = -1;
          for (let t = 0; t < nt; t++) {
            const i = taps[t]! + k;
            const v = x[i]!;
            if (v > best) {
              best = v;
              where = i;
            }
          }
          if (where >= 0) dx[where] += dy[o + k]!;
        }
      }
    }
  }
}

export function makeMaxPoolGrad(native: KernelFunc): KernelFunc {
  const kernel = (args: { inputs: MaxPoolGradInputs; backend: WasmHeapBackend; attrs: MaxPoolGradAttrs }):
      TensorInfo | TensorInfo[] => {
    const { inputs, backend, attrs } = args;
    const x = input(MaxPoolGrad, inputs, 'input');
    const dy = input(MaxPoolGrad, inputs, 'dy');
    if (x.dtype !== 'float32' || dy.dtype !== 'float32') return native(args as unknown as Parameters<KernelFunc>[0]);
    const { filterSize, strides, pad, dimRoundingMode } = attrs;
    const info = backend_util.computePool2DInfo(x.shape as Shape4, filterSize, strides, 1, pad, dimRoundingMode);
    const dx = backend.makeOutput(x.shape, 'float32');
    // Views after makeOutput: allocating may grow (and so detach) the wasm heap.
    const xs = backend.typedArrayFromHeap(x);
    const dys = backend.typedArrayFromHeap(dy);
    const dxs = backend.typedArrayFromHeap(dx);
    const overlap = info.effectiveFilterHeight > info.strideHeight || info.effectiveFilterWidth > info.strideWidth;
    // Overlapping windows add several terms into one dx: 'first' (the cpu kernel) sums them in
    // float64 and rounds once, 'last' (the native kernel) sums in float32; both in window order.
    if (overlap && registeredTies === 'first') {
      const acc = new Float64Array(dxs.length);
      maxPoolGradInto(xs, dys, acc, info, registeredTies);
      dxs.set(acc);
    } else {
      dxs.fill(0);
      maxPoolGradInto(xs, dys, dxs, info, registeredTies);
    }
    return dx;
  };
  return kernel as unknown as KernelFunc;
}
