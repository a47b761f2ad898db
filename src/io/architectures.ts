/**
 * Architectures for Keras weights-only files (`layer_names` and weights, no model_config).
 * Reading such a file needs a network to load the weights into; the networks live in
 * src/models, above io, so they register here (src/models/index.ts does it when imported,
 * as the package entry, the CLI and the fuzzer do) and the reader looks them up by name.
 */
import type * as tfl from '@tensorflow/tfjs-layers';

/** Shape of `layer/weight` (e.g. 'conv_1', 'kernel') in the file, or undefined when absent. */
export type WeightShapeOf = (layer: string, weight: string) => number[] | undefined;

/** Build the network whose weights the file holds; `given`: the user's --input-shape. */
export type WeightsOnlyBuilder = (shapeOf: WeightShapeOf, given?: [number, number, number]) => tfl.LayersModel;

const registry = new Map<string, WeightsOnlyBuilder>();

export function registerWeightsOnlyArchitecture(name: string, build: WeightsOnlyBuilder): void {
  registry.set(name, build);
}

export function weightsOnlyArchitecture(name: string): WeightsOnlyBuilder | undefined {
  return registry.get(name);
}

export function weightsOnlyArchitectures(): string[] {
  return [...registry.keys()];
}
