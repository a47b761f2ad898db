/** `goodnet eval` as a function: clean accuracy and attack success rate of one model. */
import { GoodnetError } from '../errors.js';
import { checkLabels, openDataset, type ImageDataset, type OpenDatasetOptions } from '../io/dataset.js';
import type { LoadedModel } from '../io/model.js';
import { pixelOptionsFor, type PixelOptions } from '../io/preprocess.js';
import { accuracy, attackSuccessRate, checkTarget, type AsrResult } from './metrics.js';
import { predictDataset, type PredictOptions } from './predict.js';
import { forwardEngineFor } from './ort_model.js';
import type { OrtEngine } from '../engine/ort.js';

export interface EvaluateOptions extends Pick<PredictOptions, 'batchSize' | 'engine' | 'ortThreads'>, PixelOptions {
  /** Clean data (file/folder path or an open data set). */
  clean?: string | ImageDataset;
  /** Poisoned (triggered) data. */
  poisoned?: string | ImageDataset;
  /** The attacker's target label; required with `poisoned`. */
  target?: number;
  layout?: OpenDatasetOptions['layout'];
  onProgress?: (set: 'clean' | 'poisoned', done: number, total: number) => void;
}

export interface EvaluateResult {
  model: string;
  clean?: { source: string; accuracy: number; correct: number; count: number };
  poisoned?: { source: string; target: number } & Omit<AsrResult, 'value'> & { asr: number };
  seconds: number;
  /** The engine that ran the forward passes ('auto' resolved). */
  engine?: 'tfjs' | 'ort';
}

async function open(model: LoadedModel, d: string | ImageDataset, o: EvaluateOptions): Promise<{ ds: ImageDataset; owned: boolean }> {
  if (typeof d !== 'string') return { ds: d, owned: false };
  return { ds: await openDataset(d, { ...pixelOptionsFor(model, o), layout: o.layout, expect: model.inputShape }), owned: true };
}

/** Evaluate `model` on clean and/or poisoned data. */
export async function evaluate(model: LoadedModel, options: EvaluateOptions): Promise<EvaluateResult> {
  if (!options.clean && !options.poisoned) throw new GoodnetError('nothing to evaluate: give clean and/or poisoned data');
  if (options.poisoned !== undefined) {
    if (options.target === undefined) throw new GoodnetError('poisoned data needs the attack target label (--target)');
    checkTarget(options.target, model.numClasses);
  }
  const t0 = performance.now();
  const result: EvaluateResult = { model: model.source, seconds: 0 };
  // One engine for both sets (one ONNX export and session), built at the first pass, after the first set opened.
  let engine: { ort: OrtEngine | undefined } | undefined;
  const fwd = async (): Promise<Pick<PredictOptions, 'engine' | 'ortEngine'>> => {
    engine ??= { ort: await forwardEngineFor(model, options.engine, { threads: options.ortThreads }) };
    return engine.ort ? { ortEngine: engine.ort } : { engine: 'tfjs' };
  };
  try {
    if (options.clean !== undefined) {
      const { ds, owned } = await open(model, options.clean, options);
      try {
        checkLabels(ds, model.numClasses);
        const p = await predictDataset(model, ds, { batchSize: options.batchSize, ...await fwd(), onProgress: (d, t) => options.onProgress?.('clean', d, t) });
        result.engine = p.engine;
        const a = accuracy(p.labels, ds.labels);
        if (a.count === 0) throw new GoodnetError('clean data has no labelled images', ds.source);
        result.clean = { source: ds.source, accuracy: a.value, correct: a.correct, count: a.count };
      } finally {
        if (owned) ds.close();
      }
    }
    if (options.poisoned !== undefined) {
      const { ds, owned } = await open(model, options.poisoned, options);
      try {
        checkLabels(ds, model.numClasses);
        const p = await predictDataset(model, ds, { batchSize: options.batchSize, ...await fwd(), onProgress: (d, t) => options.onProgress?.('poisoned', d, t) });
        result.engine = p.engine;
        const { value, ...rest } = attackSuccessRate(p.labels, ds.labels, options.target!);
        result.poisoned = { source: ds.source, target: options.target!, asr: value, ...rest };
      } finally {
        if (owned) ds.close();
      }
    }
  } finally {
    await engine?.ort?.dispose();
  }
  result.seconds = (performance.now() - t0) / 1000;
  return result;
}
