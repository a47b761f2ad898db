import { Command } from 'commander';
import { runDemo } from '../demo.js';
import type { EvaluateResult } from '../eval/evaluate.js';
import type { AttackSummary } from '../attack/lab.js';
import type { PruneSummary } from '../defense/prune.js';
import { markdownTable, percent } from '../report/table.js';
import { printAttackSummary, trainingProgress } from './attack.js';
import { parseInteger, setUp } from './common.js';
import { printPruneSummary, pruneProgress } from './prune.js';
import { fineTuneProgress } from './fineprune.js';
import { progress } from './progress.js';
import { comparisonMarkdown } from '../report/html.js';
import type { ComparisonRow } from '../defense/compare.js';
import type { StripResult } from '../detect/strip.js';

interface DemoCliOpts {
  out: string;
  force?: boolean;
  epochs?: number;
}

export function demoCommand(): Command {
  return new Command('demo')
    .summary('the whole experiment on the built-in data: attack, eval, prune, GoodNets, report')
    .description(
      'Make a BadNet on Fashion-MNIST (`goodnet attack`), measure it (`goodnet eval`), run the pruning defense in ' +
      'ascending and descending order with thresholds 2, 4 and 10 and build the GoodNets (`goodnet prune`), and ' +
      'fine-prune the ascending B\'_X (`goodnet prune --fine-tune`), run STRIP (`goodnet strip`), compare every defense in ' +
      'one table, and write the HTML report (`goodnet report`). Takes about 12 minutes on 2 cores; ends with the path of the report.')
    .requiredOption('-o, --out <dir>', 'output folder (must not exist, unless --force)')
    .option('--force', 'replace the output folder if it exists')
    .option('-e, --epochs <n>', 'training epochs of the BadNet (default: the attack\'s, 6)', parseInteger('--epochs', 1, 1000))
    .addHelpText('after', '\nExample:\n  goodnet demo --out demo && open demo/report.html')
    .action(async (o: DemoCliOpts) => {
      await setUp({ backend: 'wasm', batchSize: 256 });
      const r = await runDemo({
        out: o.out, overwrite: o.force, epochs: o.epochs,
        log: (l) => process.stderr.write(`${l}\n`),
        attack: trainingProgress(o.epochs ?? 6),
        prune: pruneProgress(),
        fineTune: { onEpoch: fineTuneProgress().onEpoch },
        strip: { onStage: (() => { const bars = new Map<string, (d: number, t: number) => void>(); return (st: string, d: number, t: number) => {
          if (!bars.has(st)) bars.set(st, progress(`STRIP ${st}`));
          bars.get(st)!(d, t);
        }; })() },
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
          if (stage === 'strip') {
            const st = result as StripResult;
            console.log(`\nSTRIP (N=${st.settings.n}, FRR ${percent(st.settings.frr)} asked): FRR ${percent(st.cleanTest!.frr)} on ${st.cleanTest!.images} clean, ` +
              `FAR ${percent(st.poisonedTest!.far)} on ${st.poisonedTest!.images} poisoned test images (${st.timings.total.toFixed(0)} s)`);
          }
          if (stage === 'compare') console.log(`\nAll defenses, test sets:\n\n${comparisonMarkdown(result as ComparisonRow[])}`);
        },
      });
      console.log(`\ndemo done in ${r.seconds.toFixed(0)} s. Report:\n${r.report}`);
    });
}
