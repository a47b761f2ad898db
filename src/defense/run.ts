/**
 * Every model-repairing defense behind one call, the function `goodnet nc|anp|clp` wrap:
 *
 *   check inputs and the output (before any long work) -> run the defense on clean data ->
 *   save the repaired model -> (only then) measure B and the repaired model on the test sets
 *
 * Computing (the defense's `run`) is apart from writing (here) and from measuring.
 */
import { GoodnetError } from '../errors.js';
import { pixelOptionsFor } from '../io/preprocess.js';
import { checkTarget } from '../eval/metrics.js';
import { checkFits } from '../eval/predict.js';
import { checkWritable } from '../io/atomic.js';
import { checkLabels, openDataset } from '../io/dataset.js';
import { saveModel } from '../io/model.js';
import {
  checkMeasureOptions, getDefense, measure, type Defense, type DefenseInput, type DefenseRow, type DefenseRun, type Measurement, type ReportSection,
} from './interface.js';

export interface RunDefenseOptions extends DefenseInput {
  /** A registered defense's name, or the defense itself. */
  defense: string | Defense;
  options?: Record<string, unknown>;
  /** Where to save the repaired model (.h5: Keras, else a tfjs folder). */
  out?: string;
  overwrite?: boolean;
  /** Measuring only: test sets and the attack's target. */
  cleanTest?: string;
  poisonedTest?: string;
  target?: number;
  /** The BadNet's measurement when already known (skips measuring it again). */
  before?: Measurement;
}

export interface RunDefenseResult {
  defense: string;
  title: string;
  model: string;
  cleanValid: string;
  cleanImages: number;
  seconds: number;
  verdict?: DefenseRun['verdict'];
  details: unknown;
  /** Test-set numbers of the BadNet and of the repaired model, when test sets were given. */
  before?: Measurement;
  after?: Measurement;
  rows?: DefenseRow[];
  out?: string;
}

/** Open a data set only to check it fits the model (cheap; before long work). */
export async function checkDataFits(path: string, input: Pick<DefenseInput, 'model' | 'scale' | 'mean' | 'std' | 'layout'>): Promise<void> {
  const ds = await openDataset(path, { expect: input.model.inputShape, ...pixelOptionsFor(input.model, input), layout: input.layout });
  try {
    checkFits(input.model, ds);
    checkLabels(ds, input.model.numClasses);
    if (ds.length === 0) throw new GoodnetError('data set is empty', path);
  } finally {
    ds.close();
  }
}

/** Run one defense end to end; returns what `--json` prints, plus the run (for reports). */
export async function runDefense(o: RunDefenseOptions): Promise<{ result: RunDefenseResult; run: DefenseRun; section: ReportSection }> {
  const defense = typeof o.defense === 'string' ? getDefense(o.defense) : o.defense;
  const m = checkMeasureOptions(o);
  if (m) checkTarget(m.target, o.model.numClasses);
  if (o.out) checkWritable(o.out, { overwrite: o.overwrite });
  await checkDataFits(o.cleanValid, o);
  if (m) {
    await checkDataFits(m.cleanTest, o);
    await checkDataFits(m.poisonedTest, o);
  }
  const run = await defense.run(o, o.options as never);
  try {
    if (o.out) {
      if (!run.repaired) throw new GoodnetError(`${defense.name} returned no repaired model to save`);
      await saveModel({ ...o.model, net: run.repaired }, o.out, { overwrite: o.overwrite });
    }
    const result: RunDefenseResult = {
      defense: defense.name, title: defense.title, model: o.model.source, cleanValid: o.cleanValid, cleanImages: run.cleanImages,
      seconds: run.seconds, ...(run.verdict ? { verdict: run.verdict } : {}), details: run.details, ...(o.out ? { out: o.out } : {}),
    };
    if (m) {
      const mo = { ...m, scale: o.scale, mean: o.mean, std: o.std, layout: o.layout, batchSize: o.batchSize };
      result.before = o.before ?? await measure(o.model, o.model.net, mo);
      if (defense.measure) result.after = await defense.measure(run, o.model, mo);
      else if (run.repaired) result.after = await measure(o.model, run.repaired, mo);
      result.rows = defense.rows(run, { before: result.before, after: result.after });
    }
    return { result, run, section: defense.section(run, { before: result.before, after: result.after }) };
  } finally {
    run.repaired?.dispose();
  }
}
