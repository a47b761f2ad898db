/** The ort engine for a loaded model: its ONNX bytes (original graph or clean export) in an onnxruntime session. */
import { GoodnetError } from '../errors.js';
import { OrtEngine, type OrtEngineOptions } from '../engine/ort.js';
import type { LoadedModel } from '../io/model.js';
import { onnxBytes } from '../io/onnx_write.js';

/** The model's ONNX bytes, or a one-line GoodnetError naming the model file and suggesting --engine tfjs. */
export function checkOrtExport(model: LoadedModel): Uint8Array {
  try {
    return onnxBytes(model, model.source);
  } catch (e) {
    const why = e instanceof GoodnetError && e.file ? e.message.slice(e.file.length + 2) : (e as Error).message;
    throw new GoodnetError(`cannot run on --engine ort: ${why}; use --engine tfjs`, model.source, { cause: e });
  }
}

/**
 * An OrtEngine running `model` with its current weights. Throws a one-line GoodnetError
 * (naming the model file, suggesting --engine tfjs) when the model has no ONNX form.
 */
export async function ortEngineFor(model: LoadedModel, options: Pick<OrtEngineOptions, 'threads'> = {}): Promise<OrtEngine> {
  return OrtEngine.create(checkOrtExport(model), {
    layout: model.onnx ? model.onnx.inputLayout : 'nhwc',
    inputShape: model.inputShape,
    threads: options.threads,
    source: model.source,
  });
}
