/**
 * Replacement for the wasm backend's Tile: the native kernel computes a source index per
 * output element and was 30-40% of a training step of a network with BatchNormalization
 * (tfjs-core's FusedBatchNorm gradient tiles 1/sqrt(var) to the full N x H x W x C
 * activation). This one copies contiguous blocks: the innermost run of untiled axes once,
 * then each tiled axis by repeating the block already written (copyWithin), so the work is
 * memcpy of the output. Strings and complex numbers go to the native kernel. Opt-in: see
 * registerWasmKernelOverrides.
 */
import { Tile } from '@tensorflow/tfjs-core';
import type { DataType, KernelFunc, TensorInfo, TileAttrs, TileInputs } from '@tensorflow/tfjs-core';
import { input, type WasmBackendLike } from './wasm_ops.js';

type Numeric = Float32Array | Int32Array | Uint8Array;

interface WasmHeapBackend extends WasmBackendLike {
  makeOutput(shape: number[], dtype: DataType): TensorInfo;
  typedArrayFromHeap(t: TensorInfo): Numeric;
}

/** Tile `src` (shape `shape`) by `reps` into `dst` (shape shape[i] * reps[i]); both row-major. */
export function tileInto(src: Numeric, shape: readonly number[], reps: readonly number[], dst: Numeric): void {
  const rank = shape.length;
  if (rank === 0) {
    dst.set(src.subarray(0, 1));
    return;
  }
  const srcInner = new Array<number>(rank);
  const dstInner = new Array<number>(rank);
  const untiledFrom = new Array<boolean>(rank + 1);
  untiledFrom[rank] = true;
  let s = 1;
  let d = 1;
  for (let i = rank - 1; i >= 0; i--) {
    srcInner[i] = s;
    dstInner[i] = d;
    s *= shape[i]!;
    d *= shape[i]! * reps[i]!;
    untiledFrom[i] = untiledFrom[i + 1]! && reps[i] === 1;
  }
  const write = (axis: number, sOff: number, dOff: number): void => {
    if (untiledFrom[axis]) {
      const len = axis === rank ? 1 : shape[axis]! * srcInner[axis]!;
      dst.set(src.subarray(sOff, sOff + len), dOff);
      return;
    }
    const n = shape[axis]!;
    for (let i = 0; i < n; i++) write(axis + 1, sOff + i * srcInner[axis]!, dOff + i * dstInner[axis]!);
    const block = n * dstInner[axis]!;
    for (let r = 1; r < reps[axis]!; r++) dst.copyWithin(dOff + r * block, dOff, dOff + block);
  };
  write(0, 0, 0);
}

export function makeTile(native: KernelFunc): KernelFunc {
  const kernel = (args: { inputs: TileInputs; backend: WasmHeapBackend; attrs: TileAttrs }): TensorInfo | TensorInfo[] => {
    const { inputs, backend, attrs } = args;
    const x = input(Tile, inputs, 'x');
    const reps = attrs.reps;
    if (x.dtype === 'string' || x.dtype === 'complex64' || reps.length !== x.shape.length) {
      return native(args as unknown as Parameters<KernelFunc>[0]);
    }
    const out = backend.makeOutput(x.shape.map((n, i) => n * reps[i]!), x.dtype);
    // Read both views after makeOutput: allocating may grow (and detach) the wasm heap.
    tileInto(backend.typedArrayFromHeap(x), x.shape, reps, backend.typedArrayFromHeap(out));
    return out;
  };
  return kernel as unknown as KernelFunc;
}
