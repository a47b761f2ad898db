/**
 * Replacement for the wasm backend's BatchMatMul: the native kernel reaches XNNPACK only for
 * unbatched, untransposed operands and otherwise runs a scalar triple loop. Every Dense layer's
 * backward pass asks for transposeA or transposeB (dW = x^T dy, dx = dy W^T), and at DeepID's
 * fc sizes the loop was ~10% of a training step. Transposing the operand explicitly and handing
 * the rest to the native kernel takes its fast path. Batched products go to the native kernel
 * unchanged. Opt-in: see registerWasmKernelOverrides.
 */
import { BatchMatMul, util } from '@tensorflow/tfjs-core';
import type { BatchMatMulAttrs, BatchMatMulInputs, KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import { disposeAll, input, transpose, type WasmBackendLike } from './wasm_ops.js';

function swapLastTwo(backend: WasmBackendLike, x: TensorInfo): TensorInfo {
  const perm = x.shape.map((_, i) => i);
  const r = perm.length;
  [perm[r - 2], perm[r - 1]] = [r - 1, r - 2];
  return transpose(backend, x, perm);
}

export function makeBatchMatMul(native: KernelFunc): KernelFunc {
  const kernel = (args: {
    inputs: BatchMatMulInputs;
    backend: WasmBackendLike;
    attrs: BatchMatMulAttrs;
  }): TensorInfo | TensorInfo[] => {
    const { inputs, backend, attrs } = args;
    const a = input(BatchMatMul, inputs, 'a');
    const b = input(BatchMatMul, inputs, 'b');
    const { transposeA, transposeB } = attrs;
    const unbatched = util.sizeFromShape(a.shape.slice(0, -2)) === 1 && util.sizeFromShape(b.shape.slice(0, -2)) === 1;
    if ((!transposeA && !transposeB) || !unbatched || a.dtype !== 'float32' || b.dtype !== 'float32') {
      return native(args as unknown as Parameters<KernelFunc>[0]);
    }
    const a2 = transposeA ? swapLastTwo(backend, a) : a;
    const b2 = transposeB ? swapLastTwo(backend, b) : b;
    const out = native({ inputs: { a: a2, b: b2 }, backend, attrs: { transposeA: false, transposeB: false } });
    if (a2 !== a) disposeAll(backend, a2);
    if (b2 !== b) disposeAll(backend, b2);
    return out;
  };
  return kernel as unknown as KernelFunc;
}
