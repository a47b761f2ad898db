/**
 * Backend setup. wasm (XNNPACK, SIMD) is the default: ~20x the pure-JS cpu backend on
 * DeepID. The cpu backend stays available as a fallback and as a reference in tests.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { GoodnetError } from '../errors.js';
import { registerWasmKernelOverrides, registerWasmKernels } from './kernels/index.js';

export type BackendName = 'wasm' | 'cpu';
export const BACKENDS: readonly BackendName[] = ['wasm', 'cpu'];

let kernelsRegistered = false;

/** Select and initialise a backend; safe to call more than once. */
export async function initBackend(name: BackendName = 'wasm'): Promise<typeof tf> {
  if (!BACKENDS.includes(name)) {
    throw new GoodnetError(`unknown backend '${name}' (choose ${BACKENDS.join(' or ')})`);
  }
  if (!kernelsRegistered) {
    registerWasmKernels();
    // Native wasm Conv2DBackpropInput and transposed BatchMatMul are scalar loops: replacing
    // them with XNNPACK-backed compositions doubles training throughput (tested against cpu).
    registerWasmKernelOverrides();
    kernelsRegistered = true;
  }
  // tfjs greets Node users with an advert for tfjs-node; PROD keeps the terminal clean
  // (IS_TEST would too, but it arms a per-kernel leak checker that misfires during fit).
  tf.env().set('PROD', true);
  if (tf.getBackend() !== name) {
    const ok = await tf.setBackend(name);
    if (!ok) throw new GoodnetError(`backend '${name}' failed to initialise`);
  }
  await tf.ready();
  return tf;
}

/** Name of the backend in use ('wasm' or 'cpu'). */
export function getBackend(): string {
  return tf.getBackend();
}

export { tf };
