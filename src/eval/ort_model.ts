/** The ort engine for a loaded model: its ONNX bytes (original graph or clean export) in an onnxruntime session. */
import { GoodnetError } from '../errors.js';
import { OrtEngine, type OrtEngineOptions } from '../engine/ort.js';
import type { LoadedModel } from '../io/model.js';
import { onnxBytes } from '../io/onnx_write.js';

/**
 * An OrtEngine running `model` with its current weights. Throws a one-line GoodnetError
 * (naming the model file, suggesting --engine tfjs) when the model has no ONNX form.
 */
export async function ortEngineFor(model: LoadedModel, options: Pick<OrtEngineOptions, 'threads'> = {}): Promise<OrtEngine> {
  let bytes: Uint8Array;
  try {
    bytes = onnxBytes(model, model.source);
  } catch (e) {
    const why = e instanceof GoodnetError && e.file ? e.message.slice(e.file.length + 2) : (e as Error).message;
    throw new GoodnetError(`cannot run on --engine ort: ${why}; use --engine tfjs`, model.source, { cause: e });
  }
  return OrtEngine.create(bytes, {
    layout: model.onnx ? model.onnx.inputLayout : 'nhwc',
    inputShape: model.inputShape,
    threads: options.threads,
    source: model.source,
  });
}
