/**
 * Backend setup. wasm (XNNPACK, SIMD) is the default: ~20x the pure-JS cpu backend on
 * DeepID. The cpu backend stays available as a fallback and as a reference in tests.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { GoodnetError } from '../errors.js';
import { registerWasmKernels } from './kernels/index.js';

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
    kernelsRegistered = true;
  }
  // tfjs's cpu backend greets Node users with an advert for tfjs-node; keep the terminal clean.
  tf.env().set('IS_TEST', true);
  if (tf.getBackend() !== name) {
    const ok = await tf.setBackend(name);
    if (!ok) throw new GoodnetError(`backend '${name}' failed to initialise`);
  }
  await tf.ready();
  return tf;
}

export { tf };
