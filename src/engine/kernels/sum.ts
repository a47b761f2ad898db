/**
 * Replacement for the wasm backend's Sum when the reduced axes lead (given as 0..k-1, in
 * that order) and the kept ones trail: the bias gradients of every conv and dense layer (sum over N, H, W of an NHWC
 * tensor). The native kernel first transposes the whole tensor so the reduced axes are
 * innermost, then sums each row. This one sums in place, with one float32 accumulator per
 * output, adding the rows in the same order as the native kernel adds them, so the result is
 * the same bits (a float32 add done in double precision and rounded to float32 equals the
 * float32 add; tested against the native kernel). Other reductions, dtypes other than float32, and
 * inner sizes of 1 go to the native kernel.
 */
import { Sum, util } from '@tensorflow/tfjs-core';
import type { KernelFunc, SumAttrs, SumInputs, TensorInfo } from '@tensorflow/tfjs-core';
import { input, type WasmBackendLike } from './wasm_ops.js';

interface WasmHeapBackend extends WasmBackendLike {
  makeOutput(shape: number[], dtype: 'float32'): TensorInfo;
  typedArrayFromHeap(t: TensorInfo): Float32Array;
}

/** out[c] = sum over rows r (in order) of x[r * inner + c], float32 accumulation. */
export function sumLeadingRows(x: Float32Array, rows: number, inner: number, out: Float32Array): void {
  out.fill(0);
  for (let r = 0; r < rows; r++) {
    const base = r * inner;
    for (let c = 0; c < inner; c++) out[c] += x[base + c]!;
  }
}

export function makeSum(native: KernelFunc): KernelFunc {
  const kernel = (args: { inputs: SumInputs; backend: WasmHeapBackend; attrs: SumAttrs }): TensorInfo | TensorInfo[] => {
    const { inputs, backend, attrs } = args;
    const x = input(Sum, inputs, 'x');
    const rank = x.shape.length;
    // In the given order: the native kernel's row order follows it (axes [1, 0] sum in another order).
    const axes = rank === 0 ? [] : util.parseAxisParam(attrs.axis, x.shape);
    const leading = axes.length > 0 && axes.length < rank && axes.every((a, i) => a === i);
    const inner = x.shape.slice(axes.length).reduce((a, b) => a * b, 1);
    if (x.dtype !== 'float32' || !leading || inner === 1) return native(args as unknown as Parameters<KernelFunc>[0]);
    const rows = x.shape.slice(0, axes.length).reduce((a, b) => a * b, 1);
    const shape = attrs.keepDims ? x.shape.map((d, i) => (i < axes.length ? 1 : d)) : x.shape.slice(axes.length);
    const out = backend.makeOutput(shape, 'float32');
    // Views after makeOutput: allocating may grow (and so detach) the wasm heap.
    sumLeadingRows(backend.typedArrayFromHeap(x), rows, inner, backend.typedArrayFromHeap(out));
    return out;
  };
  return kernel as unknown as KernelFunc;
}
