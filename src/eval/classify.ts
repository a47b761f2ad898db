/** `goodnet predict` as a function: label and top-k probabilities for images, folders or HDF5 rows. */
import { openDataset, type OpenDatasetOptions } from '../io/dataset.js';
import type { LoadedModel } from '../io/model.js';
import { pixelOptionsFor, type PixelOptions } from '../io/preprocess.js';
import { predictDataset, type PredictOptions } from './predict.js';

export interface Classified {
  input: string;
  /** True label when the source carries one, else -1. */
  truth: number;
  label: number;
  probability: number;
  top: { label: number; probability: number }[];
}

export interface ClassifyOptions extends PixelOptions, Pick<PredictOptions, 'engine' | 'ortThreads'> {
  topK?: number;
  layout?: OpenDatasetOptions['layout'];
  batchSize?: number;
}

/** Classify every image found at `paths` (image files, folders, CSAW HDF5 files). */
export async function classify(model: LoadedModel, paths: string[], options: ClassifyOptions = {}): Promise<Classified[]> {
  const out: Classified[] = [];
  const k = Math.max(1, options.topK ?? 1);
  for (const path of paths) {
    const ds = await openDataset(path, { ...pixelOptionsFor(model, options), layout: options.layout, expect: model.inputShape });
    try {
      const p = await predictDataset(model, ds, { topK: k, batchSize: options.batchSize, engine: options.engine, ortThreads: options.ortThreads });
      for (let i = 0; i < ds.length; i++) {
        const top = p.topkLabels && p.topkProbs
          ? Array.from({ length: p.k }, (_, j) => ({ label: p.topkLabels![i * p.k + j]!, probability: p.topkProbs![i * p.k + j]! }))
          : [{ label: p.labels[i]!, probability: p.top[i]! }];
        out.push({ input: ds.name(i), truth: ds.labels[i]!, label: p.labels[i]!, probability: p.top[i]!, top });
      }
    } finally {
      ds.close();
    }
  }
  return out;
}
