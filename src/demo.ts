/**
 * `goodnet demo`: the reference paper's whole experiment on the embedded data set.
 *
 *   attack (BadNet lab) -> eval -> prune asc + desc with test sets (B'_X, GoodNets),
 *   fine-pruning of the asc B'_X -> STRIP -> one comparison table -> report
 *
 * DIR/lab (attack), DIR/prune (prune + fine-pruning), DIR/strip (STRIP),
 * DIR/comparison.{json,md}, DIR/report.html, DIR/figures/.
 */
import { mkdirSync, renameSync, rmSync, existsSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { GoodnetError } from './errors.js';
import { asideSibling, checkWritable, trackPartial, writeAtomically } from './io/atomic.js';
import { runAttack, type AttackOptions, type AttackSummary } from './attack/lab.js';
import { evaluate, type EvaluateResult } from './eval/evaluate.js';
import { loadModel } from './io/model.js';
import { runPrune, type PruneOptions, type PruneSummary } from './defense/prune.js';
import { writeReport } from './report/build.js';
import { runStrip, type RunStripOptions, type StripResult } from './detect/strip.js';
import { writeStripOutput } from './report/strip_output.js';
import { comparisonRows, type ComparisonRow } from './defense/compare.js';
import { comparisonMarkdown } from './report/html.js';
import { predictDataset } from './eval/predict.js';
import { openDataset } from './io/dataset.js';
import { pixelOptionsFor } from './io/preprocess.js';
import type { LoadedModel } from './io/model.js';
import type { FineTuneOptions } from './defense/fineprune.js';

/** STRIP in the demo: 1,000 images of each test set, 2,000 calibration images (see the README for the full-set run). */
export const DEMO_STRIP = { limit: 1000, heldOut: 0.2 } as const;

export interface DemoOptions {
  out: string;
  overwrite?: boolean;
  /** Passed to the attack (defaults: the attack's). */
  epochs?: number;
  dataset?: string;
  log?: (line: string) => void;
  attack?: Pick<AttackOptions, 'onBatch' | 'onEpoch' | 'split'>;
  prune?: Pick<PruneOptions, 'onActivations' | 'onStep'>;
  fineTune?: Pick<FineTuneOptions, 'onEpoch' | 'onBatch' | 'epochs'>;
  strip?: Pick<RunStripOptions, 'onStage' | 'limit' | 'n'>;
  /** Called between stages with the stage's result, so a CLI can print as it goes. */
  onStage?: (stage: 'attack' | 'eval' | 'prune' | 'strip' | 'compare' | 'report', result: unknown) => void;
}

export interface DemoResult {
  attack: AttackSummary;
  eval: EvaluateResult;
  prune: PruneSummary;
  strip: StripResult;
  comparison: ComparisonRow[];
  report: string;
  commands: string[];
  seconds: number;
}

export async function runDemo(o: DemoOptions): Promise<DemoResult> {
  const t0 = performance.now();
  checkWritable(o.out, { overwrite: o.overwrite, folder: true, inputs: [o.dataset !== undefined && existsSync(o.dataset) ? o.dataset : undefined] });
  // --force: the old folder is renamed aside, and deleted only when the new one is complete.
  const aside = existsSync(o.out) ? asideSibling(o.out) : undefined;
  if (aside) renameSync(o.out, aside);
  mkdirSync(dirname(resolve(o.out)), { recursive: true });
  try {
    mkdirSync(o.out); // exclusively: a second demo to the same folder stops here
  } catch (err) {
    if (aside && !existsSync(o.out)) renameSync(aside, o.out);
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new GoodnetError('appeared while this run was starting (another run to the same output?); left as it is', o.out);
    throw err;
  }
  // The demo fills its folder step by step; an interrupted demo removes it (an old one stays aside).
  const release = trackPartial(o.out);
  try {
    const r = await demoSteps(o, t0);
    if (aside) rmSync(aside, { recursive: true, force: true });
    return r;
  } catch (err) {
    rmSync(o.out, { recursive: true, force: true });
    if (aside) renameSync(aside, o.out); // the failed run leaves the old demo as it was
    throw err;
  } finally {
    release();
  }
}

async function demoSteps(o: DemoOptions, t0: number): Promise<DemoResult> {
  const d = (...p: string[]) => join(o.out, ...p);
  const extra = [o.dataset ? ` --dataset ${o.dataset}` : '', o.epochs ? ` --epochs ${o.epochs}` : ''].join('');
  const commands = [
    `goodnet attack --out ${d('lab')}${extra}`,
    `goodnet eval -m ${d('lab/models/bd_net.h5')} -c ${d('lab/data/cl/test.h5')} -p ${d('lab/data/bd/bd_test.h5')} -t 0`,
    `goodnet prune -m ${d('lab/models/bd_net.h5')} --clean-valid ${d('lab/data/cl/valid.h5')} --poisoned-valid ${d('lab/data/bd/bd_valid.h5')} ` +
      `--clean-test ${d('lab/data/cl/test.h5')} --poisoned-test ${d('lab/data/bd/bd_test.h5')} -t 0 --fine-tune${o.fineTune?.epochs ? ` --fine-tune-epochs ${o.fineTune.epochs}` : ''} -o ${d('prune')}`,
    `goodnet strip -m ${d('lab/models/bd_net.h5')} --clean-valid ${d('lab/data/cl/valid.h5')} --clean-test ${d('lab/data/cl/test.h5')} ` +
      `--poisoned-test ${d('lab/data/bd/bd_test.h5')} -t 0 --limit ${o.strip?.limit ?? DEMO_STRIP.limit} --held-out ${DEMO_STRIP.heldOut}${o.strip?.n ? ` --n ${o.strip.n}` : ''} -o ${d('strip')}`,
    `goodnet report ${o.out}`,
  ];
  const attack = await runAttack({ out: d('lab'), dataset: o.dataset, epochs: o.epochs, log: o.log, command: commands[0], ...o.attack });
  o.onStage?.('attack', attack);
  const model = await loadModel(d('lab/models/bd_net.h5'));
  const ev = await evaluate(model, { clean: d('lab/data/cl/test.h5'), poisoned: d('lab/data/bd/bd_test.h5'), target: attack.target });
  o.onStage?.('eval', ev);
  const prune = await runPrune({
    model, cleanValid: d('lab/data/cl/valid.h5'), poisonedValid: d('lab/data/bd/bd_valid.h5'),
    cleanTest: d('lab/data/cl/test.h5'), poisonedTest: d('lab/data/bd/bd_test.h5'), target: attack.target,
    out: d('prune'), command: commands[2], log: o.log, ...o.prune, fineTune: { orders: ['asc'], ...o.fineTune },
  });
  o.onStage?.('prune', prune);
  const strip = await runStrip(model, {
    cleanValid: d('lab/data/cl/valid.h5'), cleanTest: d('lab/data/cl/test.h5'), poisonedTest: d('lab/data/bd/bd_test.h5'),
    target: attack.target, ...DEMO_STRIP, ...o.strip,
  });
  await writeStripOutput(d('strip'), strip, { command: commands[3], ...strip });
  o.onStage?.('strip', strip);
  const comparison = comparisonRows(prune, {
    strip: { result: strip, clean: await answers(model, d('lab/data/cl/test.h5')), poisoned: await answers(model, d('lab/data/bd/bd_test.h5')) },
  });
  await writeAtomically(d('comparison.json'), (tmp) => writeFileSync(tmp, `${JSON.stringify(comparison, null, 2)}\n`));
  await writeAtomically(d('comparison.md'), (tmp) => writeFileSync(tmp, `${comparisonMarkdown(comparison)}\n`));
  o.onStage?.('compare', comparison);
  const report = await writeReport(o.out, { commands });
  o.onStage?.('report', report);
  return { attack, eval: ev, prune, strip, comparison, report, commands, seconds: (performance.now() - t0) / 1000 };
}

/** True labels and the model's answers on a whole data set. */
async function answers(model: LoadedModel, path: string): Promise<{ truth: Int32Array; bad: Int32Array }> {
  const ds = await openDataset(path, { ...pixelOptionsFor(model, {}), expect: model.inputShape });
  try {
    return { truth: Int32Array.from(ds.labels), bad: (await predictDataset(model, ds)).labels };
  } finally {
    ds.close();
  }
}
