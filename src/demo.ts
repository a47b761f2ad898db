/**
 * `goodnet demo`: the reference paper's whole experiment on the embedded data set.
 *
 *   attack (BadNet lab) -> eval -> prune asc + desc with test sets (B'_X, GoodNets) -> report
 *
 * DIR/lab (attack outputs), DIR/prune (prune outputs), DIR/report.html, DIR/figures/.
 */
import { mkdirSync, rmSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { GoodnetError } from './errors.js';
import { runAttack, type AttackOptions, type AttackSummary } from './attack/lab.js';
import { evaluate, type EvaluateResult } from './eval/evaluate.js';
import { loadModel } from './io/model.js';
import { runPrune, type PruneOptions, type PruneSummary } from './defense/prune.js';
import { writeReport } from './report/build.js';

export interface DemoOptions {
  out: string;
  overwrite?: boolean;
  /** Passed to the attack (defaults: the attack's). */
  epochs?: number;
  dataset?: string;
  log?: (line: string) => void;
  attack?: Pick<AttackOptions, 'onBatch' | 'onEpoch' | 'split'>;
  prune?: Pick<PruneOptions, 'onActivations' | 'onStep'>;
  /** Called between stages with the stage's result, so a CLI can print as it goes. */
  onStage?: (stage: 'attack' | 'eval' | 'prune' | 'report', result: unknown) => void;
}

export interface DemoResult {
  attack: AttackSummary;
  eval: EvaluateResult;
  prune: PruneSummary;
  report: string;
  commands: string[];
  seconds: number;
}

export async function runDemo(o: DemoOptions): Promise<DemoResult> {
  const t0 = performance.now();
  if (existsSync(o.out)) {
    if (!o.overwrite) throw new GoodnetError('already exists (use --force to overwrite)', o.out);
    rmSync(o.out, { recursive: true, force: true });
  }
  mkdirSync(o.out, { recursive: true });
  const d = (...p: string[]) => join(o.out, ...p);
  const extra = [o.dataset ? ` --dataset ${o.dataset}` : '', o.epochs ? ` --epochs ${o.epochs}` : ''].join('');
  const commands = [
    `goodnet attack --out ${d('lab')}${extra}`,
    `goodnet eval -m ${d('lab/models/bd_net.h5')} -c ${d('lab/data/cl/test.h5')} -p ${d('lab/data/bd/bd_test.h5')} -t 0`,
    `goodnet prune -m ${d('lab/models/bd_net.h5')} --clean-valid ${d('lab/data/cl/valid.h5')} --poisoned-valid ${d('lab/data/bd/bd_valid.h5')} ` +
      `--clean-test ${d('lab/data/cl/test.h5')} --poisoned-test ${d('lab/data/bd/bd_test.h5')} -t 0 -o ${d('prune')}`,
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
    out: d('prune'), command: commands[2], log: o.log, ...o.prune,
  });
  o.onStage?.('prune', prune);
  const report = await writeReport(o.out, { commands });
  o.onStage?.('report', report);
  return { attack, eval: ev, prune, report, commands, seconds: (performance.now() - t0) / 1000 };
}
