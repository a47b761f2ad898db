/**
 * Kernels the wasm backend lacks, registered so that training (model.fit) runs on wasm.
 * Each is composed from existing wasm (XNNPACK) kernels; see the module comments.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { KernelConfig } from '@tensorflow/tfjs-core';
import { conv2dBackpropFilterConfig } from './conv2d_backprop_filter.js';
import { depthwiseConv2dBackpropFilterConfig } from './depthwise_conv2d_backprop_filter.js';
import { depthwiseConv2dBackpropInputConfig } from './depthwise_conv2d_backprop_input.js';

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
