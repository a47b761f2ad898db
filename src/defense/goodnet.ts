/**
 * GoodNet G = (B, B'): answer B's label where B and the repaired B' agree, else the extra
 * class N ("backdoor detected"; class N+1 when classes are counted from 1).
 */
import { GoodnetError } from '../errors.js';
import { accuracy, attackSuccessRate, checkTarget } from '../eval/metrics.js';
import { predictDataset, type PredictOptions } from '../eval/predict.js';
import { checkLabels, openDataset, type OpenDatasetOptions } from '../io/dataset.js';
import type { LoadedModel } from '../io/model.js';
import { pixelOptionsFor, type PixelOptions } from '../io/preprocess.js';
import { MASK_SUFFIX } from './graph.js';
import type { GoodNetRow } from './types.js';

/** G's labels from B's and B''s; `numClasses` (N) is the backdoor answer. */
export function goodnetLabels(bad: ArrayLike<number>, repaired: ArrayLike<number>, numClasses: number): Int32Array {
  const out = new Int32Array(bad.length);
  for (let i = 0; i < bad.length; i++) out[i] = bad[i] === repaired[i] ? bad[i]! : numClasses;
  return out;
}

export interface GoodNetInputs {
  numClasses: number;
  target: number;
  clean: { labels: ArrayLike<number>; bad: ArrayLike<number>; repaired: ArrayLike<number> };
  poisoned: { labels: ArrayLike<number>; bad: ArrayLike<number>; repaired: ArrayLike<number> };
}

/** Share of the images counted for ASR (true label != target, or all when every label is the target) answered N. */
function flaggedShare(g: Int32Array, labels: ArrayLike<number>, target: number, backdoor: number): number {
  let all = true;
  for (let i = 0; i < labels.length; i++) if (labels[i] !== target) all = false;
  let n = 0;
  let hit = 0;
  for (let i = 0; i < g.length; i++) {
    if (!all && labels[i] === target) continue;
    n++;
    if (g[i] === backdoor) hit++;
  }
  return n === 0 ? NaN : hit / n;
}

/** Test-set metrics of B' alone and of G. */
export function goodnetMetrics(x: GoodNetInputs): Pick<GoodNetRow, 'repaired' | 'goodnet'> {
  const N = x.numClasses;
  const gClean = goodnetLabels(x.clean.bad, x.clean.repaired, N);
  const gPois = goodnetLabels(x.poisoned.bad, x.poisoned.repaired, N);
  let alarms = 0;
  for (let i = 0; i < gClean.length; i++) if (gClean[i] === N) alarms++;
  return {
    repaired: {
      accuracy: accuracy(x.clean.repaired, x.clean.labels).value,
      asr: attackSuccessRate(x.poisoned.repaired, x.poisoned.labels, x.target).value,
    },
    goodnet: {
      accuracy: accuracy(gClean, x.clean.labels).value,
      asr: attackSuccessRate(gPois, x.poisoned.labels, x.target).value,
      detectionRate: flaggedShare(gPois, x.poisoned.labels, x.target, N),
      falseAlarmRate: gClean.length === 0 ? NaN : alarms / gClean.length,
    },
  };
}

/**
 * Throw unless `repaired` has the same architecture as `bad` (layer names, types and weight
 * shapes), apart from the 1x1 mask layers pruning may insert (mask.ts).
 */
export function checkSameArchitecture(bad: LoadedModel, repaired: LoadedModel): void {
  const sig = (m: LoadedModel) => m.net.layers.filter((l) => !l.name.endsWith(MASK_SUFFIX)).map((l) => `${l.name}:${l.getClassName()}:${l.weights.map((w) => w.shape.join('x')).join('/')}`);
  const a = sig(bad);
  const b = sig(repaired);
  const i = a.findIndex((s, j) => s !== b[j]);
  if (a.length !== b.length || i >= 0) {
    const where = i >= 0 ? `layer ${i} is ${b[i] ?? 'missing'} here but ${a[i]} in the BadNet` : `${b.length} layers vs ${a.length}`;
    throw new GoodnetError(`repaired model does not match the BadNet's architecture (${where})`, repaired.source);
  }
}

/** Pixel options default to B's recorded preprocessing (B and B' take the same input). */
export interface GoodNetEvalOptions extends PixelOptions, Pick<PredictOptions, 'engine' | 'ortThreads'> {
  bad: LoadedModel;
  repaired: LoadedModel;
  cleanTest: string;
  poisonedTest: string;
  target: number;
  layout?: OpenDatasetOptions['layout'];
  batchSize?: number;
}

/** `goodnet goodnet`: G from any B and B' of the same architecture, measured by running both models in full. */
export async function evaluateGoodNet(o: GoodNetEvalOptions): Promise<Pick<GoodNetRow, 'repaired' | 'goodnet'> & { bad: { accuracy: number; asr: number } }> {
  checkSameArchitecture(o.bad, o.repaired);
  checkTarget(o.target, o.bad.numClasses);
  const run = async (path: string) => {
    const ds = await openDataset(path, { ...pixelOptionsFor(o.bad, o), layout: o.layout, expect: o.bad.inputShape });
    try {
      checkLabels(ds, o.bad.numClasses);
      const bad = (await predictDataset(o.bad, ds, { batchSize: o.batchSize, engine: o.engine, ortThreads: o.ortThreads })).labels;
      const repaired = (await predictDataset(o.repaired, ds, { batchSize: o.batchSize, engine: o.engine, ortThreads: o.ortThreads })).labels;
      return { labels: Int32Array.from(ds.labels), bad, repaired };
    } finally {
      ds.close();
    }
  };
  const clean = await run(o.cleanTest);
  const poisoned = await run(o.poisonedTest);
  const m = goodnetMetrics({ numClasses: o.bad.numClasses, target: o.target, clean, poisoned });
  return {
    bad: { accuracy: accuracy(clean.bad, clean.labels).value, asr: attackSuccessRate(poisoned.bad, poisoned.labels, o.target).value },
    ...m,
  };
}

export interface GoodNetAnswer {
  input: string;
  truth: number;
  bad: number;
  repaired: number;
  /** G's answer; equals numClasses ("backdoor") where B and B' disagree. */
  goodnet: number;
  backdoor: boolean;
}

/** Classify images with G = (B, B'). */
export async function classifyGoodNet(
  bad: LoadedModel,
  repaired: LoadedModel,
  paths: string[],
  o: PixelOptions & Pick<PredictOptions, 'engine' | 'ortThreads'> & { layout?: OpenDatasetOptions['layout']; batchSize?: number } = {},
): Promise<GoodNetAnswer[]> {
  checkSameArchitecture(bad, repaired);
  const out: GoodNetAnswer[] = [];
  for (const path of paths) {
    const ds = await openDataset(path, { ...pixelOptionsFor(bad, o), layout: o.layout, expect: bad.inputShape });
    try {
      const b = (await predictDataset(bad, ds, { batchSize: o.batchSize, engine: o.engine, ortThreads: o.ortThreads })).labels;
      const r = (await predictDataset(repaired, ds, { batchSize: o.batchSize, engine: o.engine, ortThreads: o.ortThreads })).labels;
      const g = goodnetLabels(b, r, bad.numClasses);
      for (let i = 0; i < ds.length; i++) {
        out.push({ input: ds.name(i), truth: ds.labels[i]!, bad: b[i]!, repaired: r[i]!, goodnet: g[i]!, backdoor: g[i] === bad.numClasses });
      }
    } finally {
      ds.close();
    }
  }
  return out;
}
