/** Built-in architectures, by the name the CLI's --arch takes. */
import type * as tfl from '@tensorflow/tfjs-layers';
import { GoodnetError } from '../errors.js';
import { deepId, type DeepIdOptions } from './deepid.js';

export type ArchitectureName = 'deepid';

export interface ArchitectureOptions {
  inputShape?: [number, number, number];
  numClasses?: number;
  seed?: number;
}

export const ARCHITECTURES: Record<ArchitectureName, (o: ArchitectureOptions) => tfl.LayersModel> = {
  deepid: (o: DeepIdOptions) => deepId(o),
};

export function buildArchitecture(name: string, options: ArchitectureOptions): tfl.LayersModel {
  const build = ARCHITECTURES[name as ArchitectureName];
  if (!build) {
    throw new GoodnetError(`unknown architecture '${name}' (built in: ${Object.keys(ARCHITECTURES).join(', ')})`);
  }
  return build(options);
}

export { deepId, deepIdPool3Shape, DEEPID_INPUT, DEEPID_CLASSES, DEEPID_MIN_SIDE } from './deepid.js';
