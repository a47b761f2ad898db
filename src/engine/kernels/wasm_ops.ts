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

export function assertFloat32(kernel: string, ...infos: TensorInfo[]): void {
  for (const info of infos) {
    if (info.dtype !== 'float32') throw new Error(`${kernel} (wasm): expected float32, got ${info.dtype}`);
  }
}

export function assertDilationsOne(kernel: string, dilations: number | [number, number] | undefined): void {
  const d = dilations === undefined ? [1, 1] : typeof dilations === 'number' ? [dilations, dilations] : dilations;
  if (d[0] !== 1 || d[1] !== 1) throw new Error(`${kernel} (wasm): dilations > 1 are not supported`);
}
