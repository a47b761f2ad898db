/**
 * `goodnet demo`: the reference paper's whole experiment on the embedded data set, then every
 * registered defense on the same BadNet and the pruning defense on a modern architecture.
 *
 *   attack (DeepID BadNet) -> eval -> prune asc + desc with test sets (B'_X, GoodNets)
 *   -> a second BadNet (ResNet, smaller training set) and its ascending pruning sweep
 *   -> every registered defense on the DeepID BadNet (`goodnet compare`, quick settings)
 *   -> report
 *
 * DIR/lab (attack), DIR/prune (prune), DIR/modern/{lab,prune} (the second BadNet),
 * DIR/compare (comparison.{json,md}, sections.json, each defense's JSON and model),
 * DIR/strip (STRIP's entropies, from the comparison's STRIP run), DIR/summary.json
 * (phase timings), DIR/report.html, DIR/figures/.
 */
import { loadavg } from 'node:os';
import { mkdirSync, renameSync, rmSync, existsSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { GoodnetError } from './errors.js';
import { asideSibling, checkWritable, trackPartial, writeAtomically } from './io/atomic.js';
import { runAttack, type AttackOptions, type AttackSummary } from './attack/lab.js';
import type { SplitSizes } from './attack/split.js';
import { evaluate, type EvaluateResult } from './eval/evaluate.js';
import { loadModel } from './io/model.js';
import { runPrune, type PruneOptions, type PruneSummary } from './defense/prune.js';
import { writeReport } from './report/build.js';
import type { StripResult } from './detect/strip.js';
import { stripDefense, type StripDefenseDetails } from './detect/strip_defense.js';
import { writeStripOutput } from './report/strip_output.js';
import { QUICK_DEFENSE_OPTIONS, runComparison, type CompareResult } from './defense/comparison.js';
import type { DefenseInput } from './defense/interface.js';
import type { RunDefenseResult } from './defense/run.js';
import type { ArchitectureName } from './models/index.js';
import type { TrainEngineChoice } from './models/ort_train.js';

/**
 * The engine that trains the demo's first (DeepID) BadNet: onnxruntime (`goodnet attack
 * --train-engine ort`, about 4x tfjs-wasm on this net, so the demo fits its 6 minutes). Since
 * session 20; `tfjs` gives the previous demo's BadNet, which is also the lab's deepid-patch.
 */
export const DEMO_TRAIN_ENGINE: TrainEngineChoice = 'ort';

/**
 * The second BadNet: a ResNet (fastest of the modern lab nets to train) on a fifth of the
 * training set, 2 epochs, trained on the ort engine (`--train-engine ort`, about 5x tfjs-wasm on
 * this net).
 */
export const DEMO_MODERN = { arch: 'resnet' as ArchitectureName, epochs: 2, split: { train: 10_000, valid: 2_000, test: 2_000 }, trainEngine: 'ort' as TrainEngineChoice };

/** Clean images every defense may use in the demo: 5% of the 50,000 training images. */
export const DEMO_CLEAN_IMAGES = 2500;

export type DemoStage = 'attack' | 'eval' | 'prune' | 'modern' | 'compare' | 'report';

export interface DemoOptions {
  out: string;
  overwrite?: boolean;
  /** Passed to the attack (defaults: the attack's). */
  epochs?: number;
  dataset?: string;
  /** Data-parallel training threads for both BadNets (default 1; deterministic per seed and thread count). */
  threads?: number;
  /** The first BadNet's training engine (default DEMO_TRAIN_ENGINE; the second's is in `modern`). */
  trainEngine?: TrainEngineChoice;
  log?: (line: string) => void;
  attack?: Pick<AttackOptions, 'onBatch' | 'onEpoch' | 'split'>;
  prune?: Pick<PruneOptions, 'onActivations' | 'onStep'>;
  /** The second BadNet (default DEMO_MODERN); false: none. */
  modern?: false | { arch?: ArchitectureName; epochs?: number; split?: Partial<SplitSizes>; trainEngine?: TrainEngineChoice; progress?: Pick<AttackOptions, 'onBatch' | 'onEpoch'> };
  /** The defenses' comparison: clean image budget, per-defense options by name (default QUICK_DEFENSE_OPTIONS), a subset. */
  defenses?: { cleanImages?: number; options?: Record<string, Record<string, unknown>>; only?: string[];
    onProgress?: DefenseInput['onProgress']; onDefense?: (name: string, result?: RunDefenseResult) => void };
  /** Called between stages with the stage's result, so a CLI can print as it goes. */
  onStage?: (stage: DemoStage, result: unknown) => void;
}

export interface DemoPhase {
  phase: string;
  /** Wall-clock seconds. */
  seconds: number;
  /** CPU seconds of this process (all its threads, user + system): less sensitive to other load than wall time. */
  cpuSeconds: number;
}

/** DIR/summary.json: what ran, how long each phase took, and the machine's load. */
export interface DemoSummary {
  kind: 'demo';
  commands: string[];
  phases: DemoPhase[];
  seconds: number;
  cpuSeconds: number;
  /** os.loadavg() (1, 5, 15 minutes) at the start and at the end of the run. */
  loadAverage: { start: number[]; end: number[] };
  cpus: number;
}

export interface DemoResult {
  attack: AttackSummary;
  eval: EvaluateResult;
  prune: PruneSummary;
  modern?: { attack: AttackSummary; prune: PruneSummary };
  compare: CompareResult;
  strip?: StripResult;
  report: string;
  commands: string[];
  phases: DemoPhase[];
  summary: DemoSummary;
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
  const load0 = loadavg();
  const d = (...p: string[]) => join(o.out, ...p);
  const phases: DemoPhase[] = [];
  let tPhase = performance.now();
  const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
  let cPhase = cpu();
  const cpu0 = cPhase;
  const done = (phase: string) => {
    const now = performance.now();
    const c = cpu();
    phases.push({ phase, seconds: (now - tPhase) / 1000, cpuSeconds: c - cPhase });
    tPhase = now;
    cPhase = c;
  };
  const threads = o.threads ?? 1;
  const th = threads !== 1 ? ` --threads ${threads}` : '';
  const trainEngine = o.trainEngine ?? DEMO_TRAIN_ENGINE;
  const extra = [o.dataset ? ` --dataset ${o.dataset}` : '', o.epochs ? ` --epochs ${o.epochs}` : '',
    trainEngine !== 'tfjs' ? ` --train-engine ${trainEngine}` : '', th].join('');
  const modern = o.modern === false ? undefined : { ...DEMO_MODERN, ...o.modern, split: { ...DEMO_MODERN.split, ...o.modern?.split } } as
    typeof DEMO_MODERN & { progress?: Pick<AttackOptions, 'onBatch' | 'onEpoch'> };
  const cleanImages = o.defenses?.cleanImages ?? DEMO_CLEAN_IMAGES;
  const lab = (...p: string[]) => d('lab', ...p);
  const dataArgs = (l: (...p: string[]) => string) =>
    `--clean-valid ${l('data/cl/valid.h5')} --poisoned-valid ${l('data/bd/bd_valid.h5')} --clean-test ${l('data/cl/test.h5')} --poisoned-test ${l('data/bd/bd_test.h5')} -t 0`;
  const ml = (...p: string[]) => d('modern', 'lab', ...p);
  const commands = [
    `goodnet attack --out ${lab()}${extra}`,
    `goodnet eval -m ${lab('models/bd_net.h5')} -c ${lab('data/cl/test.h5')} -p ${lab('data/bd/bd_test.h5')} -t 0`,
    `goodnet prune -m ${lab('models/bd_net.h5')} ${dataArgs(lab)} -o ${d('prune')}`,
    ...(modern ? [
      `goodnet attack --arch ${modern.arch} --train-size ${modern.split.train} --valid-size ${modern.split.valid} --test-size ${modern.split.test} ` +
        `-e ${modern.epochs}${modern.trainEngine !== 'tfjs' ? ` --train-engine ${modern.trainEngine}` : ''} --out ${ml()}${o.dataset ? ` --dataset ${o.dataset}` : ''}${th}`,
      `goodnet prune -m ${ml('models/bd_net.h5')} ${dataArgs(ml)} --order asc -o ${d('modern', 'prune')}`,
    ] : []),
    `goodnet compare -m ${lab('models/bd_net.h5')} --clean-valid ${lab('data/cl/valid.h5')} --clean-images ${cleanImages} ` +
      `--clean-test ${lab('data/cl/test.h5')} --poisoned-test ${lab('data/bd/bd_test.h5')} -t 0${o.defenses?.options ? '' : ' --quick'}` +
      `${o.defenses?.only ? ` --defenses ${o.defenses.only.join(',')}` : ''} -o ${d('compare')}`,
    `goodnet report ${o.out}`,
  ];
  const cmd = (prefix: string) => commands.find((c) => c.startsWith(prefix))!;

  const attack = await runAttack({ out: lab(), dataset: o.dataset, epochs: o.epochs, threads, trainEngine, log: o.log, command: commands[0], ...o.attack });
  done('attack (DeepID BadNet)');
  o.onStage?.('attack', attack);
  const model = await loadModel(lab('models/bd_net.h5'));
  const ev = await evaluate(model, { clean: lab('data/cl/test.h5'), poisoned: lab('data/bd/bd_test.h5'), target: attack.target });
  done('eval');
  o.onStage?.('eval', ev);
  const prune = await runPrune({
    model, cleanValid: lab('data/cl/valid.h5'), poisonedValid: lab('data/bd/bd_valid.h5'),
    cleanTest: lab('data/cl/test.h5'), poisonedTest: lab('data/bd/bd_test.h5'), target: attack.target,
    out: d('prune'), command: commands[2], log: o.log, ...o.prune,
  });
  done('prune (asc + desc, GoodNets)');
  o.onStage?.('prune', prune);

  let second: DemoResult['modern'];
  if (modern) {
    const ma = await runAttack({
      out: ml(), dataset: o.dataset, arch: modern.arch, epochs: modern.epochs, split: modern.split, threads, trainEngine: modern.trainEngine, log: o.log,
      command: cmd(`goodnet attack --arch`), ...modern.progress,
    });
    done(`attack (${modern.arch} BadNet)`);
    const mm = await loadModel(ml('models/bd_net.h5'));
    const mp = await runPrune({
      model: mm, cleanValid: ml('data/cl/valid.h5'), poisonedValid: ml('data/bd/bd_valid.h5'),
      cleanTest: ml('data/cl/test.h5'), poisonedTest: ml('data/bd/bd_test.h5'), target: ma.target,
      orders: ['asc'], out: d('modern', 'prune'), command: cmd(`goodnet prune -m ${ml()}`), log: o.log, ...o.prune,
    });
    mm.net.dispose();
    done(`prune (${modern.arch}, asc)`);
    second = { attack: ma, prune: mp };
    o.onStage?.('modern', second);
  }

  let tDefense = performance.now();
  let cDefense = cpu();
  const compare = await runComparison({
    model, cleanValid: lab('data/cl/valid.h5'), cleanImages, cleanTest: lab('data/cl/test.h5'), poisonedTest: lab('data/bd/bd_test.h5'),
    target: attack.target, defenses: o.defenses?.only, options: o.defenses?.options ?? QUICK_DEFENSE_OPTIONS, out: d('compare'),
    log: o.log, onProgress: o.defenses?.onProgress,
    onDefense: (name, r) => {
      o.defenses?.onDefense?.(name, r);
      if (!r) return;
      // Each defense's phase: its run plus measuring it on the test sets (the first also measures the BadNet).
      const now = performance.now();
      const c = cpu();
      phases.push({ phase: `defense: ${name}`, seconds: (now - tDefense) / 1000, cpuSeconds: c - cDefense });
      tDefense = now;
      cDefense = c;
    },
  });
  tPhase = tDefense;
  cPhase = cDefense;
  done('defenses: writing the comparison');
  // STRIP's entropies (from the comparison's STRIP run) as `goodnet strip` writes them: the report's histogram.
  const stripResult = (compare.results.find((r) => r.defense === stripDefense.name)?.details as StripDefenseDetails | undefined)?.result;
  if (stripResult) await writeStripOutput(d('strip'), stripResult, { command: cmd('goodnet compare'), ...stripResult });
  o.onStage?.('compare', compare);

  const report = await writeReport(o.out, { commands, compareCommand: cmd('goodnet compare') });
  done('report');
  o.onStage?.('report', report);
  const seconds = (performance.now() - t0) / 1000;
  const summary: DemoSummary = { kind: 'demo', commands, phases, seconds, cpuSeconds: cpu() - cpu0, loadAverage: { start: load0, end: loadavg() }, cpus: (await import('node:os')).cpus().length };
  await writeAtomically(d('summary.json'), (tmp) => writeFileSync(tmp, `${JSON.stringify(summary, null, 2)}\n`));
  return { attack, eval: ev, prune, ...(second ? { modern: second } : {}), compare, ...(stripResult ? { strip: stripResult } : {}), report, commands, phases, summary, seconds };
}
