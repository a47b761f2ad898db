/**
 * Thin helpers for composing gradient kernels out of kernels the wasm backend already has.
 * Kernels are called directly (not through the engine), so intermediates are plain TensorInfos
 * that must be released with disposeData; nothing here touches the tape or the tensor tracker.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { DataId, NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';

/** The part of BackendWasm the composed kernels use. */
export interface WasmBackendLike {
  disposeData(dataId: DataId, force?: boolean): boolean;
}

const kernelFuncs = new Map<string, tf.KernelFunc>();

function wasmKernel(name: string): tf.KernelFunc {
  let f = kernelFuncs.get(name);
  if (f === undefined) {
    const config = tf.getKernel(name, 'wasm');
    if (config === undefined) throw new Error(`wasm backend has no '${name}' kernel`);
    f = config.kernelFunc;
    kernelFuncs.set(name, f);
  }
  return f;
}

/** Run wasm kernel `name` directly; the caller owns (and must dispose) the result. */
export function runWasm(
  name: string,
  backend: WasmBackendLike,
  inputs: NamedTensorInfoMap,
  attrs: NamedAttrMap = {},
): TensorInfo {
  const out = wasmKernel(name)({ inputs, backend, attrs });
  if (Array.isArray(out)) throw new Error(`wasm kernel '${name}' returned several tensors`);
  return out;
}

export function disposeAll(backend: WasmBackendLike, ...infos: TensorInfo[]): void {
  for (const info of infos) backend.disposeData(info.dataId);
}

export function transpose(backend: WasmBackendLike, x: TensorInfo, perm: number[]): TensorInfo {
  return runWasm('Transpose', backend, { x }, { perm });
}

export function reshape(backend: WasmBackendLike, x: TensorInfo, shape: number[]): TensorInfo {
  return runWasm('Reshape', backend, { x }, { shape });
}

export function pad(backend: WasmBackendLike, x: TensorInfo, paddings: Array<[number, number]>): TensorInfo {
  return runWasm('PadV2', backend, { x }, { paddings, constantValue: 0 });
}

/** Slice [begin, begin + size); returns `x` itself (not a copy) when nothing is cut. */
export function cropTo(backend: WasmBackendLike, x: TensorInfo, begin: number[], size: number[]): TensorInfo {
  if (begin.every((b) => b === 0) && size.every((s, i) => s === x.shape[i])) return x;
  return runWasm('Slice', backend, { x }, { begin, size });
}

export function input(kernel: string, inputs: NamedTensorInfoMap, name: string): TensorInfo {
  const t = inputs[name];
  if (t === undefined) throw new Error(`${kernel} (wasm): missing input '${name}'`);
  return t;
}

/**
 * Zero-insert a (B,H,W,C) tensor to (B,H*sh,W*sw,C), value (p,q) landing at (p*sh, q*sw):
 * reshape to (B,H,1,W,1,C), pad the unit axes to sh and sw, reshape back. Returns `x` when
 * both strides are 1; otherwise the caller disposes the result.
 */
export function dilate(backend: WasmBackendLike, x: TensorInfo, sh: number, sw: number): TensorInfo {
  if (sh === 1 && sw === 1) return x;
  const [b, h, w, c] = x.shape as [number, number, number, number];
  const x6 = reshape(backend, x, [b, h, 1, w, 1, c]);
  const spread = pad(backend, x6, [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]]);
  const out = reshape(backend, spread, [b, h * sh, w * sw, c]);
  disposeAll(backend, x6, spread);
  return out;
}

/**
 * Padding (before, after) and crop offset for one spatial axis of a stride-1 'transposed'
 * conv: input length `inLen`, kernel `k`, wanted padding `before` (may be negative, when the
 * forward pad exceeded k - 1) and `want` outputs. Returns [padBefore, padAfter, cropBegin].
 */
export function transposedConvPads(inLen: number, k: number, before: number, want: number): [number, number, number] {
  const padBefore = Math.max(0, before);
  const begin = padBefore - before;
  const padAfter = Math.max(0, begin + want + k - 1 - inLen - padBefore);
  return [padBefore, padAfter, begin];
}

export function assertFloat32(kernel: string, ...infos: TensorInfo[]): void {
  for (const info of infos) {
    if (info.dtype !== 'float32') throw new Error(`${kernel} (wasm): expected float32, got ${info.dtype}`);
  }
}

export function assertDilationsOne(kernel: string, dilations: number | [number, number] | undefined): void {
  const d = dilations === undefined ? [1, 1] : typeof dilations === 'number' ? [dilations, dilations] : dilations;
  if (d[0] !== 1 || d[1] !== 1) throw new Error(`${kernel} (wasm): dilations > 1 are not supported`);
}
