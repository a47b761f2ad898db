/**
 * Kernels the wasm backend lacks, registered so that training (model.fit) runs on wasm, and
 * replacements for wasm kernels that exist but are slow scalar loops (initBackend installs both). All are composed
 * from existing wasm (XNNPACK) kernels; see the module comments.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { KernelConfig, KernelFunc } from '@tensorflow/tfjs-core';
import { makeBatchMatMul } from './batch_mat_mul.js';
import { conv2dBackpropFilterConfig } from './conv2d_backprop_filter.js';
import { makeConv2dBackpropInput } from './conv2d_backprop_input.js';
import { depthwiseConv2dBackpropFilterConfig } from './depthwise_conv2d_backprop_filter.js';
import { depthwiseConv2dBackpropInputConfig } from './depthwise_conv2d_backprop_input.js';
import { makeMaxPoolGrad } from './max_pool_grad.js';

export { getMaxPoolGradTies, setMaxPoolGradTies, type MaxPoolTies } from './max_pool_grad.js';
import { makeTile } from './tile.js';
import { makeSum } from './sum.js';

export const WASM_KERNELS: readonly KernelConfig[] = [
  conv2dBackpropFilterConfig,
  depthwiseConv2dBackpropFilterConfig,
  depthwiseConv2dBackpropInputConfig,
];

/** Register the kernels above; idempotent, and never replaces a kernel the backend already has. */
export function registerWasmKernels(): void {
  for (const config of WASM_KERNELS) {
    if (tf.getKernel(config.kernelName, config.backendName) === undefined) tf.registerKernel(config);
  }
}

/** Native wasm kernels worth replacing, each with a factory given the native kernelFunc. */
export const WASM_KERNEL_OVERRIDES: ReadonlyArray<{ kernelName: string; make: (native: KernelFunc) => KernelFunc }> = [
  { kernelName: 'Conv2DBackpropInput', make: makeConv2dBackpropInput },
  { kernelName: 'BatchMatMul', make: makeBatchMatMul },
  { kernelName: 'MaxPoolGrad', make: makeMaxPoolGrad },
  { kernelName: 'Tile', make: makeTile },
  { kernelName: 'Sum', make: makeSum },
];

const installed = new Set<KernelFunc>();
const natives = new Map<string, KernelFunc>();

/** The native wasm kernel an override replaced (for tests and benchmarks), if it was replaced. */
export function nativeWasmKernel(kernelName: string): KernelFunc | undefined {
  return natives.get(kernelName);
}

/** True when every kernel in WASM_KERNEL_OVERRIDES is currently the replacement. */
export function overridesInstalled(): boolean {
  return WASM_KERNEL_OVERRIDES.every(({ kernelName }) => {
    const k = tf.getKernel(kernelName, 'wasm');
    return k !== undefined && installed.has(k.kernelFunc);
  });
}

/**
 * Replace the slow native wasm kernels listed above (about 2x training throughput on DeepID).
 * Idempotent. The native kernel stays reachable as the fallback for the cases the replacement
 * does not handle, and its setupFunc is kept, so this may run before or after the wasm backend
 * initialises.
 */
export function registerWasmKernelOverrides(): void {
  for (const { kernelName, make } of WASM_KERNEL_OVERRIDES) {
    const native = tf.getKernel(kernelName, 'wasm');
    if (native === undefined || installed.has(native.kernelFunc)) continue;
    natives.set(kernelName, native.kernelFunc);
    const kernelFunc = make(native.kernelFunc);
    installed.add(kernelFunc);
    tf.unregisterKernel(kernelName, 'wasm');
    tf.registerKernel({ ...native, kernelFunc });
  }
}
