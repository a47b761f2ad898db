/** The ort engine for a loaded model: its ONNX bytes (original graph or clean export) in an onnxruntime session. */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { GoodnetError } from '../errors.js';
import { OrtEngine, type EngineName, type OrtEngineOptions } from '../engine/ort.js';
import type { OnnxSource } from '../io/onnx.js';
import type { LoadedModel } from '../io/model.js';
import { onnxBytes } from '../io/onnx_write.js';
import { nchwcBlockSize } from '../models/ort_train.js';
import { alignPooledChannels } from './ort_align.js';

/** The ONNX form the ort engine runs, and the layout of its image input. */
export interface OrtExport {
  bytes: Uint8Array;
  layout: 'nhwc' | 'nchw';
}

/**
 * Whether the model's original ONNX graph still describes its net: every layer that holds
 * weights is one the graph's weights were read into. A layer added after loading (a pruning
 * mask) is not in the graph, so the graph would silently run the unpruned model.
 */
export function onnxSourceCoversNet(src: OnnxSource, net: tfl.LayersModel): boolean {
  const linked = new Set(src.weights.map((w) => w.layer));
  return net.layers.every((l) => l.weights.length === 0 || linked.has(l.name));
}

/**
 * The model's ONNX form for the ort engine: its original graph with the current weights when
 * that graph still describes the net (NCHW graphs are fed as such), else a clean NHWC export
 * of the net. Throws a one-line GoodnetError naming the model file and suggesting
 * --engine tfjs when the model has no ONNX form.
 */
export function ortExportOf(model: LoadedModel): OrtExport {
  try {
    if (model.onnx && onnxSourceCoversNet(model.onnx, model.net)) return { bytes: onnxBytes(model, model.source), layout: model.onnx.inputLayout };
    return { bytes: onnxBytes({ net: model.net, preprocessing: model.preprocessing }, model.source), layout: 'nhwc' };
  } catch (e) {
    const why = e instanceof GoodnetError && e.file ? e.message.slice(e.file.length + 2) : (e as Error).message;
    throw new GoodnetError(`cannot run on --engine ort: ${why}; use --engine tfjs`, model.source, { cause: e });
  }
}

/** The model's ONNX bytes (see ortExportOf), or a one-line GoodnetError naming the model file and suggesting --engine tfjs. */
export function checkOrtExport(model: LoadedModel): Uint8Array {
  return ortExportOf(model).bytes;
}

/**
 * An OrtEngine running `model` with its current weights. Throws a one-line GoodnetError
 * (naming the model file, suggesting --engine tfjs) when the model has no ONNX form.
 */
export async function ortEngineFor(model: LoadedModel, options: Pick<OrtEngineOptions, 'threads'> = {}): Promise<OrtEngine> {
  const { bytes, layout } = ortExportOf(model);
  // Pooled convolutions padded to onnxruntime's channel block (eval/ort_align.ts): the same scores, fewer layout conversions.
  const aligned = alignPooledChannels(bytes, await nchwcBlockSize());
  return OrtEngine.create(aligned, { layout, inputShape: model.inputShape, threads: options.threads, source: model.source });
}

/**
 * The engine a forward-only pass runs on: undefined for tfjs, else an OrtEngine (the caller
 * disposes it). 'ort' insists (a model without an ONNX form is a GoodnetError); 'auto' (the
 * default) picks ort when the model has an ONNX form that onnxruntime accepts and the tfjs
 * backend is not the pure-JS cpu reference, and tfjs otherwise. Both engines give the same
 * labels; probabilities agree within 1e-5 (README, Performance).
 */
let autoMayUseOrt = true;

/**
 * Where onnxruntime-node cannot exist (the browser page's worker), 'auto' should not build an
 * ONNX export only to find that out on every pass: `setAutoEngineUsesOrt(false)` makes 'auto'
 * mean tfjs, as `tf.setBackend` sets the environment's backend. 'ort' is unaffected.
 */
export function setAutoEngineUsesOrt(on: boolean): void {
  autoMayUseOrt = on;
}

export async function forwardEngineFor(model: LoadedModel, engine: EngineName = 'auto', options: Pick<OrtEngineOptions, 'threads'> = {}): Promise<OrtEngine | undefined> {
  if (engine === 'tfjs') return undefined;
  if (engine === 'ort') return ortEngineFor(model, options);
  if (!autoMayUseOrt || tf.getBackend() === 'cpu') return undefined;
  const t = options.threads;
  if (t !== undefined && (!Number.isInteger(t) || t < 0)) throw new GoodnetError(`ort threads must be an integer >= 0, got ${t}`);
  try {
    return await ortEngineFor(model, options);
  } catch {
    return undefined; // no ONNX form or onnxruntime refuses the graph: the tfjs path runs it
  }
}
