import { Command, Option } from 'commander';
import { loadavg } from 'node:os';
import { DEMO_CLEAN_IMAGES, DEMO_MODERN, DEMO_TRAIN_ENGINE, runDemo, type DemoResult } from '../demo.js';
import { TRAIN_ENGINES, type TrainEngineChoice } from '../models/ort_train.js';
import type { EvaluateResult } from '../eval/evaluate.js';
import type { AttackSummary } from '../attack/lab.js';
import type { PruneSummary } from '../defense/prune.js';
import { BACKDOORBENCH_REFERENCE, comparisonTable, type CompareResult } from '../defense/comparison.js';
import { markdownTable, percent } from '../report/table.js';
import { printAttackSummary, trainingProgress } from './attack.js';
import { parseInteger, setUp } from './common.js';
import { printPruneSummary, pruneProgress } from './prune.js';
import { stageBars } from './defense_cli.js';

interface DemoCliOpts {
  out: string;
  force?: boolean;
  epochs?: number;
  threads: number;
  trainEngine: TrainEngineChoice;
}

/** The phase timing table the demo prints at the end (also in DIR/summary.json). */
export function phaseTable(r: Pick<DemoResult, 'phases' | 'seconds' | 'summary'>): string {
  const rows = r.phases.map((p) => [p.phase, `${p.seconds.toFixed(1)} s`, percent(p.seconds / r.seconds, 1), `${p.cpuSeconds.toFixed(1)} s`]);
  rows.push(['total', `${r.seconds.toFixed(1)} s`, '100.0%', `${r.summary.cpuSeconds.toFixed(1)} s`]);
  const la = r.summary.loadAverage;
  return `${markdownTable(['phase', 'wall time', 'share', 'CPU time'], rows)}\n\nload average (1/5/15 min) at start ${la.start.map((x) => x.toFixed(2)).join(' / ')}, ` +
    `at end ${la.end.map((x) => x.toFixed(2)).join(' / ')}; ${r.summary.cpus} CPUs`;
}

export function demoCommand(): Command {
  return new Command('demo')
    .summary('the whole experiment on the built-in data: attack, eval, prune, GoodNets, every defense, a modern BadNet, report')
    .description(
      'Make a BadNet on Fashion-MNIST (`goodnet attack`), measure it (`goodnet eval`), run the pruning defense in ' +
      'ascending and descending order with thresholds 2, 4 and 10 and build the GoodNets (`goodnet prune`), make a second ' +
      `BadNet of a modern architecture (${DEMO_MODERN.arch}, ${DEMO_MODERN.split.train.toLocaleString('en-US')} training images, ${DEMO_MODERN.epochs} epochs) and prune it, ` +
      `run every registered defense on the first BadNet with ${DEMO_CLEAN_IMAGES.toLocaleString('en-US')} clean images (\`goodnet compare --quick\`), ` +
      'and write the HTML report (`goodnet report`). Prints a phase timing table at the end (also in DIR/summary.json); ends with the path of the report.')
    .requiredOption('-o, --out <dir>', 'output folder (must not exist, unless --force)')
    .option('--force', 'replace the output folder if it exists')
    .option('-e, --epochs <n>', 'training epochs of the BadNet (default: the attack\'s, 6)', parseInteger('--epochs', 1, 1000))
    .option('--threads <n>', 'training threads for both BadNets (0: the core count; deterministic per seed and thread count, other counts give other weights)', parseInteger('--threads', 0, 256), 1)
    .addOption(new Option('--train-engine <name>', 'engine that trains the first (DeepID) BadNet: ort (onnxruntime, about 4x faster; auto is the same here) or tfjs (tfjs-wasm: the BadNet of goodnet\'s earlier demos, whose numbers README keeps); the ResNet always trains on ort').choices(TRAIN_ENGINES).default(DEMO_TRAIN_ENGINE))
    .addHelpText('after', '\nExample:\n  goodnet demo --out demo && open demo/report.html')
    .action(async (o: DemoCliOpts) => {
      await setUp({ backend: 'wasm', batchSize: 256 });
      const r = await runDemo({
        out: o.out, overwrite: o.force, epochs: o.epochs, threads: o.threads, trainEngine: o.trainEngine,
        log: (l) => process.stderr.write(`${l}\n`),
        attack: trainingProgress(o.epochs ?? 6),
        prune: pruneProgress(),
        modern: { progress: trainingProgress(DEMO_MODERN.epochs) },
        defenses: {
          onProgress: stageBars(),
          onDefense: (name, res) => process.stderr.write(res ? `${name}: done in ${res.seconds.toFixed(0)} s\n` : `defense ${name}: running\n`),
        },
        onStage: (stage, result) => {
          if (stage === 'attack') printAttackSummary(result as AttackSummary, `${o.out}/lab`);
          if (stage === 'eval') {
            const e = result as EvaluateResult;
            console.log(`\ngoodnet eval on the test sets:\n\n${markdownTable(['metric', 'value', 'images'], [
              ['clean accuracy', percent(e.clean!.accuracy), `${e.clean!.correct}/${e.clean!.count}`],
              ['attack success rate', percent(e.poisoned!.asr), `${e.poisoned!.hits}/${e.poisoned!.count}`],
            ])}`);
          }
          if (stage === 'prune') printPruneSummary(result as PruneSummary, `${o.out}/prune`);
          if (stage === 'modern') {
            const m = result as { attack: AttackSummary; prune: PruneSummary };
            console.log(`\nThe second BadNet (${m.attack.arch}):`);
            printAttackSummary(m.attack, `${o.out}/modern/lab`);
            printPruneSummary(m.prune, `${o.out}/modern/prune`);
          }
          if (stage === 'compare') {
            const c = result as CompareResult;
            const t = comparisonTable(c.rows);
            console.log(`\nEvery registered defense on the BadNet, test sets (${o.out}/compare):\n\n${markdownTable(t.headers, t.rows)}`);
            console.log(`\nReference point, BackdoorBench (CIFAR-10, PreAct-ResNet18, BadNets 10%), clean accuracy / ASR:\n` +
              BACKDOORBENCH_REFERENCE.map((x) => `${x.defense} ${x.accuracy.toFixed(2)}/${x.asr.toFixed(2)}`).join(', '));
          }
        },
      });
      console.log(`\nPhases (${o.out}/summary.json):\n\n${phaseTable(r)}`);
      console.log(`\ndemo done in ${r.seconds.toFixed(0)} s (load average now ${loadavg()[0]!.toFixed(2)}). Report:\n${r.report}`);
    });
}
